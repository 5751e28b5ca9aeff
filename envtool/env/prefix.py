"""Build a conda-layout prefix without conda: copy a CPython with a shared libpython into a fresh
folder, make it relocatable, pip-install the requirements with the copy's own pip, and write
conda-meta/history so that conda-pack accepts it (it refuses a prefix without conda-meta/).

The layout is what Triton's activation needs (KNOWLEDGE.md section 3): bin/python3,
lib/libpython3.X.so.1.0, lib/python3.X/.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import typing
from pathlib import Path

from elftools.common.exceptions import ELFError

from envtool.elf import read_elf
from envtool.env.interpreters import Interpreter
from envtool.errors import BadInput
from envtool.runner import patchelf, run, tail

# typing.Callable: collections.abc.Callable cannot be subscribed at run time on Python 3.8
Log = typing.Callable[[str], None]

# Variables that would make pip install somewhere else, or read the user's site (failure mode 9).
_PIP_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT",
                 "PIP_REQUIRE_VIRTUALENV", "VIRTUAL_ENV", "CONDA_PREFIX", "UV_PYTHON", "UV_SYSTEM_PYTHON",
                 "UV_PREFIX", "UV_TARGET", "UV_BREAK_SYSTEM_PACKAGES")


def isolated_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PIP_ENV_DROP}
    env.update(PYTHONNOUSERSITE="True", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", **extra)
    return env


# Never copied: the host's own installs. With trim, also what packing would drop anyway (saves
# seconds on a cold disk: the test suite alone is ~half the stdlib). ensurepip stays: its pip wheel
# installs the requirements.
_NEVER = {"site-packages", "dist-packages"}
_TRIMMED_TOP = {"test", "idlelib", "tkinter", "turtledemo"}


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
        top = _NEVER | (_TRIMMED_TOP if trim else set()) if Path(d) == it.stdlib else set()
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
    if _debian_site(stdlib):
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


def _debian_site(stdlib: Path) -> bool:
    site = stdlib / "site.py"
    return site.is_file() and '"dist-packages"' in site.read_text(errors="replace")


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


def pip_command(prefix: Path, xy: str) -> list[str]:
    """The copy's own interpreter running the pip wheel that CPython bundles for ensurepip: no pip
    is installed into the env (Triton never needs it) and no ~3 s ensurepip run. Debian/Ubuntu Pythons
    ship no such wheel (theirs in /usr/share/python-wheels is devendored): there, the pip beside envtool
    installs into the copy (`pip --python`, pip >= 22.3)."""
    py = str(prefix / "bin" / f"python{xy}")
    wheels = sorted((prefix / "lib" / f"python{xy}" / "ensurepip" / "_bundled").glob("pip-*.whl"))
    if wheels:
        return [py, f"{wheels[-1]}/pip"]
    if run([py, "-m", "pip", "--version"], env=isolated_env(), timeout=120).returncode == 0:
        return [py, "-m", "pip"]
    if _own_pip_has_python_option():
        return [sys.executable, "-m", "pip", "--python", py]
    raise BadInput(f"{py}: no pip and no ensurepip wheel in its stdlib, and envtool's pip is older than 22.3",
                   f"{sys.executable} -m pip install -U pip, or use a Python with ensurepip (pyenv, uv)")


def _own_pip_has_python_option() -> bool:
    from packaging.version import Version
    try:
        from pip import __version__
    except ImportError:
        return False
    return Version(__version__) >= Version("22.3")


def pip_install(prefix: Path, xy: str, args: list[str], log: Log, cwd: Path | None = None,
                installer: str = "auto") -> None:
    """Install args into the prefix with uv where it can (several times faster than pip), else pip; a failure
    names the package and the installer's last lines. installer: auto | uv | pip."""
    if not args:
        return
    uv = _uv_for(prefix / "lib" / f"python{xy}", installer)
    if installer == "uv" and uv is None:
        raise BadInput("--installer uv: uv is not installed here (or the env's Python is Debian's, whose "
                       "site scheme only pip installs into)", "pip install uv, or use --installer pip")
    if uv is not None:
        out = _uv_install(uv, prefix, xy, args, log, cwd)
        if out.returncode == 0:
            return
        if installer == "uv":
            _install_failed(prefix, out, "uv pip")
        log(f"uv failed ({tail(out.stderr or out.stdout, 1)}); trying pip")
    _pip_install(prefix, xy, args, log, cwd)


