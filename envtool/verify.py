"""`envtool verify`: serve a repository with a real Triton, watch its log, report every model's state,
run an inference on each ensemble (each model where there is none) over HTTP and gRPC, and write
envtool.lock when everything passed. The server is stopped on every exit path (ProcessServer)."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field, replace
from importlib.metadata import version as dist_version
from pathlib import Path

from envtool import catalog, compat, facts
from envtool.diagnose import Diagnosis, hang_hint, scan
from envtool.env.view import view_env
from envtool.errors import BadInput, CheckFailed
from envtool.findings import Finding
from envtool.infer import Inference, infer, infer_stream, model_inputs, per_model
from envtool.lockfile import Digests, inputs_digest, lock_path, read_lock, write_lock
from envtool.repo.config import ModelConfig, dtype_name
from envtool.repo.model_repo import ENV_KEY, Repository, load_repository, require_servable
from envtool.servers import open_server

PROTOCOLS = ("http", "grpc")


@dataclass
class VerifyOptions:
    repo: Path
    release: catalog.Release  # a name (r22.11) is resolved on construction
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
    reverify: bool = False  # serve even when envtool.lock says these exact inputs were verified
    repo_in_image: str | None = None  # --server docker: the image holds the repository there (envtool image)

    def __post_init__(self):
        self.release = catalog.normalize_release(self.release)


@dataclass
class VerifyReport:
    release: str
    server: dict  # kind, version, log
    models: dict[str, dict] = field(default_factory=dict)  # name -> {state, reason}
    inferences: list[Inference] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)  # why it failed: one finding each
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {model, reason}: READY models not exercised
    timings: dict[str, float] = field(default_factory=dict)
    lock: Path | None = None
    reused: str | None = None  # when the lock's verdict was reused: when that serve ran

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "release": self.release, "server": self.server, "models": self.models,
                "inferences": [i.to_dict() for i in self.inferences],
                "diagnoses": [d.to_dict() for d in self.diagnoses],
                "problems": [f.to_dict() for f in self.problems],
                "warnings": self.warnings, "skipped": self.skipped, "timings": self.timings,
                "lock": str(self.lock) if self.lock else None, "reused": self.reused}


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
    rel = opts.release
    repo = load_repository(opts.repo)
    require_servable(repo)
    if not repo.models:
        raise BadInput(f"model repository {repo.path} holds no model folder", "pass the folder that holds one "
                       "sub-folder per model (envtool verify model_repository)")
    inputs, expect = _read_json(opts.inputs, "--inputs"), _read_json(opts.expect, "--expect")
    match_inputs(inputs, *_declared(repo))  # a mistake the configs on disk show: no server is started
    # No model needs auto-complete: don't pay a stub start per python model to ask (about 1.2 s each)
    why = repo.auto_complete_needed()
    server = open_server(opts.server, rel, repo.path, server_bin=opts.server_bin, image=opts.image, gpu=opts.gpu,
                         repo_in_image=opts.repo_in_image,
                         log_path=opts.log_path, extra_args=() if why else ("--disable-auto-complete-config",))
    t0 = time.monotonic()
    digests = Digests(repo.path) if opts.lock else None
    inputs_sha = inputs_digest(repo, _lock_key(rel, server, opts, inputs, expect), digests) if digests else None
    if digests:
        with contextlib.suppress(OSError):  # the memo is a cache: a read-only cache folder only costs time
            digests.save()
    earlier = read_lock(repo.path) if opts.lock and not opts.reverify else None
    if earlier and inputs_sha and earlier.get("inputs_sha256") == inputs_sha and earlier.get("served"):
        if opts.log_path is None:
            server.log_path.unlink(missing_ok=True)  # no server ran: no empty log left in /tmp
        return _reused(earlier, lock_path(repo.path), round(time.monotonic() - t0, 2))
    report = VerifyReport(rel.release, {"kind": server.kind, "log": str(server.log_path),
                                        "auto_complete_config": f"on: {why}" if why else "off: no model needs it"})
    with server:
        log(f"starting tritonserver {rel.branch} ({server.kind}); log: {server.log_path}")
        try:
            server.wait_live(opts.timeout, watch=log_watch(server))
        except Stuck as e:
            d = name_the_pair(e.found[0], repo, rel)
            waited = time.monotonic() - t0
            report.problems.append(Finding("server-hang", "error", None, f"stopped after {waited:.1f} s: Triton "
                                           f"would wait forever: {d.cause}", d.line, d.fix))
        except CheckFailed as e:
            hint = hang_hint(server.log())
            report.problems.append(Finding("server-start", "error", None,
                                           e.message + (f"; {hint}" if hint else ""), fix=e.fix))
        else:
            report.timings["start_to_ready_s"] = round(time.monotonic() - t0, 2)
            report.server["version"] = server.version()
            if report.server["version"] != rel.server:  # a local binary or an image of another release
                report.warnings.append(f"the server is Triton {report.server['version']}, not r{rel.release}'s "
                                       f"{rel.server}: stubs built for r{rel.release} may hang in it")
            if hasattr(server, "facts"):
                report.server.update(server.facts())  # docker: the image and its digest
            _check_models(server, repo, report, inputs, expect, opts, log)
            report.server["ready"] = server.ready()  # strict: false while any model is not READY
        server_log = server.log()
    report.timings["total_s"] = round(time.monotonic() - t0, 2)
    report.diagnoses = [name_the_pair(d, repo, rel) for d in
                        scan(server_log + "\n" + "\n".join(i.error or "" for i in report.inferences))]
    if any(not i.ok for i in report.inferences):
        failed = {i.model for i in report.inferences if not i.ok}
        report.problems += _numpy2_envs(repo, rel) + _envless(repo, failed)
    if report.ok and opts.lock:
        served = {"models": report.models, "skipped": report.skipped, "timings": report.timings,
                  "inferences": [i.to_dict() for i in report.inferences]}
        try:
            report.lock = write_lock(repo, rel.release, report.server, inputs_sha, served, digests)
        except OSError as e:  # a read-only parent folder (common in containers): the verdict stands
            report.warnings.append(f"envtool.lock not written ({lock_path(repo.path)}: {e.strerror}): the "
                                   "verdict stands, and the next verify serves again")
    return report


def _lock_key(rel: catalog.Release, server, opts: VerifyOptions, inputs, expect) -> dict:
    """Everything but the files that a verdict depends on: the release, the server (binary or image id,
    arguments), the inputs sent and the outputs expected."""
    return {"envtool": dist_version("envtool"), "release": rel.release, "server": server.identity(),
            "gpu": opts.gpu, "inputs": inputs, "expect": expect, "rtol": opts.rtol, "atol": opts.atol}


def _reused(lock: dict, path: Path, check_s: float) -> VerifyReport:
    """The verdict of the serve that wrote the lock, for the same inputs: no server is started."""
    served = lock["served"]
    report = VerifyReport(lock["release"], lock["server"], models=served.get("models", {}),
                          skipped=served.get("skipped", []), timings={"check_s": check_s}, lock=path,
                          reused=lock.get("verified_at") or "earlier",
                          inferences=[Inference.from_dict(d) for d in served.get("inferences", [])])
    return report


def _declared(repo: Repository) -> tuple[dict[str, ModelConfig], set[str], bool]:
    """The configs on disk that declare their inputs, the model names, and whether every model does (if
    not, a model may still get inputs from auto-completion at load)."""
    configs = {n: m.config for n, m in repo.models.items() if m.config is not None and len(m.config.input)}
    return configs, set(repo.models), len(configs) == len(repo.models)


def check_inputs(repo_path: Path, inputs_path: Path | None) -> None:
    """--inputs checked against the repository's own configs (build calls it before building)."""
    match_inputs(_read_json(inputs_path, "--inputs"), *_declared(load_repository(repo_path)))


