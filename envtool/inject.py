"""Place a stub and an execution environment into python models and point their configs at them.

Sharing: Triton extracts a tarball env once per canonical path (+ mtime). The env is stored once,
in the first selected model's folder; every other model gets a relative symlink to it, so all
their `$$TRITON_MODEL_DIRECTORY/<env>` values resolve to one canonical file and one extraction.
`share=False` copies it into every model instead (for repositories synced to object stores,
which do not keep symlinks).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from envtool import compat, facts
from envtool.atomic import same_content
from envtool.catalog import by_name
from envtool.elf import require_executable
from envtool.env.view import view_env
from envtool.errors import BadInput
from envtool.findings import Finding
from envtool.launcher import ELF_NAME, LAUNCHER, real_stub
from envtool.lockfile import stub_release
from envtool.repo.edit import FileChange, plan_config_edit
from envtool.repo.env_rules import env_file_findings
from envtool.repo.model_repo import (
    ENV_KEY,
    FORCE_CPU_KEY,
    MODEL_DIR_VAR,
    STUB_NAME,
    Model,
    Repository,
    load_repository,
)
from envtool.signals import deferred_signals
from envtool.stub.store import stub_manifest
from envtool.transaction import Transaction, recover

MINIMAL_CONFIG = 'backend: "python"\n'  # what a model Triton auto-completes gets, plus the parameters


@dataclass(frozen=True)
class InjectOptions:
    repo: Path
    stub: Path
    env: Path
    models: tuple[str, ...] = ()  # empty: python models an ensemble uses, else all python models
    gpu: bool = False
    deployment: str | None = None  # cpu | gpu-models | gpu-all (the article's three), overrides gpu
    share: bool = True
    dry_run: bool = False
    force: bool = False  # skip the stub/env pair check (to reproduce a failure on purpose)
    target: facts.Where = facts.IN_RELEASE  # where they will run: the stub's release's image (where known) | host
    strict: bool = False  # a model that cannot be injected stops the whole run (else: the others go ahead)
    launcher: bool = True  # the stub behind envtool's launcher (launcher.py); False: the bare stub

    def __post_init__(self):
        object.__setattr__(self, "target", facts.Where(self.target))


@dataclass
class Placement:
    """One file or folder to put in place: a copy of source, or a symlink to link_to."""

    dest: Path
    source: Path | None = None
    link_to: str | None = None

    def up_to_date(self) -> bool:
        d = self.dest
        if self.link_to is not None:
            return d.is_symlink() and os.readlink(d) == self.link_to
        return same_content(self.source, d)

    def describe(self) -> str:
        if self.link_to is not None:
            return f"link {self.dest} -> {self.link_to}"
        return f"copy {self.source} -> {self.dest}"


@dataclass
class InjectResult:
    models: list[str]
    configs: list[FileChange] = field(default_factory=list)
    files: list[Placement] = field(default_factory=list)
    dry_run: bool = False
    repo: Path | None = None  # diffs are relative to it
    warnings: list[str] = field(default_factory=list)  # the user's explicit settings this run overrides
    errors: list[Finding] = field(default_factory=list)  # models left out, each with its file and fix

    @property
    def changed(self) -> bool:
        return bool(self.files) or any(c.changed for c in self.configs)

    def to_dict(self) -> dict:
        return {
            "models": self.models, "dry_run": self.dry_run, "changed": self.changed, "warnings": self.warnings,
            "errors": [e.to_dict() for e in self.errors],
            "files": [p.describe() for p in self.files],
            "configs": [{"path": str(c.path), "changed": c.changed, "diff": c.diff(self.repo)}
                        for c in self.configs],
        }


def model_error(m: Model, message: str, fix: str | None, where: str | None = None) -> Finding:
    return Finding("inject-model", "error", m.name, f"model {m.name}: {message}", fix=fix,
                   where=where or str(m.config_path))


def default_models(repo: Repository) -> tuple[list[Model], list[Finding]]:
    """The python models an ensemble uses, else every python model. A config.pbtxt that does not parse
    is an error, never skipped in silence: nobody can tell whether it was meant to be a target."""
    errors = [model_error(m, m.error.message, m.error.fix, m.error.where)
              for m in sorted(repo.models.values(), key=lambda m: m.name) if m.error is not None]
    ensembles = repo.ensembles()
    if not ensembles:
        return repo.python_models(), errors
    used = {n for e in ensembles for n in repo.ensemble_members(e)}
    return [m for m in repo.python_models() if m.name in used], errors


def select_models(repo: Repository, names: tuple[str, ...]) -> tuple[list[Model], list[Finding]]:
    """The target models, and the per-model errors of those that cannot be targets."""
    if not names:
        chosen, errors = default_models(repo)
        if not chosen and not errors:
            raise BadInput(f"{repo.path} has no python model to inject into",
                           'a python model has backend: "python" in config.pbtxt, or <model>/1/model.py')
        return chosen, errors
    out, errors = [], []
    for n in names:
        m = repo.models.get(n)
        if m is None:
            raise BadInput(f"no model {n!r} in {repo.path}",
                           f"choose from {', '.join(repo.models) or '(none)'}")
        if m.error is not None:
            errors.append(model_error(m, m.error.message, m.error.fix, m.error.where))
        elif not m.is_python:
            errors.append(model_error(m, f"is not a python model (backend {m.autofilled()[0]!r})",
                                      "only python-backend models take a stub and an env"))
        else:
            out.append(m)
    return out, errors


def check_env(env: Path) -> None:
    """The env file's rules (repo/env_rules.py, as lint applies them): an error is bad input here."""
    if errors := [f for f in env_file_findings(env) if f.severity == "error"]:
        raise BadInput(errors[0].message, errors[0].fix)


