"""envtool.lock: what a verified repository was served with, written beside the repository.

Per python model: the stub (sha256, the libpython it links) and the env (sha256, Python, packages,
read by env.view from the archive's member names or the directory, without extracting anything).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from envtool.atomic import write_atomic
from envtool.cache import file_sha256
from envtool.elf import read_elf
from envtool.env.view import view_env
from envtool.repo.model_repo import Repository
from envtool.stub.store import STUB


def lock_path(repo: Path) -> Path:
    return repo.resolve().parent / "envtool.lock"


def env_facts(path: Path) -> dict:
    """sha256 (tarballs), Python X.Y and {package: version}, from the env's member names."""
    view = view_env(path)
    digest = file_sha256(path) if view.kind == "tarball" else None
    return {"path": str(path), "kind": view.kind, "sha256": digest, "python": view.python,
            "packages": dict(sorted(view.packages.items(), key=lambda kv: kv[0].lower()))}


def model_entry(model) -> dict:
    entry: dict = {}
    stub = model.path / STUB
    if stub.is_file():
        entry["stub"] = {"sha256": file_sha256(stub), "libpython": read_elf(stub).libpython}
    if (env := model.existing_env()) is not None:
        entry["env"] = env_facts(env)
    return entry


def lock_data(repo: Repository, release: str, server: dict) -> dict:
    return {"generated_by": "envtool verify", "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "release": release, "server": server, "repository": str(repo.path.resolve()),
            "models": {m.name: model_entry(m) for m in sorted(repo.python_models(), key=lambda m: m.name)}}


def write_lock(repo: Repository, release: str, server: dict) -> Path:
    path = lock_path(repo.path)
    write_atomic(path, json.dumps(lock_data(repo, release, server), indent=2) + "\n")
    return path
