"""Counts words, sentences and syllables of each excerpt (numpy, in the custom env)."""

import re

import numpy as np
import triton_python_backend_utils as pb_utils

VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    n = len(VOWEL_GROUPS.findall(word.lower()))
    if word.lower().endswith("e") and n > 1:
        n -= 1
    return max(n, 1)


def features(text: str) -> list[float]:
    words = re.findall(r"[A-Za-z']+", text)
    sentences = max(len(re.findall(r"[.!?]+", text)), 1)
    return [float(len(words)), float(sentences), float(sum(syllables(w) for w in words))]


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "excerpt").as_numpy().reshape(-1)
            rows = [features(t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)) for t in texts]
            out = pb_utils.Tensor("features", np.asarray(rows, dtype=np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
