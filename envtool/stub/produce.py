"""`envtool stub`: choose a builder, reuse the store, say which was chosen and why."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from envtool import catalog
from envtool.errors import BadInput
from envtool.stub import local, prebuilt
from envtool.stub.store import StubArtifact, Target, default_root, lookup, publish, target_lock

BUILDERS = ("auto", "prebuilt", "local", "docker")


def produce(release: str, python: str, *, gpu: bool = False, builder: str = "auto", root: Path | None = None,
            sources: Path | None = None, rebuild: bool = False, log=lambda _m: None,
            tree: Path | None = None, base_image: str | None = None) -> StubArtifact:
    if builder not in BUILDERS:
        raise BadInput(f"--builder {builder} is not one of {', '.join(BUILDERS)}",
                       "use auto, prebuilt, local or docker")
    rel = catalog.normalize_release(release)
    target = Target(rel.release, catalog.normalize_python(python), gpu)
    root = Path(root or default_root())
    root.mkdir(parents=True, exist_ok=True)
    with target_lock(root, target):  # a concurrent identical request waits here, then reuses
        hit = None if rebuild else lookup(root, target)
        if hit and builder in ("auto", hit.manifest.get("builder")):
            hit.manifest["chosen"] = f"store: {target.key} was built before ({hit.manifest['builder']})"
            log(hit.manifest["chosen"])
            return hit
        if builder == "docker":
            from envtool.containers.artifacts import stub_from_docker
            art = publish(root, target, lambda tmp: stub_from_docker(rel, target, tmp, sources, base_image, log))
            art.manifest["chosen"] = f"docker: built in {art.manifest['base_image']}"
            return art
        if builder in ("auto", "prebuilt"):
            try:
                art = publish(root, target, lambda tmp: prebuilt.build(rel, target, tmp, log))
                art.manifest["chosen"] = "prebuilt: NVIDIA's stub from the release's nvidia-pytriton wheel"
                return art
            except prebuilt.NotInWheel as e:
                if builder == "prebuilt":
                    raise
                log(f"no prebuilt stub ({e.message}): building from source")
                why = f"local: {e.message}"
        else:
            why = "local: asked for"
        art = publish(root, target, lambda tmp: local.build(rel, target, tmp, sources, log, tree))
        art.manifest["chosen"] = why
        return art


def produce_many(release: str, pythons: list[str], *, root: Path | None = None, **kw) -> list[StubArtifact]:
    """One stub per Python; local builds share one build tree, so what does not depend on Python is
    configured and compiled once. The tree is removed at the end, whatever happens."""
    root = Path(root or default_root())
    root.mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix=".tree-", dir=root))
    try:
        return [produce(release, py, root=root, tree=tree, **kw) for py in pythons]
    finally:
        shutil.rmtree(tree, ignore_errors=True)
