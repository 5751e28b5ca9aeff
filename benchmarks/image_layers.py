#!/usr/bin/env python3
"""`envtool image` on an injected repository: the first build, a rebuild with nothing changed, and a rebuild
after a model.py change; prints each build's seconds and which of the three layers (envs, stubs, models) was
built again, with their sizes. Needs a Docker daemon and the base image.

    python benchmarks/image_layers.py REPO --triton r24.10 --base-image IMAGE [--model-py postprocess/1/model.py]

The repository is copied to a temp folder first (the change is made there), and the image is removed after.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envtool import api  # noqa: E402
from envtool.containers import engine  # noqa: E402


def build(repo: Path, args) -> api.ImageResult:
    return api.image(api.ImageSpec(repo=repo, triton=args.triton, tag=args.tag, base_image=args.base_image,
                                   verify=False))


def show(what: str, r: api.ImageResult) -> None:
    layers = ", ".join(f"{x['layer']} {x['bytes'] / 2**20:.1f} MB {'reused' if x['reused'] else 'BUILT'}"
                       for x in r.layers)
    print(f"{what:34} {r.build_seconds:6.1f} s   {layers}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo", type=Path)
    ap.add_argument("--triton", required=True)
    ap.add_argument("--base-image", required=True)
    ap.add_argument("--tag", default="envtool-bench/image:1")
    ap.add_argument("--model-py", default="postprocess/1/model.py")
    args = ap.parse_args()
    cl = engine.client()
    with tempfile.TemporaryDirectory(prefix="envtool-bench-") as tmp:
        repo = Path(tmp) / args.repo.resolve().name
        shutil.copytree(args.repo, repo, symlinks=True)
        try:
            show("first build (no image with the tag)", build(repo, args))
            show("rebuild, nothing changed", build(repo, args))
            model_py = repo / args.model_py
            model_py.write_text(model_py.read_text() + "\n# changed\n")
            show(f"rebuild after a change to {args.model_py}", build(repo, args))
        finally:
            cl.images.remove(args.tag, force=True)


if __name__ == "__main__":
    main()
