"""`envtool doctor`: every version mismatch that can be seen before deploying, and a failing server's
log explained. Static checks read the stub and the env (tarball or directory) of each python model
without starting a server; each finding names what Triton would print and the fix."""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from envtool import catalog
from envtool.diagnose import Diagnosis, hang_hint, load_failures, scan
from envtool.elf import read_elf, version_key
from envtool.env.validate import extract, run_as_triton
from envtool.env.view import EnvView, view_env
from envtool.errors import BadInput
from envtool.findings import Finding
from envtool.repo.lint import lint_repository
from envtool.repo.model_repo import Model, load_repository
from envtool.runner import Timeout
from envtool.stub.store import STUB, stub_release

ARCH = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}
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


@dataclass(frozen=True)
class ImageFacts:
    """The C/C++ runtime of the image the repository will run in."""

    name: str
    glibc: str | None
    glibcxx: str | None


def image_facts(rel, image: str | None) -> ImageFacts | None:
    """--image: read from the image itself (docker); else the release's image from the catalog."""
    if image:
        from envtool.containers.engine import runtime_versions

        glibc, glibcxx = runtime_versions(image)
        return ImageFacts(image, glibc, glibcxx)
    if rel:
        return ImageFacts(f"r{rel.release}'s image", rel.glibc, rel.max_glibcxx)
    return None


@dataclass
class DoctorOptions:
    repo: Path
    release: str | None = None
    stub_timeout: float = 30.0  # the python backend's stub-timeout-seconds
    import_check: bool = True
    image: str | None = None  # check against this image's glibc/libstdc++ instead of the catalog's
    docker_shm_bytes: int | None = None  # /dev/shm of the container it will run in (docker default 64 MB)


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings) and not self.diagnoses

    def all_findings(self) -> list[Finding]:
        """The findings, and each diagnosis of a log as one (for SARIF and annotations)."""
        return self.findings + [Finding(d.id, "error", None, d.cause, d.line, d.fix) for d in self.diagnoses]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
            "diagnoses": [d.to_dict() for d in self.diagnoses],
        }


def doctor(opts: DoctorOptions, log=lambda _m: None) -> DoctorReport:
    repo = load_repository(opts.repo)
    rel = catalog.normalize_release(opts.release) if opts.release else None
    report = DoctorReport(lint_repository(repo))
    img = image_facts(rel, opts.image)
    with tempfile.TemporaryDirectory(prefix="envtool-doctor-") as tmp:
        roots = _Extractions(Path(tmp))
        for m in sorted(repo.python_models(), key=lambda m: m.name):
            log(f"checking {m.name}")
            report.findings += check_model(m, rel, img, opts, roots)
    if opts.docker_shm_bytes is not None:
        report.findings += _shm(repo, opts.docker_shm_bytes)
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
        self.tmp, self.done = tmp, {}

    def root(self, env: EnvView) -> Path:
        if env.kind == "directory":
            return env.path
        if env.path not in self.done:
            self.done[env.path] = extract(env.path, self.tmp / str(len(self.done)))
        return self.done[env.path]


def check_model(m: Model, rel, img: ImageFacts | None, opts: DoctorOptions, roots: _Extractions) -> list[Finding]:
    out: list[Finding] = []
    stub_path = m.path / STUB
    stub = read_elf(stub_path) if stub_path.is_file() else None
    env_path = m.existing_env()
    env = view_env(env_path) if env_path is not None else None
    if stub is None:
        out.append(
            _f(
                "stub-default",
                "info",
                m,
                "no stub in the model folder: the backend's default stub runs it, "
                "linked to the server image's Python",
            )
        )
    if env is not None:
        out += _env(m, env, rel, img)
    if stub is not None:
        out += _stub(m, stub, stub_path, env, rel, img)
    if env is not None and env.kind in ("tarball", "directory") and opts.import_check:
        out += _imports(m, roots.root(env), opts.stub_timeout)
    return out


