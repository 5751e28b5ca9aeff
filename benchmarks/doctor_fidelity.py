"""How often `envtool doctor --log` names the cause a public issue thread established, over the corpus of
real logs in tests/fixtures/logs/ (each file headed by its thread's URL and cause).

    python benchmarks/doctor_fidelity.py [--corpus DIR] [--json] [-v]

right: the verdict (the first cause) is the thread's; wrong: another cause; silent: no cause given.
A hang verdict on a log whose thread says otherwise is counted apart ("wrong hang").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envtool.doctor import explain_lines  # noqa: E402
from envtool.logs import read_corpus_entry  # noqa: E402

HANGS = {"stub-release-mismatch", "model-init-hang"}


def judge(path: Path) -> dict:
    entry = read_corpus_entry(path)
    report = explain_lines(entry["body"].splitlines())
    got = report.diagnoses[0].id if report.diagnoses else "none"
    expect = entry["expect"]
    if got in expect:
        outcome = "right"
    elif got == "none":
        outcome = "silent"
    else:
        outcome = "wrong"
    return {"log": path.name, "release": entry.get("release"), "expect": sorted(expect), "got": got,
            "outcome": outcome, "wrong_hang": outcome == "wrong" and got in HANGS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "tests" / "fixtures" / "logs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per log")
    args = ap.parse_args()
    rows = [judge(p) for p in sorted(args.corpus.glob("*.log"))]
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("right", "wrong", "silent")}
    counts["wrong_hang"] = sum(r["wrong_hang"] for r in rows)
    if args.json:
        print(json.dumps({"logs": len(rows), **counts, "rows": rows}, indent=1))
        return 0
    if args.verbose:
        for r in rows:
            mark = {"right": "ok   ", "wrong": "WRONG", "silent": "quiet"}[r["outcome"]]
            print(f"{mark} {r['log']:<40} expect {'|'.join(r['expect']):<34} got {r['got']}")
    n = len(rows) or 1
    print(f"{len(rows)} logs: right {counts['right']} ({100 * counts['right'] / n:.0f}%), wrong {counts['wrong']} "
          f"(hang verdicts among them: {counts['wrong_hang']}), silent {counts['silent']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
