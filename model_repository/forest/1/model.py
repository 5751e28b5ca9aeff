"""forest: the random forest from its Treelite checkpoint, predicted with GTIL on the CPU."""

import os

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))


class TritonPythonModel:
    def initialize(self, args):
        import treelite
        self.treelite = treelite
        self.model = treelite.Model.deserialize(os.path.join(HERE, "forest.tl"))

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "input__0").as_numpy().astype(np.float32)
            score = self.treelite.gtil.predict(self.model, x).reshape(-1, 1).astype(np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("output__0", score)]))
        return responses
