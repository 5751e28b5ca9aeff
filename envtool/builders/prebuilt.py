"""NVIDIA's own stubs, out of the nvidia-pytriton wheel that bundles the release.

In the wheel a stub finds its libraries through `$ORIGIN/../../../../nvidia_pytriton.libs`, and
pytriton 0.1.x/0.2.x link an auditwheel-renamed libpython (`libpython3-<hash>.8.so.1.0`). Copied into
a model folder neither works, so the stub is made self-contained: the renamed libpython becomes
`libpython3.X.so.1.0` (the env provides it, as Triton puts <env>/lib on LD_LIBRARY_PATH), the other
bundled libraries it needs (libcudart) are copied beside it, and its RUNPATH becomes `$ORIGIN`.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

from envtool.cache import file_sha256 as sha256
from envtool.catalog import Release
from envtool.elf import LIBPYTHON, read_elf
from envtool.errors import BadInput
from envtool.names import STUB_NAME as STUB
from envtool.runner import patchelf, run
from envtool.stub.check import require_fit
from envtool.stub.store import StubKey
from envtool.wheels import download_wheel

ROOT = "pytriton/tritonserver"
LIBS = "nvidia_pytriton.libs"


class NotInWheel(BadInput):
    """The release has a wheel, but not a stub for this Python: auto falls through to local."""


def wheel_pythons(names: list[str]) -> list[str]:
    found = {n.split("/")[3] for n in names if n.startswith(f"{ROOT}/python_backend_stubs/") and n.endswith(STUB)}
    return sorted(found, key=lambda v: int(v.split(".")[1]))


def build(release: Release, target: StubKey, tmp: Path, log) -> dict:
    if not release.pytriton:
        raise NotInWheel(f"no nvidia-pytriton wheel bundles r{release.release}",
                         "use --builder local (or docker) for this release")
    t0 = time.monotonic()
    wheel = download_wheel(release)
    log(f"extracting the Python {target.python} stub from {wheel.name}")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        stub = _extract_stub(z, names, target.python, tmp, wheel)
        libs = _bundle_libs(z, names, stub, tmp)
    _make_self_contained(stub, target.python, bool(libs))
    facts = require_fit(stub, release, target.python, libs)
    return {
        "release": release.release, "python": target.python, "gpu": True, "arch": target.arch,
        "builder": "prebuilt", "sha256": sha256(stub), "libs": [p.name for p in libs], **facts,
        "sources": {"wheel": wheel.name, "wheel_sha256": sha256(wheel)},
        "timings": {"extract_s": round(time.monotonic() - t0, 2)},
        "note": "NVIDIA's GPU-enabled stub; runs on CPU too (libcudart is bundled beside it)",
    }


def _extract_stub(z: zipfile.ZipFile, names: list[str], python: str, tmp: Path, wheel: Path) -> Path:
    member = f"{ROOT}/python_backend_stubs/{python}/{STUB}"
    legacy = f"{ROOT}/backends/python/{STUB}"  # pytriton 0.1/0.2: one stub, libpython 3.8
    target = tmp / STUB
    for m in (member, legacy):
        if m in names:
            target.write_bytes(z.read(m))
            if read_elf(target).libpython == python:
                target.chmod(0o755)
                return target
    have = wheel_pythons(names)
    if not have and target.exists():  # the legacy single stub
        have = [read_elf(target).libpython]
    target.unlink(missing_ok=True)
    raise NotInWheel(f"{wheel.name} has stubs for Python {', '.join(have) or 'none'}, not {python}",
                     f"use --python {' or '.join(have)}, or --builder local to build one")


def _bundle_libs(z: zipfile.ZipFile, names: list[str], stub: Path, tmp: Path) -> list[Path]:
    """The wheel-bundled libraries the stub needs, transitively (libpython excluded)."""
    out: list[Path] = []
    todo = list(read_elf(stub).needed)
    while todo:
        name = todo.pop()
        member = f"{LIBS}/{name}"
        if LIBPYTHON.match(name) or member not in names or (tmp / name).exists():
            continue
        dest = tmp / name
        dest.write_bytes(z.read(member))
        dest.chmod(0o755)
        out.append(dest)
        todo += read_elf(dest).needed
    return out


def _make_self_contained(stub: Path, python: str, has_libs: bool) -> None:
    wanted = f"libpython{python}.so.1.0"
    for n in read_elf(stub).needed:
        if LIBPYTHON.match(n) and n != wanted:
            run([patchelf(), "--replace-needed", n, wanted, str(stub)], check="patchelf")
    rpath = ["--set-rpath", "$ORIGIN"] if has_libs else ["--remove-rpath"]
    run([patchelf(), *rpath, str(stub)], check="patchelf")
