"""Discover what a model repository holds: models, versions, python models, ensembles, steps."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from envtool.catalog import tomllib
from envtool.errors import BadInput
from envtool.launcher import real_stub
from envtool.names import CONFIG, ENSEMBLE, ENV_KEY, FORCE_CPU_KEY, MODEL_DIR_VAR, PYTHON_FILE, STUB_NAME  # noqa: F401 (re-exported)
from envtool.repo.config import ModelConfig, load_config
from envtool.transaction import recover


@dataclass
class Step:
    index: int
    model_name: str
    model_version: int
    input_map: dict[str, str]  # step model's input -> ensemble tensor
    output_map: dict[str, str]  # step model's output -> ensemble tensor


@dataclass
class Model:
    name: str
    path: Path
    config: ModelConfig | None = None
    error: BadInput | None = None  # why the config could not be read
    versions: list[int] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def stub(self) -> Path | None:
        """The stub binary this model runs: its own (behind envtool's launcher, the ELF beside it), or None
        where the backend's default stub runs it."""
        own = self.path / STUB_NAME
        return real_stub(own) if own.is_file() else None

    @property
    def backend(self) -> str:
        c = self.config
        if c is None:
            return ""
        return c.backend or c.platform

    def autofilled(self) -> tuple[str, str]:
        """(backend, platform) as core's AutoCompleteBackendFields fills them: from the platform, the
        default_model_filename, or the file in the first version folder (model_files.toml [[autofill]]).
        ("", "") where core would look no further than the model's name (a custom backend)."""
        c = self.config
        backend, platform, default = (c.backend, c.platform, c.default_model_filename) if c else ("", "", "")
        rules = model_files()["autofill"]
        first = self._first_folder() if not default else None

        def found(r: dict) -> bool:
            return default == r["file"] if default else first is not None and _is_kind(first / r["file"],
                                                                                      r["kind"])
        tf = [r for r in rules if r["backend"] == "tensorflow"]
        if not platform and backend in ("", "tensorflow"):  # TF's platform comes from the file
            platform = next((r["platform"] for r in tf if found(r)), "")
        if platform in {r["platform"] for r in tf}:
            return backend or "tensorflow", platform
        if not backend:
            for r in (r for r in rules if r not in tf):
                if (platform and platform == r["platform"]) or (default and default == r["file"]) or (
                        not platform and not default and found(r)):
                    return r["backend"], platform or r["platform"]
        elif not platform:
            platform = next((r["platform"] for r in rules if r["backend"] == backend != "tensorflow"), "")
        return backend, platform

    def _first_folder(self) -> Path | None:
        """The folder core reads (the first sub-folder by name, numeric or not)."""
        try:
            return min((p for p in self.path.iterdir() if p.is_dir()), default=None)
        except OSError:
            return None

    @property
    def is_python(self) -> bool:
        """backend "python", or what Triton's core (AutoCompleteBackendFields) takes for python: no backend
        and no platform, and model.py in the first version folder. config.pbtxt may be absent."""
        return self.error is None and self.autofilled()[0] == "python"

    @property
    def is_ensemble(self) -> bool:
        c = self.config
        return c is not None and (c.platform == ENSEMBLE or c.backend == ENSEMBLE
                                  or c.HasField("ensemble_scheduling"))

    def parameter(self, key: str) -> str | None:
        if self.config is None or key not in self.config.parameters:
            return None
        return self.config.parameters[key].string_value

    def env_path(self) -> Path | None:
        """Where Triton looks for the env (core's LocalizePythonBackendExecutionEnvironmentPath): None with
        no EXECUTION_ENV_PATH, or with a value Triton cannot resolve (relative)."""
        value = self.parameter(ENV_KEY)
        if not value:
            return None
        if value.startswith(MODEL_DIR_VAR):
            return Path(str(self.path) + value[len(MODEL_DIR_VAR):])
        return Path(value) if value.startswith("/") else None

    def existing_env(self) -> Path | None:
        """env_path() resolved, where it exists."""
        p = self.env_path()
        return p.resolve() if p is not None and p.exists() else None

    def steps(self) -> list[Step]:
        if self.config is None:
            return []
        return [Step(i, s.model_name, s.model_version, dict(s.input_map), dict(s.output_map))
                for i, s in enumerate(self.config.ensemble_scheduling.step)]

    def loaded_versions(self) -> list[int]:
        """The versions Triton would load under the model's version_policy (default: latest 1)."""
        vs = sorted(self.versions)
        policy = self.config.version_policy if self.config is not None else None
        if policy is not None and policy.HasField("all"):
            return vs
        if policy is not None and policy.HasField("specific"):
            return [v for v in vs if v in set(policy.specific.versions)]
        n = policy.latest.num_versions if policy is not None and policy.HasField("latest") else 1
        return vs[-max(n, 1):] if vs else []

    def model_file(self) -> str | None:
        """The file each version folder must hold: default_model_filename, else the backend's default
        (model_files.toml); None where envtool does not know the backend's convention."""
        c = self.config
        if c is not None and c.default_model_filename:
            return c.default_model_filename
        backend, platform = self.autofilled()
        if backend == "python" or (c is None and not backend):
            return PYTHON_FILE if backend == "python" else None
        files = model_files()
        if backend == "fil":
            return files["fil_model_type"].get(self.parameter("model_type") or "xgboost")
        return files["platform"].get(platform) or files["backend"].get(backend)


@lru_cache(maxsize=None)
def model_files() -> dict:
    return tomllib.loads((Path(__file__).parent / "model_files.toml").read_text())


@dataclass
class Repository:
    path: Path
    models: dict[str, Model]

    def ensembles(self) -> list[Model]:
        return [m for m in self.models.values() if m.is_ensemble]

    def python_models(self) -> list[Model]:
        return [m for m in self.models.values() if m.is_python]

    def python_instances(self) -> int:
        """The python model instances the repository starts: one stub (and one shm region) each."""
        instances = 0
        for m in self.python_models():
            groups = m.config.instance_group if m.config is not None else []
            instances += sum(max(g.count, 1) for g in groups) or 1
        return instances

    def auto_complete_needed(self) -> str | None:
        """Why a server of this repository needs auto-complete (the first reason), or None where
        --disable-auto-complete-config changes nothing: every model has its config.pbtxt and is an ensemble
        or a python model whose model.py defines no auto_complete_config (read with ast, never run). With
        auto-complete on, the python backend starts a stub per model just to ask (KNOWLEDGE.md section 3)."""
        for m in self.models.values():
            if m.config is None:
                return f"model {m.name} has no readable config.pbtxt"
            if m.is_ensemble:
                continue
            if not m.is_python:
                return f"model {m.name} ({m.backend or 'its backend'}) may be completed by its backend"
            for v in m.versions:
                if defines_auto_complete(m.path / str(v) / (m.model_file() or PYTHON_FILE)):
                    return f"model {m.name}'s {v}/model.py defines auto_complete_config"
        return None

    def ensemble_members(self, ensemble: Model, _seen: frozenset = frozenset()) -> list[str]:
        """Models an ensemble runs, nested ensembles expanded, in step order."""
        out: list[str] = []
        for step in ensemble.steps():
            sub = self.models.get(step.model_name)
            if sub is not None and sub.is_ensemble and sub.name not in _seen:
                out += self.ensemble_members(sub, _seen | {ensemble.name})
            elif step.model_name not in out:
                out.append(step.model_name)
        return out


def defines_auto_complete(model_py: Path) -> bool:
    """model.py has a class with an auto_complete_config method; unreadable or unparsable counts as yes."""
    import ast
    try:
        tree = ast.parse(model_py.read_bytes(), str(model_py))
    except FileNotFoundError:
        return False
    except (OSError, SyntaxError, ValueError):
        return True
    return any(isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == "auto_complete_config"
               for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for f in c.body)


def _is_kind(path: Path, kind: str) -> bool:
    return path.is_dir() if kind == "dir" else path.is_file() if kind == "file" else path.exists()


def is_version_name(name: str) -> bool:
    """A plain integer: Triton ignores `01/` or `+1/` (not the canonical form of a number)."""
    return name.isdigit() and str(int(name)) == name


def load_model(path: Path) -> Model:
    m = Model(path.name, path)
    try:
        m.versions = sorted(int(p.name) for p in path.iterdir() if p.is_dir() and is_version_name(p.name))
    except OSError as e:  # an unreadable model folder: a finding for this model, not a crash
        m.error = BadInput(f"model folder {path} cannot be read: {e.strerror}",
                           "make it readable by the user that runs the server", where=str(path))
        return m
    if m.config_path.is_file():
        try:
            m.config = load_config(m.config_path)
        except BadInput as e:
            m.error = e
    return m


def load_repository(path: str | Path) -> Repository:
    root = Path(path)
    if not root.is_dir():
        raise BadInput(f"model repository {path} does not exist or is not a directory",
                       "pass the folder that holds one sub-folder per model")
    root = root.resolve()
    recover(root)  # an inject killed half-way: rolled back (or finished) before anything reads the repository
    if is_model_folder(root):
        raise BadInput(f"{path} is a model folder, not a model repository",
                       f"pass the folder that holds it: {root.parent}")
    models = {p.name: load_model(p) for p in sorted(root.iterdir())
              if p.is_dir() and not p.name.startswith(".")}
    return Repository(root, models)


def is_model_folder(path: Path) -> bool:
    """A model's own folder (config.pbtxt, or a version folder holding a model file), given where Triton wants
    the repository that holds it."""
    if (path / "config.pbtxt").is_file():
        return True
    return any(p.is_dir() and is_version_name(p.name) and any(p.glob("model.*")) for p in path.iterdir())


def unservable(repo: Repository) -> list[tuple[str, str | None, str, str]]:
    """(rule, model, what, fix) for what makes Triton fail however the configs read:
    - a symlink that leads nowhere (or into a loop) where Triton lists the repository: it answers 500 to
      every index request;
    - a space in a python model's path: Triton starts the stub through `bash -c` unquoted (python_backend
      src/stub_launcher.cc), so the launch fails and the server waits forever."""
    out: list[tuple[str, str | None, str, str]] = []
    folders = [repo.path] + [m.path for m in repo.models.values() if m.error is None]
    for p in (q for folder in folders for q in folder.iterdir()):
        if p.is_symlink() and not os.path.exists(p):
            model = p.parent.name if p.parent != repo.path else None
            out.append(("broken-symlink", model, f"{p} is a symlink to {os.readlink(p)!r}, which does not exist "
                        "(or loops)", "remove it or point it at an existing file"))
    for m in repo.python_models():
        stub = m.path / STUB_NAME
        if stub.is_file() and read_only(m.path) and (probe := fails_triton_probe(stub)):
            out.append(("stub-probe-read-only", m.name, f"{stub} fails Triton's no-argument probe ({probe}) and "
                        "the repository is read-only: Triton cannot chmod it and fails the model (Failed to give "
                        "execute permission to triton_python_backend_stub)",
                        "serve the repository from a writable folder (a copy of the read-only one)"))
        if any(c.isspace() for c in str(m.path)):
            out.append(("path-space", m.name, f"the path {m.path} has a space: Triton starts the stub through "
                        "`bash -c` unquoted, so the launch fails and the server waits forever",
                        "move or copy the repository to a path without spaces"))
    return out


def require_servable(repo: Repository) -> None:
    """verify and serve: refuse up front what unservable() names (one line, exit 2), before a server starts."""
    if problems := unservable(repo):
        _rule, _model, what, fix = problems[0]
        raise BadInput(what, fix)


def fails_triton_probe(stub: Path, timeout: float = 10.0) -> str | None:
    """Triton runs a model's stub with no arguments, in the server's environment (no env applied), before it
    starts it; unless that exits 1 it chmods the stub to ---x------, and where it cannot (a read-only
    repository) the model fails "Failed to give execute permission" (python_backend src/stub_launcher.cc).
    What the probe printed where it does not exit 1 here; None where it does (or cannot run here)."""
    try:
        out = subprocess.run([str(stub)], capture_output=True, text=True, timeout=timeout,
                             env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode == 1:
        return None
    first = (out.stderr or out.stdout).strip().splitlines()
    return f"exit {out.returncode}" + (f": {first[0][:200]}" if first else "")


def read_only(path: Path) -> bool:
    """A read-only mount (docker -v repo:/models:ro, a ConfigMap), or a folder this user cannot write."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY) or not os.access(path, os.W_OK)
    except OSError:
        return False