def _stub(m: Model, stub, path: Path, env: EnvView | None, rel, img: ImageFacts | None) -> list[Finding]:
    out = []
    py = stub.libpython
    env_py = env.python if env else None
    if py and env_py and py != env_py:
        out.append(
            _f(
                "stub-python",
                "error",
                m,
                f"the stub links libpython{py} and the env has Python {env_py}",
                f"error while loading shared libraries: libpython{py}.so.1.0: cannot open shared object file "
                "(then the server hangs)",
                f"envtool build --python {env_py} --triton "
                f"{'r' + rel.release if rel else '<release>'} --repo {m.path.parent}",
                path,
            )
        )
    made_for = stub_release(path)
    if rel and made_for and made_for != rel.release:
        out.append(
            _f(
                "stub-release",
                "error",
                m,
                f"the stub was built for r{made_for}, the server is r{rel.release}",
                "no error: the server hangs at `Starting Python backend stub`",
                f"envtool stub --triton r{rel.release} --python {py}",
                path,
            )
        )
    if img:
        for sym, have in (("GLIBC", img.glibc), ("GLIBCXX", img.glibcxx)):
            need = stub.versions.get(sym)
            if need and have and version_key(need) > version_key(have):
                out.append(
                    _f(
                        "stub-glibc",
                        "error",
                        m,
                        f"the stub needs {sym}_{need}; {img.name} has {have}",
                        f"version `{sym}_{need}' not found (required by {STUB})",
                        "build the stub inside the release's container (envtool stub --builder docker)",
                        path,
                    )
                )
    std = (
        env.elves.get(next((n for n in sorted(env.elves) if n.startswith("lib/libstdc++.so")), ""), None)
        if env
        else None
    )
    need = stub.versions.get("GLIBCXX")
    if std and need and version_key(std.defines.get("GLIBCXX", "0")) < version_key(need):
        out.append(
            _f(
                "env-libstdcxx",
                "error",
                m,
                f"the env's lib/libstdc++ provides GLIBCXX up to "
                f"{std.defines.get('GLIBCXX')} and the stub needs {need}; the env's lib/ comes first on "
                "LD_LIBRARY_PATH",
                f"version `GLIBCXX_{need}' not found",
                "remove lib/libstdc++.so* from the "
                "env (the system's is newer), or install a newer libstdcxx-ng into it",
                env.path,
            )
        )
    return out


def _env(m: Model, env: EnvView, rel, img: ImageFacts | None) -> list[Finding]:
    out = []
    if env.kind == "not gzip":
        return out  # lint reports it (archive_read_open_filename() failed.)
    if env.top_folder:
        out.append(
            _f(
                "env-top-folder",
                "error",
                m,
                f"every file of the env is under {env.top_folder}: bin/activate is not at the top",
                f"Path {env.path}/bin/activate does not exist",
                "pack it without a top folder (envtool pack, or conda-pack)",
                env.path,
            )
        )
        return out
    for need, why in (("bin/activate", "Triton sources it"), ("bin/python3", "the stub finds its prefix by it")):
        if not env.has(need):
            out.append(
                _f(
                    "env-layout",
                    "error",
                    m,
                    f"the env has no {need} ({why})",
                    f"Path {env.path}/bin/activate does not exist" if need == "bin/activate" else None,
                    "pack the env with envtool pack (or conda-pack)",
                    env.path,
                )
            )
    if env.python and not any(n.startswith(f"lib/libpython{env.python}") for n in env.names):
        out.append(
            _f(
                "env-libpython",
                "error",
                m,
                f"the env has no lib/libpython{env.python}.so.1.0",
                f"error while loading shared libraries: libpython{env.python}.so.1.0",
                "use a Python built with --enable-shared (envtool pack checks it)",
                env.path,
            )
        )
    if env.activate is not None and "PATH" not in env.activate:
        out.append(
            _f(
                "env-activate-path",
                "error",
                m,
                "bin/activate does not put the env's bin/ on PATH: the stub would find another python3",
                "Fatal Python error: init_fs_encoding",
                "use conda-pack's activate (envtool pack writes it)",
                env.path,
            )
        )
    out += _env_binaries(m, env, img)
    numpy = env.packages.get("numpy")
    if numpy is None:
        out.append(
            _f(
                "env-numpy",
                "error",
                m,
                "the env has no numpy; the stub imports it",
                "ModuleNotFoundError: No module named 'numpy'",
                "add numpy to the env",
                env.path,
            )
        )
    elif rel and not rel.numpy2 and version_key(numpy) >= (2,):
        out.append(
            _f(
                "env-numpy2",
                "error",
                m,
                f"the env has numpy {numpy}; r{rel.release}'s stub (pybind11 < 2.12) misreads numpy 2 arrays",
                "output tensor shape does not match size of output (or, in an "
                "ensemble, input byte size mismatch ... got 0)",
                f"pin numpy<2 (envtool pack --triton r{rel.release})",
                env.path,
            )
        )
    for name in env.editable:
        out.append(
            _f(
                "env-editable",
                "error",
                m,
                f"{name} is an editable install: its code is outside the env",
                "ModuleNotFoundError at load time",
                "install it normally (pip install .)",
                env.path,
            )
        )
    return out


