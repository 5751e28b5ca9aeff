"""Flesch reading ease from (words, sentences, syllables), and a blend weighted by BERT_WEIGHT.

Until the article's models arrive (issue #7) both "model scores" are simple formulas: the Flesch
score and a words-per-sentence score, so the ensemble's data flow and dtypes are the real ones.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            f = pb_utils.get_input_tensor_by_name(request, "features").as_numpy().astype(np.float64)
            w = pb_utils.get_input_tensor_by_name(request, "BERT_WEIGHT").as_numpy().astype(np.float64)
            words, sentences, syll = (np.maximum(f[:, i], 1.0) for i in range(3))
            flesch = 206.835 - 1.015 * words / sentences - 84.6 * syll / words
            simple = 100.0 - 2.0 * words / sentences
            score = w[:, 0] * flesch + (1.0 - w[:, 0]) * simple
            out = pb_utils.Tensor("SCORE", score.reshape(-1, 1).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