def match_inputs(data: dict | None, configs: dict[str, ModelConfig], models: set[str],
                 complete: bool) -> dict[str, tuple[dict, list[str]]]:
    """name -> (arrays to send, generated names) for each config; BadInput (one line naming the model, the
    tensor and the expected form) for an unknown name, a wrong data type or a wrong shape."""
    flat = data is not None and isinstance(data, dict) and not set(data) & models
    out = {}
    for name, cfg in sorted(configs.items()):
        given = per_model(data, name, models, "--inputs")
        if flat:
            given = {k: v for k, v in given.items() if k in {t.name for t in cfg.input}}
        out[name] = model_inputs(name, cfg, given)
    if flat and complete and (stray := sorted(set(data) - {t.name for c in configs.values() for t in c.input})):
        raise BadInput(f"--inputs: no model has an input {stray[0]!r}",
                       "name an input of the repository's models, or key the file by model")
    return out


@dataclass
class _Plan:
    name: str
    cfg: ModelConfig
    stream: bool  # decoupled (or an ensemble with a decoupled step): the gRPC stream
    inputs: dict
    generated: list[str]
    expect: dict | None


def _check_models(server, repo: Repository, report: VerifyReport, inputs, expect, opts, log) -> None:
    report.models = server.model_states()
    for name, st in sorted(report.models.items()):
        if st["state"] != "READY":
            why = (st["reason"] or "see the log").strip().splitlines()[0]
            report.problems.append(Finding("model-not-ready", "error", name,
                                           f"model {name} is {st['state'] or 'not loaded'}: {why}", why,
                                           f"envtool doctor {repo.path} names the cause"))
            st["checked"] = "not loaded"
    plans = _plan(server, repo, report, inputs, expect)
    for p in plans:
        for protocol in ("grpc-stream",) if p.stream else PROTOCOLS:
            log(f"inference on {p.name} over {protocol}")
            if p.stream:
                res = infer_stream(server, p.name, p.cfg, p.inputs, p.expect, opts.rtol, opts.atol)
            else:
                res = infer(server, protocol, p.name, p.cfg, p.inputs, p.expect, opts.rtol, opts.atol)
            res.generated = p.generated
            report.inferences.append(res)
            report.problems += _inference_problems(res)


