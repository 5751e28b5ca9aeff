"""`envtool image`: the serving image of an injected model repository, built FROM the release's tritonserver
image and verified as shipped (the built image itself serves, every model exercised, as `verify` does).

The repository goes to /models in four COPY layers, from the least to the most often changed: the execution
envs, the stubs, the models' large files (weights, checkpoints: 1 MiB and more) and the rest (configs, model.py).
Docker's layer cache keys a COPY on its sources' content, so a model.py change rebuilds only the last layer and
a pipeline pushes kilobytes, not the env or the weights.
The Dockerfile and a docker-bake.hcl target are written into the build context (--dockerfile-only stops
there), so BuildKit pipelines and remote builders build the same image.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version as dist_version
from pathlib import Path

from envtool import catalog, facts
from envtool.cache import file_sha256
from envtool.containers import engine
from envtool.errors import BadInput
from envtool.lockfile import lock_path
from envtool.names import STUB_NAME
from envtool.repo.model_repo import Repository, load_repository, require_servable
from envtool.verify import VerifyOptions, VerifyReport, verify

REPO_IN_IMAGE = "/models"
LAYERS = ("env", "stub", "data", "models")  # COPY order: least to most often changed
DATA_BYTES = 1 << 20  # a model folder's files from this size on (weights, checkpoints) go in the data layer
LOCK_NAME = "envtool.lock"
SKIP = {"__pycache__", LOCK_NAME, ".git"}
# Triton's HTTP readiness, asked without curl (the release images do not all have it): bash's /dev/tcp
HEALTH = ("exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET /v2/health/ready HTTP/1.0\\r\\n\\r\\n' >&3 "
          "&& head -n1 <&3 | grep -q ' 200 '")


@dataclass(frozen=True)
class ImageSpec:
    repo: Path
    triton: catalog.Release  # a name (r24.10) is resolved on construction
    tag: str
    base_image: str | None = None  # default: the release's tritonserver image (or --target image:NAME)
    target: facts.Where = facts.IN_RELEASE
    dockerfile_only: Path | None = None  # write the build context here and stop
    push: str | None = None
    verify: bool = True
    inputs: Path | None = None
    expect: Path | None = None
    timeout: float = 300.0

    def __post_init__(self):
        object.__setattr__(self, "triton", catalog.normalize_release(self.triton))
        object.__setattr__(self, "target", facts.Where(self.target))
        if not self.tag or any(c.isspace() for c in self.tag):
            raise BadInput(f"--tag {self.tag!r} is not an image name", "pass -t NAME[:TAG], e.g. -t pipeline:1")

    @property
    def base(self) -> str:
        return self.base_image or self.target.image or engine.release_image(self.triton)


@dataclass
class ImageResult:
    tag: str
    base_image: str
    labels: dict[str, str]
    context: str | None = None  # where the Dockerfile was written (--dockerfile-only)
    image_id: str | None = None
    layers: list[dict] = field(default_factory=list)  # {layer, bytes, reused}
    build_seconds: float | None = None
    verify: VerifyReport | None = None
    pushed: dict | None = None

    @property
    def ok(self) -> bool:
        return self.verify is None or self.verify.ok

    def to_dict(self) -> dict:
        return {**asdict(replace(self, verify=None)), "verify": self.verify.to_dict() if self.verify else None,
                "ok": self.ok}


def plan_layers(repo: Repository) -> dict[str, list[Path]]:
    """Each entry of the repository (relative path) in its layer; BadInput for what cannot ship: an env or a
    symlink that lies outside the repository (the image holds only the repository)."""
    root = repo.path.resolve()
    envs = set()
    for m in repo.python_models():
        env = m.existing_env()
        if env is None:
            continue
        if not _inside(env, root):
            raise BadInput(f"model {m.name}: its env {env} lies outside the repository {root}",
                           "inject the env into the repository (envtool build --repo, or envtool inject)")
        envs.add(env)
    out: dict[str, list[Path]] = {k: [] for k in LAYERS}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP)
        here = Path(dirpath)
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            if name in SKIP:
                continue
            path = here / name
            rel = path.relative_to(root)
            if path.is_symlink() and not _inside(path.resolve(), root):
                raise BadInput(f"{path} links to {os.readlink(path)}, outside the repository",
                               "replace the link with the file, or keep its target inside the repository")
            out[_layer(path, envs)].append(rel)
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    return out


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _layer(path: Path, envs: set[Path]) -> str:
    if not path.is_symlink() and any(path == e or e in path.parents for e in envs):
        return "env"
    if path.name.startswith(STUB_NAME) and not path.is_symlink():
        return "stub"
    if not path.is_symlink() and path.suffix != ".py" and path.stat().st_size >= DATA_BYTES:
        return "data"
    return "models"


def labels(spec: ImageSpec, repo: Repository) -> dict[str, str]:
    """OCI annotations and envtool's own: what the image serves, with what, from which lock."""
    from envtool.env.view import view_env
    stubs, envs, pythons = set(), set(), set()
    for m in repo.python_models():
        if m.stub is not None:
            stubs.add(file_sha256(m.stub))
        if (env := m.existing_env()) is not None:
            view = view_env(env)
            pythons.add(view.python or "?")
            envs.add(file_sha256(env) if env.is_file() else f"dir:{env.name}")
    lock = lock_path(repo.path)
    out = {"org.opencontainers.image.title": repo.path.resolve().name,
           "org.opencontainers.image.base.name": spec.base,
           "io.envtool.version": dist_version("envtool"),
           "io.envtool.triton.release": spec.triton.release,
           "io.envtool.repository": REPO_IN_IMAGE,
           "io.envtool.python": ",".join(sorted(pythons)),
           "io.envtool.stub.sha256": ",".join(sorted(stubs)),
           "io.envtool.env.sha256": ",".join(sorted(envs)),
           "io.envtool.lock.sha256": file_sha256(lock) if lock.is_file() else ""}
    return {k: v for k, v in out.items() if v}