def _env_binaries(m: Model, env: EnvView, img: ImageFacts | None) -> list[Finding]:
    out = []
    pythons = sorted(n for n in env.files if re.match(r"^bin/python3(\.\d+)?$", n))
    py = next((env.elves[n] for n in pythons if n in env.elves), None)
    want = ARCH.get(os.uname().machine)
    if py is not None and want and py.machine != want:
        out.append(
            _f(
                "env-arch",
                "error",
                m,
                f"the env's python3 is built for {py.machine}, this machine is {os.uname().machine}",
                "Failed to initialize Python stub for auto-complete",
                "pack the env on Linux for this architecture",
                env.path,
            )
        )
    if py is None and pythons:
        out.append(
            _f(
                "env-platform",
                "error",
                m,
                "the env's python3 is not a Linux ELF binary (packed on macOS?)",
                "Failed to initialize Python stub for auto-complete",
                "pack the env on Linux",
                env.path,
            )
        )
    if img and img.glibc:
        need = max((f.versions.get("GLIBC", "0") for f in env.elves.values()), key=version_key, default="0")
        if version_key(need) > version_key(img.glibc):
            out.append(
                _f(
                    "env-glibc",
                    "error",
                    m,
                    f"binaries in the env need GLIBC_{need}; {img.name} has {img.glibc}",
                    f"version `GLIBC_{need}' not found",
                    "pack the env inside the release's container (envtool pack --builder docker) or from conda",
                    env.path,
                )
            )
    return out


def _imports(m: Model, root: Path, timeout: float) -> list[Finding]:
    """Import model.py inside its env, as the stub would, and time it against stub-timeout-seconds."""
    model_py = m.path / str(max(m.versions or [1])) / (m.model_file() or "model.py")
    if not model_py.is_file():
        return []
    t0 = time.monotonic()
    try:
        out = run_as_triton(root, IMPORT_PROBE, [str(model_py)], timeout=timeout * 2 + 30)
    except Timeout:
        return [
            _f(
                "import-timeout",
                "error",
                m,
                f"importing model.py took over {timeout * 2 + 30:.0f} s",
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


def _shm(repo, available: int) -> list[Finding]:
    from envtool.servers.docker import shm_size

    need = shm_size(repo.path)
    if need <= available:
        return []
    return [
        Finding(
            "docker-shm",
            "warning",
            None,
            f"/dev/shm of {available / 2**20:.0f} MiB is less than the "
            f"{need / 2**20:.0f} MiB the python models need",
            "Unable to initialize shared memory key ... use '--shm-size'",
            f"docker run --shm-size={need // 2**20}m (envtool verify --server docker sizes it)",
        )
    ]


def explain_log(text: str) -> DoctorReport:
    """doctor --log: the causes in a Triton log, the models it rejected, and the hang signatures."""
    report = DoctorReport(diagnoses=scan(text))
    for model, reason in load_failures(text).items():
        first = reason.strip().splitlines()[0] if reason.strip() else reason
        report.findings.append(Finding("load-failed", "error", model, first, reason))
    if hint := hang_hint(text):
        report.findings.append(
            Finding(
                "hang",
                "error",
                None,
                hint,
                "no error line: the server waits forever",
                "envtool stub --triton <the server's release>",
            )
        )
    return report


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as e:
        raise BadInput(f"--log {path}: {e.strerror}", "pass the server's log file") from None
