"""The Docker engine through the docker SDK, behind a few verbs (as cibuildwheel's oci_container.py
hides docker/podman): connect, find an image, build with a streamed log, copy files out, run.

Every failure is one EnvtoolError naming the alternatives; containers made here are removed on every
exit path.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envtool.cache import cache_root
from envtool.elf import elf_from_bytes
from envtool.errors import BadInput, CheckFailed


def client():
    """A connected docker client (DOCKER_HOST or the default socket), or one line saying why not."""
    import docker
    from docker.errors import DockerException
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        cl = docker.from_env(timeout=600)
        cl.ping()
    except DockerException as e:
        raise BadInput(f"no Docker daemon answers at {where} ({_short(e)})",
                       "start dockerd or set DOCKER_HOST; or use --builder prebuilt/local, --server embedded/local"
                       ) from None
    return cl


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def require_image(cl, name: str, what: str = "image", pull: bool = True):
    """The image, from the local store or (with pull) pulled; else one line with the alternatives."""
    from docker.errors import APIError, ImageNotFound
    try:
        return cl.images.get(name)
    except ImageNotFound:
        if not pull:  # auto never starts a multi-GB pull by itself
            raise BadInput(f"{what} {name} is not on this machine",
                           f"docker pull {name}, or pass --base-image with a local image") from None
    try:
        return cl.images.pull(name)
    except APIError as e:
        raise BadInput(f"{what} {name} is not on this machine and cannot be pulled ({_short(e)})",
                       f"docker pull {name} where the registry is reachable, or pass --base-image/--image "
                       "with a local image") from None


def release_image(release, given: str | None = None) -> str:
    """The image asked for, else the release's NGC tritonserver image from the catalog (<yy.mm>-py3)."""
    return given or release.images.get("py3") or f"nvcr.io/nvidia/tritonserver:{release.release}-py3"


def image_facts(image) -> dict:
    return {"image_id": image.id, "repo_digests": image.attrs.get("RepoDigests") or [],
            "tags": image.tags}


def build(cl, context: Path, *, dockerfile: str, tag: str, target: str | None = None,
          buildargs: dict[str, str] | None = None, log=lambda _m: None, logname: str = "docker-build"):
    """docker build (classic builder: no BuildKit here), host network for apt/pip; the full log goes to
    a file that is named on error."""
    logfile = cache_root() / "logs" / f"{logname}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    replaced = _image_id(cl, tag)
    with logfile.open("w") as f:
        stream = cl.api.build(path=str(context), dockerfile=dockerfile, tag=tag, target=target,
                              buildargs=buildargs or {}, network_mode="host", rm=True, forcerm=True, decode=True)
        try:
            image_id = _follow(stream, f, logfile, log)
        except BaseException:
            # Ctrl-C/SIGTERM or a failed step: hang up, so the daemon cancels the build and (forcerm) removes
            # the step's container; nothing is tagged.
            cl.close()
            raise
    logfile.unlink()
    built = cl.images.get(image_id or tag)
    if replaced and replaced != built.id:
        _drop_untagged(cl, replaced)
    return built


def _image_id(cl, tag: str) -> str | None:
    from docker.errors import ImageNotFound
    try:
        return cl.images.get(tag).id
    except ImageNotFound:
        return None


def _drop_untagged(cl, image_id: str) -> None:
    """The image a rebuild took the tag from: left alone, every rebuild would keep ~1.3 GB of it. Docker
    refuses while a container, another tag or a child image still uses it, and then it stays."""
    from docker.errors import APIError
    try:
        if not cl.images.get(image_id).tags:
            cl.images.remove(image_id)
    except APIError:
        pass


def _follow(stream, f, logfile: Path, log) -> str | None:
    """Write the build's stream to f, show its Step lines, raise on its error; returns the image id."""
    image_id, tail = None, []
    for chunk in stream:
        if "error" in chunk:
            f.write(chunk["error"] + "\n")
            tail.append(chunk["error"].strip())
            said = [ln for ln in map(_plain, tail) if ln.startswith("envtool: ")]
            if said:  # artifacts.sh named the cause (a missing package, no network): bad input, not a bug
                raise BadInput(said[-1][len("envtool: "):], f"full build log: {logfile}")
            raise CheckFailed(f"docker build failed: {' | '.join(tail[-3:])[:600]}",
                              f"full build log: {logfile}")
        text = chunk.get("stream", "")
        if text:
            f.write(text)
            f.flush()
            for line in text.splitlines():
                if line.strip():
                    tail = [*tail[-20:], line.strip()]
                if line.startswith("Step "):
                    log(line.strip()[:120])
        if aux := chunk.get("aux"):
            image_id = aux.get("ID", image_id)
    return image_id