def dockerfile(base: str, labels: dict[str, str]) -> str:
    label_lines = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    return f"""# Written by envtool {dist_version("envtool")} (`envtool image`): build with `docker build .` or
# `docker buildx bake -f docker-bake.hcl` in this folder. Layers go from the least to the most often changed:
# the execution envs, the stubs, the models' large files, then configs and code (a model.py change rebuilds
# only the last).
FROM {base}
COPY env/ {REPO_IN_IMAGE}/
COPY stub/ {REPO_IN_IMAGE}/
COPY data/ {REPO_IN_IMAGE}/
COPY models/ {REPO_IN_IMAGE}/
LABEL {label_lines}
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 CMD ["bash", "-c", {json.dumps(HEALTH)}]
CMD ["tritonserver", "--model-repository={REPO_IN_IMAGE}", "--strict-readiness=true"]
"""


def bake_file(tag: str) -> str:
    return f"""# Written by envtool: `docker buildx bake -f docker-bake.hcl` (add --push to push {tag})
target "serving" {{
  context    = "."
  dockerfile = "Dockerfile"
  tags       = [{json.dumps(tag)}]
}}

group "default" {{
  targets = ["serving"]
}}
"""


def stage(spec: ImageSpec, repo: Repository, dest: Path) -> dict[str, str]:
    """The build context in dest (which must not exist): the layer folders, Dockerfile, docker-bake.hcl.
    Files are hard links where the file system allows (an env is tens of MB), copies elsewhere."""
    layers = plan_layers(repo)
    meta = labels(spec, repo)
    dest.mkdir(parents=True)
    seen: dict[tuple[int, str], Path] = {}  # one inode per content: inject copies the stub into every model
    for layer, paths in layers.items():
        (dest / layer).mkdir()
        for rel in paths:
            _place(repo.path.resolve() / rel, dest / layer / rel, seen if layer != "models" else None)
    (dest / "Dockerfile").write_text(dockerfile(spec.base, meta))
    (dest / "docker-bake.hcl").write_text(bake_file(spec.tag))
    (dest / ".dockerignore").write_text("docker-bake.hcl\n")
    return meta


