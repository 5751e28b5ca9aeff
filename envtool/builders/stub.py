"""`envtool stub`: choose a builder, reuse the store, say which was chosen and why."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from envtool import catalog, facts
from envtool.builders import local, prebuilt
from envtool.builders.docker import stub_from_docker
from envtool.containers import engine
from envtool.errors import BadInput, EnvtoolError
from envtool.stub.store import StubArtifact, StubKey, default_root, lookup, publish, target_lock

BUILDERS = ("auto", "prebuilt", "local", "docker")


def produce(rel: catalog.Release, python: str, *, gpu: bool = False, builder: str = "auto",
            root: Path | None = None, sources: Path | None = None, rebuild: bool = False, log=lambda _m: None,
            tree: Path | None = None, base_image: str | None = None, pybind11: str | None = None,
            target: facts.Where = facts.IN_RELEASE) -> StubArtifact:
    """python: X.Y; target: where the stub will run (--target); image:NAME builds in that image (docker,
    unless --base-image) and checks against its glibc/GLIBCXX instead of the release's. The library's
    api.stub() resolves the names a user gives into these."""
    if builder not in BUILDERS:
        raise BadInput(f"--builder {builder} is not one of {', '.join(BUILDERS)}",
                       "use auto, prebuilt, local or docker")
    if pybind11 and builder == "prebuilt":
        raise BadInput(f"--pybind11 {pybind11} needs a source build: NVIDIA's prebuilt stubs carry the "
                       "release's own pybind11", "use --builder local or docker (or auto)")
    if target != "release":  # the stub must fit that image (or this host), not the release's own image
        where = target.target(rel)
        rel = rel.running_in(where.name, where.glibc, where.glibcxx)
        base_image = base_image or target.image
    target = StubKey(rel.release, python, gpu, pybind11=pybind11 or "", image=rel.runs_in)
    root = Path(root or default_root())
    root.mkdir(parents=True, exist_ok=True)
    with target_lock(root, target):  # a concurrent identical request waits here, then reuses
        hit = None if rebuild else lookup(root, target)
        if hit and builder in ("auto", hit.manifest.get("builder")):
            hit.manifest["chosen"] = f"store: {target.key} was built before ({hit.manifest['builder']})"
            log(hit.manifest["chosen"])
            return hit
        ways = WAYS if builder == "auto" else (builder,)
        if target.pybind11:
            ways = tuple(w for w in ways if w != "prebuilt")
        why_not: list[str] = []
        for way in ways:
            try:
                art = publish(root, target, lambda tmp, way=way: _build(way, rel, target, tmp, sources, base_image,
                                                                        tree, builder == "auto", log))
            except EnvtoolError as e:
                if builder != "auto":
                    raise
                why_not.append(f"{way}: {e.message}")
                log(f"{way}: not possible ({e.message})")
                continue
            art.manifest["chosen"] = f"{way}: " + "; ".join([*why_not, _chosen(way, art.manifest)])
            return art
        raise BadInput(f"no way to make the r{rel.release} stub for Python {target.python}: " + "; ".join(why_not),
                       f"pass --sources DIR (fetch it where GitHub is reachable: envtool stub --triton "
                       f"r{rel.release} --fetch-sources DIR), load the release's image into Docker (or pass "
                       "--base-image)" + (f", or use Python {' / '.join(rel.pytriton_stub_pythons)}"
                                          if rel.pytriton_stub_pythons else ""))


# --builder auto tries these in order (after the store); --builder X runs X alone.
WAYS = ("prebuilt", "docker", "local")


def _build(way: str, rel, target: StubKey, tmp: Path, sources, base_image, tree, auto: bool, log) -> dict:
    if way == "prebuilt":
        return prebuilt.build(rel, target, tmp, log)
    if way == "docker":
        if auto:
            engine.require_image(engine.client(), engine.release_image(rel, base_image), "base image", pull=False)
        return stub_from_docker(rel, target, tmp, sources, base_image, log)
    return local.build(rel, target, tmp, sources, log, tree)


def _chosen(way: str, manifest: dict) -> str:
    return {"prebuilt": "NVIDIA's stub from the release's nvidia-pytriton wheel",
            "docker": f"built in {manifest.get('base_image')}",
            "local": "built on this host, and it fits the release's container"}[way]


def produce_many(rel: catalog.Release, pythons: list[str], *, root: Path | None = None,
                 **kw) -> list[StubArtifact]:
    """One stub per Python; local builds share one build tree, so what does not depend on Python is
    configured and compiled once. The tree is removed at the end, whatever happens."""
    root = Path(root or default_root())
    root.mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix=".tree-", dir=root))
    try:
        return [produce(rel, py, root=root, tree=tree, **kw) for py in pythons]
    finally:
        shutil.rmtree(tree, ignore_errors=True)
