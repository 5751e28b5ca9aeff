"""minilm: all-MiniLM-L6-v2 sentence embeddings (numpy) and a ridge regression head -> a score."""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from minilm_numpy import MiniLM  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.model = MiniLM.load(os.path.join(HERE, "minilm.npz"))
        with np.load(os.path.join(HERE, "head.npz")) as head:
            self.coef, self.intercept = head["coef"], float(head["intercept"])

    def execute(self, requests):
        responses = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "INPUT__0").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "INPUT__1").as_numpy()
            score = self.model.embed(ids, mask) @ self.coef + self.intercept
            out = pb_utils.Tensor("OUTPUT__0", score.reshape(-1, 1).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
