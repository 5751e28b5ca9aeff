"""verify on each kind of python model, served by a real r24.10 (nvidia-pytriton wheel): one Triton
completes from model.py, a decoupled one (gRPC stream), a BLS one and one with no inputs; --inputs
mistakes; honest readiness for serve and verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from envtool.cache import cache_root
from tests.conftest import needs_python, run_cli, serve_cli, tree_snapshot, write_repo
from tests.model_kinds import kinds_repo

pytestmark = [pytest.mark.server,
              needs_python("3.9")]


def _json(p: subprocess.CompletedProcess) -> dict:
    assert p.stdout, p.stderr[-3000:]
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    """`envtool build ... --verify` on the four kinds, once for the module: (repo, its JSON)."""
    root = tmp_path_factory.mktemp("kinds")
    repo = kinds_repo(root / "repo")
    p = run_cli("build", "--python", "3.9", "--triton", "r24.10", "--repo", repo, "--verify", "--json",
                "--cache", root / "stubs", "-o", root / "envs" / "env.tar.gz")
    assert p.returncode == 0, p.stderr[-3000:]
    (root / "envtool.lock").unlink()
    return repo, _json(p)


def test_each_kind_is_exercised_or_named(built):
    repo, res = built
    v = res["verify"]
    assert v["ok"] and v["server"]["ready"] is True
    assert set(v["models"]) == {"auto", "stream", "bls", "clock"}
    assert all(m["state"] == "READY" for m in v["models"].values())
    runs = {(i["model"], i["protocol"]): i for i in v["inferences"]}
    assert set(runs) == {("auto", "http"), ("auto", "grpc"), ("stream", "grpc-stream")}
    # auto has no inputs on disk (inject wrote backend + parameters): verify planned from Triton's config
    assert runs["auto", "http"]["outputs"]["OUTPUT0"] == {"datatype": "FP32", "shape": [4],
                                                         "sample": [1.0, 1.0, 1.0, 1.0]}  # 0.5 + 0.5
    assert runs["auto", "http"]["generated_inputs"] == ["INPUT0", "INPUT1"]
    assert runs["stream", "grpc-stream"]["responses"] == 3
    assert runs["stream", "grpc-stream"]["outputs"]["OUT"]["shape"] == [2]
    skipped = {s["model"]: s["reason"] for s in v["skipped"]}
    assert set(skipped) == {"bls", "clock"}
    assert "MODEL_NAME names a model to call" in skipped["bls"] and "no inputs" in skipped["clock"]
    assert {n: m["checked"].split(":")[0] for n, m in v["models"].items()} == {
        "auto": "inference", "stream": "grpc stream", "bls": "skipped", "clock": "skipped"}
    assert (repo / "auto" / "config.pbtxt").read_text().startswith('backend: "python"\n')


def test_inputs_reach_a_bls_model_and_the_stream(built, tmp_path):
    repo, _ = built
    (tmp_path / "in.json").write_text(json.dumps({
        "bls": {"MODEL_NAME": ["auto"], "INPUT0": [1, 2, 3, 4], "INPUT1": [1, 1, 1, 1]},
        "stream": {"IN": [1, 2]}}))
    v = _json(run_cli("verify", repo, "--triton", "r24.10", "--inputs", tmp_path / "in.json", "--json",
                      "--no-lock"))
    runs = {(i["model"], i["protocol"]): i for i in v["inferences"]}
    assert v["ok"] and runs["bls", "grpc"]["outputs"]["OUTPUT0"]["sample"] == [2.0, 3.0, 4.0, 5.0]
    assert runs["stream", "grpc-stream"]["outputs"]["OUT"]["sample"] == [1.0, 2.0]  # the first of three
    assert [s["model"] for s in v["skipped"]] == ["clock"]


def test_a_failed_inference_on_generated_inputs_says_so(built, tmp_path):
    """bls given everything but MODEL_NAME: its inputs are generated, the call fails, and the report says
    which inputs were made up."""
    repo, _ = built
    (tmp_path / "in.json").write_text(json.dumps({"bls": {"MODEL_NAME": ["no_such_model"]}}))
    p = run_cli("verify", repo, "--triton", "r24.10", "--inputs", tmp_path / "in.json", "--no-lock")
    text = " ".join(p.stderr.split())
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "bls (http)" in text and "inputs INPUT0, INPUT1 were generated from the config" in text


BAD_INPUTS = {  # case: (--inputs, words the one line holds, caught before the server starts)
    "string for FP32": ({"stream": {"IN": "abc"}}, ["stream.IN", "not FP32 data", "FP32 [2]"], True),
    "wrong shape": ({"stream": {"IN": [1, 2, 3]}}, ["stream.IN has shape [3]", "FP32 [2]"], True),
    "unknown model": ({"stream": {"IN": [1, 2]}, "strem": {}}, ["'strem' is no model"], True),
    "unknown input": ({"auto": {"INPUT9": [1, 2, 3, 4]}}, ["model auto has no input 'INPUT9'", "INPUT0, INPUT1"],
                      False),
    "auto-completed shape": ({"auto": {"INPUT0": [[1, 2]]}}, ["auto.INPUT0 has shape [1, 2]", "FP32 [4]"], False),
    "flat unknown name": ({"NOPE": [1]}, ["no model has an input 'NOPE'"], False),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_an_input_mistake_is_one_line_and_exit_2(built, tmp_path, case):
    repo, _ = built
    data, words, before_start = BAD_INPUTS[case]
    (tmp_path / "in.json").write_text(json.dumps(data))
    snap, logs = tree_snapshot(repo), cache_root() / "logs"
    earlier = set(logs.glob("envtool-triton-*.log"))
    p = subprocess.run([sys.executable, "-m", "envtool", "verify", str(repo), "--triton", "r24.10", "--inputs",
                        str(tmp_path / "in.json")], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = [x for x in p.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and all(w in " ".join(p.stderr.split()) for w in words), p.stderr
    assert tree_snapshot(repo) == snap and not (repo.parent / "envtool.lock").exists()
    started = set(logs.glob("envtool-triton-*.log")) - earlier  # every server writes its log there
    assert (not started) if before_start else started


def test_build_refuses_bad_inputs_before_building(tmp_path):
    repo = kinds_repo(tmp_path / "repo", ("stream",))
    (tmp_path / "in.json").write_text(json.dumps({"IN": "abc"}))
    snap = tree_snapshot(repo)
    work = tmp_path / "work"
    work.mkdir()
    p = run_cli("build", "--python", "3.9", "--triton", "r24.10", "--repo", repo, "--verify", "--inputs",
                tmp_path / "in.json", cwd=work)
    assert p.returncode == 2 and "stream.IN" in p.stderr and "Traceback" not in p.stderr
    assert tree_snapshot(repo) == snap and not list(work.iterdir())


BROKEN_PY = "class TritonPythonModel:\n    def initialize(self, args):\n        raise RuntimeError('boom')\n"
IDLE_PY = "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


@pytest.fixture
def half_broken(tmp_path) -> Path:
    """`fine` loads (no numpy, no env: the host's default stub), `broken` raises in initialize."""
    cfg = 'backend: "python"\noutput [ { name: "T" data_type: TYPE_FP32 dims: [ 1 ] } ]\n' \
          'instance_group [ { kind: KIND_CPU } ]\n'
    repo = write_repo(tmp_path / "repo", {"fine": cfg, "broken": cfg}, model_py=IDLE_PY)
    (repo / "broken" / "1" / "model.py").write_text(BROKEN_PY)
    return repo


def test_serve_refuses_a_repository_with_a_model_that_did_not_load(half_broken):
    proc, lines, _ = serve_cli(half_broken)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and not lines
    assert "not READY: broken (" in err and "boom" in err and "--allow-partial" in err and "Traceback" not in err


def test_serve_allow_partial_serves_the_rest_and_says_what_is_missing(half_broken):
    proc, lines, ports = serve_cli(half_broken, "--allow-partial")
    try:
        assert "ready: fine" in "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/health/ready") as r:
            assert r.status == 200
    finally:
        proc.send_signal(2)
        _, err = proc.communicate(timeout=60)
    assert "broken" in err and "boom" in err


