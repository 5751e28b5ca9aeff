#!/usr/bin/env python3
"""Import time in a freshly extracted env (what every Triton start pays: it extracts the tarball again) against
the same import once warm, for the example env packed with envtool's unchecked-hash bytecode and without it
(--no-bytecode: the .py files alone, as trimming left them before). Prints the ratios and the size cost.

    python benchmarks/fresh_import.py [--python 3.9] [--triton r24.10] [--runs 3]

Each run extracts the tarball into a new folder, then times the imports twice, started as Triton starts a
stub (source bin/activate under env -i): fresh (first) and warm (second; where no bytecode was shipped, the
first run wrote it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from envtool.api import PackSpec, pack

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = "import numpy, scipy.special, tokenizers, treelite"


def timed_import(env: Path) -> float:
    line = f'source {env}/bin/activate && exec env LD_LIBRARY_PATH={env}/lib python3 -c "$0"'
    t0 = time.monotonic()
    subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "bash", "-c", line, IMPORTS], check=True)
    return time.monotonic() - t0


def measure(tarball: Path, runs: int, work: Path) -> tuple[float, float]:
    fresh, warm = [], []
    for i in range(runs):
        dest = work / f"x{i}"
        dest.mkdir()
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(dest)], check=True)
        fresh.append(timed_import(dest))
        warm.append(timed_import(dest))
    return statistics.median(fresh), statistics.median(warm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default="3.9")
    ap.add_argument("--triton", default="r24.10")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    req = ROOT / "envs" / "example.txt"
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for bytecode in (True, False):
            out = Path(tmp) / f"bc{int(bytecode)}" / "custom_env.tar.gz"
            res = pack(PackSpec(python=a.python, requirements=(req,), triton=a.triton, target="host",
                                bytecode=bytecode), out)
            work = Path(tmp) / f"w{int(bytecode)}"
            work.mkdir()
            fresh, warm = measure(res.output, a.runs, work)
            rows.append((bytecode, fresh, warm, res.output.stat().st_size))
    print(f"`{IMPORTS}` in the example env (Python {a.python}, {a.triton}), median of {a.runs} extractions")
    print(f"{'env':<28}{'fresh s':>9}{'warm s':>9}{'fresh/warm':>12}{'tarball MB':>12}")
    for bytecode, fresh, warm, size in rows:
        name = "unchecked-hash .pyc" if bytecode else "no bytecode (--no-bytecode)"
        print(f"{name:<28}{fresh:>9.2f}{warm:>9.2f}{fresh / warm:>11.2f}x{size / 2**20:>12.1f}")
    (_, f1, w1, s1), (_, f0, w0, s0) = rows
    print(f"bytecode: fresh import {f0 / f1:.2f}x faster; tarball {s1 / s0:.2f}x the size "
          f"(issue 19's target: fresh <= 1.3x warm)")


if __name__ == "__main__":
    main()