def _inference_problems(res: Inference) -> list[Finding]:
    out = []
    if res.error:  # the model refused or failed: maybe on made-up values
        why = scan(res.error)
        hint = (f" (inputs {', '.join(res.generated)} were generated from the config: "
                "give real ones with --inputs)" if res.generated else "")
        out.append(Finding("inference-error", "error", res.model,
                           f"{res.model} ({res.protocol}): {why[0].cause if why else res.error}{hint}",
                           res.error, why[0].fix if why else None))
    return out + [Finding("inference-mismatch", "error", res.model, f"{res.model} ({res.protocol}): {p}",
                          fix="fix the model, or the --expect file") for p in res.problems]


def _plan(server, repo: Repository, report: VerifyReport, inputs, expect) -> list[_Plan]:
    """What to send to which READY model, from the configs Triton loaded. Ensembles are exercised, and
    every READY model no READY ensemble runs; the rest is marked as run by its ensemble, or skipped with
    the reason. Every --inputs mistake is refused here, before the first inference."""
    ready = sorted(n for n, st in report.models.items() if st["state"] == "READY")
    configs = {}
    for n in ready:
        try:
            configs[n] = server.loaded_config(n)
        except Exception as e:  # noqa: BLE001  an old server or an odd field: plan from the file instead
            configs[n] = repo.models[n].config if n in repo.models and repo.models[n].config else ModelConfig()
            report.warnings.append(f"could not read the config Triton loaded for {n} ({e}): used config.pbtxt")
    ensembles = {n: repo.ensemble_members(repo.models[n]) for n in ready
                 if configs[n].HasField("ensemble_scheduling")}
    members = {m: e for e, ms in ensembles.items() for m in ms}
    names = set(repo.models) | set(ready)
    matched = match_inputs(inputs, {n: configs[n] for n in ready}, names, True)
    plans = []
    for n in ready:
        st, cfg = report.models[n], configs[n]
        if n in members and n not in ensembles:
            st["checked"] = f"via ensemble {members[n]}"
            continue
        arrays, generated = matched[n]
        why = _not_exercised(cfg, generated)
        if why:
            st["checked"] = f"skipped: {why}"
            report.skipped.append({"model": n, "reason": why})
            continue
        stream = any(configs[m].model_transaction_policy.decoupled
                     for m in [n, *ensembles.get(n, [])] if m in configs)
        st["checked"] = "grpc stream" if stream else "inference"
        plans.append(_Plan(n, cfg, stream, arrays, generated, per_model(expect, n, names, "--expect")))
    return plans


def _not_exercised(cfg: ModelConfig, generated: list[str]) -> str | None:
    if not len(cfg.input):
        return "it declares no inputs: verify has nothing to send it"
    for t in cfg.input:
        if t.name in generated and dtype_name(t.data_type) == "TYPE_STRING" and "model" in t.name.lower():
            return (f"input {t.name} names a model to call (BLS): a generated string would be sent as the model "
                    f"name; give {t.name} with --inputs")
    return None


def model_findings(repo: Repository, rel: catalog.Release) -> list[Finding]:
    """compat's rules on each python model's stub and env, against the release (verify's explanations)."""
    out = []
    for m in sorted(repo.python_models(), key=lambda m: m.name):
        env, stub = m.existing_env(), m.stub
        out += compat.check(facts.Stub.from_elf(stub) if stub is not None else None,
                            facts.Env.from_view(view_env(env)) if env is not None else None,
                            facts.Target.of_release(rel), m.name)
    return out


def _numpy2_envs(repo: Repository, rel: catalog.Release) -> list[Finding]:
    """Confirm failure mode 3 from the envs themselves: numpy 2 with a stub that misreads it."""
    return [f for f in model_findings(repo, rel) if f.rule == "env-numpy2"]


def _envless(repo: Repository, failed: set[str]) -> list[Finding]:
    """A failed python model with no env of its own ran the server's default Python, not one of yours."""
    return [Finding("model-no-env", "error", m.name, f"model {m.name} has no EXECUTION_ENV_PATH: it ran the "
                    "server's default Python and packages",
                    fix=f"give it your env: envtool build ... --models {m.name},...")
            for m in sorted(repo.python_models(), key=lambda m: m.name)
            if m.name in failed and m.parameter(ENV_KEY) is None]


def name_the_pair(d: Diagnosis, repo: Repository, rel: catalog.Release) -> Diagnosis:
    """A stub that cannot load its libpython: name the model, both Pythons and the build that fixes it,
    from the stub and env in the model folders (the log names only the stub's side)."""
    if d.id != "stub-libpython":
        return d
    f = next((f for f in model_findings(repo, rel) if f.rule == "stub-python"), None)
    return replace(d, cause=f"model {f.model}: {f.message}", fix=f.fix) if f else d
