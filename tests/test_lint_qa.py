"""benchmarks/lint_fidelity.py --qa: lint against the verdicts of Triton's own QA (qa/L0_model_config's
`expected` texts). A tree of our own with the QA's shapes runs always; a real checkout of
triton-inference-server/server runs where $ENVTOOL_TRITON_SERVER_SRC names one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_lint import ADD, ensemble, step

ROOT = Path(__file__).resolve().parents[1]
NOAUTOFILL = 'name: "negative_max_batch_size"\nplatform: "tensorrt_plan"\nmax_batch_size: -1\n'


def fidelity(src: Path, *extra: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/lint_fidelity.py"), "--qa", str(src), *extra],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout


def figures(out: str) -> list[tuple[int, int]]:
    return [tuple(map(int, m)) for m in re.findall(r"(\d+)/(\d+)", out)]


def qa_tree(root: Path) -> Path:
    """The QA layout: noautofill_platform/<case>/{config.pbtxt,expected}, autofill_noplatform/<kind>/<case>
    (a model, or a repository of models), special_cases/<case>, *_success sets and python_models/."""
    qa = root / "qa" / "L0_model_config"
    files = {
        "noautofill_platform/negative_max_batch_size/config.pbtxt": NOAUTOFILL,
        "noautofill_platform/negative_max_batch_size/expected":
            "'max_batch_size' must be non-negative value for negative_max_batch_size",
        "autofill_noplatform/ensemble/cycle/outer/config.pbtxt":
            ensemble("outer", steps=step("inner", {"X": "X"}, {"Y": "Y"})),
        "autofill_noplatform/ensemble/cycle/inner/config.pbtxt":
            ensemble("inner", steps=step("outer", {"X": "X"}, {"Y": "Y"})),
        "autofill_noplatform/ensemble/cycle/expected":
            r"circular dependency between ensembles: outer -> ... -> inner -> outer",
        "special_cases/invalid_platform/config.pbtxt": 'name: "invalid_platform"\nplatform: "tensorflo"\n',
        "special_cases/invalid_platform/expected": "unexpected platform type 'tensorflo' for invalid_platform",
        "autofill_noplatform_success/onnx/no_name_platform/config.pbtxt": "max_batch_size: 2\n",
        "autofill_noplatform_success/python/add/config.pbtxt": ADD.replace('name: "add"', 'name: "add"'),
        "autofill_noplatform_success/python/add/model.py": "class TritonPythonModel: pass\n",
    }
    for rel, text in files.items():
        (qa / rel).parent.mkdir(parents=True, exist_ok=True)
        (qa / rel).write_text(text + "\n")
    py = root / "qa" / "python_models" / "add"
    py.mkdir(parents=True)
    (py / "config.pbtxt").write_text(ADD)
    (py / "model.py").write_text("class TritonPythonModel: pass\n")
    return root


def test_fidelity_on_a_tree_with_the_qa_shapes(tmp_path):
    out = fidelity(qa_tree(tmp_path / "server"), "--triton", "r24.10")
    (flagged, rejected), (texts, of), *_ = figures(out)
    assert rejected == 5 + 1 + 1  # a noautofill case runs once per platform in test.sh's TRIALS
    assert flagged == rejected and texts == of == rejected, out
    assert "false errors: 0" in out, out


@pytest.mark.skipif(not os.environ.get("ENVTOOL_TRITON_SERVER_SRC"), reason="needs a checkout of "
                    "triton-inference-server/server in $ENVTOOL_TRITON_SERVER_SRC")
def test_fidelity_on_tritons_own_qa():
    out = fidelity(Path(os.environ["ENVTOOL_TRITON_SERVER_SRC"]))
    (flagged, rejected), (texts, of), *_ = figures(out)
    assert flagged / rejected >= 0.95 and texts / of >= 0.85, out
    assert "false errors: 0" in out, out