def test_verify_reports_strict_readiness(half_broken):
    v = _json(run_cli("verify", half_broken, "--triton", "r24.10", "--json", "--no-lock"))
    assert not v["ok"] and v["server"]["ready"] is False
    assert v["models"]["broken"]["state"] == "UNAVAILABLE" and v["models"]["broken"]["checked"] == "not loaded"
    assert any(p["message"].startswith("model broken is UNAVAILABLE") and p["rule"] == "model-not-ready"
               for p in v["problems"])
    shutil.rmtree(half_broken / "broken")  # the rest alone: ready
    v = _json(run_cli("verify", half_broken, "--triton", "r24.10", "--json", "--no-lock"))
    assert v["server"]["ready"] is True


def test_strict_readiness_fails_the_probe_while_a_model_is_down(half_broken):
    """What a Kubernetes probe sees: envtool's server args, on the real server."""
    from envtool import catalog
    from envtool.servers import open_server
    with open_server("embedded", catalog.normalize_release("r24.10"), half_broken) as srv:
        srv.wait_live(120)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{srv.url}/v2/health/ready")
        assert not srv.ready()


# python_backend's own examples at r24.10, laid out as its READMEs say (models/<name>/1/model.py beside
# config.pbtxt; auto_complete without one), read from the mirror named by ENVTOOL_TEST_GIT_URL (see
# test_docker.py): never copied into this repository.
GIT_URL = os.environ.get("ENVTOOL_TEST_GIT_URL", "")
UPSTREAM = {  # model: (model file, config file or None), under examples/
    "add_sub": ("add_sub/model.py", "add_sub/config.pbtxt"),
    "nobatch_auto_complete": ("auto_complete/nobatch_model.py", None),
    "batch_auto_complete": ("auto_complete/batch_model.py", None),
    "repeat_int32": ("decoupled/repeat_model.py", "decoupled/repeat_config.pbtxt"),
    "square_int32": ("decoupled/square_model.py", "decoupled/square_config.pbtxt"),
    "bls_sync": ("bls/sync_model.py", "bls/sync_config.pbtxt"),
    "bls_decoupled_sync": ("bls_decoupled/sync_model.py", "bls_decoupled/sync_config.pbtxt"),
}


