"""Sourceless packages: each module of site-packages as its bytecode alone (name.pyc where name.py was), one
file where there were two. Triton extracts a tarball env at every model load and each file costs about 1 ms
of kernel time; the example env's packages are ~1,700 modules.

CPython imports name.pyc from the module's own folder when no name.py is there (importlib's
SourcelessFileLoader; PEP 3147, "legacy" .pyc location), as fast as from __pycache__. What is lost is what reads
the source text: tracebacks and warnings show no source lines, and inspect.getsource() raises OSError. So a
package keeps its sources where it reads its own at run time to compile them (TorchScript, Triton's @jit,
numba): a known list below, and any package with a module that both gets source text (inspect.getsource,
getsourcelines, findsource) and parses it (ast.parse). Nothing here runs on a user's own prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Import names whose packages compile or read their own Python source at run time; the why goes in the manifest.
KEEP = {
    "torch": "TorchScript compiles torch.nn's modules from their source (torch.jit.script)",
    "triton": "@triton.jit kernels are compiled from their source text, library kernels included",
    "numba": "numba reads function sources for its compiler's error reports and @generated_jit",
    "jax": "jax reads sources for its error traces (jax._src.source_info_util)",
    "taichi": "@ti.kernel compiles Python source",
    "torchvision": "its modules are TorchScript-compiled from source like torch's",
    "torchaudio": "its modules are TorchScript-compiled from source like torch's",
    "typeguard": "instruments functions by re-parsing their source",
    "cv2": "OpenCV's loader executes its config.py files (cv2/load_config_py3.py): `import cv2` fails with "
           "'OpenCV loader: missing configuration file' without them",
    "transformers": "builds its lazy import structure from its modules' .py files (transformers.utils."
                    "import_utils.create_import_structure_from_path reads them): `import transformers` fails",
}
_GETS_SOURCE = re.compile(rb"\b(getsource|getsourcelines|findsource)\s*\(")
_PARSES = re.compile(rb"\bast\.parse\s*\(")
# A package that runs its own .py files as configuration at import (OpenCV's cv2 loads config.py with
# exec(compile(...))): in one folder, a module executes what it opens, and __init__.py names .py files
# next to its __file__
_EXECS_FILES = (re.compile(rb"\bexec\s*\("), re.compile(rb"\bcompile\s*\("), re.compile(rb"\bopen\s*\("))
_NAMES_OWN_PY = (re.compile(rb"\b__file__\b"), re.compile(rb"""["'][\w{}.-]+\.py["']"""))


@dataclass
class Sourceless:
    files: int = 0  # .py files that shipped as bytecode alone
    kept: dict[str, str] = field(default_factory=dict)  # top-level name -> why its sources stay

    def manifest(self) -> dict:
        return {"files": self.files, "kept_sources": self.kept,
                "why": "bytecode in place of sources (imports as fast, half the files); "
                       "tracebacks show no source lines: --keep-sources keeps them"}


def site_packages(prefix: Path, xy: str) -> Path:
    return prefix / "lib" / f"python{xy}" / "site-packages"


def top_name(top: Path) -> str:
    """The import name of a top-level entry of site-packages (a package folder or a module file)."""
    return top.stem if top.is_file() else top.name


def reads_own_source(package: Path) -> str | None:
    """Why this top-level package (or module) must keep its .py files, or None."""
    if top_name(package) in KEEP:
        return KEEP[top_name(package)]
    runs: dict[Path, Path] = {}  # folder -> a module in it that executes files it opens
    names: dict[Path, Path] = {}  # folder -> its __init__.py, where it names .py files beside its __file__
    for py in [package] if package.is_file() else package.rglob("*.py"):
        text = py.read_bytes()
        if _GETS_SOURCE.search(text) and _PARSES.search(text):
            return f"{py.relative_to(package.parent)} parses source text it gets from inspect"
        if all(p.search(text) for p in _EXECS_FILES):
            runs.setdefault(py.parent, py)
        if py.name == "__init__.py" and all(p.search(text) for p in _NAMES_OWN_PY):
            names[py.parent] = py
    folder = min(runs.keys() & names.keys(), default=None)
    if folder is None:
        return None
    return (f"{runs[folder].relative_to(package.parent)} executes .py files it opens, and "
            f"{names[folder].relative_to(package.parent)} names .py files beside its __file__")


def make_sourceless(prefix: Path, xy: str, log) -> Sourceless:
    """Replace each compiled module of site-packages by its unchecked-hash .pyc (compile_bytecode made them)."""
    site = site_packages(prefix, xy)
    tag = f".cpython-{xy.replace('.', '')}.pyc"
    out = Sourceless()
    for top in sorted(site.iterdir()):
        if top.is_symlink() or not (top.is_dir() or top.suffix == ".py"):
            continue
        if why := reads_own_source(top):
            out.kept[top_name(top)] = why
            continue
        pycs = [top.parent / "__pycache__" / (top.stem + tag)] if top.is_file() else list(top.rglob("*" + tag))
        for pyc in pycs:
            if pyc.parent.name != "__pycache__":
                continue
            source = pyc.parent.parent / (pyc.name[:-len(tag)] + ".py")
            if source.is_file() and not source.is_symlink():
                pyc.replace(source.with_suffix(".pyc"))
                source.unlink()
                out.files += 1
    for cache in sorted(site.rglob("__pycache__"), key=lambda d: -len(d.parts)):
        if cache.is_dir() and not any(cache.iterdir()):
            cache.rmdir()
    log(f"packages as bytecode: {out.files} .py files fewer"
        + (f" (sources kept: {', '.join(sorted(out.kept))})" if out.kept else ""))
    return out
