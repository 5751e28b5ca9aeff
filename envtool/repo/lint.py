"""What Triton core and the python backend reject or warn about at load time, checked statically.

Messages in `triton=` are the texts Triton prints (core r24.10: model_config_utils.cc,
ensemble_scheduler/ensemble_utils.cc, model_repository_manager.cc; python_backend pb_env.cc).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from envtool.env.view import is_gzip
from envtool.findings import Finding
from envtool.repo.config import dims_str, dtype_name
from envtool.repo.model_repo import ENV_KEY, FORCE_CPU_KEY, MODEL_DIR_VAR, Model, Repository, Step, is_version_name


def lint_repository(repo: Repository) -> list[Finding]:
    findings: list[Finding] = []
    for model in repo.models.values():
        findings += _lint_model(model)
        if model.is_python:
            findings += lint_python_model(model)
    for ensemble in repo.ensembles():
        if ensemble.config is not None:
            findings += _EnsembleLinter(repo, ensemble).run()
    return findings


# --- every model -------------------------------------------------------------------------------

def _lint_model(m: Model) -> list[Finding]:
    if m.error is not None:
        return [Finding("config-syntax", "error", m.name, m.error.message,
                        fix=m.error.fix, where=m.error.where)]
    if m.config is None and m.is_python:
        return [Finding("config-missing", "info", m.name,
                        f"{m.name}/ has no config.pbtxt: Triton takes it as a python model (model.py) and "
                        "completes its config from auto_complete_config", where=str(m.path)),
                *_lint_model_file(m)]
    if m.config is None:
        return [Finding("config-missing", "warning", m.name,
                        f"{m.name}/ has no config.pbtxt; Triton must auto-complete it from the model",
                        fix=f"add {m.name}/config.pbtxt with at least backend or platform",
                        where=str(m.path))]
    out = []
    c = m.config
    if c.name and c.name != m.name:
        out.append(Finding(
            "name-mismatch", "error", m.name, f"config name {c.name!r} differs from folder {m.name!r}",
            triton=f"unexpected directory name '{m.name}' for model '{c.name}', directory name "
                   "must equal model name",
            fix=f'set name: "{m.name}" or rename the folder', where=str(m.config_path)))
    if not c.backend and not c.platform and not m.is_python:  # core takes model.py as python
        out += _no_backend(m)
    if not m.loaded_versions():  # ensembles too: an empty <ensemble>/1/ is required
        out.append(Finding(
            "no-version", "error", m.name, "no numeric version folder matches the version policy",
            triton="at least one version must be available under the version policy of model "
                   f"'{m.name}'",
            fix=f"create {m.name}/1/ holding the model file", where=str(m.path)))
    if not m.is_ensemble:
        out += _lint_model_file(m)
    return out + _version_folders(m) + _core_validation(m)


def _no_backend(m: Model) -> list[Finding]:
    """Core's AutoCompleteBackendFields: with no default_model_filename either, a model named model.<backend>
    gets that backend (a custom backend); any other name is refused before ValidateModelConfig runs."""
    c = m.config
    if not c.default_model_filename and "." in m.name:
        return []
    triton = (f"must specify 'platform' or 'backend' for '{m.name}'" if c.default_model_filename else
              f"Invalid model name: Could not determine backend for model '{m.name}' with no backend in model "
              "configuration. Expected model name of the form 'model.<backend_name>'.")
    return [Finding("no-backend", "error", m.name, "neither backend nor platform is set", triton=triton,
                    fix='add backend: "python" (or the model\'s backend)', where=str(m.config_path))]


def _version_folders(m: Model) -> list[Finding]:
    odd = sorted(d.name for d in m.path.iterdir()
                 if d.is_dir() and d.name.isdigit() and not is_version_name(d.name))
    return [Finding("version-folder-name", "warning", m.name, f"{n}/ is not a version folder for Triton: it reads "
                    "plain integers only, and ignores it", fix=f"rename it {int(n)}/", where=str(m.path / n))
            for n in odd]


# Platforms core knows without a backend (it fills the backend from them); texts: core r24.10
# src/model_config_utils.cc ValidateModelConfig / ValidateIOShape.
KNOWN_PLATFORMS = {"ensemble", "tensorrt_plan", "onnxruntime_onnx", "pytorch_libtorch", "tensorflow_savedmodel",
                   "tensorflow_graphdef"}


def _core_validation(m: Model) -> list[Finding]:
    """Core's ValidateModelConfig, on what lint can see before auto-complete."""
    c, where, out = m.config, str(m.config_path), []

    def add(rule: str, message: str, triton: str, fix: str) -> None:
        out.append(Finding(rule, "error", m.name, message, triton=triton, fix=fix, where=where))
    if c.platform == "ensemble" and c.backend:
        add("ensemble-backend", f"an ensemble also sets backend {c.backend!r}",
            f"Ensemble model '{m.name}' must have platform type 'ensemble' and empty backend type",
            "remove its backend line")
    elif c.platform and not c.backend and c.platform not in KNOWN_PLATFORMS:
        add("platform-unknown", f"platform {c.platform!r} is not one Triton knows",
            f"unexpected platform type '{c.platform}' for {m.name}",
            f"use one of {', '.join(sorted(KNOWN_PLATFORMS))}, or set backend")
    if c.max_batch_size < 0:
        add("max-batch-negative", f"max_batch_size is {c.max_batch_size}",
            f"'max_batch_size' must be non-negative value for {m.name}", "set 0 (no batching) or a positive size")
    if m.is_ensemble or (m.is_python and not _autocompletes(m)):  # others may be completed by their backend
        for kind, tensors in (("input", c.input), ("output", c.output)):
            out += [replace(f, model=m.name, where=where) for t in tensors for f in _io_shape(kind, t, m.name)]
    return out


