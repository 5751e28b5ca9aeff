"""The real tritonserver bundled in the nvidia-pytriton wheel of a release, run on this host.

The wheel is downloaded once with pip into the cache and unpacked once; a default stub is placed in
backends/python/ (Triton refuses python models without one there, even when the model folder has
its own stub) and LD_LIBRARY_PATH gets the wheel's bundled libraries (KNOWLEDGE.md section 1).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import zipfile
from pathlib import Path

from envtool.cache import cache_root, publish_dir
from envtool.catalog import Release
from envtool.elf import read_elf
from envtool.env.interpreters import find_interpreter
from envtool.errors import BadInput, EnvtoolError
from envtool.names import STUB_NAME as STUB
from envtool.servers.base import ProcessServer
from envtool.wheels import download_wheel


def _unpack(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
    root = dest / "pytriton" / "tritonserver"
    for exe in [root / "bin" / "tritonserver", *root.glob(f"**/{STUB}")]:
        exe.chmod(0o755)  # zip extraction drops the exec bits


def server_tree(release: Release) -> Path:
    """The unpacked wheel: <cache>/servers/<pytriton version>/ (pytriton/tritonserver inside)."""
    if not release.embedded_available:
        have = "r22.11, r23.04, r23.07, r23.10, r23.12, r24.01-r24.10"
        raise BadInput(f"no nvidia-pytriton wheel bundles Triton {release.branch}",
                       f"embedded servers exist for {have}; use --server local or docker")
    wheel = download_wheel(release)
    version = wheel.name.split("-")[1]
    return publish_dir(cache_root() / "servers" / version, lambda tmp: _unpack(wheel, tmp))


def host_python() -> tuple[str, Path]:
    """The Python running envtool, which also serves models that have no env of their own."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    return version, libdir


def default_stub(tree: Path, python: str) -> Path:
    """Install a prebuilt stub for `python` as the backend's default; returns its path."""
    root = tree / "pytriton" / "tritonserver"
    target = root / "backends" / "python" / STUB
    prebuilt = root / "python_backend_stubs" / python / STUB
    if prebuilt.is_file():
        if not target.is_file() or target.read_bytes() != prebuilt.read_bytes():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(prebuilt, tmp)
            tmp.chmod(0o755)
            os.replace(tmp, target)
    elif not target.is_file():  # pytriton 0.1/0.2 ship one stub (libpython 3.8 bundled)
        raise BadInput(f"the {tree.name} wheel has no stub for Python {python}",
                       "run envtool with one of the Pythons its stubs support")
    return target


class EmbeddedServer(ProcessServer):
    kind = "embedded"

    def __init__(self, release: Release, repo: Path, **kw):
        super().__init__(release, repo, **kw)
        self.tree = server_tree(release)
        self.root = self.tree / "pytriton" / "tritonserver"
        python, libdir, bindir = default_python(self.tree)
        libs = [str(self.tree / "nvidia_pytriton.libs"), str(libdir)]
        self.env_add = {"LD_LIBRARY_PATH": os.pathsep.join(libs)}
        self.path_add = [str(bindir)]

    def command(self) -> list[str]:
        return [str(self.root / "bin" / "tritonserver"),
                "--backend-directory", str(self.root / "backends")]


def default_python(tree: Path) -> tuple[str, Path, Path]:
    """The Python that models without an env run in: python3 first on PATH must be the default stub's
    Python. The Python running envtool where the wheel has a stub for it; else (pytriton 0.1/0.2 ship
    one 3.8 stub) that stub's Python from pyenv/uv/the system, when this machine has it."""
    python, libdir = host_python()
    root = tree / "pytriton" / "tritonserver"
    if (root / "python_backend_stubs" / python / STUB).is_file() or \
            not (root / "backends" / "python" / STUB).is_file():
        default_stub(tree, python)
        return python, libdir, Path(sys.executable).parent
    want = read_elf(root / "backends" / "python" / STUB).libpython
    try:
        it = find_interpreter(want) if want else None
    except EnvtoolError:
        it = None
    if it is None:
        return python, libdir, Path(sys.executable).parent  # such models fail, and verify says why
    return it.xy, it.libdir, it.executable.parent
