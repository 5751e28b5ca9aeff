#!/usr/bin/env python3
"""`envtool build ... --verify` of the example pipeline, cold (empty envtool caches: the wheel, the stub,
the env are all made; pip's own download cache is left as it is) and warm (the same command again).

Needs the example prepared (python model_repository/prepare.py), then:

    python benchmarks/build_cold_warm.py
"""

from __future__ import annotations

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


def run(cwd: Path, env: dict) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "envtool", "build", "--python", "3.9", "--triton", "r24.10", "-r",
           "envs/example.txt", "--repo", "model_repository", "--verify", "--inputs",
           "model_repository/inputs.json", "--json"]
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        sys.exit(out.stderr[-2000:])
    return wall, json.loads(out.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        shutil.copytree(ROOT / "model_repository", t / "model_repository", ignore=IGNORE)
        shutil.copytree(ROOT / "envs", t / "envs", ignore=shutil.ignore_patterns("custom_env*"))
        env = {**os.environ, "ENVTOOL_CACHE_DIR": str(t / "cache"), "ENVTOOL_STUBS_DIR": str(t / "stubs")}
        print(f"{'run':<6}{'wall s':>8}   steps")
        for label in ("cold", "warm"):
            wall, res = run(t, env)
            steps = ", ".join(f"{(k[:-2] if k.endswith('_s') else k)} {v:.1f}" for k, v in res["timings"].items())
            print(f"{label:<6}{wall:>8.1f}   {steps}", flush=True)


if __name__ == "__main__":
    main()
