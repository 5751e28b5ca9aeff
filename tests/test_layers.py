"""The floors of docs/architecture.md hold: every import of envtool/ (inside functions too) goes to a lower
floor, no module or subpackage forms a cycle, and every top-level name has a floor."""

from __future__ import annotations

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
