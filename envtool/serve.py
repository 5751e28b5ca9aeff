"""`envtool serve`: the same server as verify, in the foreground, until Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path

from envtool import catalog
from envtool.errors import CheckFailed
from envtool.repo.model_repo import load_repository
from envtool.servers import open_server
from envtool.verify import log_watch


def serve(repo: Path, release: str, *, server: str = "embedded", server_bin: Path | None = None,
          image: str | None = None,
          ports: tuple[int, int, int] = (8000, 8001, 8002), address: str = "127.0.0.1",
          timeout: float = 600.0, on_ready=lambda _s: None) -> int:
    """Blocks until the server exits (its exit code) or the caller is interrupted (server stopped)."""
    rel = catalog.normalize_release(release)
    load_repository(repo)  # a missing or unreadable repository is one line, not a server that waits
    srv = open_server(server, rel, Path(repo), server_bin=server_bin, image=image, ports=ports, address=address)
    with srv:
        srv.wait_live(timeout, watch=log_watch(srv))
        on_ready(srv)
        code = srv.wait()
    raise CheckFailed(f"tritonserver exited with code {code}", f"see its log: {srv.log_path}")