def _require_pair(stub: Path, env: Path, target: facts.Where) -> None:
    """build's preflight for a pair put together by hand (compat's rules): the release, and with it the
    release's image, is known when the stub came from the stub store or envtool.lock."""
    made_for = stub_release(stub)
    rel = by_name(made_for) if made_for else None
    where = target.target(rel)
    side = facts.Stub.from_elf(stub, made_for)
    if (m := stub_manifest(stub)) and facts.reads_numpy2(m):  # a --pybind11 >= v2.12 stub reads numpy 2
        side = replace(side, numpy2=True)
    compat.require(side, facts.Env.from_view(view_env(env)).pair(), where)


def plan(opts: InjectOptions) -> InjectResult:
    repo = load_repository(opts.repo)
    stub = real_stub(opts.stub)  # another model folder's stub: the ELF behind its launcher
    elf = require_executable(stub)
    if not any(n.startswith("libpython3") for n in elf.needed):
        raise BadInput(f"stub {opts.stub} links no libpython: it is not a triton_python_backend_stub",
                       "pass the stub built for your Python (`envtool stub`)")
    env = opts.env.resolve()
    check_env(env)
    if not opts.force:
        _require_pair(stub, env, opts.target)
    models, errors = select_models(repo, opts.models)
    result = InjectResult([], dry_run=opts.dry_run, repo=repo.path, errors=errors)
    env_name = env.name
    home: Path | None = None
    edges = edge_models(repo)
    for m in models:
        kind, force_cpu = placement(opts, m.name in edges)
        params = {ENV_KEY: f"{MODEL_DIR_VAR}/{env_name}", FORCE_CPU_KEY: force_cpu}
        try:
            change = plan_config_edit(m.config_path, params, kind, create=MINIMAL_CONFIG)
        except BadInput as e:  # this model only: named with its file
            result.errors.append(model_error(m, e.message, e.fix, e.where))
            continue
        result.models.append(m.name)
        result.configs.append(change)
        dest = m.path / env_name
        if home is None or not opts.share:
            home = home or dest
            env_place = Placement(dest, source=env)
        else:
            env_place = Placement(dest, link_to=os.path.relpath(home, m.path))
        stub_files = ([Placement(m.path / STUB_NAME, source=LAUNCHER), Placement(m.path / ELF_NAME,
                                                                                  source=stub.resolve())]
                      if opts.launcher else [Placement(m.path / STUB_NAME, source=stub.resolve())])
        stub_files += [Placement(m.path / lib.name, source=lib) for lib in stub_libraries(stub, elf)]
        for p in (*stub_files, env_place):
            if not _same(p) and not p.up_to_date():
                result.files.append(p)
        result.warnings += overrides(m, kind, force_cpu)
    _refuse_on_errors(result, opts.strict)
    return result


