"""Find a CPython X.Y with a shared libpython: the stub links libpython3.X.so.1.0, and the env
must carry it. Looks in pyenv, uv-managed Pythons and the system, or takes --interpreter."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from envtool.catalog import normalize_python
from envtool.elf import version_key
from envtool.errors import BadInput

_PROBE = (
    "import json, sys, sysconfig; v = sysconfig.get_config_var; print(json.dumps({"
    "'version': '%d.%d.%d' % sys.version_info[:3], 'implementation': sys.implementation.name, "
    "'prefix': sys.base_prefix, 'libdir': v('LIBDIR'), 'soname': v('INSTSONAME'), "
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
    source: str  # pyenv | uv | system | given
    stdlib: Path = Path()  # lib/python3.X of the install (Debian: /usr/lib/python3.X)

    @property
    def xy(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def libpython(self) -> Path:
        return self.libdir / self.soname

    @property
    def usable(self) -> bool:
        return self.shared and self.libpython.is_file()


def probe(executable: Path, source: str) -> Interpreter | None:
    """Ask the interpreter itself; None if it is not a working CPython."""
    try:
        out = subprocess.run([str(executable), "-I", "-c", _PROBE], capture_output=True,
                             text=True, timeout=30)
        facts = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if facts.get("implementation") != "cpython":
        return None
    return Interpreter(Path(executable), facts["version"], Path(facts["prefix"]),
                       Path(facts["libdir"] or ""), facts["soname"] or "", facts["shared"], source,
                       Path(facts["stdlib"]))


def _pyenv_root() -> Path:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        root = out.stdout.strip()
    return Path(root or Path.home() / ".pyenv")


def candidates(xy: str) -> Iterator[tuple[Path, str]]:
    for p in sorted(glob.glob(str(_pyenv_root() / "versions" / f"{xy}.*" / "bin" / f"python{xy}"))):
        yield Path(p), "pyenv"
    uv_dir = Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path.home() / ".local/share/uv/python")
    for p in sorted(glob.glob(str(uv_dir / f"cpython-{xy}.*" / "bin" / f"python{xy}"))):
        yield Path(p), "uv"
    for d in ("/usr/local/bin", "/usr/bin"):
        if Path(d, f"python{xy}").is_file():
            yield Path(d, f"python{xy}"), "system"


def find_interpreter(version: str, given: Path | None = None) -> Interpreter:
    """The newest usable CPython of that X.Y, or the given one if it is one."""
    xy = normalize_python(version)
    if given is not None:
        it = probe(given, "given")
        if it is None:
            raise BadInput(f"--interpreter {given} is not a working CPython", "pass a python3.X binary")
        _require(it, xy)
        return it
    found = [it for p, src in candidates(xy) if (it := probe(p, src)) is not None]
    usable = [it for it in found if it.xy == xy and it.usable]
    if usable:
        return max(usable, key=lambda it: version_key(it.version))
    seen = ", ".join(f"{it.version} ({it.source}{'' if it.usable else ', no shared libpython'})"
                     for it in found) or "none"
    raise BadInput(f"no CPython {xy} with a shared libpython found (seen: {seen})",
                   f"install one: `env PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {xy}` "
                   f"or `uv python install {xy}`, or pass --interpreter PATH")


def _require(it: Interpreter, xy: str) -> None:
    if it.xy != xy:
        raise BadInput(f"--interpreter {it.executable} is Python {it.version}, not {xy}",
                       f"pass a Python {xy} interpreter, or ask for --python {it.xy}")
    if not it.usable:
        raise BadInput(f"--interpreter {it.executable} has no shared libpython ({it.soname or 'static'})",
                       "the stub links libpython3.X.so.1.0: use a Python built with --enable-shared")
