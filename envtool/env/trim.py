"""Files that trim's patterns (condapack.TRIM) would drop but a package uses at run time, found in the code
itself: packed after all. Two shapes are known:

- a `tests` module imported by code outside any tests folder: numpy 2's numpy.testing imports
  numpy._core.tests._natype (numpy/testing/_private/utils.py), and scikit-learn imports numpy.testing
  through array_api_compat, so `import sklearn` fails with "No module named 'numpy._core.tests'";
- a typing stub read at import: lazy_loader's attach_stub(__name__, __file__) builds a package's lazy
  attributes from the .pyi beside the module (scikit-image, librosa): "Cannot load imports from
  non-existent stub".

Runs on the prefix before its sources become bytecode (sourceless.py), and on a user's --prefix as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

_FROM = re.compile(rb"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+\(?([\w, \t]+)", re.M)
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+([\w.]+)", re.M)
_STUB = re.compile(rb"\battach_stub\s*\(")


def _is_test(rel: tuple[str, ...]) -> bool:
    """A file in a tests folder, or pytest's conftest.py: test code, whose imports need not ship."""
    return "tests" in rel[:-1] or rel[-1] == "conftest.py"


def _module_files(site: Path, dotted: str) -> list[Path]:
    """The files a dotted module name imports: each package's __init__.py on the way, and the module."""
    parts = dotted.split(".")
    out = [site.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))]
    leaf = site.joinpath(*parts)
    out += [leaf.with_suffix(".py"), leaf / "__init__.py"]
    return [p for p in out if p.is_file()]


def _absolute(module: str, importer: tuple[str, ...]) -> str:
    """A relative import's target as an absolute dotted name (PEP 328); importer: the file's path parts."""
    dots = len(module) - len(module.lstrip("."))
    if not dots:
        return module
    package = list(importer[:-1])  # a module's package, or an __init__.py's own
    base = package[:len(package) - (dots - 1)]
    return ".".join([*base, module[dots:]] if module[dots:] else base)


def _imported_tests(site: Path, py: Path, text: bytes) -> list[Path]:
    rel = py.relative_to(site).parts
    found: list[Path] = []
    for m in _FROM.finditer(text):
        module = _absolute(m.group(1).decode(), rel)
        if "tests" not in module.split("."):
            continue
        found += _module_files(site, module)
        for name in re.split(r"[\s,]+", m.group(2).decode()):  # `from x.tests import sub`: sub may be a module
            if name.isidentifier():
                found += _module_files(site, f"{module}.{name}")
    for m in _IMPORT.finditer(text):
        if "tests" in (module := m.group(1).decode()).split("."):
            found += _module_files(site, module)
    return found


def needed_anyway(site: Path, prefix: Path) -> dict[str, str]:
    """Path (relative to prefix) -> why, for each file under site-packages that trim must not drop."""
    keep: dict[str, str] = {}
    for py in sorted(site.rglob("*.py")):
        rel = py.relative_to(site).parts
        if _is_test(rel) or py.is_symlink():
            continue
        text = py.read_bytes()
        who = "/".join(rel)
        if b"tests" in text:
            for path in _imported_tests(site, py, text):
                if _is_test(path.relative_to(site).parts):
                    keep.setdefault(path.relative_to(prefix).as_posix(), f"imported by {who}")
        stub = py.with_suffix(".pyi")
        if stub.is_file() and _STUB.search(text):
            keep.setdefault(stub.relative_to(prefix).as_posix(), f"lazy_loader.attach_stub reads it ({who})")
    return keep
