"""What a python model imports when Triton loads it, read with ast (model.py is never executed), judged against
the Python that will run it when it has no execution env: the release image's own, whose packages are in
envtool/catalog/image_python.toml (from the server's build.py per branch)."""

from __future__ import annotations

import ast
import re
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from envtool.catalog import tomllib
from envtool.catalog.history import release_key

# Methods the stub runs while the model loads: an import there fails the load like a top-level one.
_LOAD_TIME = ("initialize", "auto_complete_config")
_OPTIONAL = ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")


@dataclass(frozen=True)
class Import:
    module: str  # "torchvision.transforms"
    line: int
    text: str  # the statement as written

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


@lru_cache(maxsize=None)
def _data() -> dict:
    return tomllib.loads((Path(__file__).parents[1] / "catalog" / "image_python.toml").read_text())


def _guarded(node: ast.Try) -> bool:
    """A try whose handlers catch a failed import: what it imports is optional."""
    for h in node.handlers:
        names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        if h.type is None or any(isinstance(n, ast.Name) and n.id in _OPTIONAL for n in names):
            return True
    return False


def _walk(body: list[ast.stmt], lines: list[str], out: list[Import]) -> None:
    for node in body:
        if isinstance(node, ast.Import):
            out += [Import(a.name, node.lineno, lines[node.lineno - 1].strip()) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(Import(node.module, node.lineno, lines[node.lineno - 1].strip()))
        elif isinstance(node, ast.Try):
            if not _guarded(node):
                _walk(node.body, lines, out)
            _walk(node.finalbody, lines, out)
        elif isinstance(node, ast.If):
            if not _type_checking(node.test):
                _walk(node.body, lines, out)
                _walk(node.orelse, lines, out)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in _LOAD_TIME:
                    _walk(item.body, lines, out)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            _walk(node.body, lines, out)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def load_time_imports(model_py: Path) -> list[Import]:
    """The imports that run when Triton loads the model: module level and initialize()/auto_complete_config(),
    not those guarded by `except ImportError` nor behind TYPE_CHECKING. A file that does not parse: none."""
    try:
        source = model_py.read_text(encoding="utf-8", errors="replace")
        tree = ast.parse(source, str(model_py))
    except (OSError, SyntaxError, ValueError):
        return []
    out: list[Import] = []
    _walk(tree.body, source.splitlines(), out)
    return out


@lru_cache(maxsize=None)
def stdlib_names() -> frozenset[str]:
    """The standard library's top-level modules (sys.stdlib_module_names, or the stdlib folder on 3.8/3.9)."""
    if hasattr(sys, "stdlib_module_names"):
        return frozenset(sys.stdlib_module_names)
    stdlib = Path(sysconfig.get_paths()["stdlib"])  # pragma: no cover (Python < 3.10)
    names = {p.stem.split(".")[0] for p in stdlib.iterdir() if p.suffix in (".py", "") or p.suffix == ".so"}
    dynload = stdlib / "lib-dynload"
    if dynload.is_dir():
        names |= {p.name.split(".")[0] for p in dynload.iterdir()}
    return frozenset(names | set(sys.builtin_module_names) | {"distutils"})


def _local(module: str, model_py: Path) -> bool:
    """A module of the model's own: beside model.py (the stub puts the version folder on sys.path) or in the
    model folder."""
    top = module.split(".")[0]
    return any((d / f"{top}.py").is_file() or (d / top).is_dir() or any(d.glob(f"{top}.*.so"))
               for d in (model_py.parent, model_py.parent.parent))


def distribution(module: str) -> str:
    """The PyPI distribution that provides an import (PIL -> pillow; unknown: the name itself, normalised)."""
    table = _data()["imports"]
    for name in (module, module.split(".")[0]):
        if name in table:
            return table[name]
    return re.sub(r"[-_.]+", "-", module.split(".")[0]).lower()


@dataclass(frozen=True)
class ImagePython:
    """The release image's own Python: its X.Y and what its distributions provide."""

    release: str | None  # None: what every release's image has
    variant: str
    python: str | None
    distributions: frozenset[str]
    modules: frozenset[str]  # importable without a distribution (the backend's utils, PYTHONPATH entries)
    complete: bool
    source: str

    def describe(self) -> str:
        where = f"r{self.release}'s {self.variant} image" if self.release else "the release image"
        return f"{where} (its own Python{' ' + self.python if self.python else ''})"


def _within(release: str, entry: dict) -> bool:
    return release_key(entry["first"]) <= release_key(release) <= release_key(entry["last"])


def image_python(release: str | None, variant: str = "py3") -> ImagePython | None:
    """The image Python of a release and variant (py3, pyt-python, ...); without a release, what every
    release's image of that variant has. None where the catalog does not know the variant."""
    data = _data()
    ranges = [r for r in data["range"] if r["variant"] == variant]
    if release:
        ranges = [r for r in ranges if _within(release, r)]
    if not ranges:
        return None
    sets = [frozenset(r["packages"]) | frozenset(r.get("transitive", [])) for r in ranges]
    dists = frozenset.intersection(*sets)
    modules = set(data["provided"])
    for p in data.get("pythonpath", []):
        if release and p["variant"] == variant and _within(release, p):
            modules |= set(p["provides"])
    one = ranges[0] if len(ranges) == 1 else None
    complete = all(r.get("complete", True) for r in ranges)
    return ImagePython(release, variant, one["python"] if one else None, dists, frozenset(modules), complete,
                       "; ".join(sorted({r["source"] for r in ranges})))


def missing(model_py: Path, image: ImagePython) -> list[tuple[Import, str]]:
    """(import, distribution) for each load-time import the image's Python lacks, one per distribution."""
    out: dict[str, tuple[Import, str]] = {}
    for imp in load_time_imports(model_py):
        if imp.top in stdlib_names() or imp.module in image.modules or imp.top in image.modules:
            continue
        if _local(imp.module, model_py):
            continue
        dist = distribution(imp.module)
        if dist not in image.distributions:
            out.setdefault(dist, (imp, dist))
    return list(out.values())


def variant_of(image: str | None) -> str:
    """The image variant a server image name names (nvcr.io/nvidia/tritonserver:24.10-pyt-python-py3 ->
    pyt-python); py3 for anything else."""
    if image:
        for variant in ("pyt-python", "vllm-python", "trtllm-python", "cpu-only"):
            if variant in image:
                return variant
    return "py3"