def _place(src: Path, dst: Path, seen: dict | None) -> None:
    """src at dst: a symlink as a symlink, a folder (a directory env) as hard links or copies, a file likewise, or
    as a hard link to an identical file staged before (the layer then stores it once: Docker keeps hard links)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        dst.symlink_to(os.readlink(src))
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    elif seen is None:
        _link_or_copy(src, dst)
    elif (key := (src.stat().st_size, file_sha256(src))) in seen:
        os.link(seen[key], dst)
    else:
        _link_or_copy(src, dst)
        seen[key] = dst  # each file is hashed once


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def image(spec: ImageSpec, log=lambda _m: None) -> ImageResult:
    repo = load_repository(spec.repo)
    require_servable(repo)
    if not repo.models:
        raise BadInput(f"model repository {repo.path} holds no model folder", "pass the folder that holds one "
                       "sub-folder per model")
    if spec.dockerfile_only is not None:
        return _write_context(spec, repo, log)
    cl = engine.client()
    engine.require_image(cl, spec.base, "base image")
    with tempfile.TemporaryDirectory(prefix="envtool-image-") as tmp:
        log("staging the build context (envs, stubs, models)")
        meta = stage(spec, repo, Path(tmp) / "context")
        before = engine.copy_layers(cl, spec.tag)
        t0 = time.monotonic()
        built = engine.build(cl, Path(tmp) / "context", dockerfile="Dockerfile", tag=spec.tag, log=log,
                             logname="docker-image")
    result = ImageResult(spec.tag, spec.base, meta, image_id=built.id,
                         build_seconds=round(time.monotonic() - t0, 2),
                         layers=_layers(engine.copy_layers(cl, built.id), before))
    if spec.verify:
        result.verify = _verify_shipped(spec, log)
    if spec.push and result.ok:
        log(f"pushing {spec.push}")
        result.pushed = engine.push(cl, built, spec.push, log)
    return result


def _write_context(spec: ImageSpec, repo: Repository, log) -> ImageResult:
    dest = spec.dockerfile_only
    if dest.exists() and any(dest.iterdir()):
        raise BadInput(f"--dockerfile-only {dest} exists and is not empty", "name a new folder, or remove it")
    tmp = Path(tempfile.mkdtemp(prefix=".envtool-image-", dir=dest.parent if dest.parent.is_dir() else None))
    try:
        meta = stage(spec, repo, tmp / "context")
        if dest.exists():
            dest.rmdir()
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / "context", dest)  # all or nothing: a half-written context is never left
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {dest / 'Dockerfile'} and {dest / 'docker-bake.hcl'}")
    return ImageResult(spec.tag, spec.base, meta, context=str(dest))


def _layers(after: list[dict], before: list[dict]) -> list[dict]:
    """Our COPY layers (the image's last COPY steps; the base image has its own), each with its size
    and whether the build reused the one the tag had (the classic builder's cache gives a reused step the same
    id)."""
    after, before = after[-len(LAYERS):], before[-len(LAYERS):]
    return [{"layer": name, "bytes": a["bytes"], "reused": i < len(before) and before[i]["id"] == a["id"]}
            for i, (name, a) in enumerate(zip(LAYERS, after))]


def _verify_shipped(spec: ImageSpec, log) -> VerifyReport:
    """The built image itself serves its /models, every model exercised (verify's report and lock: the lock
    records the image id)."""
    log(f"verifying {spec.tag} as shipped")
    report = verify(VerifyOptions(repo=spec.repo, release=spec.triton, server="docker", image=spec.tag,
                                  repo_in_image=REPO_IN_IMAGE, inputs=spec.inputs, expect=spec.expect,
                                  timeout=spec.timeout, reverify=True), log)
    return report
