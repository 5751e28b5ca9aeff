"""doctor --log over real server logs from public issue threads (tests/fixtures/logs/, each headed by its URL
and the cause the thread established), the reasoning rules on small logs of our own, the static import check
of models without an env, and bad input. No server runs here: these are the fast tier."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from envtool import catalog, logs
from envtool.diagnose import _match, causes, diagnose_log, interesting
from envtool.doctor import explain_lines
from envtool.logs import KEYWORDS, read_corpus_entry
from envtool.repo.imports import image_python, load_time_imports, missing, variant_of
from envtool.repo.model_repo import load_repository
from tests.conftest import python_model, run_cli, write_repo

CORPUS = Path(__file__).parent / "fixtures" / "logs"
LOGS = sorted(CORPUS.glob("*.log"))
HANGS = {"stub-release-mismatch", "model-init-hang"}
# Causes no public log in the corpus shows yet (the search index rarely holds a thread's log and its answer
# together). Each is still checked on a log of our own below; the test fails when one gets a real log, so
# this list only shrinks. Client-side causes (source = "client") are what envtool's clients see, not logs.
AWAITING_REAL_LOG = {"stub-libpython", "stub-shared-library", "stub-python-home", "glibcxx-too-old",
                     "archive-hardlink", "archive-refused", "activate-missing", "archive-unreadable",
                     "shm-exists", "stub-timeout", "stub-unhealthy", "numpy2-output", "module-not-found",
                     "numpy-abi", "system-library-missing"}


def verdict(lines: list[str] | str, release: str | None = None, repo: Path | None = None):
    if isinstance(lines, str):
        lines = lines.splitlines()
    return explain_lines(lines, catalog.normalize_release(release) if release else None, repo).diagnoses


def first(lines, release=None, repo=None) -> str | None:
    d = verdict(lines, release, repo)
    return d[0].id if d else None


# --- the corpus -------------------------------------------------------------------------------------

def test_every_corpus_log_names_its_thread_and_a_known_cause():
    known = set(causes()) | {"none"}
    for path in LOGS:
        entry = read_corpus_entry(path)
        assert re.match(r"https://(github\.com|stackoverflow\.com|forums\.developer\.nvidia\.com)/", entry["source"]), path
        assert entry["expect"] <= known, (path, entry["expect"] - known)
        assert entry["established"] and entry["body"].strip(), path


@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_the_verdict_is_the_cause_the_thread_established(path):
    entry = read_corpus_entry(path)
    got = first(entry["body"]) or "none"
    assert got in entry["expect"], f"{path.name}: expected {entry['expect']}, got {got}"


def test_no_hang_verdict_on_a_log_whose_thread_says_otherwise():
    for path in LOGS:
        entry = read_corpus_entry(path)
        got = first(entry["body"])
        assert got not in HANGS or got in entry["expect"], path


def test_every_cause_has_a_real_log_or_is_awaiting_one():
    seen: set[str] = set()
    for path in LOGS:
        seen |= {d.id for d in verdict(read_corpus_entry(path)["body"])}
    log_causes = {c for c, e in causes().items() if e.get("source") != "client"}
    assert log_causes - seen <= AWAITING_REAL_LOG, log_causes - seen - AWAITING_REAL_LOG
    assert not (AWAITING_REAL_LOG & seen), f"now seen in a real log, drop from AWAITING_REAL_LOG: {AWAITING_REAL_LOG & seen}"


@pytest.mark.parametrize("width", [80, 120, 200])
def test_a_log_wrapped_by_a_terminal_gets_the_same_verdict(width):
    for path in LOGS:
        body = read_corpus_entry(path)["body"].splitlines()
        wrapped = [line[i:i + width] for line in body for i in range(0, max(len(line), 1), width)]
        assert first(wrapped) == first(body), (path.name, width)


def test_the_keyword_prefilter_lets_through_every_line_a_cause_matches():
    samples = [line for p in LOGS for line in read_corpus_entry(p)["body"].splitlines()]
    samples += [c["example"] for c in causes().values() if "example" in c]
    for line in samples:
        if _match(line):
            assert any(k in line for k in KEYWORDS), line


# --- reasoning over the whole log: our own small logs (real input to the real parser) ---------------

START = ('I0421 10:08:17.918905 1 stub_launcher.cc:385] "Starting Python backend stub: source /m/env/bin/activate '
         '&& exec env LD_LIBRARY_PATH=/m/env/lib:$LD_LIBRARY_PATH {stub} /models/pre/1/model.py '
         'triton_python_backend_shm_region_6bd0 1048576 1048576 1 /opt/tritonserver/backends/python 336 pre_0_0 '
         'DEFAULT"')
CUSTOM = "/models/pre/triton_python_backend_stub"
DEFAULT = "/opt/tritonserver/backends/python/triton_python_backend_stub"
LOADING = 'I0421 10:08:17.900000 1 model_lifecycle.cc:469] "loading: pre:1"'


def test_a_stub_start_followed_by_nothing_is_a_hang_of_its_release_or_of_model_py():
    assert first([LOADING, START.format(stub=CUSTOM)]) == "stub-release-mismatch"
    assert first([LOADING, START.format(stub=DEFAULT)]) == "model-init-hang"  # the backend's own stub
    printed = [LOADING, START.format(stub=CUSTOM), "/env/lib/python3.10/site-packages/torch/x.py:1: UserWarning: y"]
    assert first(printed) == "model-init-hang"  # the stub ran model.py: its IPC works
    d = verdict([LOADING, START.format(stub=CUSTOM)], "r22.11")[0]
    assert d.hang and "r22.11" in d.fix and any("line 2" in e for e in d.evidence)


def test_a_stub_start_followed_by_an_error_is_that_error_not_a_hang():
    denied = "/bin/dash: 0: cannot open /models/pre/triton_python_backend_stub: Permission denied"
    assert first([LOADING, START.format(stub=CUSTOM), denied]) == "stub-exec-denied"
    missing_module = "E0421 10:08:19.1 1 pb_stub.cc:325] Failed to initialize Python stub: ModuleNotFoundError: " \
                     "No module named 'torch'"
    assert first([LOADING, START.format(stub=CUSTOM), missing_module]) == "module-not-found"  # env applied
    table = ["+-------+---------+--------+", "| Model | Version | Status |", "| pre   | 1       | READY  |"]
    assert first([LOADING, START.format(stub=CUSTOM), *table]) is None  # the server got past loading


NO_ENV_START = START.replace("source /m/env/bin/activate && exec env LD_LIBRARY_PATH=/m/env/lib:$LD_LIBRARY_PATH ",
                             "exec ")
NO_MODULE = "E0421 10:08:19.1 1 model_lifecycle.cc:630] \"failed to load 'pre' version 1: Internal: " \
            "ModuleNotFoundError: No module named 'transformers'\""


def test_a_missing_module_is_told_apart_by_whether_an_env_was_applied():
    assert first([LOADING, NO_ENV_START.format(stub=DEFAULT), NO_MODULE]) == "module-no-env"
    env_line = 'I0421 10:08:17.9 1 python_be.cc:1811] "Using Python execution env /models/pre/env.tar.gz"'
    assert first([LOADING, env_line, NO_MODULE]) == "module-not-found"
    assert first(["ModuleNotFoundError: No module named 'model'"]) == "model-py-not-found"
    assert first([NO_MODULE]) == "module-no-env"  # no env anywhere in the log: the image's Python ran it


def test_a_relative_env_path_in_the_repository_says_the_env_was_never_found(tmp_path):
    repo = write_repo(tmp_path / "repo", {"pre": python_model("pre", [("IN", "TYPE_FP32", [-1])],
                                                              [("OUT", "TYPE_FP32", [-1])],
                                                              'parameters: { key: "EXECUTION_ENV_PATH" value: '
                                                              '{ string_value: "envs/custom_env.tar.gz" } }\n')})
    log = tmp_path / "server.log"
    log.write_text("\n".join([LOADING, NO_MODULE]) + "\n")
    out = run_cli("doctor", repo, "--log", log, "--json", "--no-import-check")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    d = json.loads(out.stdout)["diagnoses"][0]
    assert d["id"] == "module-no-env" and "never found" in d["cause"] and "relative" in d["cause"]
    assert "$$TRITON_MODEL_DIRECTORY" in d["fix"]
    plain = run_cli("doctor", repo, "--log", log, "--no-import-check")
    assert "never found" in plain.stdout and "line 2:" in plain.stdout


def test_causes_that_cannot_apply_to_the_logs_release_are_not_given():
    canonical = "E0101 1 model_lifecycle.cc:1] failed to load 'm' version 1: Internal: Failed to get the " \
                "canonical path for $$TRITON_MODEL_DIRECTORY/env.tar.gz."
    assert first([canonical], "r22.11") == "canonical-path"  # 21.09+ expands it: not "too old"
    assert first([canonical]) == "canonical-path-old-release"  # unexpanded: only a release before 21.09 does that
    banner = "NVIDIA Release 21.08 (build 26170506)"
    assert first([banner, canonical]) == "canonical-path-old-release"
    hardlink = "archive_write_header() failed with error code = -25 error message is Hard-link target " \
               "'lib/x.so' does not exist."
    assert first([hardlink], "r25.02") == "archive-hardlink"
    secure = "archive_write_header() failed with error code = -25 error message is Cannot extract through " \
             "symlink lib/alias"
    assert first([secure], "r26.06") == "archive-refused"
    assert first([secure], "r25.02") is None  # r25.02 does not extract with the secure flags
    numpy2 = "ValueError: output tensor shape does not match size of output for 'OUT'. Expected shape: [2], got: [0]"
    assert first([numpy2], "r24.10") == "numpy2-output"
    assert first([numpy2], "r24.11") == "model-error"  # pybind11 2.12: numpy 2 is fine, model.py returned it


@pytest.mark.parametrize("errno,cause", [("No space left on device", "shm-no-space"), ("File exists", "shm-exists"),
                                         ("No such file or directory", "shm-missing")])
def test_shared_memory_errors_are_told_apart_by_errno(errno, cause):
    line = ("E0101 1 model_lifecycle.cc:1] failed to load 'm' version 1: Internal: Unable to initialize shared "
            "memory key 'triton_python_backend_shm_region_1' to requested size (1048576 bytes). If you are "
            f"running Triton inside docker, use '--shm-size' flag. Error: {errno}")
    assert first([line]) == cause


def test_older_wordings_and_formats():
    assert first(["E0101 1 python.cc:1] Stub process is unhealthy and it will be restarted."]) == "stub-unhealthy"
    assert first(["The stub process has exited unexpectedly."]) == "stub-unhealthy"
    row = "| m     | 1       | UNAVAILABLE: Internal: Failed to get the canonical path for /models/m/env.tar.gz. |"
    assert first([row], "r24.10") == "canonical-path"
    quoted = ('E0101 00:00:00.1 1 pb_stub.cc:1] "Failed to initialize Python stub: ModuleNotFoundError: No module '
              'named \'cv2\'\\n\\nAt:\\n  /models/m/1/model.py(3): <module>\\n"')
    assert first(['I0101 00:00:00.1 1 python_be.cc:1] "Using Python execution env /m/e"', quoted]) == \
        "module-not-found"
    iso = "2024-05-20T20:03:25Z E 1 pb_stub.cc:1] Failed to initialize Python stub: ImportError: /x/libgomp.so.1: " \
          "cannot allocate memory in static TLS block"
    assert first([iso]) == "static-tls"


def test_harmless_lines_of_a_cpu_only_server_are_no_cause():
    assert first(["Error: Failed to initialize NVML", "W0101 1 pinned_memory_manager.cc:1] Unable to allocate "
                  "pinned system memory, pinned memory pool will not be available: no CUDA-capable device"]) is None


def test_a_system_library_and_glibc_in_either_quote():
    gl = "E0101 1 pb_stub.cc:1] Failed to initialize Python stub: ImportError: libGL.so.1: cannot open shared " \
         "object file: No such file or directory"
    assert first([gl]) == "system-library-missing"
    assert first(["/lib/x86_64-linux-gnu/libc.so.6: version 'GLIBC_2.34' not found (required by /m/stub)"]) == \
        "glibc-too-old"


def test_numpy_abi_and_a_missing_backend():
    abi = ["A module that was compiled using NumPy 1.x cannot be run in", "NumPy 2.0.2 as it may crash. To support both",
           "E0101 1 pb_stub.cc:1] Failed to initialize Python stub: ImportError: numpy.core.multiarray failed to import"]
    assert first(abi) == "numpy-abi"
    trt = "E0101 1 model_lifecycle.cc:1] failed to load 'tensorrt_llm' version 1: Invalid argument: unable to find " \
          "'libtriton_tensorrtllm.so' or 'tensorrtllm/model.py' for model 'tensorrt_llm', in " \
          "/opt/tritonserver/backends/tensorrtllm"
    d = verdict([trt])[0]
    assert d.id == "backend-missing" and "tensorrtllm" in d.cause


def test_a_log_without_verbose_that_ends_initialising_a_python_model(tmp_path):
    init = "I0101 00:00:00.1 1 python_be.cc:2248] TRITONBACKEND_ModelInstanceInitialize: pre_0_0 (CPU device 0)"
    assert first([LOADING, init]) == "model-init-hang"
    assert first([LOADING, init, "I0101 00:00:09.1 1 model_lifecycle.cc:1] successfully loaded 'pre'"]) is None
    repo = write_repo(tmp_path / "repo", {"pre": python_model("pre", [("IN", "TYPE_FP32", [-1])],
                                                              [("OUT", "TYPE_FP32", [-1])])})
    (repo / "pre" / "triton_python_backend_stub").write_bytes(b"\x7fELF")
    assert first([LOADING, init], "r24.10", repo) == "stub-release-mismatch"  # the repository: a stub of its own


# --- bad input --------------------------------------------------------------------------------------

def test_bad_logs_are_one_line_or_nothing_recognised(tmp_path):
    empty, binary, prose = tmp_path / "empty.log", tmp_path / "bin.log", tmp_path / "prose.log"
    empty.write_text("")
    binary.write_bytes(b"\x7fELF\x02\x01\x00\x00" * 200)
    prose.write_text("the weather is fine\nno server here\n")
    for path, words in ((empty, "is empty"), (binary, "binary"), (tmp_path / "nope.log", "No such file"),
                        (tmp_path, "is a folder")):
        out = run_cli("doctor", "--log", path)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    out = run_cli("doctor", "--log", prose)
    assert out.returncode == 0 and "nothing recognised" in out.stdout
    out = run_cli("doctor", "--log", prose, "--json")
    assert json.loads(out.stdout)["log"]["recognised"] is False
    out = run_cli("doctor", "--log", prose, "--stub-timeout", "-5")
    assert out.returncode == 2 and "--stub-timeout" in out.stderr


def test_stdin_is_read_as_a_log():
    p = subprocess.run([sys.executable, "-m", "envtool", "doctor", "--log", "-", "--json"],
                       input=NO_MODULE + "\n", capture_output=True, text=True)
    assert json.loads(p.stdout)["diagnoses"][0]["id"] == "module-no-env"


@pytest.mark.slow
def test_a_big_log_is_read_in_bounded_memory(tmp_path):
    """50 MB of a real verbose log repeated, then the failure: memory stays bounded (the benchmark prints the
    figures for 200 MB), and the failure at the end is still found."""
    body = read_corpus_entry(CORPUS / "server-7410-b.log")["body"]
    big = tmp_path / "big.log"
    with big.open("w") as f:
        for _ in range(50 * 2**20 // len(body) + 1):
            f.write(body)
        f.write(NO_MODULE + "\n")
    tracemalloc.start()
    facts = logs.read(big, interesting())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 24 * 2**20, peak
    assert diagnose_log(facts).diagnoses[0].id == "module-no-env"


# --- static imports of models without an env ---------------------------------------------------------

MODEL_PY = """import json
import numpy as np
import triton_python_backend_utils as pb_utils
import torchvision.transforms as T
from PIL import Image
from helpers import tokenize            # the model's own module, beside model.py
try:
    import orjson                       # optional