def _io_shape(kind: str, t, model: str) -> list[Finding]:
    """Core's ValidateIOShape, first failure only (as core reports it)."""
    prefix = f"model {kind} '{t.name}' "
    if not t.data_type:
        return [Finding("io-data-type", "error", None, f"{kind} {t.name} has no data_type",
                        f"{prefix}must specify 'data_type' for {model}", "add data_type: TYPE_...")]
    if not len(t.dims):
        return [Finding("io-dims", "error", None, f"{kind} {t.name} has no dims",
                        f"{prefix}must specify 'dims' for {model}", "add dims: [ ... ] (-1 for a variable size)")]
    if any(d < 1 and d != -1 for d in t.dims):
        return [Finding("io-dim-zero", "error", None, f"{kind} {t.name} has a dimension < 1 that is not -1",
                        f"{prefix}dimension must be integer >= 1, or -1 to indicate a variable-size dimension "
                        f"for {model}", "use a positive size, or -1")]
    return []


def _lint_model_file(m: Model) -> list[Finding]:
    """Each loaded version must hold the file its backend loads (default_model_filename respected);
    backends whose convention envtool does not know are not checked."""
    name = m.model_file()
    if name is None:
        return []
    rule, fix = (("python-model-file", "defining TritonPythonModel") if m.is_python
                 else ("model-file", f"(the {m.backend} backend loads it), or set default_model_filename"))
    return [Finding(rule, "error", m.name, f"{m.name}/{v}/{name} does not exist",
                    fix=f"add {m.name}/{v}/{name} {fix}", where=str(m.path / str(v)))
            for v in m.loaded_versions() if not (m.path / str(v) / name).exists()]


# --- python models -----------------------------------------------------------------------------

def lint_python_model(m: Model) -> list[Finding]:
    out = []
    where = str(m.config_path)
    force = m.parameter(FORCE_CPU_KEY)
    if force is not None and force not in ("yes", "no"):
        out.append(Finding("force-cpu-value", "error", m.name,
                           f'{FORCE_CPU_KEY} is "{force}"; the python backend reads only "yes" or "no"',
                           triton=f"Incorrect value for {FORCE_CPU_KEY}: {force}'",
                           fix=f'set {FORCE_CPU_KEY} to "no" (GPU tensors via DLPack) or "yes"',
                           where=where))
    env = m.parameter(ENV_KEY)
    if env is not None:
        out += _lint_env_path(m, env)
    return out


CLOUD_URL = re.compile(r"^(s3|gs|as)://")
CLOUD_FORM = re.compile(r"^(s3|gs|as)://[^/\s]+(/[^\s]*)?/[^/\s]+$")


