"""The nvidia-pytriton wheels: each bundles one Triton release's tritonserver and prebuilt stubs
(catalog field `pytriton`). Downloaded with pip, once, into <cache>/wheels."""

from __future__ import annotations

import sys
from pathlib import Path

from envtool.cache import cache_root
from envtool.catalog import Release
from envtool.errors import BadInput
from envtool.runner import run


def download_wheel(release: Release) -> Path:
    wheels = cache_root() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for version in reversed(release.pytriton):
        found = sorted(wheels.glob(f"nvidia_pytriton-{version}-*.whl"))
        if found:
            return found[0]
    errors = []
    for version in reversed(release.pytriton):  # newest first; some listed tags never reached PyPI
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", f"nvidia-pytriton=={version}", "-d", str(wheels)]
        proc = run(cmd, timeout=1800)
        found = sorted(wheels.glob(f"nvidia_pytriton-{version}-*.whl"))
        if proc.returncode == 0 and found:
            return found[0]
        errors.append(f"{version}: {proc.stderr.strip().splitlines()[-1:]}")
    raise BadInput(f"could not download nvidia-pytriton for {release.branch} ({'; '.join(errors)})",
                   "check network access to PyPI, or use --server local with a tritonserver")