def _upstream_file(git_dir: str, path: str) -> str:
    for ref in ("r24.10", "origin/r24.10"):
        p = subprocess.run(["git", "--git-dir", git_dir, "show", f"{ref}:examples/{path}"], capture_output=True,
                           text=True)
        if p.returncode == 0:
            return p.stdout
    pytest.skip(f"the python_backend mirror {git_dir} has no r24.10 branch")


@pytest.mark.skipif(not GIT_URL.startswith("file://"),
                    reason="set ENVTOOL_TEST_GIT_URL to file:// mirrors of the upstream repositories")
def test_python_backends_own_examples_are_served_and_checked(tmp_path):
    git_dir = GIT_URL.format(owner="triton-inference-server", name="python_backend")[len("file://"):]
    for name, (model, config) in UPSTREAM.items():
        (tmp_path / "models" / name / "1").mkdir(parents=True)
        (tmp_path / "models" / name / "1" / "model.py").write_text(_upstream_file(git_dir, model))
        if config:
            (tmp_path / "models" / name / "config.pbtxt").write_text(_upstream_file(git_dir, config))
    p = run_cli("build", "--python", "3.9", "--triton", "r24.10", "--repo", "models", "--verify", "--json",
                "-o", "envs/env.tar.gz", cwd=tmp_path)
    v = _json(p)["verify"]
    assert all(m["state"] == "READY" for m in v["models"].values()) and set(v["models"]) == set(UPSTREAM)
    ok = {(i["model"], i["protocol"]) for i in v["inferences"] if i["ok"]}
    for name in ("add_sub", "nobatch_auto_complete", "batch_auto_complete"):
        assert {(name, "http"), (name, "grpc")} <= ok
    streams = {i["model"]: i["responses"] for i in v["inferences"] if i["protocol"] == "grpc-stream"}
    assert streams["repeat_int32"] >= 1 and streams["square_int32"] >= 1
    assert [s["model"] for s in v["skipped"]] == ["bls_sync"]
    # upstream's bls_decoupled_sync answers SUM as INT64 where its config declares INT32: verify says so
    assert ("inference-mismatch", "bls_decoupled_sync (http): SUM: data type INT64, config says INT32") in \
        [(p["rule"], p["message"]) for p in v["problems"]]
    assert p.returncode == 1
