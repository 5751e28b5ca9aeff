"""`--server docker`: the release's tritonserver image (or --image) serving the repository.

The repository is mounted at the same absolute path, so EXECUTION_ENV_PATH values and the lock file
mean the same inside and out. Ports are published on 127.0.0.1 (or, where the daemon has no bridge
network, the host network is used with Triton bound to 127.0.0.1). /dev/shm is sized from the python
models' instances. The container is removed on every exit path, with the env extractions inside it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from envtool.catalog import Release
from envtool.containers import engine
from envtool.repo.model_repo import load_repository
from envtool.servers.base import Server

SHM_PER_INSTANCE = 64 * 2**20  # python backend regions grow from shm-default-byte-size; room per stub
SHM_MIN = 256 * 2**20


def shm_size(repo: Path) -> int:
    """Bytes of /dev/shm verify's container gets: 64 MiB per python model instance (plus one), at least 256 MiB:
    room for regions to grow with large tensors, whatever the release's default region size."""
    return max(SHM_MIN, (load_repository(repo).python_instances() + 1) * SHM_PER_INSTANCE)


class DockerServer(Server):
    kind = "docker"

    def __init__(self, release: Release, repo: Path, *, image: str | None = None, gpu: bool = False,
                 repo_in_image: str | None = None, **kw):
        super().__init__(release, repo, **kw)
        # The image holds the repository (envtool image): served from there, nothing mounted; repo is its source
        self.repo_in_image = repo_in_image
        self.image = engine.release_image(release, image)
        self.gpu = gpu
        self.client = engine.client()
        self.image_obj = engine.require_image(self.client, self.image, "server image")
        self.container = None
        self._follower: threading.Thread | None = None
        # Without a bridge network (as on these machines) the container shares the host's network and
        # Triton binds 127.0.0.1; with one, Triton listens on all interfaces inside and only 127.0.0.1
        # is published (clients still use 127.0.0.1: see Server._host).
        self.host_net = not self.client.networks.list(names=["bridge"])
        if not self.host_net:
            self.address = "0.0.0.0"

    def identity(self) -> dict:
        return {"kind": self.kind, "image_id": self.image_obj.id, "gpu": self.gpu, "args": list(self.extra_args),
                **({"repo_in_image": self.repo_in_image} if self.repo_in_image else {})}

    def repository_arg(self) -> str:
        return self.repo_in_image or str(self.repo)

    def command(self) -> list[str]:
        return ["tritonserver"]

    def start(self, args: list[str]) -> None:
        from docker.types import DeviceRequest
        kw = {"network_mode": "host"} if self.host_net else {
            "ports": {f"{p}/tcp": ("127.0.0.1", p) for p in (self.http_port, self.grpc_port, self.metrics_port)}}
        if self.gpu:
            kw["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        self.container = self.client.containers.run(
            self.image, args, detach=True,
            volumes={} if self.repo_in_image else {str(self.repo): {"bind": str(self.repo), "mode": "rw"}},
            shm_size=shm_size(self.repo), labels={"envtool": "verify"}, **kw)
        self._follower = threading.Thread(target=self._follow_log, daemon=True)
        self._follower.start()

    def _follow_log(self) -> None:
        with self.log_path.open("wb") as f:
            try:
                for chunk in self.container.logs(stream=True, follow=True):
                    f.write(chunk)
                    f.flush()
            except Exception:  # the container went away: the log ends there
                pass

    def exited(self) -> int | None:
        if self.container is None:
            return None
        self.container.reload()
        return self.container.attrs["State"]["ExitCode"] if self.container.status in ("exited", "dead") else None

    def wait(self) -> int:
        return self.container.wait()["StatusCode"]

    def stop(self, grace: float = 10.0) -> None:
        if self.container is None:
            return
        try:
            self.container.stop(timeout=int(grace))
        except Exception:
            pass
        finally:
            self.container.remove(force=True)
            if self._follower is not None:
                self._follower.join(timeout=5)
            self.container = None

    def facts(self) -> dict:
        return {"image": self.image, **engine.image_facts(self.image_obj),
                **({"repo_in_image": self.repo_in_image} if self.repo_in_image else {})}