except ImportError:
    orjson = None
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import pandas

class TritonPythonModel:
    def initialize(self, args):
        import cv2
    def execute(self, requests):
        import scipy                    # at inference, not at load
        return []
"""


def test_load_time_imports_are_read_not_run(tmp_path):
    model_py = tmp_path / "m" / "1" / "model.py"
    model_py.parent.mkdir(parents=True)
    model_py.write_text(MODEL_PY)
    (model_py.parent / "helpers.py").write_text("def tokenize(x): return x\n")
    assert [i.module for i in load_time_imports(model_py)] == [
        "json", "numpy", "triton_python_backend_utils", "torchvision.transforms", "PIL", "helpers", "typing", "cv2"]
    lacks = {dist for _, dist in missing(model_py, image_python("24.10"))}
    assert lacks == {"torchvision", "pillow", "opencv-python"}
    assert image_python("24.10").python == "3.10" and image_python("22.11").python == "3.8"


def test_doctor_warns_about_what_the_release_image_lacks(tmp_path):
    repo = write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [-1])],
                                                            [("OUT", "TYPE_FP32", [-1])])}, MODEL_PY)
    (repo / "m" / "1" / "helpers.py").write_text("def tokenize(x): return x\n")
    out = run_cli("doctor", repo, "--triton", "r24.10", "--json")
    f = [f for f in json.loads(out.stdout)["findings"] if f["rule"] == "import-no-env"]
    assert len(f) == 1 and f[0]["severity"] == "warning" and f[0]["model"] == "m"
    assert "torchvision" in f[0]["message"] and "model.py:4" in f[0]["message"] and "3.10" in f[0]["message"]
    assert "envtool pack" in f[0]["fix"] and "--triton r24.10" in f[0]["fix"]
    pyt = image_python("24.10", variant_of("nvcr.io/nvidia/tritonserver:24.10-pyt-python-py3"))
    assert pyt.variant == "pyt-python" and "torch" not in pyt.distributions  # build.py installs no torch there


GIT_URL = os.environ.get("ENVTOOL_TEST_GIT_URL", "")


def _mirror(name: str) -> Path:
    git_dir = Path(GIT_URL.format(owner="triton-inference-server", name=name)[len("file://"):])
    if not GIT_URL.startswith("file://") or not git_dir.is_dir():
        pytest.skip(f"no file:// mirror of {name} (ENVTOOL_TEST_GIT_URL)")
    return git_dir


def _checkout(git_dir: Path, ref: str, path: str, dest: Path) -> Path:
    archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", ref, path], capture_output=True, check=True)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / path


def test_the_tutorials_part_5_pipeline_as_its_readme_lays_it_out(tmp_path):
    """Conceptual_Guide/Part_5-Model_Ensembles, read from the mirror (never copied here): its pre/post models
    import torch, torchvision, PIL and cv2, which the r24.10 image's Python lacks."""
    part5 = _checkout(_mirror("tutorials"), "HEAD", "Conceptual_Guide/Part_5-Model_Ensembles", tmp_path)
    repo = part5 / "model_repository"
    (repo / "ensemble_model" / "1").mkdir(exist_ok=True)  # the README: mkdir -p model_repository/ensemble_model/1
    out = run_cli("doctor", repo, "--triton", "r24.10", "--json")
    found = {f["model"]: f for f in json.loads(out.stdout)["findings"] if f["rule"] == "import-no-env"}
    assert set(found) == {"detection_preprocessing", "detection_postprocessing"}
    assert all(w in found["detection_preprocessing"]["message"] for w in ("torch", "torchvision", "PIL"))
    assert "cv2" in found["detection_postprocessing"]["message"]
    assert "pillow" in found["detection_preprocessing"]["fix"] and "opencv-python" in found["detection_postprocessing"]["fix"]


