"""Find a CPython X.Y with a shared libpython: the stub links libpython3.X.so.1.0, and the env
must carry it. Looks in pyenv, uv-managed Pythons, PATH and the system, or takes --interpreter."""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from envtool.elf import version_key
from envtool.errors import BadInput, EnvtoolError
from envtool.runner import run

_PROBE = (
    "import json, sys, sysconfig; v = sysconfig.get_config_var; print(json.dumps({"
    "'version': '%d.%d.%d' % sys.version_info[:3], 'implementation': sys.implementation.name, "
    "'prefix': sys.base_prefix, 'libdir': v('LIBDIR'), 'soname': v('INSTSONAME'), 'multiarch': v('MULTIARCH'), "
    "'stdlib': sysconfig.get_path('stdlib'), 'shared': bool(v('Py_ENABLE_SHARED'))}))"
)


@dataclass(frozen=True)
class Interpreter:
    executable: Path
    version: str  # "3.9.18"
    prefix: Path
    libdir: Path
    soname: str  # "libpython3.9.so.1.0"
    shared: bool
    source: str  # pyenv | uv | path | system | given
    stdlib: Path = Path()  # lib/python3.X of the install (Debian: /usr/lib/python3.X)

    @property
    def xy(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def libpython(self) -> Path:
        return self.libdir / self.soname

    @property
    def usable(self) -> bool:
        return self.soname.endswith(".so.1.0") and self.libpython.is_file()


def probe(executable: Path, source: str) -> Interpreter | None:
    """Ask the interpreter itself; None if it is not a working CPython."""
    try:
        facts = json.loads(run([str(executable), "-I", "-c", _PROBE], timeout=30).stdout)
    except (EnvtoolError, OSError, ValueError):
        return None
    if facts.get("implementation") != "cpython":
        return None
    libdir, soname = _libpython(facts)
    prefix = Path(facts["prefix"])
    if source == "path":
        # A pyenv shim or a virtualenv's python on PATH: the install behind it is what the env copies and runs
        xy = ".".join(facts["version"].split(".")[:2])
        if (prefix / "bin" / f"python{xy}").is_file():
            executable = prefix / "bin" / f"python{xy}"
    return Interpreter(Path(executable), facts["version"], prefix, libdir, soname,
                       facts["shared"], source, Path(facts["stdlib"]))


def _libpython(facts: dict) -> tuple[Path, str]:
    """Where libpython3.X.so.1.0 is. A shared build names it itself; Debian/Ubuntu's python3.X is
    linked statically, and their libpython3.X package puts the shared library in the multiarch lib dir."""
    libdir, soname = Path(facts["libdir"] or ""), facts["soname"] or ""
    if facts["shared"] and (libdir / soname).is_file():
        return libdir, soname
    xy = ".".join(facts["version"].split(".")[:2])
    want = f"libpython{xy}.so.1.0"
    for d in (libdir, libdir / (facts.get("multiarch") or ""), Path("/usr/lib") / (facts.get("multiarch") or "")):
        if (d / want).is_file():
            return d, want
    return libdir, soname


def _pyenv_root() -> Path:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        out = run(["pyenv", "root"], timeout=30)
        root = out.stdout.strip()
    return Path(root or Path.home() / ".pyenv")


_SYSTEM_DIRS = ("/usr/local/bin", "/usr/bin")


def candidates(xy: str) -> Iterator[tuple[Path, str]]:
    pyenv = _pyenv_root()
    for p in sorted(glob.glob(str(pyenv / "versions" / f"{xy}.*" / "bin" / f"python{xy}"))):
        yield Path(p), "pyenv"
    uv_dir = Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path.home() / ".local/share/uv/python")
    for p in sorted(glob.glob(str(uv_dir / f"cpython-{xy}.*" / "bin" / f"python{xy}"))):
        yield Path(p), "uv"
    for d in filter(None, os.environ.get("PATH", "").split(os.pathsep)):
        if d in _SYSTEM_DIRS or pyenv in Path(os.path.abspath(d)).parents:
            continue  # pyenv's shims lead to its versions, seen above (and cost 0.2 s each to ask)
        if os.access(os.path.join(d, f"python{xy}"), os.X_OK):  # False, not an error, in unreadable dirs
            yield Path(d, f"python{xy}"), "path"
    for d in _SYSTEM_DIRS:
        if Path(d, f"python{xy}").is_file():
            yield Path(d, f"python{xy}"), "system"


def _probed(xy: str) -> list[Interpreter]:
    """Each install found once, though pyenv, PATH and the system may all name it."""
    found: dict[str, Interpreter] = {}
    seen: set[str] = set()
    for path, source in candidates(xy):
        if (real := os.path.realpath(path)) in seen:
            continue
        seen.add(real)
        it = probe(path, source)
        if it is not None:
            found.setdefault(os.path.realpath(it.executable), it)
    return list(found.values())


def find_interpreter(xy: str, given: Path | None = None) -> Interpreter:
    """The newest usable CPython of that X.Y, or the given one if it is one."""
    if given is not None:
        it = probe(given, "given")
        if it is None:
            raise BadInput(f"--interpreter {given} is not a working CPython", "pass a python3.X binary")
        _require(it, xy)
        return it
    found = _probed(xy)
    usable = [it for it in found if it.xy == xy and it.usable]
    if usable:
        return max(usable, key=lambda it: version_key(it.version))
    seen = ", ".join(f"{it.version} ({it.source}{'' if it.usable else ', no libpython' + xy + '.so.1.0'})"
                     for it in found) or "none"
    raise BadInput(f"no CPython {xy} with a shared libpython found (seen: {seen})",
                   f"install one: `env PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {xy}`, "
                   f"`uv python install {xy}`, or on Debian/Ubuntu `{apt_line(xy)}`; or pass --interpreter PATH")


def apt_line(xy: str) -> str:
    """What a Debian/Ubuntu system needs for a Python X.Y that envtool can build stubs for and pack."""
    return f"apt-get install python{xy} libpython{xy} python{xy}-dev python{xy}-venv"


def _require(it: Interpreter, xy: str) -> None:
    if it.xy != xy:
        raise BadInput(f"--interpreter {it.executable} is Python {it.version}, not {xy}",
                       f"pass a Python {xy} interpreter, or ask for --python {it.xy}")
    if not it.usable:
        raise BadInput(f"--interpreter {it.executable} has no libpython{xy}.so.1.0 ({it.soname or 'static'})",
                       f"the stub links libpython{xy}.so.1.0: use a Python built with --enable-shared, or on "
                       f"Debian/Ubuntu `{apt_line(xy)}`")
