"""The article's pipeline in model_repository/: its features, its numpy MiniLM against the reference
implementation, and prepare -> build -> verify end to end in a real r24.10 server."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import needs_python, run_cli

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "model_repository"
sys.path[:0] = [str(REPO / "preprocess" / "1"), str(REPO / "minilm" / "1"), str(REPO)]
from features import N_FEATURES, features, vocabulary  # noqa: E402


def test_the_207_features_count_what_they_say():
    text = "The cat sat. The dog ran, and the cat hid! Zebras?"
    most, least = vocabulary([text, "the the cat"])
    f = features(text, most, least, frozenset({"the", "and"}))
    assert f.shape == (N_FEATURES,) == (207,)
    words, distinct, punct, sentences, per_sentence, stop, stop_per_sentence = f[:7]
    assert (words, distinct, punct, sentences) == (11, 8, 4, 3)
    assert per_sentence == pytest.approx(11 / 3) and (stop, stop_per_sentence) == (4, pytest.approx(4 / 3))
    assert f[7 + most.index("the")] == pytest.approx(3 / 11)  # frequency of a top-100 corpus word


@pytest.mark.slow
def test_numpy_minilm_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers", reason="the reference needs sentence-transformers + torch")
    pytest.importorskip("safetensors")
    from minilm_numpy import MiniLM
    from prepare import minilm_files
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    folder = minilm_files(Path(os.environ.get("ENVTOOL_CACHE_DIR", Path.home() / ".cache/envtool")) / "example")
    texts = ["This is a test sentence.", "The quick brown fox jumps over the lazy dog.",
             "Notwithstanding considerable institutional heterogeneity, comprehensive investigations "
             "substantiate multifaceted interdependencies between determinants and outcomes."]
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)
    weights = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if k != "embeddings.position_ids"}
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    ours = MiniLM(weights).embed(np.array([e.ids for e in enc]), np.array([e.attention_mask for e in enc]))
    assert np.abs(ours - ref).max() < 1e-4


def prepare_example(dest: Path) -> Path:
    """model_repository/ and envs/ copied into dest without built artifacts, prepared (300 passages): the
    preparation (about 20 s on 2 CPUs) runs once per test run, and each caller gets its own copy."""
    prepared = _prepared()
    for name in ("model_repository", "envs"):
        shutil.copytree(prepared / name, dest / name, symlinks=True)
    return dest / "model_repository"


@functools.lru_cache(maxsize=None)
def _prepared() -> Path:
    pytest.importorskip("treelite")
    dest = Path(tempfile.mkdtemp(prefix="envtool-example-"))
    atexit.register(shutil.rmtree, dest, True)
    shutil.copytree(REPO, dest / "model_repository",
                    ignore=shutil.ignore_patterns("*.npz", "*.tl", "tokenizer.json", "vocab.json", "custom_env*",
                                                  "triton_python_backend_stub", "lib*.so*", "__pycache__"))
    shutil.copytree(ROOT / "envs", dest / "envs", ignore=shutil.ignore_patterns("custom_env*"))
    prep = subprocess.run([sys.executable, "model_repository/prepare.py", "--passages", "300"], cwd=dest,
                          capture_output=True, text=True)
    assert prep.returncode == 0, prep.stderr[-3000:]
    return dest


@pytest.mark.server
@needs_python("3.9")
def test_prepare_build_verify_scores_easy_above_hard(tmp_path):
    prepare_example(tmp_path)
    report = json.loads((tmp_path / "model_repository" / "prepare_report.json").read_text())
    errors = report["held_out_rmse"]
    assert errors["text_model"] < errors["predict_the_mean"] and errors["tree_model"] < errors["predict_the_mean"]
    out = run_cli("build", "--python", "3.9", "--triton", "r24.10", "-r", "envs/example.txt", "--repo",
                  "model_repository", "--verify", "--inputs", "model_repository/inputs.json", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    res = json.loads(out.stdout)
    assert all(m["state"] == "READY" for m in res["verify"]["models"].values())
    easy, medium, hard = res["verify"]["inferences"][0]["outputs"]["SCORE"]["sample"][:3]
    assert easy > hard
    assert not any(c["changed"] for c in res["inject"]["configs"])  # the committed configs are injected already


@pytest.mark.parametrize("deployment,expect", [
    ("cpu", {"preprocess": ("KIND_CPU", "yes"), "minilm": ("KIND_CPU", "yes"), "postprocess": ("KIND_CPU", "yes")}),
    ("gpu-models", {"preprocess": ("KIND_CPU", "yes"), "minilm": ("KIND_GPU", "yes"), "forest": ("KIND_GPU", "yes"),
                    "postprocess": ("KIND_CPU", "yes")}),
    ("gpu-all", {"preprocess": ("KIND_GPU", "no"), "minilm": ("KIND_GPU", "yes"), "postprocess": ("KIND_GPU", "no")}),
])
def test_the_articles_three_deployments_are_one_flag(tmp_path, host_stub, thin_env_tarball, deployment, expect):
    from envtool.repo.config import load_config
    repo = tmp_path / "model_repository"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("*.npz", "*.tl", "custom_env*", "__pycache__",
                                                              "triton_python_backend_stub", "lib*.so*"))
    comments = (repo / "preprocess" / "config.pbtxt").read_text().splitlines()[0]
    out = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--deployment", deployment)
    assert out.returncode == 0, out.stderr
    for model, (kind, force) in expect.items():
        cfg = load_config(repo / model / "config.pbtxt")
        assert [g.kind for g in cfg.instance_group] == [getattr(type(cfg.instance_group[0]), kind)]
        assert cfg.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == force
    assert (repo / "preprocess" / "config.pbtxt").read_text().splitlines()[0] == comments  # comments kept
