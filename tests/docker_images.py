"""Local images for the docker tests (pulls fail here): debootstrapped Debian suites imported as bases,
then release stand-ins (bullseye = the glibc of r20.12-r23.04 with only python3, as an NGC image offers a
build) and server images (the nvidia-pytriton server tree in NGC's layout).

Each is built once and kept in the daemon's data root (CI keeps it under the cache dir); the rootfs
tarball is cached under $ENVTOOL_CACHE_DIR/docker/.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from envtool.cache import cache_root
from envtool.containers import engine

BASE = "envtool-test/bookworm:1"
SERVER = "envtool-test/tritonserver:{release}-2"  # -2: the default stub chosen here, not the shared tree's

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


def rootfs(suite: str) -> Path:
    """A debootstrapped Debian `suite` (minbase) as a tarball, made once into the cache dir."""
    tar = cache_root() / "docker" / f"{suite}-minbase.tar"
    if not tar.is_file():
        if not shutil.which("debootstrap"):
            raise RuntimeError("debootstrap is needed to make the base image (apt-get install debootstrap)")
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["debootstrap", "--variant=minbase", suite, d, "http://deb.debian.org/debian"],
                           check=True, capture_output=True)
            tar.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["tar", "-C", d, "-cf", f"{tar}.tmp", "."], check=True)
            Path(f"{tar}.tmp").rename(tar)
    if suite == "sid":
        _accept_expired_release(tar)
    return tar


APT_VALID_UNTIL = "etc/apt/apt.conf.d/99envtool-valid-until"


def _accept_expired_release(tar: Path) -> None:
    """sid's Release file is signed for about a week; the mirror seen here may serve an older one, which
    apt refuses ("Release file ... is expired"). The stand-in accepts it (still signature-checked)."""
    import io
    import tarfile
    with tarfile.open(tar) as t:
        if f"./{APT_VALID_UNTIL}" in t.getnames():
            return
    data = b'Acquire::Check-Valid-Until "false";\n'
    info = tarfile.TarInfo(f"./{APT_VALID_UNTIL}")
    info.size, info.mode = len(data), 0o644
    with tarfile.open(tar, "a") as t:
        t.addfile(info, io.BytesIO(data))


def base_image(cl, suite: str = "bookworm") -> str:
    name = BASE if suite == "bookworm" else f"envtool-test/{suite}:1"
    if _exists(cl, name):
        return name
    with rootfs(suite).open("rb") as f:
        cl.api.import_image_from_data(f.read(), repository=name.split(":")[0], tag=name.split(":")[1],
                                      changes=['CMD ["bash"]'])
    return name


def _build(cl, name: str, dockerfile: str, fill, suite: str = "bookworm") -> str:
    if _exists(cl, name):
        return name
    with tempfile.TemporaryDirectory() as d:
        ctx = Path(d)
        (ctx / "Dockerfile").write_text(dockerfile.format(base=base_image(cl, suite)))
        fill(ctx)
        engine.build(cl, ctx, dockerfile="Dockerfile", tag=name, logname=name.replace("/", "-").replace(":", "-"))
    return name


def server_image(cl, tree: Path, release: str, suite: str = "bookworm") -> str:
    """tree: the unpacked nvidia-pytriton wheel; the default stub is the one for the image's Python (3.11 on
    bookworm), or the wheel's only one (pytriton 0.1/0.2: 3.8 with its libpython bundled). The wheel has none
    for sid's 3.14: there the newest stands in, since r24.10's backend refuses to start without a stub in
    backends/python (python_backend r24.10, src/python_be.cc) even when every model brings its own. Chosen
    here, not taken from the shared tree, whose default stub is whichever an embedded server placed last."""
    python = SUITE_PYTHON[suite]

    def fill(ctx: Path) -> None:
        shutil.copytree(tree, ctx / "wheel", symlinks=True, ignore=shutil.ignore_patterns("*.dist-info"))
        root = ctx / "wheel" / "pytriton" / "tritonserver"
        stubs = sorted(root.glob("python_backend_stubs/3.*/triton_python_backend_stub"),
                       key=lambda p: int(p.parent.name.split(".")[1]))
        prebuilt = root / "python_backend_stubs" / python / "triton_python_backend_stub"
        if stubs:
            shutil.copy2(prebuilt if prebuilt.is_file() else stubs[-1],
                         root / "backends" / "python" / "triton_python_backend_stub")
    name = SERVER.format(release=release) if suite in ("bookworm", "bullseye") else \
        SERVER.format(release=f"{release}-{suite}")
    return _build(cl, name, SERVER_DOCKERFILE.replace("3.11", python), fill, suite)


# Debian suites that stand in for the release images: bullseye has Ubuntu 20.04's glibc 2.31 and GLIBCXX 3.4.28
# (r20.12-r23.04), bookworm fits r23.05-r24.10; sid (Debian's newest) has Python 3.14 and 3.15.
SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "sid": "3.14"}
RELEASE_IMAGE = "envtool-test/{suite}-py3:1"
RELEASE_DOCKERFILE = """\
FROM {base}
# What an NGC tritonserver -py3 image offers a build: python3 and CA certificates, no compiler, no libpython
# package, no venv module. envtool apt-installs the rest.
RUN apt-get update && apt-get install -y --no-install-recommends python3 ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
"""


def release_image(cl, suite: str = "bullseye") -> str:
    """The stand-in for a release's NGC image as a build environment: its glibc, its distro's python3."""
    return _build(cl, RELEASE_IMAGE.format(suite=suite), RELEASE_DOCKERFILE, lambda _ctx: None, suite)



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


SID_PACKAGES = "http://deb.debian.org/debian/dists/sid/main/binary-amd64/Packages.xz"


def buildx() -> Path | None:
    """The docker-buildx CLI plugin (BuildKit's bake), from Debian's newest suite: the only Debian package of
    it (KNOWLEDGE.md section 1). Installed once into ~/.docker/cli-plugins; None where it cannot be had."""
    import hashlib
    import lzma
    import os
    import urllib.request
    plugin = Path.home() / ".docker" / "cli-plugins" / "docker-buildx"
    if plugin.is_file():
        return plugin
    if not shutil.which("dpkg-deb"):
        return None
    cache = cache_root() / "tools"
    cache.mkdir(parents=True, exist_ok=True)
    try:
        index = lzma.decompress(urllib.request.urlopen(SID_PACKAGES, timeout=60).read()).decode()
        entry = next(e for e in index.split("\n\n") if e.startswith("Package: docker-buildx\n"))
        fields = dict(line.split(": ", 1) for line in entry.splitlines() if ": " in line)
        deb = cache / Path(fields["Filename"]).name
        if not deb.is_file():
            data = urllib.request.urlopen(f"http://deb.debian.org/debian/{fields['Filename']}", timeout=300).read()
            if hashlib.sha256(data).hexdigest() != fields["SHA256"]:
                return None
            deb.write_bytes(data)
    except (OSError, StopIteration, KeyError):
        return None
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["dpkg-deb", "-x", str(deb), d], check=True)
        plugin.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(d) / "usr/libexec/docker/cli-plugins/docker-buildx", plugin)
    os.chmod(plugin, 0o755)
    return plugin


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextlib.contextmanager
def plain_docker_run(image: str):
    """`docker run` as a user runs the image: its own CMD, no envtool (host network: no bridge here)."""
    cid = subprocess.run(["docker", "run", "-d", "--network", "host", "--shm-size", "512m", image],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield cid
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def health(cid: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", cid], capture_output=True,
                          text=True).stdout.strip()
