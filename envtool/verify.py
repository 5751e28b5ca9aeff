"""`envtool verify`: serve a repository with a real Triton, watch its log, report every model's state,
run an inference on each ensemble (each model where there is none) over HTTP and gRPC, and write
envtool.lock when everything passed. The server is stopped on every exit path (ProcessServer)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from envtool import catalog
from envtool.diagnose import Diagnosis, hang_hint, scan
from envtool.elf import version_key
from envtool.env.view import view_env
from envtool.errors import BadInput, CheckFailed
from envtool.infer import Inference, infer, model_inputs, per_model
from envtool.lockfile import write_lock
from envtool.repo.lint import ENV_KEY, resolve_env_path
from envtool.repo.model_repo import Repository, load_repository
from envtool.servers import open_server

PROTOCOLS = ("http", "grpc")


@dataclass
class VerifyOptions:
    repo: Path
    release: str
    server: str = "embedded"
    server_bin: Path | None = None
    image: str | None = None  # --server docker
    gpu: bool = False
    inputs: Path | None = None
    expect: Path | None = None
    timeout: float = 300.0
    rtol: float = 1e-5
    atol: float = 1e-6
    lock: bool = True
    log_path: Path | None = None


@dataclass
class VerifyReport:
    release: str
    server: dict  # kind, version, log
    models: dict[str, dict] = field(default_factory=dict)  # name -> {state, reason}
    inferences: list[Inference] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why it failed, one line each
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    lock: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "release": self.release, "server": self.server, "models": self.models,
                "inferences": [i.to_dict() for i in self.inferences],
                "diagnoses": [d.to_dict() for d in self.diagnoses], "problems": self.problems,
                "warnings": self.warnings, "timings": self.timings, "lock": str(self.lock) if self.lock else None}


class Stuck(CheckFailed):
    """The log shows a cause that makes Triton wait forever."""

    def __init__(self, found: list[Diagnosis]):
        super().__init__(f"Triton would wait forever: {found[0].cause}", found[0].fix)
        self.found = found


def _read_json(path: Path | None, option: str) -> dict | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise BadInput(f"{option} {path}: {e.strerror}", "pass an existing JSON file") from None
    except ValueError as e:
        raise BadInput(f"{option} {path} is not valid JSON: {e}", "fix the JSON") from None


def _targets(repo: Repository, models: dict[str, dict]) -> list[str]:
    ensembles = sorted(m.name for m in repo.ensembles())
    return ensembles or sorted(n for n, m in repo.models.items() if m.config is not None and n in models)


def log_watch(server):
    """A check for every readiness poll: reads only the log's new complete lines and raises Stuck on a
    cause Triton would wait on forever."""
    pos, partial = 0, ""

    def watch() -> None:
        nonlocal pos, partial
        try:
            with server.log_path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            return
        pos += len(chunk)
        lines, _, partial = (partial + chunk.decode("utf-8", "replace")).rpartition("\n")
        if stuck := [d for d in scan(lines) if d.hang]:
            raise Stuck(stuck)
    return watch


def verify(opts: VerifyOptions, log=lambda _m: None) -> VerifyReport:
    rel = catalog.normalize_release(opts.release)
    repo = load_repository(opts.repo)
    inputs, expect = _read_json(opts.inputs, "--inputs"), _read_json(opts.expect, "--expect")
    server = open_server(opts.server, rel, repo.path, server_bin=opts.server_bin, image=opts.image, gpu=opts.gpu,
                         log_path=opts.log_path)
    report = VerifyReport(rel.release, {"kind": server.kind, "log": str(server.log_path)})
    t0 = time.monotonic()
    with server:
        log(f"starting tritonserver {rel.branch} ({server.kind}); log: {server.log_path}")
        try:
            server.wait_live(opts.timeout, watch=log_watch(server))
        except Stuck as e:
            report.problems.append(f"stopped after {time.monotonic() - t0:.1f} s: {e.message}")
        except CheckFailed as e:
            report.problems.append(e.message + (f"; {h}" if (h := hang_hint(server.log())) else ""))
        else:
            report.timings["start_to_ready_s"] = round(time.monotonic() - t0, 2)
            report.server["version"] = server.version()
            if report.server["version"] != rel.server:  # a local binary or an image of another release
                report.warnings.append(f"the server is Triton {report.server['version']}, not r{rel.release}'s "
                                       f"{rel.server}: stubs built for r{rel.release} may hang in it")
            if hasattr(server, "facts"):
                report.server.update(server.facts())  # docker: the image and its digest
            _check_models(server, repo, report, inputs, expect, opts, log)
        server_log = server.log()
    report.timings["total_s"] = round(time.monotonic() - t0, 2)
    report.diagnoses = scan(server_log + "\n" + "\n".join(i.error or "" for i in report.inferences))
    if any(not i.ok for i in report.inferences):
        report.problems += _numpy2_envs(repo, rel)
    if report.ok and opts.lock:
        report.lock = write_lock(repo, rel.release, report.server)
    return report


def _check_models(server, repo: Repository, report: VerifyReport, inputs, expect, opts, log) -> None:
    report.models = server.model_states()
    for name, st in sorted(report.models.items()):
        if st["state"] != "READY":
            why = (st["reason"] or "see the log").strip().splitlines()[0]
            report.problems.append(f"model {name} is {st['state'] or 'not loaded'}: {why}")
    names = set(repo.models)
    for name in _targets(repo, report.models):
        if report.models.get(name, {}).get("state") != "READY":
            continue
        cfg = repo.models[name].config
        if cfg.model_transaction_policy.decoupled:
            log(f"{name} is decoupled: plain HTTP/gRPC infer does not apply, skipped")
            continue
        given = model_inputs(cfg, per_model(inputs, name, names, "--inputs"))
        want = per_model(expect, name, names, "--expect")
        for protocol in PROTOCOLS:
            log(f"inference on {name} over {protocol}")
            res = infer(server, protocol, name, cfg, given, want, opts.rtol, opts.atol)
            report.inferences.append(res)
            if res.error:
                why = scan(res.error)
                report.problems.append(f"{name} ({protocol}): {why[0].cause if why else res.error}")
            report.problems += [f"{name} ({protocol}): {p}" for p in res.problems]


def _numpy2_envs(repo: Repository, rel: catalog.Release) -> list[str]:
    """Confirm failure mode 3 from the envs themselves: numpy 2 with a stub that misreads it."""
    if rel.numpy2:
        return []
    out = []
    for m in sorted(repo.python_models(), key=lambda m: m.name):
        value = m.parameter(ENV_KEY)
        env = resolve_env_path(m, value) if value else None
        numpy = view_env(env.resolve()).packages.get("numpy") if env is not None and env.exists() else None
        if numpy and version_key(numpy) >= (2,):
            out.append(f"model {m.name}: its env has numpy {numpy}, and r{rel.release}'s stub needs numpy<2 "
                       "(pin numpy<2; envtool pack --triton does)")
    return out
