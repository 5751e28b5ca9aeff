"""`envtool doctor`: every version mismatch that can be seen before deploying, and a failing server's
log explained. Static checks read the stub and the env (tarball or directory) of each python model
without starting a server; each finding names what Triton would print and the fix."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from envtool import catalog, compat, facts, logs
from envtool.builders.validate import extract
from envtool.catalog.history import first_release, release_key
from envtool.diagnose import Diagnosis, LogVerdict, diagnose_log, interesting
from envtool.env.launch import ACTIVATE, secure_extract_error, start
from envtool.env.view import EnvView, view_env
from envtool.errors import BadInput, CheckFailed
from envtool.findings import Finding
from envtool.lockfile import stub_release
from envtool.repo.imports import image_python, missing, variant_of
from envtool.repo.lint import lint_repository
from envtool.repo.model_repo import ENV_KEY, STUB_NAME, Model, load_repository
from envtool.runner import Timeout

IMPORT_PROBE = r"""
import importlib.util, sys, time, types
pb = types.ModuleType("triton_python_backend_utils")  # provided by the stub at run time
pb.__getattr__ = lambda name: type(name, (), {})
sys.modules["triton_python_backend_utils"] = pb
t0 = time.monotonic()
spec = importlib.util.spec_from_file_location("model", sys.argv[1])
try:
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
except BaseException as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(3)
print(f"{time.monotonic() - t0:.3f}")
"""


@dataclass
class DoctorOptions:
    repo: Path | None = None  # the repository to check (None: --log alone)
    release: catalog.Release | None = None  # a name (r22.11) is resolved on construction
    stub_timeout: float = 30.0  # the python backend's stub-timeout-seconds
    import_timeout: float | None = None  # how long the import check waits; None: twice stub_timeout plus 30 s
    import_check: bool = True
    image: str | None = None  # check against this image's glibc/libstdc++ instead of the catalog's
    docker_shm_bytes: int | None = None  # /dev/shm of the container it will run in (docker default 64 MB)
    target: facts.Where = facts.IN_RELEASE  # release (its image) | host (this machine) | image:NAME (= image)
    log: Path | None = None  # a Triton server log to explain ("-": stdin); with repo, its configs weigh in

    def __post_init__(self):
        if self.release is not None:
            self.release = catalog.normalize_release(self.release)
        self.target = facts.Where(f"image:{self.image}" if self.image else self.target)


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    log: LogVerdict | None = None  # doctor --log: the release that printed it, how many lines, the verdict

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings) and not self.diagnoses

    def with_log(self, other: DoctorReport) -> DoctorReport:
        """doctor REPO --log LOG: the repository's findings and the log's verdict in one report."""
        return DoctorReport(self.findings + other.findings, other.diagnoses, other.log)

    def all_findings(self) -> list[Finding]:
        """The findings, and each diagnosis of a log as one (for SARIF and annotations)."""
        return self.findings + [Finding(d.id, "error", None, d.cause, d.line, d.fix) for d in self.diagnoses]

    def to_dict(self) -> dict:
        out = {
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
            "diagnoses": [d.to_dict() for d in self.diagnoses],
        }
        if self.log is not None:
            out["log"] = self.log.to_dict()
        return out


def doctor(opts: DoctorOptions, log=lambda _m: None) -> DoctorReport:
    """The repository's findings (opts.repo), the log's causes (opts.log), or both in one report."""
    if opts.repo is None and opts.log is None:
        raise BadInput("give a repository, or --log FILE", "envtool doctor model_repository --triton r24.10")
    report = check_repository(opts, log) if opts.repo is not None else None
    if opts.log is not None:
        from_log = explain_log(Path(opts.log), opts.release, opts.repo)
        report = from_log if report is None else report.with_log(from_log)
    return report


def check_repository(opts: DoctorOptions, log=lambda _m: None) -> DoctorReport:
    repo = load_repository(opts.repo)
    rel = opts.release
    report = DoctorReport(lint_repository(repo))
    img = opts.target.target(rel)
    # One finding per fact: what lint said of a model (the same rule, or the error a warning restates) is not
    # said again by the model checks.
    said = {(f.rule, f.model) for f in report.findings}
    said |= {("stub-probe", model) for rule, model in said if rule == "stub-probe-read-only"}
    with tempfile.TemporaryDirectory(prefix="envtool-doctor-") as tmp:
        roots = _Extractions(Path(tmp))
        for m in sorted(repo.python_models(), key=lambda m: m.name):
            log(f"checking {m.name}")
            report.findings += [f for f in check_model(m, rel, img, opts, roots) if (f.rule, f.model) not in said]
    if opts.docker_shm_bytes is not None:
        report.findings += _shm(repo, opts.docker_shm_bytes, rel.release if rel else None)
    return report


def _f(
    rule: str,
    severity: str,
    m: Model,
    message: str,
    triton: str | None = None,
    fix: str | None = None,
    where: Path | None = None,
) -> Finding:
    return Finding(rule, severity, m.name, message, triton, fix, str(where) if where else None)


class _Extractions:
    """Each tarball env extracted once per doctor run (models that share an env share it)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.roots: dict[Path, Path | None] = {}
        self.refusals: dict[Path, str | None] = {}

    def refused(self, env: EnvView) -> str | None:
        """libarchive's refusal under r26.06+'s secure extraction flags (once per tarball)."""
        if env.path not in self.refusals:
            scratch = self.tmp / f"secure{len(self.refusals)}"
            self.refusals[env.path] = secure_extract_error(env.path, scratch)
        return self.refusals[env.path]

    def root(self, env: EnvView) -> Path | None:
        """The env's folder (a tarball extracted once, checked as pack checks its own); None where it cannot
        be extracted safely (lint names why: env-damaged, env-escapes)."""
        if env.kind == "directory":
            return env.path
        if env.path not in self.roots:
            try:
                self.roots[env.path] = extract(env.path, self.tmp / str(len(self.roots)))
            except CheckFailed:
                self.roots[env.path] = None
        return self.roots[env.path]


