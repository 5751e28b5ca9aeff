"""Triton log lines -> causes and fixes, from the data file diagnoses.toml, and the verdict on a whole log.

Used by the servers (model states the repository index does not report), verify's log watcher (stop at once
on a cause that makes Triton hang) and doctor --log, which reasons over the whole log (envtool/logs.py):
which release printed it, whether the failing model got an env, what followed its stub's start, and what the
model repository says, before it names a cause. Every verdict names the log lines it stands on.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from envtool.catalog import Release, tomllib
from envtool.catalog.history import ReleaseSpan, first_release, release_span
from envtool.findings import Finding
from envtool.logs import Line, LogFacts, parse
from envtool.repo.imports import distribution
from envtool.repo.model_repo import STUB_NAME


@dataclass(frozen=True)
class Diagnosis:
    id: str
    cause: str
    fix: str
    line: str  # the log line it was recognised in
    hang: bool  # Triton waits forever instead of failing
    mode: int  # the failure mode's number in the project's knowledge base (0: found in public logs)
    model: str | None = None
    evidence: tuple[str, ...] = ()  # "line N: text" of every line the verdict stands on
    rank: int = 1  # 1 a root cause, 2 model.py's own exception, 3 a consequence (a stub "not healthy")

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=None)
def _data() -> dict:
    return tomllib.loads((Path(__file__).parent / "diagnoses.toml").read_text())


@lru_cache(maxsize=None)
def _causes() -> list[tuple[re.Pattern, dict]]:
    return [(re.compile(c["pattern"]), c) for c in _data()["cause"] if "pattern" in c]


def cause_entries() -> list[dict]:
    """Every cause entry of diagnoses.toml, in its order (the docs' troubleshooting table)."""
    return _data()["cause"]


def causes() -> dict[str, dict]:
    """id -> the cause's first entry (pattern, cause, fix, and for some an `example` of what Triton prints)."""
    out: dict[str, dict] = {}
    for c in _data()["cause"]:
        out.setdefault(c["id"], c)
    return out


def _derived(cause_id: str) -> dict:
    """The entry a verdict derived from the whole log uses (no pattern groups in its text)."""
    entries = [c for c in _data()["cause"] if c["id"] == cause_id]
    return next((c for c in entries if c.get("derived")), entries[0])


@lru_cache(maxsize=None)
def interesting() -> re.Pattern:
    """One pattern for every line worth keeping while a log streams by: a cause, or an error of any kind."""
    words = [p.pattern for p, _c in _causes()] + [
        r"Traceback \(most recent call last\)", r"\bUNAVAILABLE\b", r"failed to load", r"^E\d{4} ",
        r"(?:Error|Exception|error): ", r"No such file or directory", r"Permission denied"]
    return re.compile("|".join(f"(?:{re.sub(r'[(][?]P<[a-z_0-9]+>', '(?:', w)})" for w in words))


@lru_cache(maxsize=None)
def _load_failure_patterns() -> list[re.Pattern]:
    return [re.compile(d["pattern"]) for d in _data()["load_failure"]]


def _match(line: str, span: ReleaseSpan | None = None) -> tuple[dict, dict] | None:
    """The first cause (in the data file's order: specific before generic) whose pattern the line matches and
    that can apply to the release span."""
    for pattern, c in _causes():
        if (m := pattern.search(line)) and (span is None or span.may_be(c.get("first"), c.get("before"))):
            return c, {k: v or "" for k, v in m.groupdict().items()}
    return None


def _diagnosis(c: dict, groups: dict, line: Line | str, model: str | None = None) -> Diagnosis:
    text = line.text if isinstance(line, Line) else line
    where = f"line {line.n}: {_short(text)}" if isinstance(line, Line) else _short(text)
    return Diagnosis(c["id"], c["cause"].format(**groups), c["fix"].format(**groups), text.strip()[:400],
                     c.get("hang", False), c["mode"], model, (where,), c.get("rank", 1))


def _short(text: str) -> str:
    """A log line as evidence: up to an escaped traceback's first line break, at most 240 characters."""
    return text.strip().split("\\n", 1)[0][:240]


def scan(text: str) -> list[Diagnosis]:
    """Every known cause in text, once each, in the order they first appear (verify's log watcher)."""
    found: dict[tuple[str, str], Diagnosis] = {}
    for line in text.splitlines():
        if hit := _match(line):
            d = _diagnosis(*hit, line)
            found.setdefault((d.id, d.cause), d)
    return list(found.values())


def load_failures(log: str) -> dict[str, str]:
    """model -> the reason Triton logged for rejecting it (first one wins)."""
    out: dict[str, str] = {}
    for line in log.splitlines():
        for pat in _load_failure_patterns():
            if m := pat.search(line):
                out.setdefault(m.group("model"), m.group("reason"))
    return out


@dataclass
class LogVerdict:
    """What a whole log says: the release that printed it, the causes (the first is the verdict), the models
    Triton rejected, and what was looked up in the repository."""

    release: ReleaseSpan
    diagnoses: list[Diagnosis] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    lines: int = 0
    recognised: bool = True

    def to_dict(self) -> dict:
        return {"release": self.release.to_dict(), "lines": self.lines, "recognised": self.recognised,
                "verdict": self.diagnoses[0].id if self.diagnoses else None}


def diagnose_log(facts: LogFacts, release: Release | None = None, repo=None) -> LogVerdict:
    """The causes in a whole log, the root cause first. `repo` (a Repository) confirms or overturns them."""
    span = release_span(release, facts.banner_release, facts.server_version, facts.quoted)
    ordered = sorted(_merged(_per_line(facts, span, repo)), key=lambda d: d.rank)  # stable: log order in a rank
    ordered = _runtime_dir(facts) + ordered
    if hang := _hang(facts, span, repo):
        ordered = [hang] + ordered if not any(d.rank == 1 for d in ordered) else ordered + [hang]
    if span.exact:  # the fix names the log's own release
        ordered = [replace(d, fix=d.fix.replace("<release>", f"r{span.exact}")) for d in ordered]
    return LogVerdict(span, ordered, _rejected(facts), facts.lines, facts.recognised)


def _per_line(facts: LogFacts, span: ReleaseSpan, repo) -> dict[int, tuple[int, Diagnosis]]:
    """line number -> (pieces, its cause): each matched line's first cause that can apply to the release span,
    refined by the rest of the log. A wrapped line read whole beats its first piece, unless the whole lines
    it joins already give its cause (then it was no wrap)."""
    by_line: dict[int, tuple[int, Diagnosis]] = {}
    for line in facts.matched:
        if line.n in by_line and by_line[line.n][0] > line.pieces:
            continue
        if hit := _match(line.text, span) or (_match(line.msg, span) if line.msg != line.text else None):
            by_line[line.n] = (line.pieces, _refine(_diagnosis(*hit, line, line.model), line, facts, span, repo))
    for n, (pieces, d) in list(by_line.items()):
        if pieces > 1 and any(k in by_line and by_line[k][1].id == d.id for k in range(n + 1, n + pieces)):
            del by_line[n]
    return by_line


def _merged(by_line: dict[int, tuple[int, Diagnosis]]) -> list[Diagnosis]:
    """One diagnosis per (cause, model), in log order, with up to 3 lines of evidence."""
    found: dict[tuple[str, str | None], Diagnosis] = {}
    for n in sorted(by_line):
        d = by_line[n][1]
        old = found.get((d.id, d.model))
        if old is None:
            found[(d.id, d.model)] = d
        elif len(old.evidence) < 3:
            found[(d.id, d.model)] = replace(old, evidence=old.evidence + d.evidence)
    return list(found.values())


def _rejected(facts: LogFacts) -> list[Finding]:
    out = []
    for line in facts.matched:
        for pat in _load_failure_patterns():
            if (m := pat.search(line.msg)) and not any(f.model == m.group("model") for f in out):
                reason = m.group("reason").strip()
                out.append(Finding("load-failed", "error", m.group("model"),
                                   reason.splitlines()[0] if reason else reason, reason))
    for model, status in facts.status.items():
        if status.startswith("UNAVAILABLE") and not any(f.model == model for f in out):
            out.append(Finding("load-failed", "error", model, status, status))
    return out


# --- refinements: what the rest of the log (and the repository) says about a matched line ------------

def _refine(d: Diagnosis, line: Line, facts: LogFacts, span: ReleaseSpan, repo) -> Diagnosis:
    if d.id == "module-not-found":
        return _module(d, line, facts, span, repo)
    if d.id == "canonical-path":
        return _canonical(d, line, span, repo)
    return d


def _as(d: Diagnosis, cause_id: str, **groups) -> Diagnosis:
    c = _derived(cause_id)
    return replace(d, id=cause_id, cause=c["cause"].format(**groups), fix=c["fix"].format(**groups),
                   hang=c.get("hang", False), mode=c["mode"], rank=c.get("rank", 1))


def _derived_at(cause_id: str, line: Line, for_model: str | None, /, *more: str, **groups) -> Diagnosis:
    """A cause derived from the whole log for a model, standing on `line` (and the `more` evidence); `groups`
    fill its text."""
    c = _derived(cause_id)
    return Diagnosis(cause_id, c["cause"].format(**groups), c["fix"].format(**groups), line.text.strip()[:400],
                     c.get("hang", False), c["mode"], for_model, (f"line {line.n}: {_short(line.text)}", *more),
                     c.get("rank", 1))


def _module(d: Diagnosis, line: Line, facts: LogFacts, span: ReleaseSpan, repo) -> Diagnosis:
    module = re.search(r"No module named '([^']+)'", line.msg).group(1)
    top = module.split(".")[0]
    if top in ("model", "triton_python_backend_utils", "c_python_backend_utils"):
        return _as(d, "model-py-not-found")
    model = d.model
    config_env = _repo_env(repo, model)
    if config_env is not None and config_env.get("relative") and not facts.env_of(model):
        return replace(_as(d, "module-no-env", module=module, dist=distribution(module), release=span.text()),
                       cause=f"the env was never found: {model}'s EXECUTION_ENV_PATH {config_env['value']!r} is "
                             f"relative, so Triton resolves it against the server's working directory, not the "
                             f"model folder, and model.py ran in the image's own Python, which lacks '{module}'",
                       fix='set it to "$$TRITON_MODEL_DIRECTORY/<env>.tar.gz" (envtool inject writes that form)')
    if not _env_applied(facts, model, repo):
        cause_text = _derived("module-no-env")["cause"].format(module=module, release=span.text())
        if span.hi is not None and span.before("execution-env"):
            cause_text += "; this release predates EXECUTION_ENV_PATH (python_backend r21.06), so no env is used"
        no_env = _as(d, "module-no-env", module=module, dist=distribution(module), release=span.text())
        return replace(no_env, cause=cause_text)
    return d


def _env_applied(facts: LogFacts, model: str | None, repo) -> bool:
    """Whether the model ran in an execution env. Unknown (a log of a few lines) counts as applied."""
    if facts.env_of(model):
        return True
    config_env = _repo_env(repo, model)
    if config_env is not None:
        return bool(config_env.get("value"))
    started = [s for s in facts.starts if s.model == model or model is None]
    if started:  # the stub's start line shows no env: the image's own Python ran model.py
        return False
    # An env leaves "Using Python execution env" (INFO, r21.06+) and /tmp/python_env_* paths in tracebacks;
    # a log with neither ran the image's own Python.
    return facts.any_env or any("python_env_" in x.text for x in facts.matched)


def _repo_env(repo, model: str | None) -> dict | None:
    """The model's EXECUTION_ENV_PATH in the repository: {value, relative} ({} when the model has none)."""
    if repo is None or model is None:
        return None
    m = repo.models.get(model)
    if m is None:
        return None
    value = m.parameter("EXECUTION_ENV_PATH")
    if not value:
        return {}
    return {"value": value, "relative": not value.startswith(("/", "$$TRITON_MODEL_DIRECTORY"))}


def _canonical(d: Diagnosis, line: Line, span: ReleaseSpan, repo) -> Diagnosis:
    path = re.search(r"canonical path for (\S+?)\.?\"?$", line.msg)
    path = path.group(1) if path else ""
    if "$$TRITON_MODEL_DIRECTORY" in path and span.may_be(None, first_release("model-dir-variable")):
        return _as(d, "canonical-path-old-release", path=path, release=span.text())
    if "$TRITON_MODEL_DIRECTORY" in path.replace("$$TRITON_MODEL_DIRECTORY", ""):
        return replace(d, cause=f"EXECUTION_ENV_PATH {path} has one '$': Triton only expands "
                                "$$TRITON_MODEL_DIRECTORY (two)")
    if path and not path.startswith("/"):
        return replace(d, cause=f"EXECUTION_ENV_PATH {path} is relative: Triton resolves it against the "
                                "server's working directory, where it does not exist")
    if "/tmp/folder" in path:
        return replace(d, cause=f"EXECUTION_ENV_PATH {path} is not in the copy of the model folder Triton made "
                                "(a cloud repository, S3/GCS/Azure, is downloaded one model folder at a time, so "
                                "'..' and other models' files are not there)",
                       fix="put the env inside the model folder: $$TRITON_MODEL_DIRECTORY/<env>")
    return d


def _runtime_dir(facts: LogFacts) -> list[Diagnosis]:
    """A stub told to load model.py from the python backend's own folder (runtime_modeldir): Triton took the
    python backend for a python-based backend, usually a --backend-directory of a server built elsewhere."""
    start = next((s for s in facts.starts if s.runtime_dir and s.runtime_dir.rstrip("/").endswith("/python")),
                 None)
    if start is None:
        return []
    d = _derived_at("model-py-not-found", start.line, start.model)
    return [replace(d, cause=f"the stub is told to load model.py from {start.runtime_dir} (its last argument, "
                             "runtime_modeldir), not from the model's version folder: Triton took the python "
                             "backend for a python-based backend (a --backend-directory whose python/ folder "
                             "is not the release's own layout)")]


# --- a hang: the log ends while a python model's stub starts ----------------------------------------

_DONE = re.compile(r"successfully loaded|failed to load|instance initialization successful|"
                   r"TRITONBACKEND_ModelInstanceInitialize: instance initialization|UNAVAILABLE|READY")


def _hang(facts: LogFacts, span: ReleaseSpan, repo) -> Diagnosis | None:
    """A hang is a hang only when nothing follows the last stub start: no error, no end of its load, and the
    log ends there. Its causes, in order: a stub from another release (a custom stub that never ran
    model.py), model.py blocking in import or initialize(), then stub-timeout-seconds."""
    if facts.status:  # the server printed its status table: it got past loading
        return None
    if not facts.starts:
        return _unverbose_hang(facts, span, repo)
    start = facts.starts[-1]
    after = facts.after_last_start
    if any(_DONE.search(x.msg) for x in after) or any(
            x.level in ("E", "F") or (not x.triton and _match(x.text)) for x in after):
        return None
    if after and any(x.triton and "Starting Python backend stub" not in x.msg and x.n > start.line.n + 50
                     for x in after):
        return None  # the server went on for a long while: not stuck at this start
    model_output = [x for x in after if not x.triton]  # the stub's own stderr: model.py ran
    custom = not start.default_stub or _repo_has_stub(repo, start.model)
    ends = f"the log ends {len(after)} line(s) later, with no error and no end to {start.model or 'its'} load"
    if custom and not model_output:
        return _derived_at("stub-release-mismatch", start.line, start.model, ends, stub=start.stub,
                           release=span.text())
    d = _derived_at("model-init-hang", start.line, start.model, ends, model=start.model or "the model")
    extra = (f"; model.py printed {len(model_output)} line(s) after the start, so the stub ran it"
             if model_output else "; the stub is the backend's own, so it matches the server")
    return replace(d, cause=d.cause + extra)


def _unverbose_hang(facts: LogFacts, span: ReleaseSpan, repo) -> Diagnosis | None:
    """Without --log-verbose no stub start is logged: a log whose very last line initialises a python model
    instance ends in that model's stub (another release's, where the repository gives it a stub of its own)
    or in its import or initialize()."""
    last = facts.tail[-1] if facts.tail else None
    m = re.search(r"TRITONBACKEND_ModelInstanceInitialize: (\S+) \((?:CPU|GPU|MODEL)", last.msg) if last else None
    if m is None or "python" not in (last.src or ""):
        return None
    if _repo_has_stub(repo, last.model):
        return _derived_at("stub-release-mismatch", last, last.model, "the log ends there",
                           stub=f"{last.model}/{STUB_NAME}", release=span.text())
    return _derived_at("model-init-hang", last, last.model, "the log ends there", model=m.group(1))


def _repo_has_stub(repo, model: str | None) -> bool:
    if repo is None or model is None:
        return False
    m = repo.models.get(model)
    return m is not None and (m.path / STUB_NAME).is_file()


def hang_hint(text: str) -> str:
    """verify: a server that never got ready and printed no cause; why, from the log's end ('' if unknown)."""
    facts = parse(text.splitlines(), interesting())
    d = _hang(facts, release_span(None, facts.banner_release, facts.server_version, facts.quoted), None)
    return f"{d.cause} (fix: {d.fix})" if d else ""