def _pip_install(prefix: Path, xy: str, args: list[str], log: Log, cwd: Path | None) -> None:
    # --no-compile: envtool compiles what ships itself (compile_bytecode), or nothing
    # Debian/Ubuntu's pip scheme puts a prefix's packages in local/lib/python3.X/dist-packages unless --prefix
    # is given: with it they land in lib/python3.X/site-packages, where Triton-style envs keep them.
    where = ["--prefix", str(prefix)] if _debian_site(prefix / "lib" / f"python{xy}") else []
    cmd = [*pip_command(prefix, xy), "install", "--no-warn-script-location", "--no-compile",
           "--progress-bar", "off", *where, *args]
    log("pip install " + " ".join(args))
    # pip run from its wheel (a zip) extracts certifi's cacert.pem into TMPDIR and leaves it (275 KB a run):
    # its own temporary folder, removed afterwards
    with tempfile.TemporaryDirectory(prefix="envtool-pip-") as tmp:
        out = run(cmd, env=isolated_env(TMPDIR=tmp), cwd=cwd)
    if out.returncode != 0:
        _install_failed(prefix, out, "pip")
    _merge_local_scheme(prefix, xy)


def _merge_local_scheme(prefix: Path, xy: str) -> None:
    """Debian's own pip (the one its python3-venv bundles) installs into local/lib/python3.X/dist-packages
    even with --prefix (its posix_local scheme). The env's site.py finds them there, but every reader of an
    env (envtool's view, doctor, conda-pack users) looks in lib/python3.X/site-packages: move them there."""
    local = prefix / "local"
    for src, dest in ((local / "lib" / f"python{xy}" / "dist-packages", prefix / "lib" / f"python{xy}" /
                       "site-packages"), (local / "bin", prefix / "bin")):
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            for item in src.iterdir():
                _remove(dest / item.name)  # a newer install of the same package or script wins
                shutil.move(str(item), dest / item.name)
    if local.is_dir():
        shutil.rmtree(local)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _install_failed(prefix: Path, out, tool: str) -> None:
    text = out.stderr + out.stdout
    if "No space left on device" in text:
        raise disk_full(prefix)
    pkg = _failed_requirement(text)
    raise BadInput(f"{tool} install failed{f' for {pkg}' if pkg else ''}: {tail(out.stderr or out.stdout, 3)}",
                   "fix or pin that requirement (see the installer's message), then run again")


def installer_of(it: Interpreter, choice: str = "auto") -> str:
    """What will install into a copy of it ("uv 0.x.y" or "pip"): part of the env cache key."""
    uv = _uv_for(it.stdlib, choice)
    return uv_version(uv) if uv else "pip"


def _uv_for(stdlib: Path, choice: str) -> str | None:
    """uv, unless pip was asked for, uv is missing, or the Python is Debian's (its site scheme is pip's)."""
    return uv_bin() if choice != "pip" and not _debian_site(stdlib) else None


@functools.lru_cache(maxsize=None)
def uv_bin() -> str | None:
    """uv from its PyPI package (an envtool dependency), else on PATH."""
    try:
        from uv import find_uv_bin
        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


@functools.lru_cache(maxsize=None)
def uv_version(uv: str) -> str:
    out = run([uv, "--version"], timeout=60)
    return out.stdout.strip() if out.returncode == 0 else "uv"


def _uv_install(uv: str, prefix: Path, xy: str, args: list[str], log: Log, cwd: Path | None):
    """`uv pip install --python PREFIX/bin/python3.X`, with the index settings pip would use here (pip.conf,
    PIP_* variables), so that uv resolves against the same indexes, links and constraints as pip."""
    opts, env = _uv_settings(pip_settings(prefix, xy))
    cmd = [uv, "pip", "install", "--python", str(prefix / "bin" / f"python{xy}"), "--no-progress", *opts, *args]
    log("uv pip install " + " ".join(args))
    # uv's own cache (UV_CACHE_DIR or ~/.cache/uv) holds the downloads, as pip's cache does for pip. uv locks a
    # prefix that is not a venv with TMPDIR/uv-<hash>.lock (and a build env with uv-setuptools-<hash>.lock)
    # and never removes them: one per env built, so a TMPDIR of its own, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="envtool-uv-") as tmp:
        return run(cmd, env=isolated_env(TMPDIR=tmp, **env), cwd=cwd)


def pip_settings(prefix: Path, xy: str) -> dict[str, str]:
    """pip's effective settings (`pip config list`: files and PIP_* variables), the variables winning over
    `install.` over `global.`."""
    # The pip beside envtool reads the same files and variables, and starts in a third of the time of the
    # bundled wheel (which runs from its zip, uncompiled)
    pip = [sys.executable, "-m", "pip"] if importlib.util.find_spec("pip") else pip_command(prefix, xy)
    out = run([*pip, "config", "list"], env=isolated_env(), timeout=120)
    found: dict[str, tuple[int, str]] = {}
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        m = re.match(r"^([^=]*)\.([\w-]+)='(.*)'$", line.strip())
        if not m:
            continue
        rank = {":env:": 3, "install": 2, "global": 1}.get(m.group(1), 0)
        if rank and rank >= found.get(m.group(2), (0, ""))[0]:
            found[m.group(2)] = (rank, m.group(3))
    return {k: v for k, (_, v) in found.items()}


