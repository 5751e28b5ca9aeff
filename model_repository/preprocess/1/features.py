"""The article's 207 tree-model features of a passage: words, distinct words, punctuation marks,
sentences, words per sentence, stop words, stop words per sentence, then the frequency (per word) of
each of the corpus's 100 most and 100 least frequent words. Shared by preprocess and prepare.py."""

from __future__ import annotations

import re

import numpy as np

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
PUNCT = re.compile(r"[.,;:!?\"'()\-\u2014\u2013]")
SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
N_VOCAB = 100
N_FEATURES = 7 + 2 * N_VOCAB


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def features(text: str, most: list[str], least: list[str], stop: frozenset[str]) -> np.ndarray:
    ws = words(text)
    n = max(len(ws), 1)
    sentences = max(len(SENTENCE_END.findall(text.strip() + " ")), 1)
    n_stop = sum(w in stop for w in ws)
    counts: dict[str, int] = {}
    for w in ws:
        counts[w] = counts.get(w, 0) + 1
    head = [len(ws), len(counts), len(PUNCT.findall(text)), sentences, len(ws) / sentences, n_stop,
            n_stop / sentences]
    freq = [counts.get(w, 0) / n for w in (*most, *least)]
    return np.asarray(head + freq, dtype=np.float32)


def vocabulary(texts: list[str]) -> tuple[list[str], list[str]]:
    """The corpus's 100 most and 100 least frequent words (ties broken alphabetically: deterministic)."""
    counts: dict[str, int] = {}
    for t in texts:
        for w in words(t):
            counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    pad = [""] * max(N_VOCAB - len(ranked), 0)  # a tiny corpus: empty slots that never match
    return ranked[:N_VOCAB] + pad, ranked[-N_VOCAB:] + pad
