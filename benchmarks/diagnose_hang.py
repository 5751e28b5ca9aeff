#!/usr/bin/env python3
"""How long verify takes to report a hang that Triton itself waits out forever: a Python 3.10 stub beside
a Python 3.9 env (KNOWLEDGE failure mode 1), against the readiness deadline verify is given.

    python benchmarks/diagnose_hang.py [--deadline 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envtool import api  # noqa: E402
from tests.test_inject import pipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deadline", type=float, default=300)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = api.pack(api.PackSpec(python="3.9", triton="r24.10"), root / "env.tar.gz").output
        stub = api.stub("r24.10", "3.10", root=root / "stubs").path
        times = []
        for i in range(args.runs):
            repo = pipeline(root / f"repo{i}")
            api.inject(api.InjectOptions(repo=repo, stub=stub, env=env, force=True))
            report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", timeout=args.deadline, lock=False))
            if not report.problems or not report.problems[0].startswith("stopped after"):
                sys.exit(f"not diagnosed as a hang: {report.problems}")
            times.append(report.timings["total_s"])
    print(f"3.10 stub + 3.9 env on r24.10: diagnosed in {statistics.median(times):.1f} s (median of {args.runs}; "
          f"min {min(times):.1f}, max {max(times):.1f}); the deadline was {args.deadline:.0f} s")


if __name__ == "__main__":
    main()
