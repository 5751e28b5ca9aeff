"""Build a conda-layout prefix without conda: copy a CPython with a shared libpython into a fresh
folder, make it relocatable, pip-install the requirements with the copy's own pip, and write
conda-meta/history so that conda-pack accepts it (it refuses a prefix without conda-meta/).

The layout is what Triton's activation needs (KNOWLEDGE.md section 3): bin/python3,
lib/libpython3.X.so.1.0, lib/python3.X/.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from elftools.common.exceptions import ELFError

from envtool.elf import read_elf
from envtool.env.install import Log, debian_site, isolated_env, pip_install
from envtool.env.interpreters import Interpreter
from envtool.errors import BadInput
from envtool.runner import patchelf, run

# Never copied: the host's own installs. With trim, also what packing would drop anyway (saves
# seconds on a cold disk: the test suite alone is ~half the stdlib). ensurepip stays: its pip wheel
# installs the requirements.
_NEVER = {"site-packages", "dist-packages"}
_TRIMMED_TOP = {"test", "idlelib", "tkinter", "turtledemo"}
# The test suites inside standard-library packages (up to 3.12: ctypes/test, distutils/tests, lib2to3/tests,
# sqlite3/test, unittest/test): run by CPython's own tests, imported by nothing else
_TRIMMED_NESTED = {"test", "tests"}


def copy_interpreter(it: Interpreter, prefix: Path, trim: bool = True) -> tuple[int, int]:
    """bin/python3.X (+ python3, python links), lib/libpython, the stdlib without site-packages.
    Returns (files, bytes) left out by trim, for the manifest's "size saved"."""
    xy = it.xy
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    shutil.copy2(it.executable.resolve(), prefix / "bin" / f"python{xy}")
    for alias in ("python3", "python"):
        (prefix / "bin" / alias).symlink_to(f"python{xy}")
    shutil.copy2(it.libpython.resolve(), prefix / "lib" / it.soname)
    stdlib = prefix / "lib" / f"python{xy}"

    skipped = [0, 0]

    def skip(d: str, names: list[str]) -> list[str]:
        if Path(d) == it.stdlib:
            top = _NEVER | (_TRIMMED_TOP if trim else set())
        else:  # a package of the standard library (site-packages is never copied), or a folder in one
            top = _TRIMMED_NESTED if trim and Path(d).parent == it.stdlib else set()
        out = [n for n in names if n in top or (trim and (n == "__pycache__" or n.endswith(".a")))]
        for n in out:
            if n not in _NEVER:
                files, size = _du(Path(d, n))
                skipped[0] += files
                skipped[1] += size
        return out

    shutil.copytree(it.stdlib, stdlib, symlinks=True, ignore=skip)
    _inline_absolute_links(stdlib)
    (stdlib / "site-packages").mkdir()
    if debian_site(stdlib):
        # Debian/Ubuntu's site.py reads lib/python3.X/dist-packages (site-packages only in a venv), while pip
        # installs into site-packages for a prefix other than /usr: one folder under both names.
        (stdlib / "dist-packages").symlink_to("site-packages")
    if not (stdlib / "lib-dynload").is_dir():
        raise BadInput(f"{it.executable}: no lib-dynload next to its stdlib {it.stdlib}",
                       "use a CPython installed by pyenv or uv, or Debian/Ubuntu's python3.X with libpython3.X")
    return skipped[0], skipped[1]


def _inline_absolute_links(root: Path) -> None:
    """Debian links stdlib files into /etc (sitecustomize.py -> /etc/python3.X/sitecustomize.py): an env
    must not point outside itself, so such a link becomes a copy of its file, or goes if it is dangling."""
    for path in [p for p in root.rglob("*") if p.is_symlink() and os.path.isabs(os.readlink(p))]:
        target = path.resolve()
        path.unlink()
        if target.is_file():
            shutil.copy2(target, path)


def _du(path: Path) -> tuple[int, int]:
    if not path.is_dir() or path.is_symlink():
        return 1, path.lstat().st_size
    files = [p for p in path.rglob("*") if not p.is_dir() or p.is_symlink()]
    return len(files), sum(p.lstat().st_size for p in files)


def relocate_runpaths(prefix: Path, moves: dict[Path, Path]) -> int:
    """Rewrite RUNPATH/RPATH entries under an old root (key) to $ORIGIN-relative paths under its
    new place (value); without this the copy keeps loading the original install's libpython."""
    roots = {str(old.resolve()): new for old, new in moves.items()}
    changed = 0
    for path in elf_files(prefix):
        try:
            rp = read_elf(path).runpath
        except BadInput:
            continue
        new = [_rebase(e, roots, path) for e in rp]
        if new != rp:
            run([patchelf(), "--set-rpath", ":".join(dict.fromkeys(new)), str(path)], check="patchelf")
            changed += 1
    return changed


def _rebase(entry: str, roots: dict[str, Path], binary: Path) -> str:
    for old, new in roots.items():
        if entry == old or entry.startswith(old + "/"):
            return "$ORIGIN/" + os.path.relpath(new / entry[len(old):].lstrip("/"), binary.parent)
    return entry


def elf_files(prefix: Path):
    for base in ("bin", "lib"):
        for path in (prefix / base).rglob("*"):
            if path.is_file() and not path.is_symlink() and (path.parent.name == "bin" or ".so" in path.name
                                                              or path.parent.name == "lib-dynload"):
                try:
                    with path.open("rb") as f:
                        if f.read(4) == b"\x7fELF":
                            yield path
                except (OSError, ELFError):
                    continue


