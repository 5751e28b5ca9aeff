#!/usr/bin/env python3
"""Model load time of the example pipeline (4 python models, one Python 3.9 env): server start to all
models ready, with the env as a tarball copied into each model, as one tarball shared by symlinks,
and as one unpacked directory shared by symlinks (r23.07+). Each run starts every env once, in turn.

Needs the example prepared (python model_repository/prepare.py), then:

    python benchmarks/load_time.py [--runs 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envtool import api  # noqa: E402
from envtool.catalog import normalize_release  # noqa: E402
from envtool.servers.embedded import EmbeddedServer  # noqa: E402

IGNORE = shutil.ignore_patterns("custom_env*", "triton_python_backend_stub", "lib*.so*", "__pycache__")


def start_to_ready(repo: Path, release) -> float:
    t0 = time.monotonic()
    with EmbeddedServer(release, repo) as server:
        server.wait_live(600)
        ready = time.monotonic() - t0
        bad = {n: s for n, s in server.model_states().items() if s["state"] != "READY"}
        if bad:
            sys.exit(f"not ready: {bad}")
    return ready


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    rel = normalize_release("r24.10")
    stub = api.stub("r24.10", "3.9").path
    req = (ROOT / "envs" / "example.txt",)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        tarball = api.pack(api.PackSpec(python="3.9", requirements=req, triton="r24.10"), t / "custom_env.tar.gz")
        folder = api.pack(api.PackSpec(python="3.9", requirements=req, triton="r24.10", unpacked=True),
                          t / "custom_env")
        plain = api.pack(api.PackSpec(python="3.9", requirements=req, triton="r24.10", bytecode=False),
                         t / "plain" / "custom_env.tar.gz")
        modes = {"tarball, a copy per model": (tarball.output, False),
                 "the same, no bytecode": (plain.output, False),
                 "tarball, shared (symlinks)": (tarball.output, True),
                 "directory, shared (symlinks)": (folder.output, True)}
        print(f"example pipeline, 4 python models, env {tarball.manifest['size_bytes'] / 2**20:.0f} MB packed, "
              f"{folder.manifest['unpacked_bytes'] / 2**20:.0f} MB unpacked; Triton r24.10 embedded")
        print(f"files in the env: {tarball.manifest['files']} (the standard library zipped: "
              f"{(tarball.manifest.get('stdlib') or {}).get('files', 0)} files in one)")
        print(f"{'env':<32}{'start -> ready (median of ' + str(a.runs) + ')':>32}")
        repos = {}
        for label, (env, share) in modes.items():
            repos[label] = repo = t / label.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            shutil.copytree(ROOT / "model_repository", repo, ignore=IGNORE)
            api.inject(api.InjectOptions(repo=repo, stub=stub, env=env, share=share))
        # Rounds of one start per env, alternated: this disk's speed drifts over minutes, and a drift must
        # not fall on one env's runs only
        runs: dict[str, list[float]] = {label: [] for label in modes}
        for _ in range(a.runs):
            for label, repo in repos.items():
                runs[label].append(start_to_ready(repo, rel))
        medians = {label: statistics.median(r) for label, r in runs.items()}
        for label, r in runs.items():
            print(f"{label:<32}{medians[label]:>30.2f} s   ({', '.join(f'{x:.2f}' for x in r)})", flush=True)
        ratio = medians["tarball, shared (symlinks)"] / medians["directory, shared (symlinks)"]
        print(f"shared tarball / shared directory: {ratio:.2f}x")


if __name__ == "__main__":
    main()
