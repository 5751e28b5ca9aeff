"""Pure-Python packages as one zip on sys.path: site-packages/envtool-packages.zip, put there by a .pth file.

Triton extracts a tarball env at every server start, into /tmp (python_backend, src/pb_env.cc: mkdtemp of
"/tmp/python_env_XXXXXX", then libarchive's write_disk for each member), and there the cost is the files, not
the bytes: creating a file took 250-550 us here, inflating the whole example env 0.6 s. After the standard
library (prefix.zip_stdlib) and sourceless packages (sourceless.py), the example env's pure-Python packages are
its next ~750 files (pygments, rich, httpx, fsspec, click ...).

CPython's zipimport loads name.pyc from a zip (legacy location, PEP 3147) as the stdlib zip does; site.py
appends each path line of a .pth file in site-packages to sys.path, for every interpreter that runs `site`,
the stub's embedded one included. What a zip changes is `__file__` (a path inside the zip): code that opens
files next to itself breaks. So only packages made of bytecode alone go in: no data file, no extension module,
no source (sourceless.py keeps sources where a package reads them), no symlink, not imported by a .pth line.
Their .dist-info folders stay files, so importlib.metadata still finds them.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from envtool.env.sourceless import site_packages

ZIP_NAME = "envtool-packages.zip"
# .pth files run in name order: this one first, so a later .pth that imports a package finds the zip
PTH_NAME = "00-envtool-packages.pth"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the same packages give the same bytes
_PTH_IMPORT = re.compile(r"^\s*import[\s\t]")


@dataclass
class SiteZip:
    zip: str  # relative to the prefix
    packages: list[str] = field(default_factory=list)
    files: int = 0

    def manifest(self) -> dict:
        return {"zip": self.zip, "packages": self.packages, "files": self.files,
                "why": "packages of bytecode alone (no data files, no extension modules) import from a zip as "
                       "from files; one file to extract in place of these: --keep-sources keeps them as files"}


def _pth_names(site: Path) -> set[str]:
    """Every word on the import lines of .pth files: those modules must import before the zip is on sys.path."""
    names: set[str] = set()
    for pth in site.glob("*.pth"):
        for line in pth.read_text(errors="replace").splitlines():
            if _PTH_IMPORT.match(line):
                names.update(re.findall(r"[A-Za-z_]\w*", line))
    return names


def why_not(top: Path, trimmed: tuple[str, ...], prefix: Path) -> str | None:
    """Why this top-level entry of site-packages stays files; None where it may go into the zip."""
    if top.is_symlink():
        return "a symlink"
    if top.is_file():
        return None if top.suffix == ".pyc" and top.stem.isidentifier() else "not a module"
    if not top.name.isidentifier() or not (top / "__init__.pyc").is_file():
        return "not a regular package of bytecode"
    for path in top.rglob("*"):
        if path.is_symlink():
            return f"holds a symlink ({path.relative_to(top.parent)})"
        rel = path.relative_to(prefix).as_posix()
        if path.is_file() and path.suffix != ".pyc" and not any(fnmatch.fnmatch(rel, p) for p in trimmed):
            return f"holds files other than bytecode ({path.relative_to(top.parent)})"
    return None


def zip_packages(prefix: Path, xy: str, trimmed: tuple[str, ...], log) -> SiteZip | None:
    """Move each top-level package of bytecode alone into site-packages/envtool-packages.zip (what packing
    trims, `trimmed`, is left out). Runs after make_sourceless, on a prefix envtool made."""
    site = site_packages(prefix, xy)
    skip = _pth_names(site)
    tops = [t for t in sorted(site.iterdir())
            if (t.stem if t.is_file() else t.name) not in skip and why_not(t, trimmed, prefix) is None]
    if not tops:
        return None
    out = SiteZip((site / ZIP_NAME).relative_to(prefix).as_posix())
    with zipfile.ZipFile(site / ZIP_NAME, "w", zipfile.ZIP_STORED) as z:
        for top in tops:
            out.packages.append(top.stem if top.is_file() else top.name)
            for path in [top] if top.is_file() else sorted(top.rglob("*.pyc")):
                info = zipfile.ZipInfo(path.relative_to(site).as_posix(), _EPOCH)
                info.external_attr = 0o644 << 16
                z.writestr(info, path.read_bytes())
                out.files += 1
    (site / PTH_NAME).write_text(ZIP_NAME + "\n")
    for top in tops:
        top.unlink() if top.is_file() else shutil.rmtree(top)
    log(f"pure-Python packages zipped: {len(tops)} into {ZIP_NAME} ({out.files} files fewer)")
    return out