def _refuse_on_errors(result: InjectResult, strict: bool) -> None:
    """With --strict, or with no model left to inject, a per-model error stops the run before any change."""
    if result.errors and (strict or not result.models):
        e = result.errors[0]
        more = f" (and {len(result.errors) - 1} more model(s))" if len(result.errors) > 1 else ""
        fix = e.fix or ""
        if strict and result.models:
            fix += ("; " if fix else "") + "without --strict the other models are injected"
        raise BadInput(e.message + more, fix or None, where=e.where)


def overrides(m: Model, kind: str, force_cpu: str) -> list[str]:
    """Explicit settings of the user's config that this injection changes: said, never silent."""
    out = []
    old = m.parameter(FORCE_CPU_KEY)
    if old is not None and old != force_cpu:
        out.append(f'model {m.name}: {FORCE_CPU_KEY} "{old}" becomes "{force_cpu}" (--gpu, or --deployment '
                   "gpu-all, keeps GPU tensors)")
    groups = m.config.instance_group if m.config is not None else []
    kinds = {type(g).Kind.Name(g.kind) for g in groups if g.kind != type(g).Kind.KIND_AUTO}  # set by the user
    if kinds - {kind}:
        out.append(f"model {m.name}: instance_group kind {', '.join(sorted(kinds))} becomes {kind} "
                   "(--gpu or --deployment to choose)")
    return out


DEPLOYMENTS = ("cpu", "gpu-models", "gpu-all")


def placement(opts: InjectOptions, edge: bool) -> tuple[str, str]:
    """(instance kind, FORCE_CPU_ONLY_INPUT_TENSORS) of a model. The article's deployments: everything on
    CPU; the models on GPU with pre/post on CPU; everything on GPU, pre/post taking GPU tensors (DLPack)."""
    d = opts.deployment or ("gpu-all-no" if opts.gpu else "cpu")
    if d not in (*DEPLOYMENTS, "gpu-all-no"):
        raise BadInput(f"--deployment {d} is not one of {', '.join(DEPLOYMENTS)}",
                       "use cpu, gpu-models or gpu-all")
    if d == "cpu":
        return "KIND_CPU", "yes"
    if d == "gpu-models":
        return ("KIND_CPU", "yes") if edge else ("KIND_GPU", "yes")
    if d == "gpu-all":
        return "KIND_GPU", "no" if edge else "yes"
    return "KIND_GPU", "no"  # --gpu: every injected model on GPU with GPU tensors


def edge_models(repo) -> set[str]:
    """Pre/post-processing models: ensemble steps that read an ensemble input or write an ensemble output."""
    edges: set[str] = set()
    for ens in repo.ensembles():
        cfg = ens.config
        ins, outs = {t.name for t in cfg.input}, {t.name for t in cfg.output}
        for st in ens.steps():
            if ins & set(st.input_map.values()) or outs & set(st.output_map.values()):
                edges.add(st.model_name)
    return edges


def stub_libraries(stub: Path, elf) -> list[Path]:
    """Libraries a self-contained stub (`envtool stub`: RUNPATH $ORIGIN) keeps beside itself; they
    travel with it into each model folder."""
    if "$ORIGIN" not in elf.runpath:
        return []
    here = stub.resolve().parent
    return [here / n for n in elf.needed if (here / n).is_file()]


def _same(p: Placement) -> bool:
    return p.source is not None and p.dest.exists() and p.dest.resolve() == p.source.resolve()


def inject(opts: InjectOptions) -> InjectResult:
    result = plan(opts)
    if opts.dry_run:
        return result
    txn = Transaction(result.repo)
    try:
        for p in result.files:  # everything copied before anything moves
            txn.stage(p.dest, lambda tmp, p=p: _fill(p, tmp))
        for c in result.configs:
            if c.changed:
                txn.stage_text(c.path, c.after)
    except BaseException:
        txn.abandon()
        raise
    with deferred_signals():  # renames only: a Ctrl-C waits for them; a SIGKILL is rolled back next run
        try:
            txn.commit()
        except OSError:
            recover(result.repo)  # a rename failed half-way (a read-only folder): the old repository back
            raise
    return result


def _fill(p: Placement, tmp: Path) -> None:
    if p.link_to is not None:
        tmp.symlink_to(p.link_to)
    elif p.source.is_dir():
        shutil.copytree(p.source, tmp, symlinks=True)
    else:
        shutil.copyfile(p.source, tmp)
        tmp.chmod(0o755 if p.dest.name in (STUB_NAME, ELF_NAME) else 0o644)
