"""Python models of each kind verify must handle, written here (shape known): one Triton completes from
model.py (no config.pbtxt), a decoupled one, a BLS one whose input names the model to call, and one
that declares no inputs."""

from __future__ import annotations

import textwrap
from pathlib import Path

AUTO_PY = textwrap.dedent('''
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        @staticmethod
        def auto_complete_config(config):
            config.add_input({"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]})
            config.add_input({"name": "INPUT1", "data_type": "TYPE_FP32", "dims": [4]})
            config.add_output({"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]})
            config.set_max_batch_size(0)
            return config

        def execute(self, requests):
            out = []
            for r in requests:
                a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", a + b)]))
            return out
''')

DECOUPLED_PY = textwrap.dedent('''
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            for r in requests:
                x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
                sender = r.get_response_sender()
                for i in range(3):  # three responses, then the final flag alone
                    sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x + i).astype(np.float32))]))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return None
''')
DECOUPLED = '''backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { kind: KIND_CPU } ]
'''

BLS_PY = textwrap.dedent('''
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for r in requests:
                name = pb_utils.get_input_tensor_by_name(r, "MODEL_NAME").as_numpy()[0].decode()
                inputs = [pb_utils.get_input_tensor_by_name(r, n) for n in ("INPUT0", "INPUT1")]
                res = pb_utils.InferenceRequest(model_name=name, requested_output_names=["OUTPUT0"],
                                                inputs=inputs).exec()
                if res.has_error():
                    raise pb_utils.TritonModelException(res.error().message())
                out.append(pb_utils.InferenceResponse([pb_utils.get_output_tensor_by_name(res, "OUTPUT0")]))
            return out
''')
BLS = '''backend: "python"
max_batch_size: 0
input [
  { name: "MODEL_NAME" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_CPU } ]
'''

NO_INPUTS_PY = textwrap.dedent('''
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            return [pb_utils.InferenceResponse([pb_utils.Tensor("T", np.ones(1, np.float32))]) for _ in requests]
''')
NO_INPUTS = '''backend: "python"
max_batch_size: 0
output [ { name: "T" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU } ]
'''

KINDS = {"auto": (None, AUTO_PY), "stream": (DECOUPLED, DECOUPLED_PY), "bls": (BLS, BLS_PY),
         "clock": (NO_INPUTS, NO_INPUTS_PY)}


def kinds_repo(root: Path, kinds: tuple[str, ...] = tuple(KINDS)) -> Path:
    for name in kinds:
        config, py = KINDS[name]
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(py)
        if config is not None:
            (root / name / "config.pbtxt").write_text(config)
    return root