def _plain(line: str) -> str:
    """A build log line without the colour codes the classic builder puts around stderr."""
    return re.sub(r"\x1b\[[0-9;]*m", "", line).strip()


@contextmanager
def created(cl, image: str, **kw) -> Iterator:
    """A created (not started) container, removed afterwards whatever happens."""
    container = cl.containers.create(image, **kw)
    try:
        yield container
    finally:
        container.remove(force=True)


def copy_out(cl, image: str, path: str, dest: Path) -> Path:
    """Copy path (a folder) out of a fresh container of image into dest (its contents)."""
    with created(cl, image, command=["true"]) as c:
        bits, _ = c.get_archive(path)
        data = io.BytesIO(b"".join(bits))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=data) as tar:
        top = Path(path.rstrip("/")).name
        for m in tar.getmembers():
            rel = Path(m.name)
            if rel.parts and rel.parts[0] == top:
                rel = Path(*rel.parts[1:]) if len(rel.parts) > 1 else Path(".")
            if ".." in rel.parts or rel.is_absolute():
                raise CheckFailed(f"refusing {m.name} from the container (escapes {path})")
            m.name = str(rel)
            tar.extract(m, dest, set_attrs=True)
    return dest


RUNTIME_PROBE = (
    "ldd --version 2>&1 | head -n1; "
    'for f in /usr/lib/*/libstdc++.so.6 /usr/lib64/libstdc++.so.6 /usr/lib/libstdc++.so.6; do '
    '[ -e "$f" ] && readlink -f "$f" && break; done'
)


def runtime_versions(image: str) -> tuple[str | None, str | None]:
    """(glibc, newest GLIBCXX) of an image: `ldd --version` run inside it, and the version definitions of
    its libstdc++.so.6 copied out and read with pyelftools. Read once per image id: one `--target image:`
    run asks for them from the stub, the env, the preflight and inject."""
    cl = client()
    image_id = require_image(cl, image, "image").id
    if image_id not in _RUNTIME:
        _RUNTIME[image_id] = _read_runtime(cl, image_id)
    return _RUNTIME[image_id]


_RUNTIME: dict[str, tuple[str | None, str | None]] = {}


def _read_runtime(cl, image: str) -> tuple[str | None, str | None]:
    out = cl.containers.run(image, ["sh", "-c", RUNTIME_PROBE], remove=True, entrypoint=[]).decode()
    lines = out.strip().splitlines()
    glibc = m.group(1) if lines and (m := re.search(r"(\d+\.\d+)\s*$", lines[0])) else None
    glibcxx = None
    if len(lines) > 1 and lines[1].startswith("/"):
        with created(cl, image, command=["true"], entrypoint=[]) as c:
            bits, _ = c.get_archive(lines[1])
            with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
                member = tar.next()
                facts = elf_from_bytes(tar.extractfile(member).read(), lines[1]) if member else None
        glibcxx = facts.defines.get("GLIBCXX") if facts else None
    return glibc, glibcxx


def copy_layers(cl, image: str) -> list[dict]:
    """The image's COPY steps, oldest first: {id, bytes} (id is the classic builder's step image, the same when
    a rebuild reused the step from its cache); [] when there is no such image."""
    from docker.errors import ImageNotFound
    try:
        history = cl.images.get(image).history()
    except ImageNotFound:
        return []
    return [{"id": h.get("Id"), "bytes": h.get("Size", 0)} for h in reversed(history)
            if " COPY " in f" {h.get('CreatedBy', '')} "]


def push(cl, image, ref: str, log=lambda _m: None) -> dict:
    """Tag image as ref and push it; {ref, digest}. A registry's refusal is one BadInput line."""
    from docker.utils import parse_repository_tag
    repository, tag = parse_repository_tag(ref)
    image.tag(repository, tag or "latest")
    digest = None
    for line in cl.images.push(repository, tag=tag or "latest", stream=True, decode=True):
        if "error" in line:
            raise BadInput(f"docker push {ref}: {_plain(line['error'])}",
                           "check the registry's address and `docker login` to it")
        if "status" in line and "id" not in line:
            log(_plain(line["status"]))
        digest = (line.get("aux") or {}).get("Digest") or digest
    return {"ref": ref, "digest": digest}
