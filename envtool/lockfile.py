"""envtool.lock: what a verified repository was served with, written beside the repository.

Per python model: the stub (sha256, the libpython it links) and the env (sha256, Python, packages,
read by env.view from the archive's member names or the directory, without extracting anything).

`inputs_sha256` digests everything the verdict depends on: every file of the repository (configs, model
files, stubs, envs inside it), each env outside it, the release, the server (its binary, or its image id)
and verify's own options. A verify whose digest equals the lock's reuses that verdict ("verified earlier
(lock unchanged)") instead of serving again; `--reverify` serves anyway. File contents are hashed again
only where size or mtime changed: the stat -> sha256 memo lives in envtool's cache, not in the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from envtool.atomic import write_atomic
from envtool.cache import cache_root, file_sha256
from envtool.elf import read_elf
from envtool.env.view import view_env
from envtool.repo.model_repo import Repository
from envtool.stub.store import stub_manifest

SKIP_DIRS = {"__pycache__"}  # written by the stub's import of model.py while serving


def lock_path(repo: Path) -> Path:
    return repo.resolve().parent / "envtool.lock"


def read_lock(repo: Path) -> dict | None:
    try:
        data = json.loads(lock_path(repo).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Digests:
    """sha256 of files, rehashed only where (size, mtime_ns, inode) changed since the last run."""

    def __init__(self, repo: Path):
        key = hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:24]
        self.memo_path = cache_root() / "verify" / f"{key}.json"
        try:
            self.old = json.loads(self.memo_path.read_text())
        except (OSError, ValueError):
            self.old = {}
        self.new: dict[str, list] = {}

    def file(self, path: Path) -> str:
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        old = self.new.get(str(path)) or self.old.get(str(path))  # this run's first, then the last run's
        digest = old[3] if isinstance(old, list) and old[:3] == stamp else file_sha256(path)
        self.new[str(path)] = [*stamp, digest]
        return digest

    def tree(self, root: Path) -> dict[str, str]:
        """relative path -> sha256 (a symlink: its target), for every file under root."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
                p = Path(dirpath, name)
                rel = str(p.relative_to(root))
                # a FIFO or socket is named, never opened: reading one could block forever
                out[rel] = "-> " + os.readlink(p) if p.is_symlink() else self.file(p) if p.is_file() else "special"
        return dict(sorted(out.items()))

    def save(self) -> None:
        """Files changed in the last 2 s are not remembered: a second write within the file system's timestamp
        granularity would keep size and mtime (git's "racy" entries)."""
        now = time.time_ns()
        self.memo_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.memo_path, json.dumps({k: v for k, v in self.new.items() if now - v[1] > 2_000_000_000}))


def inputs_digest(repo: Repository, key: dict, digests: Digests) -> str:
    """sha256 over key (release, server, options) and the content of the repository and its envs."""
    root = repo.path.resolve()
    content: dict = {"key": key, "repository": digests.tree(root), "envs": {}}
    for m in sorted(repo.python_models(), key=lambda m: m.name):
        env = m.existing_env()
        if env is not None and root not in env.parents:  # outside the repository: hashed on its own
            content["envs"][str(env)] = digests.file(env) if env.is_file() else digests.tree(env)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def env_facts(path: Path, digests: Digests) -> dict:
    """sha256 (tarballs), Python X.Y and {package: version}, from the env's member names."""
    view = view_env(path)
    digest = digests.file(path) if view.kind == "tarball" else None
    return {"path": str(path), "kind": view.kind, "sha256": digest, "python": view.python,
            "packages": dict(sorted(view.packages.items(), key=lambda kv: kv[0].lower()))}


def model_entry(model, digests: Digests) -> dict:
    entry: dict = {}
    if (stub := model.stub) is not None:
        entry["stub"] = {"sha256": digests.file(stub), "libpython": read_elf(stub).libpython}
    if (env := model.existing_env()) is not None:
        entry["env"] = env_facts(env, digests)
    return entry


def lock_data(repo: Repository, release: str, server: dict, inputs: str, served: dict, digests: Digests) -> dict:
    return {"generated_by": "envtool verify", "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "release": release, "server": server, "repository": str(repo.path.resolve()),
            "inputs_sha256": inputs, "served": served,
            "models": {m.name: model_entry(m, digests)
                       for m in sorted(repo.python_models(), key=lambda m: m.name)}}


def write_lock(repo: Repository, release: str, server: dict, inputs: str, served: dict, digests: Digests) -> Path:
    path = lock_path(repo.path)
    write_atomic(path, json.dumps(lock_data(repo, release, server, inputs, served, digests), indent=2) + "\n")
    return path


def stub_release(stub: Path) -> str | None:
    """The release a stub was made for: a stub store manifest with the same sha256, or the envtool.lock of the
    repository it sits in (stub = <repo>/<model>/triton_python_backend_stub[.elf])."""
    digest = file_sha256(stub)
    if (m := stub_manifest(stub, digest)) and m.get("release"):
        return m["release"]
    try:
        lock = json.loads(lock_path(stub.parent.parent).read_text())
        if lock["models"].get(stub.parent.name, {}).get("stub", {}).get("sha256") == digest:
            return lock["release"]
    except (OSError, ValueError, KeyError):
        pass
    return None
