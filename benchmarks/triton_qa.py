"""Triton's own QA model configs, laid out the way its test scripts lay them out, with the verdict each
test expects. Source: a checkout of triton-inference-server/server (qa/L0_model_config, qa/python_models);
nothing from it is copied into this repository.

qa/L0_model_config/test.sh runs a server per case and greps its log for one of the case's `expected*`
texts (a rejection), or checks that the model loads (the *_success sets). Binary model files
(model.plan, model.onnx, ...) come from NVIDIA's data volume there; here they are empty placeholders,
which is all a static check can use. python_models/* are the python backend's test models: they load.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# test.sh's TRIALS: the platforms each noautofill_platform case is run with.
TRIALS = ("tensorflow_savedmodel", "tensorflow_graphdef", "tensorrt_plan", "onnxruntime_onnx", "pytorch_libtorch")
# What test.sh copies into <case>/1/ per backend folder (data volume files: placeholders here).
PLACEHOLDERS = {"onnx": "model.onnx", "tensorrt": "model.plan", "pytorch": "model.pt",
                "tensorflow_savedmodel": "model.savedmodel/", "tensorflow_graphdef": "model.graphdef",
                "openvino": "model.xml", "tensorflow_plan": "model.plan"}
PLATFORM_FILES = {"tensorflow_savedmodel": "model.savedmodel/", "tensorflow_graphdef": "model.graphdef",
                  "tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx", "pytorch_libtorch": "model.pt"}
# Cases whose verdict depends on what only a running server knows: the binary model's own tensors
# (backend auto-complete), what model.py's auto_complete_config returns, or which backends are installed.
DECIDED_AT_LOAD = {"onnx", "openvino", "pytorch", "tensorflow_savedmodel", "tensorflow_graphdef", "tensorrt",
                   "python"}
DECIDED_AT_LOAD_CASES = {"custom/unknown_backend.unknown", "special_cases/invalid_runtime",
                         "special_cases/noautofill_noconfig"}


@dataclass
class Case:
    name: str
    repo: Path
    expected: list[str] | None  # texts Triton prints (one suffices); None: the models load
    autocomplete: bool = True
    static: bool = True  # False: the verdict needs the model file, model.py's code or the server's backends

    def matches(self, text: str) -> bool:
        return any(e in text for e in self.expected or [])


def _expected(folder: Path) -> list[str]:
    # grep patterns: the only escapes used are \[ \] \. (literal characters)
    return [re.sub(r"\\(.)", r"\1", p.read_text().strip()) for p in sorted(folder.glob("expected*"))]


def _placeholder(version_dir: Path, name: str) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)
    if name.endswith("/"):
        (version_dir / name).mkdir(exist_ok=True)
    else:
        (version_dir / name).touch()


def _versions(model: Path, file: str | None, model_py: Path | None) -> None:
    """What test.sh creates: <model>/1/ with the model file (or model.py) where the source has no version."""
    if any(p.is_dir() and p.name.isdigit() for p in model.iterdir()):
        return
    one = model / "1"
    one.mkdir()
    if model_py is not None and model_py.is_file():
        shutil.copy(model_py, one / "model.py")
    elif file:
        _placeholder(one, file)


def _copy_model(src: Path, dest: Path, file: str | None, model_py: Path | None) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("expected*"))
    _versions(dest, file, model_py)


def _backend_file(backend: str, config: Path) -> str | None:
    if backend in PLACEHOLDERS:
        return PLACEHOLDERS[backend]
    text = config.read_text() if config.is_file() else ""
    m = re.search(r'platform:\s*"([^"]+)"', text)
    return PLATFORM_FILES.get(m.group(1)) if m else None


def noautofill_cases(qa: Path, out: Path) -> list[Case]:
    cases = []
    for case in sorted((qa / "L0_model_config/noautofill_platform").iterdir()):
        for trial in TRIALS:
            repo = out / f"noautofill.{case.name}.{trial}"
            dest = repo / case.name
            shutil.copytree(case, dest, ignore=shutil.ignore_patterns("expected*"))
            config = dest / "config.pbtxt"
            lines = [x for x in config.read_text().splitlines() if "platform:" not in x]
            config.write_text("\n".join(lines + [f'platform: "{trial}"']) + "\n")
            _versions(dest, PLATFORM_FILES[trial], None)
            # run with --strict-model-config=true / --disable-auto-complete-config: configs are final
            cases.append(Case(f"noautofill_platform/{case.name} [{trial}]", repo, _expected(case), False))
    return cases


def autofill_cases(qa: Path, out: Path, success: bool) -> list[Case]:
    root = qa / "L0_model_config" / ("autofill_noplatform_success" if success else "autofill_noplatform")
    auto_complete_py = qa / "python_models/auto_complete/model.py"
    cases = []
    for target in sorted(p for p in root.glob("*/*") if p.is_dir()):
        backend, key = target.parent.name, f"{target.parent.name}/{target.name}"
        repo = out / f"{root.name}.{backend}.{target.name}"
        repo.mkdir(parents=True)
        single = (target / "config.pbtxt").is_file() or not any(p.is_dir() for p in target.iterdir())
        models = [target] if single else [p for p in sorted(target.iterdir()) if p.is_dir()]
        for m in models:
            own_py = m / "model.py"
            _copy_model(m, repo / m.name, _backend_file(backend, m / "config.pbtxt"),
                        own_py if own_py.is_file() else auto_complete_py if backend == "python" else None)
        expected = None if success else _expected(target)
        static = backend not in DECIDED_AT_LOAD and key not in DECIDED_AT_LOAD_CASES
        cases.append(Case(f"{root.name}/{key}", repo, expected, static=static))
    return cases


def special_cases(qa: Path, out: Path) -> list[Case]:
    cases = []
    for case in sorted((qa / "L0_model_config/special_cases").iterdir()):
        repo = out / f"special.{case.name}"
        repo.mkdir(parents=True)
        file = "model.savedmodel/" if case.name == "invalid_platform" else None
        _copy_model(case, repo / case.name, file, None)
        cases.append(Case(f"special_cases/{case.name}", repo, _expected(case),
                          autocomplete=case.name != "invalid_platform",
                          static=f"special_cases/{case.name}" not in DECIDED_AT_LOAD_CASES))
    return cases


def python_model_cases(qa: Path, out: Path) -> list[Case]:
    """qa/python_models: one repository holding every model, each with its model.py in 1/."""
    repo = out / "python_models"
    repo.mkdir(parents=True)
    for m in sorted(p for p in (qa / "python_models").iterdir() if (p / "config.pbtxt").is_file()):
        _copy_model(m, repo / m.name, None, m / "model.py")
    return [Case("python_models", repo, None)]


def all_cases(server_src: Path, out: Path) -> list[Case]:
    qa = server_src / "qa"
    if not (qa / "L0_model_config").is_dir():
        raise SystemExit(f"{server_src} has no qa/L0_model_config: pass a checkout of "
                         "triton-inference-server/server")
    return (noautofill_cases(qa, out) + autofill_cases(qa, out, False) + special_cases(qa, out)
            + autofill_cases(qa, out, True) + python_model_cases(qa, out))