def _uv_settings(pip: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """pip's index, link and constraint settings as uv options (and variables: certificates, timeout)."""
    opts: list[str] = []
    for name, flag in (("index-url", "--index-url"), ("extra-index-url", "--extra-index-url"),
                       ("find-links", "--find-links"), ("constraint", "--constraint"),
                       ("trusted-host", "--allow-insecure-host")):
        for value in pip.get(name, "").split():
            opts += [flag, value]
    if pip.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        opts.append("--no-index")
    if "--extra-index-url" in opts or "--find-links" in opts:
        opts += ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best version on any index
    env = {"SSL_CERT_FILE": pip["cert"]} if pip.get("cert") else {}
    if pip.get("default-timeout") or pip.get("timeout"):
        env["UV_HTTP_TIMEOUT"] = pip.get("default-timeout") or pip["timeout"]
    return opts, env


def disk_full(where) -> BadInput:
    return BadInput(f"disk full while packing ({where})",
                    "free space there, or point ENVTOOL_CACHE_DIR / --output at a bigger disk")


def _failed_requirement(text: str) -> str | None:
    for pat in (r"satisfies the requirement (\S+)", r"No matching distribution found for (\S+)",  # pip
                r"Failed to build `?([^`\s]+)", r"Cannot install (\S+)", r"Could not build wheels for (\S+)",
                r"ResolutionImpossible.*?\n.*?(\S+)",
                r"Because (\S+) was not found", r"Because there is no version of (\S+)"):  # uv
        m = re.search(pat, text)
        if m:
            return m.group(1).rstrip(":,")
    return None


def write_history(prefix: Path, note: str) -> None:
    """conda-pack needs conda-meta/ with a history file (an empty conda-meta/ crashes it)."""
    meta = prefix / "conda-meta"
    meta.mkdir(exist_ok=True)
    (meta / "history").write_text(f"# built by envtool (no conda): {note}\n")


def compile_bytecode(prefix: Path, xy: str, log: Log, trim: bool = True) -> None:
    """.pyc files for everything under lib/pythonX.Y, hash-based and unchecked. Triton extracts a tarball env
    afresh at every server start; without bytecode (trimmed, or pip --no-compile) each stub compiles its
    imports again, about 1 s per model load. Unchecked: the env is an immutable artifact, and no extraction
    mtime can invalidate it (timestamp .pyc files would be judged against them)."""
    lib = prefix / "lib" / f"python{xy}"
    log("precompiling bytecode (unchecked-hash .pyc)")
    # rc != 0 where some file does not compile (templates, Python 2 leftovers): Python would not import it
    # either, so the rest is kept and the count says what was made
    # With trim, packages' tests/ folders never ship (pack.TRIM): a fifth of the example's files, not compiled
    skip = ["-x", r"/site-packages/.+/tests/"] if trim else []
    run([str(prefix / "bin" / f"python{xy}"), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
         "unchecked-hash", *skip, str(lib)], env=isolated_env(), timeout=1800)


def strip_debug(prefix: Path, log: Log) -> tuple[int, int]:
    """`strip --strip-debug` on the interpreter's own binaries (bin/, libpython, lib-dynload): pyenv builds
    with -g, and its debug info is ~2/3 of them (the example env: 30 MB of 76 files -> 10 MB), which every
    extraction pays for and nothing at run time reads. Only envtool's copy, before any package is installed.
    Returns (0, bytes saved); without binutils' strip, nothing is done."""
    tool = shutil.which("strip")
    if tool is None:
        log("no `strip` (binutils) here: the interpreter keeps its debug info")
        return 0, 0
    files = list(elf_files(prefix))
    before = sum(f.stat().st_size for f in files)
    run([tool, "--strip-debug", *map(str, files)], check="strip")
    return 0, before - sum(f.stat().st_size for f in files)


def build_prefix(it: Interpreter, prefix: Path, pip_args: list[str], log: Log, cwd: Path | None = None,
                 trim: bool = True, installer: str = "auto") -> tuple[int, int]:
    """Returns (files, bytes) that trim left out of the copy."""
    log(f"copying Python {it.version} from {it.prefix}")
    skipped = copy_interpreter(it, prefix, trim)
    if trim:
        skipped = tuple(a + b for a, b in zip(skipped, strip_debug(prefix, log)))
    n = relocate_runpaths(prefix, {it.prefix: prefix, it.libdir: prefix / "lib"})
    log(f"made {n} binaries relocatable ($ORIGIN RUNPATH)")
    pip_install(prefix, it.xy, pip_args, log, cwd, installer)
    write_history(prefix, f"python {it.version} from {it.executable}; pip {' '.join(pip_args)}")
    return skipped
