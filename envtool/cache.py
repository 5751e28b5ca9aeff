"""Where downloads and unpacked servers live, and how they are published safely.

ENVTOOL_CACHE_DIR overrides the user cache dir (platformdirs). Publishing is atomic: work happens in
a temp folder beside the target, which is renamed into place under a per-key file lock, so two
concurrent invocations never see a half-written entry.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import platformdirs
from filelock import FileLock

from envtool.atomic import publish_folder, restore_after_triton_probe, staging_folder


def cache_root() -> Path:
    root = Path(os.environ.get("ENVTOOL_CACHE_DIR") or platformdirs.user_cache_dir("envtool"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        f = path.open("rb")
    except PermissionError:  # a stub Triton's probe left at ---x------: given back 0755, then read
        if not restore_after_triton_probe(path):
            raise
        f = path.open("rb")
    with f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def publish_dir(target: Path, build: Callable[[Path], None], replace: bool = False) -> Path:
    """Return target, building it with build(tmpdir) first if it does not exist yet (with replace:
    build it again even if it does)."""
    if target.exists() and not replace:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists() and not replace:  # another process built it while we waited
            return target
        with staging_folder(target.parent, f".{target.name}.") as tmp:
            build(tmp)
            publish_folder(tmp, target)
    return target
