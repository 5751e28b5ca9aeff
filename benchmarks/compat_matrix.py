#!/usr/bin/env python3
"""The measured compatibility matrix: every release with an embedded server here x Python 3.8-3.14, each
cell made as `envtool build` makes it, ELF-checked against its release and served on that release's server.
Writes docs/compatibility.md and prints the figures.

    python benchmarks/compat_matrix.py [--builder auto|prebuilt] [--newer r24.11,r25.08 --newer-python 3.12]
                                       [--docker-image 22.11=IMAGE ...] [--in-image 24.10:3.14:v3.0.1=IMAGE]
                                       [--out docs/compatibility.md]

--builder prebuilt makes only NVIDIA's prebuilt stubs (minutes); auto also builds the others from source
(local CMake builds: python_backend sources via $ENVTOOL_GIT_URL or GitHub; ~2 min each on 2 cores).
--newer adds releases without a server here: their cells are built and ELF-checked only.
--in-image R:X.Y:PYBIND11=IMAGE makes a cell beyond the release's own image: stub (with that pybind11) and env
built in IMAGE, a server image of your own with that Python, judged against it and served there (docker).
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envtool import __version__, api, catalog  # noqa: E402
from envtool.matrix import Cell, summary  # noqa: E402

MARK = {"served": "served", "ELF-checked": "ELF ok", "ELF misfit": "ELF misfit", "impossible": "no ({n})",
        "failed": "failed ({n})", "serve failed": "serve failed ({n})"}


def _general(why: str, c: dict) -> str:
    """One note for the cells that cannot exist for the same reason: their release and Python named generally
    (the catalog's reasons name them as `r<release>` and `Python <X.Y>`)."""
    return why.replace(f"r{c['release']}", "the release").replace(f"Python {c['python']}", "this Python")


def table(cells: list[dict], pythons: list[str], notes: dict[str, int]) -> list[str]:
    rows = ["| release | " + " | ".join(pythons) + " |", "|---|" + "---|" * len(pythons)]
    for rel in dict.fromkeys(c["release"] for c in cells):
        marks = []
        for py in pythons:
            c = next(x for x in cells if x["release"] == rel and x["python"] == py)
            served = c["served"] if c["served"].startswith("no") else None
            note = _general(c["why"], c) if c["why"] else c["error"] or served
            n = notes.setdefault(note, len(notes) + 1) if note else 0
            marks.append(MARK[c["status"]].format(n=n))
        rows.append(f"| r{rel} | " + " | ".join(marks) + " |")
    return rows


def render(data: dict) -> str:
    """docs/compatibility.md from docs/compatibility.json (docs/gen.py checks that the two agree)."""
    cells, notes = data["cells"], {}
    served = sum(c["status"] == "served" for c in cells)
    lines = [
        "# Compatibility matrix: Triton release x Python",
        "",
        data["command"],
        "Do not edit by hand: run the command again.",
        "",
        f"**{served} of {len(cells)} cells served** ({data['summary']}).",
        "",
        "- **served**: the cell's stub (as `envtool build` makes it) fits the release's image by its ELF facts "
        "(GLIBC, GLIBCXX), and an add_sub python model with an env of that Python loaded and answered on the "
        "release's own server (the nvidia-pytriton wheel's tritonserver).",
        "- **ELF ok**: the stub was made and fits the release's image; not served here.",
        "- **no (n)**: the cell cannot exist; note n says why.",
        "- **failed (n)**: it could not be made here; note n says why.",
        "",
        *table(cells, data["pythons"], notes),
        "",
    ]
    if data["newer"]:
        lines += ["## Newer releases (no server here: built and ELF-checked only)", "",
                  *table(data["newer"], data["newer_pythons"], notes), ""]
    if data["own_image"]:
        lines += ["## Beyond the release's image: your own server image", "",
                  "A release's server in an image of your own (here Debian sid, which has Python 3.14), with the "
                  "stub built against a newer pybind11 in that image (`envtool build ... --pybind11 TAG --target "
                  "image:NAME --builder docker`), the env packed there with numpy 2, served there (docker).", "",
                  "| cell | pybind11 | image | status | served | time |", "|---|---|---|---|---|---|"]
        lines += [f"| r{c['release']} x {c['python']} | {c['pybind11']} | {c['image']} | "
                  f"{MARK[c['status']].format(n='-')} | {c['served']} | {c['seconds']:.0f} s |"
                  for c in data["own_image"]]
        lines.append("")
    lines += ["## Notes", ""] + [f"{n}. {text}" for text, n in sorted(notes.items(), key=lambda x: x[1])]
    return "\n".join(lines) + "\n"


def main() -> None:
    # a kill must still stop the servers and remove the work folders (the context managers run on SystemExit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--builder", default="prebuilt", choices=["auto", "prebuilt", "local"])
    ap.add_argument("--newer", default="", help="releases without a server here, built and ELF-checked only")
    ap.add_argument("--newer-python", default="3.12")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "compatibility.md")
    ap.add_argument("--docker-image", action="append", default=[], metavar="R=IMAGE",
                    help="the docker builder's image for release R (e.g. 22.11=a Debian bullseye stand-in)")
    ap.add_argument("--in-image", action="append", default=[], metavar="R:X.Y:PYBIND11=IMAGE",
                    help="a cell made for and served in a server image of your own (e.g. sid's Python 3.14)")
    args = ap.parse_args()
    pythons = catalog.python_facts()["matrix"]
    rels = [r.release for r in catalog.releases() if r.embedded_available]
    t0 = time.monotonic()
    images = dict(x.split("=", 1) for x in args.docker_image)
    cells = api.matrix(rels, pythons, verify=True, builder=args.builder, base_images=images,
                       log=lambda m: print(f"  {m}", file=sys.stderr))
    newer: list[Cell] = []
    if args.newer:
        newer = api.matrix(args.newer.split(","), args.newer_python.split(","), verify=False, builder="auto",
                           log=lambda m: print(f"  {m}", file=sys.stderr))
    own: list[tuple[Cell, str, str]] = []
    for spec in args.in_image:
        cell, image = spec.split("=", 1)
        rel, py, tag = cell.split(":")
        made = api.matrix([rel], [py], verify=True, builder="docker", pybind11=tag, target=f"image:{image}",
                          log=lambda m: print(f"  {m}", file=sys.stderr))
        own += [(c, tag, image) for c in made]
    minutes = (time.monotonic() - t0) / 60
    command = (f"Generated by `python benchmarks/compat_matrix.py --builder {args.builder}"
               + "".join(f" --docker-image {x}" for x in args.docker_image)
               + (f" --newer {args.newer} --newer-python {args.newer_python}" if args.newer else "")
               + "".join(f" --in-image {x}" for x in args.in_image)
               + f"` on {datetime.date.today()} with envtool {__version__} ({minutes:.0f} min on this 2-core "
               "machine).")
    data = {"command": command, "summary": summary(cells), "pythons": pythons,
            "newer_pythons": args.newer_python.split(",") if args.newer else [],
            "cells": [c.to_dict() for c in cells], "newer": [c.to_dict() for c in newer],
            "own_image": [{**c.to_dict(), "pybind11": tag, "image": image} for c, tag, image in own]}
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    args.out.write_text(render(data))
    served = sum(c.status == "served" for c in cells)
    print(f"{served} of {len(cells)} cells served; {summary(cells)}; {minutes:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
