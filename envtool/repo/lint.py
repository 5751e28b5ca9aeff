"""What Triton core and the python backend reject or warn about at load time, checked statically.

Messages in `triton=` are the texts Triton prints (triton_messages.toml, for the release lint is given).
Core's ValidateModelConfig family lives in core_rules.py; this module adds the repository, python and
ensemble rules and follows core's normalisation (backend autofill, auto-complete) before judging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from envtool.catalog import Release
from envtool.findings import Finding
from envtool.repo.core_rules import core_findings
from envtool.repo.ensemble_rules import EnsembleLinter, autocompletes, ensemble_cycles
from envtool.repo.env_rules import env_file_findings
from envtool.repo.messages import NEWEST, Messages
from envtool.repo.model_repo import (
    ENV_KEY,
    FORCE_CPU_KEY,
    MODEL_DIR_VAR,
    Model,
    Repository,
    is_version_name,
    unservable,
)


@dataclass(frozen=True)
class LintOptions:
    """release: whose message texts to print (None: the newest); autocomplete: False for a server started
    with --disable-auto-complete-config, where every config must be complete as written."""
    release: Release | None = None
    autocomplete: bool = True

    @property
    def t(self) -> Messages:
        return Messages(self.release)


def lint_repository(repo: Repository, options: LintOptions = LintOptions()) -> list[Finding]:
    findings = [Finding(rule, "error", model, what, fix=fix) for rule, model, what, fix in unservable(repo)]
    for model in repo.models.values():
        findings += _lint_model(model, options)
        if model.is_python:
            findings += lint_python_model(model, options.t)
    for ensemble in repo.ensembles():
        if ensemble.config is not None and ensemble.config.HasField("ensemble_scheduling"):
            findings += EnsembleLinter(repo, ensemble, options.t).run()
    return findings + ensemble_cycles(repo, options.t)


# --- every model -------------------------------------------------------------------------------

def _lint_model(m: Model, o: LintOptions) -> list[Finding]:
    t = o.t
    if m.error is not None:
        return [Finding("config-syntax", "error", m.name, m.error.message,
                        fix=m.error.fix, where=m.error.where)]
    if m.config is None:
        return _no_config(m, o)
    out = []
    c = m.config
    if c.name and c.name != m.name:
        out.append(Finding(
            "name-mismatch", "error", m.name, f"config name {c.name!r} differs from folder {m.name!r}",
            triton=t("name-mismatch", folder=m.name, name=c.name),
            fix=f'set name: "{m.name}" or rename the folder', where=str(m.config_path)))
    if not any(m.autofilled()):  # core fills the backend from the platform or the model file
        out += _no_backend(m, t)
    if not m.loaded_versions():  # ensembles too: an empty <ensemble>/1/ is required
        out.append(Finding(
            "no-version", "error", m.name, "no numeric version folder matches the version policy",
            triton=t("no-version", model=m.name),
            fix=f"create {m.name}/1/ holding the model file", where=str(m.path)))
    if not m.is_ensemble:
        out += _lint_model_file(m)
    io_final = not o.autocomplete or m.is_ensemble or (m.is_python and not autocompletes(m))
    return out + _version_folders(m) + core_findings(m, t, io_final)


def _no_config(m: Model, o: LintOptions) -> list[Finding]:
    if not o.autocomplete:
        return [Finding("config-missing", "error", m.name, f"{m.name}/ has no config.pbtxt, and a server "
                        "started with --disable-auto-complete-config completes none",
                        triton=o.t("config-not-provided"), fix=f"add {m.name}/config.pbtxt",
                        where=str(m.path))]
    if m.is_python:
        return [Finding("config-missing", "info", m.name,
                        f"{m.name}/ has no config.pbtxt: Triton takes it as a python model (model.py) and "
                        "completes its config from auto_complete_config", where=str(m.path)),
                *_lint_model_file(m)]
    return [Finding("config-missing", "warning", m.name,
                    f"{m.name}/ has no config.pbtxt; Triton must auto-complete it from the model",
                    fix=f"add {m.name}/config.pbtxt with at least backend or platform", where=str(m.path))]


def _no_backend(m: Model, t: Messages) -> list[Finding]:
    """Core's AutoCompleteBackendFields: with no default_model_filename either, a model named model.<backend>
    gets that backend (a custom backend); any other name is refused before ValidateModelConfig runs."""
    c = m.config
    if not c.default_model_filename and "." in m.name:
        return []
    triton = t("no-backend-default-file" if c.default_model_filename else "no-backend", model=m.name)
    return [Finding("no-backend", "error", m.name, "neither backend nor platform is set", triton=triton,
                    fix='add backend: "python" (or the model\'s backend)', where=str(m.config_path))]


def _version_folders(m: Model) -> list[Finding]:
    odd = sorted(d.name for d in m.path.iterdir()
                 if d.is_dir() and d.name.isdigit() and not is_version_name(d.name))
    return [Finding("version-folder-name", "warning", m.name, f"{n}/ is not a version folder for Triton: it reads "
                    "plain integers only, and ignores it", fix=f"rename it {int(n)}/", where=str(m.path / n))
            for n in odd]


def _lint_model_file(m: Model) -> list[Finding]:
    """Each loaded version must hold the file its backend loads (default_model_filename respected);
    backends whose convention envtool does not know are not checked."""
    name = m.model_file()
    if name is None:
        return []
    rule, fix = (("python-model-file", "defining TritonPythonModel") if m.is_python
                 else ("model-file", f"(the {m.autofilled()[0]} backend loads it), or set default_model_filename"))
    return [Finding(rule, "error", m.name, f"{m.name}/{v}/{name} does not exist",
                    fix=f"add {m.name}/{v}/{name} {fix}", where=str(m.path / str(v)))
            for v in m.loaded_versions() if not (m.path / str(v) / name).exists()]


# --- python models -----------------------------------------------------------------------------

def lint_python_model(m: Model, t: Messages = NEWEST) -> list[Finding]:
    out = []
    where = str(m.config_path)
    force = m.parameter(FORCE_CPU_KEY)
    if force is not None and force not in ("yes", "no"):
        out.append(Finding("force-cpu-value", "error", m.name,
                           f'{FORCE_CPU_KEY} is "{force}"; the python backend reads only "yes" or "no"',
                           triton=t("force-cpu-value", value=force),
                           fix=f'set {FORCE_CPU_KEY} to "no" (GPU tensors via DLPack) or "yes"',
                           where=where))
    env = m.parameter(ENV_KEY)
    if env is not None:
        out += _lint_env_path(m, env, t)
    return out


CLOUD_URL = re.compile(r"^(s3|gs|as)://")
CLOUD_FORM = re.compile(r"^(s3|gs|as)://[^/\s]+(/[^\s]*)?/[^/\s]+$")


def _lint_env_path(m: Model, value: str, t: Messages) -> list[Finding]:
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
        triton = t("env-canonical-path", path=value)
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
    for f in env_file_findings(path, t):  # the same rules inject applies to its --env
        fix = f"envtool inject {m.path.parent} --env ENV --stub STUB" if f.rule == "env-missing" else f.fix
        out.append(replace(f, model=m.name, message=f"{ENV_KEY}: {f.message}", fix=fix, where=where))
    return out