def check_model(m: Model, rel, target: facts.Target | None, opts: DoctorOptions,
                roots: _Extractions) -> list[Finding]:
    out: list[Finding] = []
    stub_path = m.stub
    env_path = m.existing_env()
    env = view_env(env_path) if env_path is not None else None
    if stub_path is None:
        out.append(_f("stub-default", "info", m, "no stub in the model folder: the backend's default stub runs "
                      "it, linked to the server image's Python"))
    readable = env is not None and env.kind in ("tarball", "directory")  # not gzip: lint says so
    stub = facts.Stub.from_elf(stub_path, stub_release(stub_path)) if stub_path is not None else None
    env_side = facts.Env.from_view(env) if readable else None
    root = roots.root(env) if readable and not env.top_folder else None
    if root is not None:
        env_side = env_side.with_tree(root)
        if env.kind == "tarball" and target and target.secure_extract:
            env_side = replace(env_side, refused=roots.refused(env))
    out += [replace(f, fix=f"{f.fix} --repo {m.path.parent}" if f.rule == "stub-python" else f.fix)
            for f in compat.check(stub, env_side, target, m.name)]
    out += _stub_probe(m, stub, stub_path, target)
    if root is not None and opts.import_check:
        wait = opts.import_timeout if opts.import_timeout is not None else opts.stub_timeout * 2 + 30
        out += _imports(m, root, opts.stub_timeout, wait, target.launcher if target else ACTIVATE)
    if m.parameter(ENV_KEY) is None:
        out += _image_imports(m, rel.release if rel else None, variant_of(opts.image))
    return out


def _image_imports(m: Model, release: str | None, variant: str) -> list[Finding]:
    """A model without an env runs in the release image's own Python: what model.py imports at load time
    that this Python lacks (read with ast, never executed)."""
    model_py = m.path / str(max(m.versions or [1])) / (m.model_file() or "model.py")
    image = image_python(release, variant)
    if image is None or not image.complete or not model_py.is_file():
        return []
    lacks = missing(model_py, image)
    if not lacks:
        return []
    names = ", ".join(imp.top for imp, _ in lacks)
    where = "; ".join(f"{model_py.name}:{imp.line} `{imp.text}`" for imp, _ in lacks)
    dists = " ".join(sorted({d for _, d in lacks}))
    release_opt = f" --triton r{release}" if release else " --triton <release>"
    return [_f("import-no-env", "warning", m,
               f"no execution env: model.py runs in {image.describe()}, which lacks {names} ({where})",
               f"ModuleNotFoundError: No module named '{lacks[0][0].top}'",
               f"give it an env: envtool pack --pip {dists.replace(' ', ' --pip ')}{release_opt} and "
               f"envtool inject {m.path.parent} --models {m.name} ...; or install them into your server "
               f"image (pip install {dists})", model_py)]


