"""`envtool doctor --log` on a big log: wall time and peak memory (RSS of the child process).

    python benchmarks/doctor_big_log.py [--mib 200]

The log is a real verbose r24.05 server log from the corpus (tests/fixtures/logs/server-7410-b.log) repeated
to the size asked, with one failure at its very end; the verdict must still name it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envtool.logs import read_corpus_entry  # noqa: E402

FAILURE = ("E0101 00:00:00.000000 1 model_lifecycle.cc:1] \"failed to load 'm' version 1: Internal: Unable to "
           "initialize shared memory key 'triton_python_backend_shm_region_1' to requested size (1048576 bytes). "
           "Error: File exists\"\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=200)
    args = ap.parse_args()
    body = read_corpus_entry(ROOT / "tests" / "fixtures" / "logs" / "server-7410-b.log")["body"]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "big.log"
        with log.open("w") as f:
            for _ in range(args.mib * 2**20 // len(body) + 1):
                f.write(body)
            f.write(FAILURE)
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "envtool", "doctor", "--log", str(log), "--json"],
                           capture_output=True, text=True)
        wall = time.monotonic() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        verdict = json.loads(p.stdout)["log"]["verdict"]
        print(f"{log.stat().st_size / 2**20:.0f} MiB log: {wall:.1f} s, peak RSS {rss:.0f} MiB, verdict {verdict}")
    return 0 if verdict == "shm-exists" else 1


if __name__ == "__main__":
    sys.exit(main())
