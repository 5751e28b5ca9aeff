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
Then the prefix's own Python imports each of them from the zip, and one that fails the way a zip makes code
fail (it lists or opens its own folder at import) goes back to files. Their .dist-info folders stay files,
so importlib.metadata still finds them.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from envtool.env.install import isolated_env
from envtool.env.sourceless import site_packages, top_name
from envtool.runner import run

ZIP_NAME = "envtool-packages.zip"
# .pth files run in name order: this one first, so a later .pth that imports a package finds the zip
PTH_NAME = "00-envtool-packages.pth"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the same packages give the same bytes
_PTH_IMPORT = re.compile(r"^\s*import\s")
# What a zip makes fail: a path into it opened, listed or stat'ed as if it were a folder
_ZIP_ERRORS = ("OSError", "FileNotFoundError", "NotADirectoryError")
_IMPORTS = r"""
import json, site, sys
from importlib import import_module
site.addsitedir(sys.argv[1])  # a no-op for the prefix's own Python, whose site-packages this is
errors = {}
for name in sys.argv[2:]:
    try:
        import_module(name)
    except BaseException as e:
        errors[name] = "import %s: %s: %s" % (name, type(e).__name__, e)
print("ENVTOOL-IMPORTS" + json.dumps(errors))
"""


@dataclass
class SiteZip:
    zip: str | None  # relative to the prefix; None where every candidate went back to files
    packages: list[str] = field(default_factory=list)
    files: int = 0
    kept: dict[str, str] = field(default_factory=dict)  # package -> the import error that sent it back to files

    def manifest(self) -> dict:
        return {"zip": self.zip, "packages": self.packages, "files": self.files, "kept_as_files": self.kept,
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


def why_not(top: Path, trimmed: tuple[str, ...], prefix: Path, keep=()) -> str | None:
    """Why this top-level entry of site-packages stays files; None where it may go into the zip. A file that
    `trimmed` matches does not count, unless it is in `keep` (trim.needed_anyway)."""
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
        dropped = rel not in keep and any(fnmatch.fnmatch(rel, p) for p in trimmed)
        if path.is_file() and path.suffix != ".pyc" and not dropped:
            return f"holds files other than bytecode ({path.relative_to(top.parent)})"
    return None


def zip_broke(err: str | None) -> bool:
    """An import error (as the probes word it: "import NAME: TYPE: message") that a zip causes. Others (a
    missing optional dependency) would be the same with the package as files."""
    return bool(err) and (ZIP_NAME in err or (err.split(": ") + [""])[1] in _ZIP_ERRORS)


def zip_packages(prefix: Path, xy: str, trimmed: tuple[str, ...], log,
                 python: Path | None = None, keep=()) -> SiteZip | None:
    """Move each top-level package of bytecode alone into site-packages/envtool-packages.zip (what packing
    trims, `trimmed`, is left out), and back out those that do not import from it with `python` (the
    prefix's own by default). Runs after make_sourceless, on a prefix envtool made. None: no candidate."""
    site = site_packages(prefix, xy)
    skip = _pth_names(site)
    tops = {top_name(t): t for t in sorted(site.iterdir())
            if top_name(t) not in skip and why_not(t, trimmed, prefix, keep) is None}
    if not tops:
        return None
    # name -> its files' bytes by path in the zip (relative to site-packages), the .pyc files alone
    moved = {name: {p.relative_to(site).as_posix(): p.read_bytes() for p in _bytecode(top)}
             for name, top in tops.items()}
    out = SiteZip((site / ZIP_NAME).relative_to(prefix).as_posix())
    _write_zip(site, moved)
    (site / PTH_NAME).write_text(ZIP_NAME + "\n")
    for top in tops.values():
        top.unlink() if top.is_file() else shutil.rmtree(top)
    python = python or prefix / "bin" / f"python{xy}"
    out.kept = {name: err for name, err in _import_errors(python, site, list(tops)).items() if zip_broke(err)}
    for name in out.kept:  # back to files, as they were
        for rel, data in moved.pop(name).items():
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            (site / rel).write_bytes(data)
    if not moved:  # every one went back: no zip
        (site / ZIP_NAME).unlink()
        (site / PTH_NAME).unlink()
        out.zip = None
    elif out.kept:
        _write_zip(site, moved)
    out.packages = sorted(moved)
    out.files = sum(len(files) for files in moved.values())
    log(f"pure-Python packages zipped: {len(moved)} into {ZIP_NAME} ({out.files} files fewer)"
        + (f"; back to files, they do not import from a zip: {', '.join(sorted(out.kept))}" if out.kept else ""))
    return out


def _bytecode(top: Path) -> list[Path]:
    return [top] if top.is_file() else sorted(top.rglob("*.pyc"))


def _write_zip(site: Path, packages: dict[str, dict[str, bytes]]) -> None:
    """The zip of these packages, entries sorted and dated 1980: the same packages give the same bytes."""
    with zipfile.ZipFile(site / ZIP_NAME, "w", zipfile.ZIP_STORED) as z:
        for rel, data in sorted((rel, data) for files in packages.values() for rel, data in files.items()):
            info = zipfile.ZipInfo(rel, _EPOCH)
            info.external_attr = 0o644 << 16
            z.writestr(info, data)


def _import_errors(python: Path, site: Path, names: list[str]) -> dict[str, str]:
    """Import each of names with this Python, site's .pth files read (the zip on sys.path)."""
    out = run([python, "-I", "-c", _IMPORTS, site, *names], timeout=600,
              env=isolated_env(PYTHONDONTWRITEBYTECODE="1"))
    for line in out.stdout.splitlines():
        if line.startswith("ENVTOOL-IMPORTS"):
            return json.loads(line[len("ENVTOOL-IMPORTS"):])
    return {}  # the interpreter itself failed: validation's probe says why
