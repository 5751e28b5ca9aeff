"""Servers behind one interface: a context manager that starts tritonserver on a repository, waits,
answers HTTP/gRPC on its ports and always stops (ProcessServer). Docker slots in as another kind."""

from __future__ import annotations

from pathlib import Path

from envtool.catalog import Release
from envtool.errors import BadInput

KINDS = ("embedded", "local")


def open_server(kind: str, release: Release, repo: Path, **kw):
    """An unstarted server of this kind (enter it to start): embedded or local (server_bin=...)."""
    if kind == "embedded":
        from envtool.servers.embedded import EmbeddedServer
        kw.pop("server_bin", None)
        return EmbeddedServer(release, repo, **kw)
    if kind == "local":
        from envtool.servers.local import LocalServer
        return LocalServer(release, repo, **kw)
    raise BadInput(f"--server {kind} is not one of {', '.join(KINDS)}", "use embedded or local")
