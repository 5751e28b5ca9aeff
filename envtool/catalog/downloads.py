"""Pinned downloads of the build images (downloads.toml): fetched, checked against their sha256, and only
then put in place. Runs inside the image too (`python -m envtool.catalog.downloads NAME DEST`), on its
Python 3.8 or newer, with the standard library only."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

from envtool.catalog import tomllib

DATA = Path(__file__).with_name("downloads.toml")


def pinned(name: str) -> dict:
    return tomllib.loads(DATA.read_text())[name]


def require_hashes_line(name: str) -> str:
    """A pip requirement with every allowed digest: `pip install --require-hashes -r` refuses anything else."""
    entry = pinned(name)
    return entry["requirement"] + "".join(f" --hash=sha256:{h}" for h in entry["sha256"])


def fetch(name: str, dest: Path, timeout: float = 120.0) -> Path:
    """Download the pinned file to dest (mode 0755), or raise ValueError naming both digests on a mismatch;
    nothing is left at dest unless the digest matched."""
    entry = pinned(name)
    data = urllib.request.urlopen(entry["url"], timeout=timeout).read()
    got = hashlib.sha256(data).hexdigest()
    if got != entry["sha256"]:
        raise ValueError(f"{name} {entry['version']} from {entry['url']}: sha256 {got}, expected "
                         f"{entry['sha256']} (downloads.toml): refused")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return dest


if __name__ == "__main__":
    try:
        fetch(sys.argv[1], Path(sys.argv[2]))
    except (OSError, ValueError) as e:
        sys.exit(f"envtool: {e}")
