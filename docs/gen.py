#!/usr/bin/env python3
"""The generated parts of the docs, from the sources that cannot drift from the tool:

- docs/reference.md: every command's `--help`, as the CLI itself prints it (click);
- docs/troubleshooting.md, between its markers: the log lines envtool recognises (envtool/diagnoses.toml and
  the corpus of real logs, by scripts/causes_table.py);
- docs/compatibility.md: rendered from docs/compatibility.json (benchmarks/compat_matrix.py measures it).

    python docs/gen.py           # write them
    python docs/gen.py --check   # exit 1, naming the files, where one is stale (tests/test_docs.py runs it)

mkdocs runs it too before each build (the `hooks:` entry of mkdocs.yml).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
WIDTH = 110


def reference() -> str:
    from envtool.cli import main
    root = click.Context(main, info_name="envtool", terminal_width=WIDTH, max_content_width=WIDTH)
    parts = ["# Command reference", "",
             "Generated from the CLI's own help by `python docs/gen.py`; `envtool COMMAND --help` prints the "
             "same.",
             "", "```text", main.get_help(root), "```", ""]
    for name in sorted(main.commands):
        cmd = main.commands[name]
        ctx = click.Context(cmd, info_name=name, parent=root, terminal_width=WIDTH, max_content_width=WIDTH)
        parts += [f"## envtool {name}", "", "```text", cmd.get_help(ctx), "```", ""]
    return "\n".join(parts)


def troubleshooting(current: str) -> str:
    """current with its table of the log lines envtool recognises made again (scripts/causes_table.py)."""
    return _load("causes_table", ROOT / "scripts" / "causes_table.py").updated(current)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compatibility() -> str:
    module = _load("compat_matrix", ROOT / "benchmarks" / "compat_matrix.py")
    return module.render(json.loads((DOCS / "compatibility.json").read_text()))


def pages() -> dict[Path, str]:
    trouble = DOCS / "troubleshooting.md"
    return {DOCS / "reference.md": reference(), trouble: troubleshooting(trouble.read_text()),
            DOCS / "compatibility.md": compatibility()}


def main(argv: list[str]) -> int:
    stale = [p for p, text in pages().items() if not p.is_file() or p.read_text() != text]
    if "--check" in argv:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run python docs/gen.py", file=sys.stderr)
        return 1 if stale else 0
    for p, text in pages().items():
        p.write_text(text)
    return 0


def on_pre_build(config, **kwargs) -> None:  # mkdocs hook
    main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
