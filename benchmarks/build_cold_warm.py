#!/usr/bin/env python3
"""`envtool build ... --verify` of the example pipeline, cold (empty envtool caches: the wheel, the stub,
the env are all made; pip's own download cache is left as it is) and warm (the same command again).

Needs the example prepared (python model_repository/prepare.py), then:

    python benchmarks/build_cold_warm.py                      # r24.10 x 3.9 on this host
    python benchmarks/build_cold_warm.py --triton r22.11 -- --builder docker --base-image IMG \
        --server docker --image SERVER_IMG                    # r22.11 x 3.9 in a release(-like) image

Extra arguments after `--` go to `envtool build`. With --builder docker the stub and env stores start
empty, and so do the release's sources (fetched again from $ENVTOOL_GIT_URL or GitHub); envtool's artifact
images of that release are removed first, with the build layers only they use (the apt packages envtool
adds to the image, envtool's dependencies, the compile), so cold is the first build on a machine that holds
the base image and nothing else of envtool's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns("custom_env*", "triton_python_backend_stub", "lib*.so*", "__pycache__")


def run(cwd: Path, env: dict, args: argparse.Namespace) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "envtool", "build", "--python", args.python, "--triton", args.triton, "-r",
           "envs/example.txt", "--repo", "model_repository", "--verify", "--inputs",
           "model_repository/inputs.json", "--json", *args.extra]
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        sys.exit(out.stderr[-2000:])
    return wall, json.loads(out.stdout)


def forget_docker_artifacts(triton: str) -> None:
    from envtool.catalog import normalize_release
    from envtool.containers import engine
    cl = engine.client()
    release = normalize_release(triton).release
    for image in cl.images.list(name="envtool/*"):
        for tag in image.tags:
            if f":r{release}-" in tag:
                cl.images.remove(tag, force=True)
    cl.images.prune(filters={"dangling": True})


def startup_s(runs: int = 5) -> float:
    """`envtool --version`, the best of a few runs: what every command pays before it does anything."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "envtool", "--version"], check=True, capture_output=True)
        best = min(best, time.monotonic() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--triton", default="r24.10")
    ap.add_argument("--python", default="3.9")
    ap.add_argument("extra", nargs="*", help="after --: more arguments of envtool build")
    args = ap.parse_args()
    print(f"envtool --version: {startup_s():.2f} s (best of 5)")
    print(f"envtool build --python {args.python} --triton {args.triton} {' '.join(args.extra)}")
    if "docker" in args.extra:
        forget_docker_artifacts(args.triton)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        shutil.copytree(ROOT / "model_repository", t / "model_repository", ignore=IGNORE)
        shutil.copytree(ROOT / "envs", t / "envs", ignore=shutil.ignore_patterns("custom_env*"))
        env = {**os.environ, "ENVTOOL_CACHE_DIR": str(t / "cache"), "ENVTOOL_STUBS_DIR": str(t / "stubs")}
        print(f"{'run':<6}{'wall s':>8}   steps")
        for label in ("cold", "warm"):
            wall, res = run(t, env, args)
            steps = ", ".join(f"{(k[:-2] if k.endswith('_s') else k)} {v:.1f}" for k, v in res["timings"].items())
            print(f"{label:<6}{wall:>8.1f}   {steps}", flush=True)


if __name__ == "__main__":
    main()
