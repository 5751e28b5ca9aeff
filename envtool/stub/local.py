"""Build the stub from source with CMake on this host (issue #4, in progress)."""

from __future__ import annotations

from pathlib import Path

from envtool.catalog import Release
from envtool.errors import BadInput
from envtool.stub.store import Target


def build(release: Release, target: Target, tmp: Path, sources: Path | None, log) -> dict:
    raise BadInput(f"no prebuilt stub for r{release.release} and Python {target.python}, and the local "
                   "CMake builder is not available yet",
                   "use a Python the release's nvidia-pytriton wheel has (`envtool releases "
                   f"r{release.release}`)")
