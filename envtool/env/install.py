"""Installing requirements into an env prefix: uv where it can (several times faster), else the prefix's own
pip (or envtool's, with --python), each with pip's index settings and an environment that cannot install
somewhere else; a failure names the requirement and the installer's last lines. Debian's Python is pip's."""

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

from envtool.atomic import remove
from envtool.env.interpreters import Interpreter
from envtool.errors import BadInput
from envtool.runner import run, tail

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


def run_installer(cmd: list[str], cwd: Path | None = None, timeout: float | None = None, **env: str):
    """run() in isolated_env() with a TMPDIR of its own, removed afterwards: pip run from its wheel (a zip)
    extracts certifi's cacert.pem there (275 KB a run), and uv locks a prefix that is not a venv with
    TMPDIR/uv-<hash>.lock (a build env with uv-setuptools-<hash>.lock); neither removes them."""
    with tempfile.TemporaryDirectory(prefix="envtool-install-") as tmp:
        return run(cmd, env=isolated_env(TMPDIR=tmp, **env), cwd=cwd, timeout=timeout)


def debian_site(stdlib: Path) -> bool:
    site = stdlib / "site.py"
    return site.is_file() and '"dist-packages"' in site.read_text(errors="replace")


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
    where = ["--prefix", str(prefix)] if debian_site(prefix / "lib" / f"python{xy}") else []
    cmd = [*pip_command(prefix, xy), "install", "--no-warn-script-location", "--no-compile",
           "--progress-bar", "off", *where, *args]
    log("pip install " + " ".join(args))
    out = run_installer(cmd, cwd=cwd)
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
                remove(dest / item.name)  # a newer install of the same package or script wins
                shutil.move(str(item), dest / item.name)
    if local.is_dir():
        shutil.rmtree(local)


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
    return uv_bin() if choice != "pip" and not debian_site(stdlib) else None


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
    # uv's own cache (UV_CACHE_DIR or ~/.cache/uv) holds the downloads, as pip's cache does for pip
    return run_installer(cmd, cwd=cwd, **env)


def pip_settings(prefix: Path, xy: str) -> dict[str, str]:
    """pip's effective settings (`pip config list`: files and PIP_* variables), the variables winning over
    `install.` over `global.`."""
    # The pip beside envtool reads the same files and variables, and starts in a third of the time of the
    # bundled wheel (which runs from its zip, uncompiled)
    pip = [sys.executable, "-m", "pip"] if importlib.util.find_spec("pip") else pip_command(prefix, xy)
    out = run_installer([*pip, "config", "list"], timeout=120)
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
