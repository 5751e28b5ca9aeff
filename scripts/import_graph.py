"""The import graph of envtool/ (module-level and function-level imports alike): prints the strongly connected
components (import cycles) between modules and between subpackages (envtool.X), and the imports made inside
functions. Exit 1 when there is a cycle at either level (issue 28's measure of the layering).

    python scripts/import_graph.py [--json]
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """module -> the envtool modules it imports; and (module, imported) for imports inside functions."""
    files = {module_name(p): p for p in (ROOT / "envtool").rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    inner: list[tuple[str, str]] = []
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(fn):
                for target in _targets(node, package, files):
                    inner.append((mod, target))
        for node in ast.walk(tree):
            edges[mod] |= set(_targets(node, package, files)) - {mod}
    return edges, sorted(set(inner))


def _targets(node: ast.AST, package: str, files: dict) -> list[str]:
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            up = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*up, base] if base else up)
        names = [f"{base}.{a.name}" for a in node.names] + [base]
    out = []
    for n in names:
        while n and n not in files:
            n = n.rpartition(".")[0]
        if n:
            out.append(n)
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def packages(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between envtool's top-level subpackages and modules (envtool.stub, envtool.compat...)."""
    top = {m: ".".join(m.split(".")[:2]) for m in edges}
    out: dict[str, set[str]] = {t: set() for t in top.values()}
    for a, bs in edges.items():
        out[top[a]] |= {top[b] for b in bs} - {top[a]}
    return out


def main() -> int:
    edges, inner = graph()
    found, between = cycles(edges), cycles(packages(edges))
    if "--json" in sys.argv:
        print(json.dumps({"module_cycles": found, "subpackage_cycles": between, "imports_in_functions": inner},
                         indent=2))
    else:
        print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, {len(inner)} inside functions")
        for level, comps in (("modules", found), ("subpackages", between)):
            for c in comps:
                print(f"cycle of {len(c)} {level}: {' '.join(c)}")
    return 1 if found or between else 0


if __name__ == "__main__":
    sys.exit(main())
