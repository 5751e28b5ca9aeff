"""The launcher a model folder's stub becomes: Triton probes `triton_python_backend_stub` by running it with no
arguments before each start (r22.11-r25.07, python_backend src/stub_launcher.cc), which the real stub fails
wherever its libpython lives only inside the env. inject places this script under the stub's name and the
real stub beside it as triton_python_backend_stub.elf; everything that reads a model's stub reads real_stub()."""

from __future__ import annotations

import functools
from pathlib import Path

from envtool.names import STUB_ELF_NAME as ELF_NAME

LAUNCHER = Path(__file__).with_name("launcher.sh")


@functools.lru_cache(maxsize=None)
def _launcher_bytes() -> bytes:
    return LAUNCHER.read_bytes()


def is_launcher(path: Path) -> bool:
    """envtool's launcher, by content (a user's own script is not ours to follow)."""
    try:
        return path.stat().st_size == len(_launcher_bytes()) and path.read_bytes() == _launcher_bytes()
    except OSError:
        return False


def real_stub(path: Path) -> Path:
    """The ELF binary a model folder's stub runs: the one beside envtool's launcher, else the stub itself."""
    return path.with_name(ELF_NAME) if is_launcher(path) else path