def test_python_backends_own_examples_get_no_false_warning(tmp_path):
    """python_backend r24.10 examples/ laid out as its READMEs say: those that need nothing but the image get no
    import warning; those whose README installs torch/jax into the container do."""
    examples = _checkout(_mirror("python_backend"), "r24.10", "examples", tmp_path / "src")
    layout = {"add_sub": "add_sub/model.py", "repeat_int32": "decoupled/repeat_model.py",
              "square_int32": "decoupled/square_model.py", "bls_sync": "bls/sync_model.py",
              "bls_async": "bls/async_model.py", "custom_metrics": "custom_metrics/model.py",
              "nobatch_auto_complete": "auto_complete/nobatch_model.py", "jax": "jax/model.py",
              "instance_kind": "instance_kind/model.py"}
    repo = tmp_path / "models"
    for name, src in layout.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text((examples / src).read_text())
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "python"\n')
    out = run_cli("doctor", repo, "--triton", "r24.10", "--json", "--no-import-check")
    warned = {f["model"] for f in json.loads(out.stdout)["findings"] if f["rule"] == "import-no-env"}
    assert warned == {"jax", "instance_kind"}


def test_the_articles_pipeline_gets_no_import_warning():
    repo = load_repository(Path(__file__).parents[1] / "model_repository")
    out = run_cli("doctor", repo.path, "--triton", "r24.10", "--json", "--no-import-check")
    assert not [f for f in json.loads(out.stdout)["findings"] if f["rule"] == "import-no-env"]


def test_the_corpus_readme_lists_every_cause_id():
    text = (CORPUS / "README.md").read_text()
    listed = set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)+|none", text.split("Cause ids", 1)[1].split("##", 1)[0]))
    log_causes = {c for c, e in causes().items() if e.get("source") != "client"}
    assert log_causes | {"none"} <= listed, log_causes - listed
