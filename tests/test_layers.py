"""The floors of docs/architecture.md hold: every import of envtool/ (inside functions too) goes to a lower
floor, no module or subpackage forms a cycle, and every top-level name has a floor."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from import_graph import cycles, graph, packages  # noqa: E402


def floors() -> dict[str, int]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    out = {}
    for m in re.finditer(r"^floor (\d+)\s+(.+?)(?:\s{2,}.*)?$", text, re.M):
        for name in m[2].split():
            out["envtool" if name == "envtool" else f"envtool.{name}"] = int(m[1])
    return out


def test_every_import_goes_down_a_floor():
    edges, _ = graph()
    pk = packages(edges)
    level = floors()
    assert not set(pk) - set(level), f"no floor in docs/architecture.md for {sorted(set(pk) - set(level))}"
    upward = [f"{a} (floor {level[a]}) imports {b} (floor {level[b]})"
              for a, bs in pk.items() for b in bs if level[b] >= level[a]]
    assert not upward, upward


def test_no_import_cycle():
    edges, _ = graph()
    assert cycles(edges) == [] and cycles(packages(edges)) == []


# The parsers of --triton, --python and --target, and the only places that may call them: the library's
# boundary (api.py), the CLI's --target callback, and a request object resolving itself on construction
# (__post_init__ of BuildSpec, PackSpec, VerifyOptions, InjectOptions, DoctorOptions).
PARSERS = {"normalize_release", "normalize_python", "Where"}
BOUNDARY = {"envtool/api.py", "envtool/cli_options.py", "envtool/facts.py"}


def _parser_calls(path: Path):
    """(enclosing function, called parser, line) for every call of a parser in one module."""
    def walk(node, func):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Call):
                f = child.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if name in PARSERS:
                    yield func, name, child.lineno
            yield from walk(child, inner)
    yield from walk(ast.parse(path.read_text()), None)


def test_each_option_is_parsed_once_at_the_boundary():
    """Below the boundary everything takes a Release, an X.Y and a Where: nothing parses a name again."""
    found, stray = 0, []
    for path in sorted((ROOT / "envtool").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for func, name, line in _parser_calls(path):
            found += 1
            if rel not in BOUNDARY and func != "__post_init__":
                stray.append(f"{rel}:{line} {func}() calls {name}")
    assert found >= 10 and not stray, stray
