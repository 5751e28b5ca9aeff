#!/usr/bin/env python3
"""Pack the same env with the conda-pack CLI defaults and with envtool; print time, size and file
count for both and the ratios, then a gzip-level sweep (pack time, size, and the extraction time
that Triton pays at every model load) behind envtool's default level.

The env is what a preprocess/postprocess step of the reference pipeline needs (numpy<2, pandas,
scikit-learn, PyYAML), built as a conda-layout prefix without trimming, like a user's conda env.

    python benchmarks/pack.py [--python 3.9] [--pip numpy<2 --pip pandas ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from envtool.api import DEFAULT_LEVEL, PackSpec, pack
from envtool.env.condapack import load_env, pack_env
from envtool.env.interpreters import find_interpreter
from envtool.env.prefix import build_prefix

DEFAULT_PIP = ["numpy<2", "pandas", "scikit-learn", "PyYAML"]


def timed(fn):
    t = time.monotonic()
    out = fn()
    return out, time.monotonic() - t


def members(archive: Path) -> int:
    with tarfile.open(archive) as t:
        return sum(1 for m in t if not m.isdir())


def extract_seconds(archive: Path, work: Path, repeat: int = 3) -> float:
    """Median of a few `tar -xzf` runs: single runs vary 2x with the page cache."""
    times = []
    for _ in range(repeat):
        dest = work / f"x{time.monotonic_ns()}"
        dest.mkdir()
        times.append(timed(lambda d=dest: subprocess.run(["tar", "-xzf", str(archive), "-C", str(d)],
                                                         check=True))[1])
        shutil.rmtree(dest)
    return statistics.median(times)


def row(name: str, seconds: float, archive: Path, work: Path) -> dict:
    return {"name": name, "s": seconds, "mb": archive.stat().st_size / 2**20, "files": members(archive),
            "extract_s": extract_seconds(archive, work)}


def show(rows: list[dict]) -> None:
    print(f"{'':34} {'time s':>8} {'size MB':>8} {'files':>7} {'extract s':>10}")
    for r in rows:
        print(f"{r['name']:34} {r['s']:8.2f} {r['mb']:8.1f} {r['files']:7d} {r['extract_s']:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default="3.9")
    ap.add_argument("--pip", action="append", help=f"requirements (default: {' '.join(DEFAULT_PIP)})")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="envtool-bench-"))
    os.environ["ENVTOOL_CACHE_DIR"] = str(work / "cache")
    try:
        prefix = work / "env"
        print(f"building the env: Python {args.python} + {' '.join(args.pip or DEFAULT_PIP)} ...", flush=True)
        build_prefix(find_interpreter(args.python), prefix, args.pip or DEFAULT_PIP, lambda m: None, trim=False)
        print(f"{os.cpu_count()} CPUs\n")

        cp = work / "conda-pack.tar.gz"
        _, cp_s = timed(lambda: subprocess.run(["conda-pack", "-p", str(prefix), "-o", str(cp), "-q"], check=True))
        res, et_s = timed(lambda: pack(PackSpec(prefix=prefix), work / "envtool.tar.gz"))
        base, ours = row("conda-pack CLI defaults", cp_s, cp, work), row(
            f"envtool pack (trim, level {DEFAULT_LEVEL}, threads)", et_s, res.output, work)
        show([base, ours])
        ratio = {k: ours[k] / base[k] for k in ("s", "mb", "files", "extract_s")}
        print(f"\nenvtool / conda-pack: time {ratio['s']:.2f}x, size {ratio['mb']:.2f}x, "
              f"files {ratio['files']:.2f}x, extraction {ratio['extract_s']:.2f}x")
        print(f"(envtool's time includes its validation: extract + start the env + imports; "
              f"conda-pack alone inside it: {res.manifest['pack_seconds']:.2f} s)\n")

        env = load_env(prefix, trim=True)
        sweep = []
        for level in (1, 4, 6, 9):
            out = work / f"level{level}.tar.gz"
            _, s = timed(lambda lv=level, o=out: pack_env(env, o, unpacked=False, level=lv, threads=-1))
            sweep.append(row(f"trimmed, level {level}, threads", s, out, work))
        show(sweep)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
