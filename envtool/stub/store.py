"""The stub store: content-addressed folders plus an index by target.

    <root>/<sha256[:16]>/triton_python_backend_stub   (+ the libraries it bundles, + manifest.json)
    <root>/targets/r24.10-py3.9-cpu-x86_64.json        {"sha256": ..., "dir": "<sha256[:16]>"}

A build happens in a temp folder inside the root and is renamed into place; the target's file lock
makes a concurrent identical request wait and then reuse the result.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from envtool.atomic import publish_folder, staging_folder, write_atomic
from envtool.cache import file_sha256
from envtool.names import STUB_NAME as STUB


@dataclass(frozen=True)
class StubKey:
    release: str  # "24.10"
    python: str  # "3.9"
    gpu: bool = False
    arch: str = platform.machine()
    pybind11: str = ""  # a tag that replaces the release's pybind11 pin (--pybind11); "" keeps the pin
    image: str = ""  # --target image:NAME: made for (and in) the user's own server image, not the release's

    @property
    def key(self) -> str:
        own = f"-pybind11-{self.pybind11}" if self.pybind11 else ""
        if self.image:  # an image name holds / and :, which a folder name cannot
            own += "-in-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", self.image)
        return f"r{self.release}-py{self.python}-{'gpu' if self.gpu else 'cpu'}-{self.arch}{own}"


@dataclass
class StubArtifact:
    path: Path  # the stub binary
    manifest: dict
    reused: bool = False

    @property
    def folder(self) -> Path:
        return self.path.parent

    def to_dict(self) -> dict:
        return {"stub": str(self.path), "reused": self.reused, **self.manifest}


def default_root() -> Path:
    return Path(os.environ.get("ENVTOOL_STUBS_DIR") or "stubs")


def lookup(root: Path, target: StubKey) -> StubArtifact | None:
    index = root / "targets" / f"{target.key}.json"
    try:
        entry = json.loads(index.read_text())
        folder = root / entry["dir"]
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    stub = folder / STUB
    return StubArtifact(stub, manifest, reused=True) if stub.is_file() else None


@contextmanager
def target_lock(root: Path, target: StubKey):
    (root / "targets").mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / "targets" / f"{target.key}.lock")):
        yield


def publish(root: Path, target: StubKey, build: Callable[[Path], dict]) -> StubArtifact:
    """build(tmp) leaves the stub (and its libraries) in tmp and returns the manifest; the folder is
    then named by the stub's sha256 and the target index points at it. Call under target_lock."""
    with staging_folder(root, ".build-") as tmp:
        manifest = build(tmp)
        folder = root / manifest["sha256"][:16]  # same bytes from another key or an earlier run: replaced
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        publish_folder(tmp, folder)
    index = root / "targets" / f"{target.key}.json"
    write_atomic(index, json.dumps({"sha256": manifest["sha256"], "dir": folder.name}) + "\n")
    return StubArtifact(folder / STUB, manifest)


def stub_manifest(stub: Path, digest: str | None = None) -> dict | None:
    """The store manifest of this very stub (same sha256): beside it in its store folder, or in the default
    store; None for a stub the store never made."""
    digest = digest or file_sha256(stub)
    for folder in (stub.parent, default_root() / digest[:16]):
        try:
            m = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        if m.get("sha256") == digest:
            return m
    return None