def _lint_env_path(m: Model, value: str) -> list[Finding]:
    where = str(m.config_path)
    fix_form = f'use "{MODEL_DIR_VAR}/<env>.tar.gz" with the env inside {m.name}/'
    if CLOUD_URL.match(value):  # core fetches it: checked for form, not existence
        if CLOUD_FORM.match(value):
            return []
        return [Finding("env-path-cloud-form", "error", m.name, f'{ENV_KEY} "{value}" is not a well-formed '
                        "cloud URL", fix="write it as s3://bucket/path/env.tar.gz (gs://, as:// alike)",
                        where=where)]
    path = m.env_path()
    if path is None:
        triton = f"Failed to get the canonical path for {value}."
        return [Finding("env-path-relative", "error", m.name,
                        f'{ENV_KEY} "{value}" is relative: Triton resolves it against the '
                        "server's working directory, not the model folder",
                        triton=triton, fix=fix_form, where=where)]
    out = []
    if MODEL_DIR_VAR in value[1:]:
        out.append(Finding("env-path-var-position", "error", m.name,
                           f"{MODEL_DIR_VAR} must begin the value of {ENV_KEY}",
                           fix=fix_form, where=where))
    if value.startswith(MODEL_DIR_VAR) and ".." in Path(value[len(MODEL_DIR_VAR):]).parts:
        out.append(Finding("env-path-escapes", "warning", m.name,
                           f'{ENV_KEY} "{value}" leaves the model folder: fine for a local repository (core '
                           "collapses the '..'), but a cloud repository (s3://, gs://, as://) is fetched folder "
                           "by folder and the env is not there", fix=fix_form, where=where))
    if not path.exists():
        out.append(Finding("env-missing", "error", m.name, f"{ENV_KEY} points to {path}, which "
                           "does not exist", triton=f"Failed to get the canonical path for {path}.",
                           fix=f"envtool inject {m.path.parent} --env ENV --stub STUB", where=where))
    elif not (path.is_file() or path.is_dir()):  # a FIFO, device or socket: never opened (it could block)
        out.append(Finding("env-special-file", "error", m.name, f"{ENV_KEY} points to {path}, which is neither "
                           "a file nor a folder (a FIFO, device or socket)", triton="archive_read_open_filename() "
                           "failed.", fix="point it at the env's .tar.gz or its folder", where=where))
    elif path.is_dir():
        if not (path / "bin" / "activate").is_file():
            out.append(Finding(
                "env-no-activate", "error", m.name, f"env directory {path} has no bin/activate",
                triton=f"Path {path}/bin/activate does not exist. The Python environment should "
                       "contain an 'activate' script.",
                fix="pack the env with `envtool pack` (conda-pack layout)", where=where))
    elif not is_gzip(path):
        out.append(Finding("env-not-gzip", "error", m.name,
                           f"{path} is not a gzip tarball; Triton extracts only .tar.gz",
                           triton="archive_read_open_filename() failed.",
                           fix="repack with gzip: `envtool pack` writes .tar.gz", where=where))
    return out


# --- ensembles ---------------------------------------------------------------------------------

def _autocompletes(m: Model) -> bool:
    """A python model whose model.py may add inputs/outputs at load (auto_complete_config)."""
    if not m.is_python:
        return False
    for v in m.loaded_versions():
        f = m.path / str(v) / m.model_file()
        if f.is_file() and re.search(r"def\s+auto_complete_config\b", f.read_text(errors="replace")):
            return True
    return False


def _dims_match(a, b) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


@dataclass
class _Tensor:
    model: str
    batching: bool
    dtype: int
    dims: tuple[int, ...]

    @property
    def full_dims(self) -> tuple[int, ...]:
        return ((-1,) if self.batching else ()) + self.dims


