"""`envtool serve`: the same server as verify, in the foreground, until Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path

from envtool import catalog
from envtool.errors import BadInput, CheckFailed
from envtool.repo.model_repo import load_repository, require_servable
from envtool.servers import open_server
from envtool.servers.base import require_free_ports
from envtool.verify import log_watch


def serve(repo: Path, rel: catalog.Release, *, server: str = "embedded", server_bin: Path | None = None,
          image: str | None = None,
          ports: tuple[int, int, int] = (8000, 8001, 8002), address: str = "127.0.0.1",
          timeout: float = 600.0, allow_partial: bool = False, on_ready=lambda _s: None) -> int:
    """Blocks until the server exits (its exit code) or the caller is interrupted (server stopped).
    Refuses to serve (CheckFailed, server stopped) while a model is not READY, unless allow_partial: then
    the rest is served and /v2/health/ready says ready."""
    if len(set(ports)) < 3:
        raise BadInput(f"--http-port {ports[0]}, --grpc-port {ports[1]} and --metrics-port {ports[2]} must differ",
                       "give each endpoint its own port")
    repository = load_repository(repo)
    require_servable(repository)  # one line, not a server that waits
    require_free_ports(address, dict(zip(("--http-port", "--grpc-port", "--metrics-port"), ports)))
    # As verify: without auto-complete where no model needs it. Triton waits forever on the auto-complete stub
    # of a model.py that dies at import; without it the model fails at once, named.
    no_autocomplete = () if repository.auto_complete_needed() else ("--disable-auto-complete-config",)
    srv = open_server(server, rel, Path(repo), server_bin=server_bin, image=image, ports=ports, address=address,
                      allow_partial=allow_partial, extra_args=no_autocomplete)
    with srv:
        srv.wait_live(timeout, watch=log_watch(srv))
        if not allow_partial and (bad := not_ready(srv.model_states())):
            raise CheckFailed(f"not READY: {'; '.join(bad)}",
                              "fix them (envtool doctor REPO shows why), or serve the rest with --allow-partial")
        on_ready(srv)
        code = srv.wait()
    raise CheckFailed(f"tritonserver exited with code {code}", f"see its log: {srv.log_path}")


def not_ready(states: dict[str, dict]) -> list[str]:
    """'model (first line of the reason)' for each model that is not READY."""
    return [f"{n} ({(s['reason'] or s['state'] or 'not loaded').strip().splitlines()[0]})"
            for n, s in sorted(states.items()) if s["state"] != "READY"]
