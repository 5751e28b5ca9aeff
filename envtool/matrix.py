"""`envtool matrix`: (Triton release x Python) cells, each made as `build` makes it, checked against its
release's facts, and with `verify` served on that release's server. A cell that cannot exist says why."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from envtool import catalog, compat, facts
from envtool.builders.stub import produce
from envtool.errors import BadInput, EnvtoolError
from envtool.stub.store import StubArtifact, default_root


@dataclass
class Cell:
    release: str  # "24.10"
    python: str
    made: str | None = None  # how the stub was made (store, prebuilt, local, docker) and why
    elf: str = "-"  # "fits" | "no: <the rule's message>" | "-" (no stub)
    served: str = "-"  # "yes" | "no: <why>" | "not available here: <why>" | "-" (not asked)
    why: str | None = None  # why the cell cannot exist, in words a user can act on
    error: str | None = None  # why making it failed here (no stub could be made)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.why:
            return "impossible"
        if self.error:
            return "failed"
        if self.served == "yes":
            return "served"
        if self.served.startswith("no"):
            return "serve failed"
        return "ELF-checked" if self.elf == "fits" else "ELF misfit"

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status}


def impossible(rel: catalog.Release, python: str, pybind11: str | None = None) -> str | None:
    """Why no working (stub, env) pair exists for this cell, from the release's and Python's facts; with a
    pybind11 override, only what that cannot change."""
    py = catalog.python_facts()
    if python in py["prerelease"]:
        return f"Python {python} is a pre-release: no release's python_backend is built or tested for it"
    if pybind11:
        return None if facts.pybind11_reads_numpy2(pybind11) or \
            python in py["numpy1_pythons"] else (f"pybind11 {pybind11} misreads numpy 2 arrays, and numpy 1.x "
                                                    f"has no build for Python {python}: use pybind11 >= v2.12")
    if not rel.numpy2 and python not in py["numpy1_pythons"]:
        return (f"r{rel.release}'s stub (pybind11 {rel.recipe.pybind11_version}) misreads numpy 2 arrays, and "
                f"numpy 1.x has no build for Python {python}: use Python {py['numpy1_pythons'][-1]} or older, "
                f"or r24.11+ (pybind11 2.12, numpy 2), or --pybind11 v3.0.1 with a server image of your own that "
                f"has Python {python} (--target image:NAME)")
    if why := compat.pybind11_misfit(rel, python):
        return f"{why}: use Python {rel.recipe.pybind11_pythons[-1]} or older, a release with a newer pybind11, " \
               "or --pybind11 v3.0.1"
    return None



def plan(releases: list[catalog.Release], pythons: list[str], pybind11: str | None = None) -> list[Cell]:
    cells = []
    for rel in releases:
        for py in pythons:
            cells.append(Cell(rel.release, py, why=impossible(rel, py, pybind11)))
    return cells


def make_stub(cell: Cell, *, builder: str, root: Path, tree: Path, sources: Path | None, log,
              pybind11: str | None = None, base_image: str | None = None,
              target: facts.Where = facts.IN_RELEASE) -> StubArtifact | None:
    """The cell's stub as `build` makes it (store first), and its ELF facts against where it will run (the
    release's image, or --target's)."""
    rel = catalog.by_name(cell.release)
    try:
        art = produce(rel, cell.python, builder=builder, root=root, tree=tree, sources=sources, log=log,
                      pybind11=pybind11, base_image=base_image, target=target)
    except EnvtoolError as e:
        cell.error = f"no stub: {e.message}" + (f" (fix: {e.fix})" if e.fix else "")
        return None
    cell.made = art.manifest.get("chosen") or art.manifest.get("builder")
    found = compat.check(facts.Stub.from_manifest(art.manifest, art.path), None, target.target(rel))
    errors = [f for f in found if f.severity == "error"]
    cell.elf = "fits" if not errors else f"no: {errors[0].message}"
    return art


def run(releases: list[catalog.Release], pythons: list[str], *, repo: Path | None = None, verify: bool = False,
        builder: str = "auto", sources: Path | None = None, stubs_root: Path | None = None,
        pybind11: str | None = None, base_images: dict[str, str] | None = None,
        target: facts.Where = facts.IN_RELEASE, log=lambda _m: None) -> list[Cell]:
    """Every cell: planned, its stub made and ELF-checked, and served where asked and possible here.
    base_images: release ("22.11") -> the image the docker builder uses for it (a stand-in, a mirror).
    target image:NAME: cells for the user's own server image, made in it and served there (docker)."""
    if repo is not None and not Path(repo).is_dir():
        raise BadInput(f"--repo {repo} is not a directory", "pass a model repository")
    cells = plan(releases, pythons, pybind11)
    root = Path(stubs_root or default_root())
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="envtool-matrix-"))
    try:
        envs: dict[str, object] = {}
        for rel_name in dict.fromkeys(c.release for c in cells):
            tree = work / f"tree-{rel_name}"  # the Pythons of one release share one build tree
            for cell in (c for c in cells if c.release == rel_name and not c.why):
                t0 = time.monotonic()
                log(f"r{cell.release} x {cell.python}: stub…")
                art = make_stub(cell, builder=builder, root=root, tree=tree, sources=sources, log=log,
                                pybind11=pybind11, base_image=(base_images or {}).get(cell.release), target=target)
                if art is not None and verify:
                    cell.served = serve(cell, art, repo, envs, work, log, target)
                cell.seconds = round(time.monotonic() - t0, 1)
            shutil.rmtree(tree, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return cells


def serve(cell: Cell, art: StubArtifact, repo: Path | None, envs: dict, work: Path, log,
          target: facts.Where = facts.IN_RELEASE) -> str:
    """Inject the cell's stub and an env of its Python into a copy of the model set; verify on the release's
    embedded server (or, for --target image:NAME, in that image with docker). The env (numpy < 2 where the
    release needs it) is made once per Python and flavour."""
    from envtool.builders.env import PackSpec, pack
    from envtool.env.interpreters import find_interpreter
    from envtool.inject import InjectOptions, inject
    from envtool.verify import VerifyOptions, verify
    rel = catalog.by_name(cell.release)
    image = target.image
    where = {"target": target, "builder": "docker"} if image else {"target": "host"}
    if not image and not rel.embedded_available:
        return "not available here: no nvidia-pytriton wheel bundles this release's server"
    try:
        if not image:  # in an image, the env's Python is the image's
            find_interpreter(cell.python)
    except EnvtoolError as e:
        return f"not available here: {e.message}"
    numpy2 = rel.numpy2 or facts.reads_numpy2(art.manifest)  # numpy follows the stub's pybind11
    key = (cell.python, numpy2)
    try:
        if key not in envs:
            log(f"env for Python {cell.python} (numpy {'2' if numpy2 else '< 2'})…")
            envs[key] = pack(PackSpec(python=cell.python, triton=rel, numpy2=numpy2, **where),
                             work / f"env-{cell.python}-{int(numpy2)}.tar.gz", log)
        copy = work / f"repo-{cell.release}-{cell.python}"
        shutil.copytree(repo or default_models(work), copy, symlinks=True)
        inject(InjectOptions(repo=copy, stub=art.path, env=envs[key].output, target=where["target"], strict=True))
        server = {"server": "docker", "image": image} if image else {}
        report = verify(VerifyOptions(repo=copy, release=rel, lock=False, timeout=300, **server), log)
    except EnvtoolError as e:
        return f"no: {e.message}"
    finally:
        shutil.rmtree(work / f"repo-{cell.release}-{cell.python}", ignore_errors=True)
    return "yes" if report.ok else f"no: {report.problems[0].message}"


ADD_SUB_PY = '''import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1 (python_backend's add_sub, in our words)."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.dtype = pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(config, "OUTPUT0")["data_type"])

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            out = [pb_utils.Tensor("OUTPUT0", (a + b).astype(self.dtype)),
                   pb_utils.Tensor("OUTPUT1", (a - b).astype(self.dtype))]
            responses.append(pb_utils.InferenceResponse(out))
        return responses
'''
ADD_SUB_CONFIG = '''name: "add_sub"
backend: "python"
max_batch_size: 0
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''


def default_models(work: Path) -> Path:
    """The matrix's default model set: one python model (add_sub)."""
    repo = work / "models"
    if not repo.is_dir():
        (repo / "add_sub" / "1").mkdir(parents=True)
        (repo / "add_sub" / "config.pbtxt").write_text(ADD_SUB_CONFIG)
        (repo / "add_sub" / "1" / "model.py").write_text(ADD_SUB_PY)
    return repo


def summary(cells: list[Cell]) -> str:
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    return f"{len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda x: -x[1]))