class _EnsembleLinter:
    def __init__(self, repo: Repository, ensemble: Model):
        self.repo, self.e, self.c = repo, ensemble, ensemble.config
        self.name = ensemble.name
        self.where = str(ensemble.config_path)
        self.out: list[Finding] = []

    def add(self, rule: str, message: str, triton: str | None = None, fix: str | None = None,
            severity: str = "error") -> None:
        self.out.append(Finding(rule, severity, self.name, message, triton, fix, self.where))

    def run(self) -> list[Finding]:
        self.check_header()
        steps = self.e.steps()
        if not steps:
            self.add("ensemble-no-steps", "the ensemble has no step",
                     f"must specify 'step' for ensemble '{self.name}'",
                     "add ensemble_scheduling { step [ ... ] }")
            return self.out
        self.check_steps(steps)
        self.check_data_flow(steps)
        return self.out

    def check_header(self) -> None:
        c = self.c
        if c.platform != "ensemble":
            wrong = f'backend: "{c.backend}"' if c.backend else f'platform: "{c.platform}"'
            self.add("ensemble-platform",
                     f"an ensemble must declare platform: \"ensemble\", not {wrong}",
                     f"ensemble scheduling cannot be set for model '{self.name}' whose platform "
                     "is not ensemble",
                     f'replace {wrong} with platform: "ensemble"')
        if len(c.instance_group):
            self.add("ensemble-instance-group", "an ensemble takes no instance_group",
                     f"instance group should not be specified for ensemble '{self.name}'",
                     "remove instance_group from the ensemble (keep it on its steps)")

    def check_steps(self, steps: list[Step]) -> None:
        tensors: dict[str, _Tensor] = {}
        batching = self.c.max_batch_size > 0
        for io in list(self.c.input) + list(self.c.output):
            dims = tuple(io.reshape.shape) if io.HasField("reshape") else tuple(io.dims)
            tensors[io.name] = _Tensor(self.name, batching, io.data_type, dims)
        for s in steps:
            for field in ("model_name", "input_map", "output_map"):
                if not getattr(s, field):
                    self.add("ensemble-step-incomplete", f"step {s.index} has no {field}",
                             f"must specify '{field}' in step {s.index} of ensemble '{self.name}'",
                             f"add {field} to step {s.index}")
            model = self.repo.models.get(s.model_name)
            if s.model_name and not self.check_dependency(s, model):
                continue
            if model is None or model.config is None:
                continue
            self.check_batch(s, model)
            declared = {t.name for t in (*model.config.input, *model.config.output)}
            if _autocompletes(model) and not set(s.input_map) | set(s.output_map) <= declared:
                self.add("ensemble-step-autocomplete",
                         f"{s.model_name} declares tensors in model.py (auto_complete_config) that this "
                         "step maps; its mapping is checked only when Triton loads it", severity="info")
                continue
            self.check_mapping(s, model, tensors)

    def check_dependency(self, s: Step, model: Model | None) -> bool:
        if model is None:
            self.add("ensemble-missing-model", f"step {s.index} runs {s.model_name!r}, which is "
                     "not in the repository",
                     f"ensemble {self.name} contains models that are not available or ambiguous: "
                     f"{s.model_name}", f"add the folder {s.model_name}/ or correct model_name")
            return False
        if s.model_version != -1 and s.model_version not in model.loaded_versions():
            loaded = model.loaded_versions()
            self.add("ensemble-version", f"step {s.index} asks for {s.model_name} version "
                     f"{s.model_version}; Triton loads {loaded or 'none'} under its version policy",
                     f"ensemble '{self.name}' depends on '{s.model_name}' whose required version "
                     f"{s.model_version} is not loaded.",
                     "use model_version: -1 (latest) or add/allow that version folder")
        return True

    def check_batch(self, s: Step, model: Model) -> None:
        mbs, own = model.config.max_batch_size, self.c.max_batch_size
        if mbs != 0 and mbs < own:
            self.add("ensemble-max-batch", f"max_batch_size {own} exceeds {s.model_name}'s {mbs}",
                     f"ensemble {self.name} allows maximum batch size {own}, but it contains "
                     f"model {s.model_name} which only allows maximum batch size to be {mbs}",
                     f"set the ensemble's max_batch_size to at most {mbs}")

    def check_mapping(self, s: Step, model: Model, tensors: dict[str, _Tensor]) -> None:
        cfg = model.config
        batching = cfg.max_batch_size > 0
        ins = {i.name: i for i in cfg.input}
        outs = {o.name: o for o in cfg.output}
        pre = f"in ensemble {self.name}, "
        self._unknown_keys(s, "input", s.input_map, ins, "is mapping to non-existing input")
        for name, io in ins.items():
            mapped = [v for k, v in s.input_map.items() if k == name]
            if not mapped and not io.optional:
                self.add("ensemble-input-unmapped", f"step {s.index}: input {name} of "
                         f"{s.model_name} is fed by no ensemble tensor",
                         f"{pre}input {name} in model {s.model_name} is not mapped to any "
                         "ensemble tensors", f'add input_map {{ key: "{name}" value: "<tensor>" }}')
            for value in mapped:
                self.link(tensors, value, _Tensor(s.model_name, batching, io.data_type,
                                                  tuple(io.dims)))
        self._unknown_keys(s, "output", s.output_map, outs, "is mapped from non-existing output")
        for key, value in s.output_map.items():
            if key in outs:
                io = outs[key]
                self.link(tensors, value, _Tensor(s.model_name, batching, io.data_type,
                                                  tuple(io.dims)))

    def _unknown_keys(self, s: Step, kind: str, mapping: dict, names: dict, verb: str) -> None:
        """input_map / output_map keys that are not the step model's tensor names."""
        for key, value in mapping.items():
            if key not in names:
                self.add(f"ensemble-{kind}-map", f"step {s.index}: {s.model_name} has no {kind} "
                         f"{key!r} (its {kind}s: {', '.join(names) or 'none'})",
                         f"in ensemble {self.name}, ensemble tensor {value} {verb} {key} "
                         f"in model {s.model_name}", self._swap_fix(f"{kind}_map", key, value, names))

    @staticmethod
    def _swap_fix(kind: str, key: str, value: str, names: dict) -> str:
        if value in names:
            return (f"{kind} is swapped: keys are the step model's tensor names, values the "
                    f'ensemble\'s: write key: "{value}" value: "{key}"')
        return f"use one of {', '.join(names) or '(none declared)'} as the {kind} key"

    def link(self, tensors: dict[str, _Tensor], name: str, t: _Tensor) -> None:
        seen = tensors.setdefault(name, t)
        if seen is t:
            return
        pre = f"in ensemble {self.name}, ensemble tensor {name}: "
        if seen.dtype != t.dtype:
            a, b = dtype_name(seen.dtype), dtype_name(t.dtype)
            self.add("ensemble-dtype", f"tensor {name} is {a} in {seen.model} but {b} in {t.model}",
                     f"{pre}inconsistent data type: {a} is inferred from model {seen.model} while "
                     f"{b} is inferred from model {t.model}", "make both data_type entries agree")
        elif not (_dims_match(seen.dims, t.dims) or _dims_match(seen.full_dims, t.full_dims)):
            a, b = dims_str(seen.full_dims), dims_str(t.full_dims)
            self.add("ensemble-shape", f"tensor {name} is {a} in {seen.model} but {b} in {t.model}"
                     " (batch dimension included where max_batch_size > 0)",
                     f"{pre}inconsistent shape: {a} is inferred from model {seen.model} while {b} "
                     f"is inferred from model {t.model}", "make the dims agree (use -1 for "
                     "variable sizes)")

    def check_data_flow(self, steps: list[Step]) -> None:
        """Triton's BuildEnsembleGraph and readiness walk, plus an explicit cycle report."""
        produced: dict[str, int] = {}
        for s in steps:
            for t in s.output_map.values():
                if t in produced:
                    self.add("ensemble-tensor-written-twice", f"tensor {t} is written by steps "
                             f"{produced[t]} and {s.index}",
                             f"ensemble tensor '{t}' can appear in an output map only once for "
                             f"ensemble '{self.name}' step {s.index}", "rename one of the outputs")
                produced.setdefault(t, s.index)
        consumed = {t for s in steps for t in s.input_map.values()}
        inputs = [i.name for i in self.c.input]
        for name in inputs:
            if name not in consumed and name not in produced:
                self.add("ensemble-input-unused", f"ensemble input {name} feeds no step",
                         f"ensemble input '{name}' for ensemble {self.name}' is not used",
                         f"map {name} into a step's input_map, or remove the input")
        ready = set(inputs)
        changed = True
        while changed:
            changed = False
            for s in steps:
                if set(s.input_map.values()) <= ready and not set(s.output_map.values()) <= ready:
                    ready |= set(s.output_map.values())
                    changed = True
        cycle = self._cycle(steps)
        if cycle:
            self.add("ensemble-cycle", "steps form a cycle: " + " -> ".join(cycle),
                     fix="an ensemble is a DAG: break the cycle")
        outputs = {o.name for o in self.c.output}
        for name in outputs:
            if name not in produced and name not in consumed:
                self.add("ensemble-output-unwritten", f"ensemble output {name} is never produced",
                         f"ensemble output '{name}' for ensemble {self.name}' is not used",
                         f"map a step's output to {name} in its output_map")
            elif name not in ready:
                self.add("ensemble-output-unwritten", f"ensemble output {name} is never produced",
                         f"output '{name}' for ensemble '{self.name}' is not written",
                         f"map a step's output to {name} in its output_map")
        for t in sorted((set(produced) | consumed) - outputs - set(inputs)):
            if t not in consumed or t not in ready:
                self.add("ensemble-tensor-unused", f"tensor {t} is "
                         + ("never consumed" if t not in consumed else "never produced"),
                         f"ensemble tensor '{t}' is unused in ensemble '{self.name}'",
                         "map it to a step input, or drop it from the output_map"
                         if t not in consumed else f"produce {t} in a step's output_map")

    @staticmethod
    def _cycle(steps: list[Step]) -> list[str]:
        producer = {t: s for s in steps for t in s.output_map.values()}
        state: dict[int, int] = {}
        path: list[Step] = []

        def visit(s: Step) -> list[str]:
            state[s.index] = 1
            path.append(s)
            for t in s.input_map.values():
                p = producer.get(t)
                if p is None:
                    continue
                if state.get(p.index) == 1:
                    loop = path[[x.index for x in path].index(p.index):]
                    return [x.model_name for x in loop] + [p.model_name]
                if p.index not in state and (found := visit(p)):
                    return found
            state[s.index] = 2
            path.pop()
            return []

        for s in steps:
            if s.index not in state and (found := visit(s)):
                return found
        return []
