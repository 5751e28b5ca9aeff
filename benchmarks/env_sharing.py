#!/usr/bin/env python3
"""Model load time and /tmp usage: one env shared by N python models (symlinks) vs a copy per model.

Builds a self-contained env from the running Python (stdlib + numpy copied as real files, so the
tarball has a realistic size), injects it into an ensemble of N python models both ways, and times
a real r24.10 server from start to all-models-ready.

    python benchmarks/env_sharing.py [--models 4]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envtool import api  # noqa: E402
from envtool.catalog import normalize_release  # noqa: E402
from envtool.servers.embedded import EmbeddedServer, server_tree  # noqa: E402
from tests.conftest import python_model, write_repo  # noqa: E402
from tests.test_lint import ensemble, step  # noqa: E402


def fat_env(dest: Path) -> Path:
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    (dest / "bin").mkdir(parents=True)
    (dest / "lib").mkdir()
    shutil.copy2(Path(sys.executable).resolve(), dest / "bin" / "python3")
    shutil.copy2(Path(sysconfig.get_config_var("LIBDIR")) / f"libpython{v}.so.1.0", dest / "lib/")
    shutil.copytree(stdlib, dest / "lib" / f"python{v}", symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "test", "__pycache__"))
    for pkg in ("numpy", "numpy.libs"):
        if (site / pkg).exists():
            shutil.copytree(site / pkg, dest / "lib" / f"python{v}" / "site-packages" / pkg)
    (dest / "bin" / "activate").write_text(
        'ENV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"\nexport PATH="$ENV_DIR/bin:$PATH"\n')
    return dest


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=4)
    a = ap.parse_args()
    rel = normalize_release("r24.10")
    tree = server_tree(rel)
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = tree / "pytriton/tritonserver/python_backend_stubs" / v / "triton_python_backend_stub"
    work = Path(tempfile.mkdtemp(prefix="envtool-bench-"))
    try:
        env_dir = fat_env(work / "env")
        tarball = work / "custom_env.tar.gz"
        subprocess.run(["tar", "-czf", str(tarball), "-C", str(env_dir), "."], check=True)
        names = [f"m{i}" for i in range(a.models)]
        fp = "TYPE_FP32"
        tensors = ["X", *(f"t{i}" for i in range(1, len(names))), "Y"]
        steps = ", ".join(step(n, {"IN": tensors[i]}, {"OUT": tensors[i + 1]}) for i, n in enumerate(names))
        print(f"env tarball {tarball.stat().st_size / 1e6:.1f} MB, {a.models} python models, Triton r24.10")
        print(f"{'mode':<10} {'start->ready s':>15} {'extractions':>12}")
        for share in (True, False):
            repo = write_repo(work / f"repo_{share}", {
                **{n: python_model(n, [("IN", fp, [-1])], [("OUT", fp, [-1])]) for n in names},
                "ens": ensemble("ens", steps=steps)})
            api.inject(api.InjectOptions(repo=repo, stub=stub, env=tarball, share=share))
            t0 = time.monotonic()
            with EmbeddedServer(rel, repo) as server:
                server.wait_live(600)
                dt = time.monotonic() - t0
                states = server.model_states()
                n = len(server.extracted_envs())
            ok = all(states[m]["state"] == "READY" for m in names)
            print(f"{'shared' if share else 'copies':<10} {dt:>15.2f} {n:>12}" + ("" if ok else "  (NOT READY)"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
