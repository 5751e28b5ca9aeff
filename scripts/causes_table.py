"""The table of what `envtool doctor --log` recognises (docs/troubleshooting.md), generated from
envtool/diagnoses.toml and the corpus of real logs (tests/fixtures/logs/), so the two cannot drift.

    python scripts/causes_table.py           # rewrite the table in docs/troubleshooting.md
    python scripts/causes_table.py --check   # exit 1 if the page's table is not what this generates

docs/gen.py (and so mkdocs, before each build) writes it too.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envtool.diagnose import _data  # noqa: E402
from envtool.doctor import explain_lines  # noqa: E402
from envtool.logs import read_corpus_entry  # noqa: E402

START, END = "<!-- causes:start (scripts/causes_table.py) -->", "<!-- causes:end -->"


def _placeholders(text: str, code: bool = False) -> str:
    """{group} as <group>; outside a code span as &lt;group&gt; (a bare <group> is an HTML tag to markdown)."""
    text = re.sub(r"\{(\w+)\}", r"<\1>", text)
    return (text if code else html.escape(text, quote=False)).replace("|", "\\|")


def _real_logs() -> dict[str, list[str]]:
    """cause id -> the corpus logs in which doctor finds it."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests" / "fixtures" / "logs").glob("*.log")):
        for d in explain_lines(read_corpus_entry(path)["body"].splitlines()).diagnoses:
            names = out.setdefault(d.id, [])
            if path.stem not in names:
                names.append(path.stem)
    return out


def table() -> str:
    seen: set[str] = set()
    logs = _real_logs()
    rows = ["| id | what the log shows | cause | fix | real logs |", "|---|---|---|---|---|"]
    for c in _data()["cause"]:
        if c["id"] in seen:
            continue
        seen.add(c["id"])
        line = _placeholders(c.get("shows") or c.get("example") or c.get("pattern", ""), code=True)[:110]
        shows = "(the whole log: " + ("nothing after a stub's start" if c.get("hang") else "see the cause") + ")" \
            if c.get("derived") else f"`` {line} ``"
        if c.get("source") == "client":
            shows += " (a client's error)"
        hang = " Triton waits forever." if c.get("hang") else ""
        real = ", ".join(logs.get(c["id"], [])[:3]) or "-"
        rows.append(f"| `{c['id']}` | {shows} | {_placeholders(c['cause'])}.{hang} | {_placeholders(c['fix'])} | "
                    f"{real} |")
    return "\n".join([START, *rows, END])


PAGE = ROOT / "docs" / "troubleshooting.md"


def updated(text: str) -> str:
    """The page's text with the table between the markers made again."""
    if START not in text or END not in text:
        raise SystemExit(f"{PAGE.relative_to(ROOT)} has no {START} ... {END} section")
    return text[:text.index(START)] + table() + text[text.index(END) + len(END):]


def main() -> int:
    text = PAGE.read_text()
    new = updated(text)
    if "--check" in sys.argv:
        if new != text:
            print(f"{PAGE.relative_to(ROOT)}'s causes table is stale: run python scripts/causes_table.py",
                  file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