def write_history(prefix: Path, note: str) -> None:
    """conda-pack needs conda-meta/ with a history file (an empty conda-meta/ crashes it)."""
    meta = prefix / "conda-meta"
    meta.mkdir(exist_ok=True)
    (meta / "history").write_text(f"# built by envtool (no conda): {note}\n")


def _compileall(python: Path, folder: Path, skip: str | None) -> None:
    """Unchecked-hash .pyc files: the env is an immutable artifact, and no extraction mtime can invalidate
    them (timestamp .pyc files would be judged against them). rc != 0 where some file does not compile
    (templates, Python 2 leftovers): Python would not import it either, so the rest is kept."""
    run([str(python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
         *(["-x", skip] if skip else []), str(folder)], env=isolated_env(), timeout=1800)


def compile_bytecode(prefix: Path, xy: str, log: Log, trim: bool = True) -> None:
    """.pyc files for the packages; build_prefix(bytecode=True) compiled the standard library's. Triton
    extracts a tarball env afresh at every server start; without bytecode (trimmed, or pip --no-compile) each
    stub compiles its imports again, about 1 s per model load."""
    log("precompiling bytecode (unchecked-hash .pyc)")
    # With trim, packages' tests/ folders never ship (pack.TRIM): a fifth of the example's files, not compiled
    _compileall(prefix / "bin" / f"python{xy}", prefix / "lib" / f"python{xy}" / "site-packages",
                r"/site-packages/.+/tests/" if trim else None)


# What stays real files in lib/pythonX.Y when the rest of the standard library goes into lib/pythonXY.zip:
# the landmark CPython's getpath looks for to find its prefix (os.py; Triton's embedded Python finds the
# prefix from python3 on PATH, then this file; a copy goes into the zip too), the extension modules
# (zipimport cannot load a .so), the build's configuration folder, the packages, and ensurepip (trimmed).
_LANDMARK = "os.py"
_PACKAGES = r"/(site|dist)-packages/"  # compileall -x: the standard library alone
_NOT_ZIPPED = {"lib-dynload", "site-packages", "dist-packages", "ensurepip"}


def stdlib_zip(xy: str) -> str:
    """Where CPython X.Y looks for its zipped standard library, relative to the prefix."""
    return f"lib/python{xy.replace('.', '')}.zip"


def zip_stdlib(prefix: Path, xy: str, log: Log) -> int:
    """The pure-Python standard library, with its bytecode, as lib/pythonXY.zip: the archive CPython puts on
    sys.path before lib/pythonX.Y by default (getpath; Python's Windows embeddable package ships it so).
    Triton extracts a tarball env at every model load, and each file costs about 1 ms of kernel time: this
    is ~1,400 files fewer. Each module goes in as name.py and its unchecked-hash bytecode as name.pyc beside
    it (zipimport reads that place, not __pycache__, and never writes). Returns the number of files moved."""
    lib = prefix / "lib" / f"python{xy}"
    tag = f".cpython-{xy.replace('.', '')}"
    moved: list[Path] = []
    with zipfile.ZipFile(prefix / stdlib_zip(xy), "w", zipfile.ZIP_STORED) as z:
        for top in sorted(lib.iterdir()):
            if top.name in _NOT_ZIPPED or top.name.startswith("config-"):
                continue
            for path in sorted([top] if top.is_file() else top.rglob("*")):
                if path.is_symlink() or not path.is_file():
                    continue
                rel = path.relative_to(lib)
                if rel.parent.name == "__pycache__":
                    if not (path.name.endswith(".pyc") and tag in path.name):
                        continue  # another interpreter's or an optimized level's: not read from a zip
                    rel = rel.parent.parent / (path.name.split(tag)[0] + ".pyc")
                z.write(path, rel.as_posix())
                if rel.as_posix() != _LANDMARK:
                    moved.append(path)
    for path in moved:
        path.unlink()
    for folder in sorted((d for d in lib.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()
    log(f"standard library zipped: {stdlib_zip(xy)} ({len(moved)} files fewer)")
    return len(moved)


def build_prefix(it: Interpreter, prefix: Path, pip_args: list[str], log: Log, cwd: Path | None = None,
                 trim: bool = True, installer: str = "auto", bytecode: bool = False) -> tuple[int, int]:
    """Returns (files, bytes) that trim left out of the copy. bytecode: the standard library's is compiled
    (compile_bytecode then compiles the packages')."""
    log(f"copying Python {it.version} from {it.prefix}")
    skipped = copy_interpreter(it, prefix, trim)  # its debug info goes at pack time (env/debuginfo.py)
    with ThreadPoolExecutor(1) as pool:
        # bytecode: the copied standard library compiles while the binaries are patched and the packages
        # install (~1 s of a cold build on 2 CPUs), by the interpreter it came from: the same X.Y, the same .pyc
        lib = prefix / "lib" / f"python{it.xy}"
        stdlib = pool.submit(_compileall, it.executable, lib, _PACKAGES) if bytecode else None
        n = relocate_runpaths(prefix, {it.prefix: prefix, it.libdir: prefix / "lib"})
        log(f"made {n} binaries relocatable ($ORIGIN RUNPATH)")
        pip_install(prefix, it.xy, pip_args, log, cwd, installer)
        write_history(prefix, f"python {it.version} from {it.executable}; pip {' '.join(pip_args)}")
        if stdlib is not None:
            stdlib.result()
    return skipped
