"""Servers behind one interface: a context manager that starts tritonserver on a repository, waits,
answers HTTP/gRPC on its ports and always stops (servers.base.Server)."""

from __future__ import annotations

from pathlib import Path

from envtool.catalog import Release
from envtool.errors import BadInput

KINDS = ("embedded", "local", "docker")


def open_server(kind: str, release: Release, repo: Path, **kw):
    """An unstarted server of this kind (enter it to start): embedded, local (server_bin=...) or docker
    (image=..., gpu=...). Options of the other kinds are ignored."""
    server_bin, image, gpu = kw.pop("server_bin", None), kw.pop("image", None), kw.pop("gpu", False)
    repo_in_image = kw.pop("repo_in_image", None)
    if kind == "embedded":
        from envtool.servers.embedded import EmbeddedServer
        return EmbeddedServer(release, repo, **kw)
    if kind == "local":
        from envtool.servers.local import LocalServer
        return LocalServer(release, repo, server_bin=server_bin, **kw)
    if kind == "docker":
        from envtool.servers.docker import DockerServer
        return DockerServer(release, repo, image=image, gpu=gpu, repo_in_image=repo_in_image, **kw)
    raise BadInput(f"--server {kind} is not one of {', '.join(KINDS)}", "use embedded, local or docker")
