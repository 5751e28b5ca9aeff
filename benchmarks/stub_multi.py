#!/usr/bin/env python3
"""Local stub builds for several Pythons: one shared build tree (`--python 3.8,3.9,3.10`) against
one separate build per Python, on the same sources, each into an empty store.

    python benchmarks/stub_multi.py --sources DIR [--triton r24.10] [--pythons 3.8,3.9,3.10]

DIR holds python_backend/, common/, core/, backend/, pybind11/, dlpack/ at the release's branch
(`envtool stub --fetch-sources DIR --triton r24.10` prepares it where GitHub is reachable).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envtool import api  # noqa: E402


def timed(work) -> tuple[float, list]:
    t0 = time.monotonic()
    arts = work()
    return time.monotonic() - t0, arts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=Path, required=True)
    ap.add_argument("--triton", default="r24.10")
    ap.add_argument("--pythons", default="3.8,3.9,3.10")
    a = ap.parse_args()
    pythons = a.pythons.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"builder": "local", "sources": a.sources}
        separate, arts_sep = timed(lambda: [api.stub(a.triton, py, root=Path(tmp, "sep", py), **kw)
                                            for py in pythons])
        shared, arts_sh = timed(lambda: api.stubs(a.triton, pythons, root=Path(tmp, "shared"), **kw))
    print(f"r{a.triton.lstrip('r')} stub, Pythons {', '.join(pythons)}, {os.cpu_count()} CPUs")
    print(f"{'python':<8}{'separate build s':>18}{'shared tree build s':>21}")
    for py, s, t in zip(pythons, arts_sep, arts_sh):
        ts, tt = s.manifest["timings"], t.manifest["timings"]
        print(f"{py:<8}{sum(ts.values()):>18.1f}{sum(tt.values()):>21.1f}")
    print(f"{'total':<8}{separate:>18.1f}{shared:>21.1f}   ratio {shared / separate:.2f}")
    one = separate / len(pythons)
    print(f"{len(pythons)} Pythons in one shared tree = {shared / one:.2f}x one Python's build "
          f"(issue 18's target: <= 1.5x; the stub's own sources include Python.h and pybind11, so they compile "
          f"once per Python; only the Python-independent part is shared)")


if __name__ == "__main__":
    main()
