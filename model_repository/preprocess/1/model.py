"""preprocess: excerpts -> MiniLM token ids and attention masks, and the 207 tree features."""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from features import features  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        from tokenizers import Tokenizer
        self.tokenizer = Tokenizer.from_file(os.path.join(HERE, "tokenizer.json"))  # truncation + padding set
        with open(os.path.join(HERE, "vocab.json")) as f:
            vocab = json.load(f)
        self.most, self.least, self.stop = vocab["most"], vocab["least"], frozenset(vocab["stop"])

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy().reshape(-1)
            texts = [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in raw]
            enc = self.tokenizer.encode_batch(texts)
            ids = np.array([e.ids for e in enc], dtype=np.int32)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int32)
            feats = np.stack([features(t, self.most, self.least, self.stop) for t in texts])
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("BERT_IDS", ids), pb_utils.Tensor("BERT_AM", mask),
                pb_utils.Tensor("TREE_FEATS", feats)]))
        return responses