def _stub_probe(m: Model, stub: facts.Stub | None, path: Path | None, target: facts.Target | None
                ) -> list[Finding]:
    """A model's own ELF stub that fails Triton's no-argument probe in the release's image: its libpython is
    not the image's Python, so the loader exits 127 before main. Triton then chmods it to ---x------ at every
    load; on a read-only repository the model fails (lint's stub-probe-read-only, run on this host)."""
    rel = target.release if target else None
    if stub is None or rel is None or rel.runs_in or not rel.runs_stub_probe or path.name != STUB_NAME:
        return []
    if stub.python in (None, rel.default_python):
        return []
    return [_f("stub-probe", "warning", m, f"r{rel.release} runs the stub with no arguments and no env before "
               f"every start; it links libpython{stub.python}, which the image (Python {rel.default_python}) "
               "lacks, so it exits 127 and Triton chmods it to ---x------ (on a read-only repository the model "
               "fails: Failed to give execute permission)",
               fix=f"envtool inject {m.path.parent} --stub STUB --env ENV: it puts the stub behind a launcher "
               "that answers the probe", where=m.path / STUB_NAME)]


def _imports(m: Model, root: Path, timeout: float, wait: float, launcher: str = ACTIVATE) -> list[Finding]:
    """Import model.py inside its env, started as the release starts the stub, and time it against timeout
    (stub-timeout-seconds); the probe is given up after wait seconds."""
    model_py = m.path / str(max(m.versions or [1])) / (m.model_file() or "model.py")
    if not model_py.is_file():
        return []
    t0 = time.monotonic()
    try:
        out = start(root, IMPORT_PROBE, [str(model_py)], timeout=wait, launcher=launcher)
    except Timeout:
        return [
            _f(
                "import-timeout",
                "error",
                m,
                f"importing model.py took over {wait:.0f} s",
                "the stub is killed: `Stub process ... is not healthy` / timeout",
                "move heavy imports into initialize() or raise stub-timeout-seconds",
                model_py,
            )
        ]
    wall = time.monotonic() - t0
    text = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip()[-300:]
    if out.returncode != 0:
        return [
            _f(
                "import-fails",
                "error",
                m,
                f"model.py does not import in its env: {text}",
                text,
                "add the missing package to the env's requirements and rebuild it (envtool build)",
                model_py,
            )
        ]
    seconds = float(text) if text.replace(".", "", 1).isdigit() else wall
    if seconds > timeout:
        return [
            _f(
                "import-slow",
                "error",
                m,
                f"model.py's imports take {seconds:.1f} s, more than stub-timeout-seconds ({timeout:.0f} s)",
                "the stub is not healthy in time",
                "move heavy imports into initialize(), or --backend-config=python,stub-timeout-seconds=N",
                model_py,
            )
        ]
    return []


def _shm(repo, available: int, release: str | None) -> list[Finding]:
    """Each python model instance's stub maps a region of shm-default-byte-size at start: 1 MiB from r23.09,
    64 MiB before (history.toml shm-default-1mib)."""
    per = 2**20 if release is None or release_key(release) >= release_key(first_release("shm-default-1mib")) \
        else 64 * 2**20
    instances = repo.python_instances()
    need = instances * per
    if need <= available:
        return []
    which = f"r{release}" if release else "the release"
    return [Finding(
        "docker-shm", "warning", None,
        f"/dev/shm of {available / 2**20:.0f} MiB is less than the {need / 2**20:.0f} MiB the python models need "
        f"({instances} instance(s) x {per // 2**20} MiB, {which}'s shm-default-byte-size)",
        "Unable to initialize shared memory key ... Error: No space left on device",
        f"docker run --shm-size={need // 2**20 + 64}m (envtool verify --server docker sizes it), or a smaller "
        "--backend-config=python,shm-default-byte-size=N")]


def explain_log(path: Path, release: catalog.Release | None = None, repo: Path | None = None) -> DoctorReport:
    """doctor --log (and doctor REPO --log): the causes in a Triton log, root first, each with the lines it
    stands on. The log is streamed (any size, bounded memory); REPO's configs confirm or overturn a cause."""
    return _verdict(logs.read(path, interesting()), release, repo)


def explain_lines(lines, release: catalog.Release | None = None, repo: Path | None = None) -> DoctorReport:
    """explain_log over lines already read (the corpus of tests/fixtures/logs, without its header)."""
    return _verdict(logs.parse(lines, interesting()), release, repo)


def _verdict(log_facts: logs.LogFacts, release: catalog.Release | None, repo: Path | None) -> DoctorReport:
    repository = load_repository(repo) if repo is not None else None
    verdict = diagnose_log(log_facts, release, repository)
    return DoctorReport(verdict.findings, verdict.diagnoses, verdict)
