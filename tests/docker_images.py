"""Local images for the docker tests (pulls fail here): a debootstrapped Debian bookworm imported as
a base, then a build image (the stand-in for an NGC tritonserver image: build tools and a Python
with a shared libpython) and a server image (the nvidia-pytriton server tree in NGC's layout).

Each is built once and kept in the daemon's data root (CI keeps it under the cache dir); the rootfs
tarball is cached under $ENVTOOL_CACHE_DIR/docker/.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from envtool.cache import cache_root
from envtool.containers import engine

BASE = "envtool-test/bookworm:1"
BUILD = "envtool-test/build:1"
SERVER = "envtool-test/tritonserver:{release}-1"

BUILD_DOCKERFILE = """\
FROM {base}
RUN apt-get update --error-on=any && apt-get install -y --no-install-recommends python3 python3-venv \\
    cmake g++ make git ca-certificates && rm -rf /var/lib/apt/lists/*
# A pyenv-built CPython X.Y with a shared libpython, at the same path as on the host (its RUNPATH is
# absolute), found by envtool through PYENV_ROOT.
COPY pyenv /root/.pyenv/versions/
ENV PYENV_ROOT=/root/.pyenv
"""

SERVER_DOCKERFILE = """\
FROM {base}
RUN apt-get update --error-on=any && apt-get install -y --no-install-recommends python3 libpython3.11 \\
    && rm -rf /var/lib/apt/lists/*
# The wheel's tree keeps its relative layout (its RUNPATHs are relative); NGC's paths point into it.
COPY wheel /opt/pytriton-wheel/
RUN ln -s /opt/pytriton-wheel/pytriton/tritonserver /opt/tritonserver && \\
    ln -s /opt/tritonserver/bin/tritonserver /usr/local/bin/tritonserver
ENV LD_LIBRARY_PATH=/opt/pytriton-wheel/nvidia_pytriton.libs
"""


def _exists(cl, name: str) -> bool:
    from docker.errors import ImageNotFound
    try:
        cl.images.get(name)
        return True
    except ImageNotFound:
        return False


def base_image(cl) -> str:
    if _exists(cl, BASE):
        return BASE
    rootfs = cache_root() / "docker" / "bookworm-minbase.tar"
    if not rootfs.is_file():
        if not shutil.which("debootstrap"):
            raise RuntimeError("debootstrap is needed to make the base image (apt-get install debootstrap)")
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["debootstrap", "--variant=minbase", "bookworm", d, "http://deb.debian.org/debian"],
                           check=True, capture_output=True)
            rootfs.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["tar", "-C", d, "-cf", f"{rootfs}.tmp", "."], check=True)
            Path(f"{rootfs}.tmp").rename(rootfs)
    with rootfs.open("rb") as f:
        cl.api.import_image_from_data(f.read(), repository=BASE.split(":")[0], tag=BASE.split(":")[1],
                                      changes=['CMD ["bash"]'])
    return BASE


def _build(cl, name: str, dockerfile: str, fill) -> str:
    if _exists(cl, name):
        return name
    with tempfile.TemporaryDirectory() as d:
        ctx = Path(d)
        (ctx / "Dockerfile").write_text(dockerfile.format(base=base_image(cl)))
        fill(ctx)
        engine.build(cl, ctx, dockerfile="Dockerfile", tag=name, logname=name.replace("/", "-").replace(":", "-"))
    return name


def build_image(cl, python_prefix: Path) -> str:
    """With the pyenv Python at python_prefix (e.g. ~/.pyenv/versions/3.9.18), tests and caches left out."""
    def fill(ctx: Path) -> None:
        shutil.copytree(python_prefix, ctx / "pyenv" / python_prefix.name, symlinks=True,
                        ignore=shutil.ignore_patterns("test", "tests", "__pycache__", "idlelib", "tkinter"))
    return _build(cl, BUILD, BUILD_DOCKERFILE, fill)


def server_image(cl, tree: Path, release: str) -> str:
    """tree: the unpacked nvidia-pytriton wheel; the default stub is the one for the image's Python 3.11."""
    def fill(ctx: Path) -> None:
        shutil.copytree(tree, ctx / "wheel", symlinks=True, ignore=shutil.ignore_patterns("*.dist-info"))
        root = ctx / "wheel" / "pytriton" / "tritonserver"
        shutil.copy2(root / "python_backend_stubs" / "3.11" / "triton_python_backend_stub",
                     root / "backends" / "python" / "triton_python_backend_stub")
    return _build(cl, SERVER.format(release=release), SERVER_DOCKERFILE, fill)



def start_daemon(root: Path) -> subprocess.Popen | None:
    """dockerd with the flags that work on these machines (KNOWLEDGE.md section 1), its data root under
    the cache dir so images survive between runs; None where it cannot run (no dockerd, not root)."""
    import os
    import time
    if not shutil.which("dockerd") or os.geteuid() != 0:
        return None
    sock = root / "docker.sock"
    (root / "data").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
                             "--storage-driver=overlay2", f"--data-root={root / 'data'}",
                             f"--exec-root={tempfile.mkdtemp(prefix='envtool-dockerd-')}", f"--host=unix://{sock}",
                             f"--pidfile={root / 'dockerd.pid'}"],
                            stdout=subprocess.DEVNULL, stderr=(root / "dockerd.log").open("wb"))
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            engine.client()
            return proc
        except Exception:
            time.sleep(0.2)
    proc.kill()
    proc.wait()
    del os.environ["DOCKER_HOST"]
    return None
