"""`--builder docker`: build the stub or the env with Dockerfile.build inside the release's image (or
--base-image), then copy them out of a container into the caches with their manifests.

The build context is staged in a temp folder: envtool's own sources (pyproject.toml, README.md,
envtool/, Dockerfile.build) plus .envtool-inputs/ (the --sources checkouts, requirements.txt).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import envtool
from envtool.builders.local import pybind11_sources
from envtool.cache import file_sha256
from envtool.catalog import Release
from envtool.containers import engine
from envtool.elf import version_key
from envtool.errors import BadInput, CheckFailed
from envtool.stub.sources import cached_sources

PROJECT = Path(envtool.__file__).resolve().parent.parent
DOCKERFILE = "Dockerfile.build"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", "build", "*.egg-info")


def ca_bundle() -> Path | None:
    """The host's CA bundle, for pip and git inside the build behind a TLS-intercepting proxy."""
    for var in ("ENVTOOL_DOCKER_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if (value := os.environ.get(var)) and Path(value).is_file():
            return Path(value)
    return None


def stage_context(dest: Path, sources: Path | None = None, requirements: tuple[Path, ...] = (),
                  env_file: Path | None = None, pybind11: str | None = None, log=lambda _m: None) -> Path:
    if not (PROJECT / DOCKERFILE).is_file():
        raise BadInput(f"{DOCKERFILE} not found beside envtool ({PROJECT})",
                       "install envtool from its source tree (pip install -e .) to use --builder docker")
    for name in ("pyproject.toml", DOCKERFILE):
        shutil.copy2(PROJECT / name, dest / name)
    # pyproject.toml names a readme; the real one would make every README edit rebuild the image's deps layer
    (dest / "README.md").write_text("envtool, inside a build image: see the project's README.md\n")
    if ca := ca_bundle():
        shutil.copyfile(ca, dest / ".envtool-ca.pem")
    shutil.copytree(PROJECT / "envtool", dest / "envtool", ignore=IGNORE)
    inputs = dest / ".envtool-inputs"
    inputs.mkdir()
    if sources is not None:
        shutil.copytree(sources, inputs / "sources", symlinks=True, ignore=shutil.ignore_patterns(".git"))
    if env_file is not None:
        shutil.copy2(env_file, inputs / "environment.yml")
    if requirements:
        (inputs / "requirements.txt").write_text("".join(Path(r).read_text() + "\n" for r in requirements))
    if pybind11:  # a --pybind11 checkout travels in the context: the build needs no git access for it
        shutil.copytree(pybind11_sources(pybind11, log), inputs / "sources" / f"pybind11-{pybind11}",
                        symlinks=True, ignore=shutil.ignore_patterns(".git"))
    return dest


def build_artifacts(release: Release, python: str, only: str, *, base: str | None = None, gpu: bool = False,
                    sources: Path | None = None, requirements: tuple[Path, ...] = (), pip: tuple[str, ...] = (),
                    env_file: Path | None = None, pybind11: str = "", numpy2: bool = False,
                    keep_sources: bool = False, log=lambda _m: None) -> tuple[Path, dict]:
    """Runs Dockerfile.build's builder stage; returns (a temp folder holding /out, docker facts).
    The caller removes the folder."""
    cl = engine.client()
    image = engine.release_image(release, base)
    base_img = engine.require_image(cl, image, "base image")
    if not release.runs_in:  # built for its own image: the container is the target (TARGET=host inside)
        require_release_glibc(image, release)
    if only == "stub" and sources is None:  # after the cheap checks: a fetch takes a while
        sources = cached_sources(release, log)
    work = Path(tempfile.mkdtemp(prefix="envtool-docker-"))
    try:
        (work / "context").mkdir()
        ctx = stage_context(work / "context", sources, requirements, env_file, pybind11=pybind11, log=log)
        tag = f"envtool/{only}:r{release.release}-py{python}"
        log(f"docker build {DOCKERFILE} on {image} (classic builder)")
        built = engine.build(cl, ctx, dockerfile=DOCKERFILE, tag=tag, target="builder", log=log,
                             logname=f"docker-{only}-r{release.release}-py{python}",
                             buildargs={"TRITON": release.release, "PYTHON": python, "BASE_IMAGE": image,
                                        "ONLY": only, "GPU": "1" if gpu else "0", "REQUIREMENTS": " ".join(pip),
                                        "PYBIND11": pybind11, "NUMPY2": "1" if numpy2 else "0",
                                        "KEEP_SOURCES": "1" if keep_sources else "0",
                                        "TARGET": "host" if release.runs_in else "release"})
        log("copying the artifacts out of a container")
        out = engine.copy_out(cl, built.id, "/out", work / "out")
        facts = {"builder": "docker", "base_image": image, "base_image_id": base_img.id,
                 "base_image_digests": base_img.attrs.get("RepoDigests") or [], "artifacts_image": tag,
                 "artifacts_image_id": built.id}
        return out, facts
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def require_release_glibc(image: str, release: Release) -> None:
    """What an image newer than the release's builds needs that newer glibc (failure mode 5): refuse it
    before building, rather than build for minutes and refuse the result."""
    glibc, _ = engine.runtime_versions(image)
    if glibc and version_key(glibc) > version_key(release.glibc):
        raise BadInput(f"base image {image} has glibc {glibc}, newer than r{release.release}'s {release.glibc} "
                       f"({release.system}): what it builds would not run in the release's container",
                       f"use the release's own image, or any with glibc <= {release.glibc} (Ubuntu "
                       f"{release.ubuntu}, or a Debian suite as old); or, to serve from this image itself, "
                       f"--target image:{image}")


def stub_from_docker(release: Release, target, tmp: Path, sources: Path | None, base: str | None, log) -> dict:
    """For the stub store's publish(): the stub built in the container, moved into tmp. The sources are
    fetched on the host (into the cache, once per release), so the image needs no git access."""
    out, facts = build_artifacts(release, target.python, "stub", base=base, gpu=target.gpu, sources=sources,
                                 pybind11=target.pybind11, log=log)
    try:
        made = json.loads((out / "stub.json").read_text())
        folder = out / "stubs" / Path(made["stub"]).parent.name
        if not (folder / "manifest.json").is_file():
            raise CheckFailed("the container built no stub", "see the docker build log")
        for item in folder.iterdir():
            if item.name != "manifest.json":
                shutil.move(str(item), tmp / item.name)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest.update({"built_with": manifest.get("builder"), **facts})
        return manifest
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def env_key(spec, release: Release) -> str:
    """The env cache key of a docker pack: its inputs and the base image's id."""
    base = spec.base_image or spec.target.image
    image = engine.require_image(engine.client(), engine.release_image(release, base), "base image")
    inputs = {**({"target": spec.target} if spec.target != "release" else {}),
              "builder": "docker", "image_id": image.id, "python": spec.python, "pip": list(spec.pip),
              "numpy2": spec.numpy2, **({"keep_sources": True} if spec.keep_sources else {}),
              "requirements": [file_sha256(r) for r in spec.requirements], "release": release.release,
              "env_file": file_sha256(spec.env_file) if spec.env_file else None, "envtool": _envtool_hash()}
    return "docker-" + hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]


def _envtool_hash() -> str:
    """envtool's own sources go into the image, so they are part of the key."""
    h = hashlib.sha256()
    for f in sorted((PROJECT / "envtool").rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(f.relative_to(PROJECT).as_posix().encode() + file_sha256(f).encode())
    return h.hexdigest()


def env_from_docker(spec, release: Release, tmp: Path, log) -> None:
    """For the env cache's publish_dir(): the env packed in the container, its manifest + docker facts."""
    base = spec.base_image
    if image := spec.target.image:  # for the user's own image: packed and judged in it
        release, base = release.running_in(f"image {image}", None, None), base or image
    out, facts = build_artifacts(release, spec.python or "conda", "env", base=base,
                                 requirements=spec.requirements, pip=spec.pip, env_file=spec.env_file,
                                 numpy2=spec.numpy2, keep_sources=spec.keep_sources, log=log)
    try:
        shutil.move(str(out / "envs" / "custom_env.tar.gz"), tmp / "custom_env.tar.gz")
        manifest = json.loads((out / "envs" / "custom_env.manifest.json").read_text())
        manifest.update({"built_with": "envtool pack (in the container)", **facts})
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
