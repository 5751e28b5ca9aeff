"""A tritonserver binary already on this host: --server-bin, PATH, or /opt/tritonserver (NGC images)."""

from __future__ import annotations

import shutil
from pathlib import Path

from envtool.catalog import Release
from envtool.errors import BadInput
from envtool.servers.base import ProcessServer

NGC_BIN = Path("/opt/tritonserver/bin/tritonserver")


def find_server_bin(given: Path | None = None) -> Path:
    if given is not None:
        if not (given.is_file() and given.stat().st_mode & 0o111):
            raise BadInput(f"--server-bin {given} is not an executable file", "point it at bin/tritonserver")
        return given.resolve()
    found = shutil.which("tritonserver") or (str(NGC_BIN) if NGC_BIN.is_file() else None)
    if not found:
        raise BadInput("no tritonserver on PATH or in /opt/tritonserver",
                       "pass --server-bin PATH, or use --server embedded (from the nvidia-pytriton wheel)")
    return Path(found).resolve()


class LocalServer(ProcessServer):
    kind = "local"

    def __init__(self, release: Release, repo: Path, *, server_bin: Path | None = None, **kw):
        super().__init__(release, repo, **kw)
        self.binary = find_server_bin(server_bin)
        self.backends = self.binary.parent.parent / "backends"  # the layout of /opt/tritonserver

    def command(self) -> list[str]:
        extra = ["--backend-directory", str(self.backends)] if self.backends.is_dir() else []
        return [str(self.binary), *extra]
