"""One inference per model over HTTP and gRPC with tritonclient, checked against the model's config.

Inputs come from the user (JSON: {model: {input: value}} or {input: value}) or are generated from the
config's data types and dims; outputs are checked for data type and shape, and with expectations
for their values within a tolerance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from envtool.errors import BadInput
from envtool.repo.config import ModelConfig, dtype_name

SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog. It was not amused."
VARIABLE_DIM = 2  # what a -1 dim becomes in generated inputs


def triton_dtype(config_dtype: int) -> str:
    """TYPE_FP32 -> FP32; TYPE_STRING -> BYTES (the wire name)."""
    name = dtype_name(config_dtype).replace("TYPE_", "", 1)
    return "BYTES" if name == "STRING" else name


def _batched(cfg: ModelConfig, dims) -> list[int]:
    return ([1] if cfg.max_batch_size > 0 else []) + list(dims)


def generated_input(cfg: ModelConfig, tensor) -> np.ndarray:
    shape = [VARIABLE_DIM if d < 0 else d for d in _batched(cfg, tensor.dims)]
    dtype = triton_dtype(tensor.data_type)
    if dtype == "BYTES":
        return np.full(shape, SAMPLE_TEXT.encode(), dtype=object)
    if dtype == "BOOL":
        return np.zeros(shape, dtype=bool)
    np_type = triton_to_np_dtype(dtype)
    if np.issubdtype(np_type, np.floating):
        return np.full(shape, 0.5, dtype=np_type)  # in [0, 1]: valid as a weight or a probability
    return np.ones(shape, dtype=np_type)


def given_input(cfg: ModelConfig, tensor, value) -> np.ndarray:
    dtype = triton_dtype(tensor.data_type)
    if dtype == "BYTES":
        arr = np.array(value, dtype=object)
        return np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(arr)
    arr = np.array(value, dtype=triton_to_np_dtype(dtype))
    want = _batched(cfg, tensor.dims)
    if arr.ndim == len(want) - 1 and cfg.max_batch_size > 0:
        arr = arr[None]  # a single sample: add the batch dim
    return arr


def model_inputs(cfg: ModelConfig, given: dict | None) -> dict[str, np.ndarray]:
    given = given or {}
    out = {}
    for t in cfg.input:
        if t.name in given:
            out[t.name] = given_input(cfg, t, given[t.name])
        elif not t.optional:
            out[t.name] = generated_input(cfg, t)
    return out


def shape_problems(cfg: ModelConfig, tensor, datatype: str, shape: list[int]) -> list[str]:
    problems = []
    if datatype != triton_dtype(tensor.data_type):
        problems.append(f"{tensor.name}: data type {datatype}, config says {triton_dtype(tensor.data_type)}")
    want = _batched(cfg, tensor.dims)
    if cfg.max_batch_size > 0 and shape:
        want[0] = shape[0]  # any batch size up to max_batch_size
    if len(shape) != len(want) or any(w >= 0 and w != s for w, s in zip(want, shape)):
        problems.append(f"{tensor.name}: shape {shape}, config says {want}")
    return problems


def value_problems(name: str, got: np.ndarray, want, rtol: float, atol: float) -> list[str]:
    if got.dtype == object:
        got_list = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in got.ravel().tolist()]
        want_list = np.array(want, dtype=object).ravel().tolist()
        return [] if got_list == want_list else [f"{name}: got {got_list[:5]}, expected {want_list[:5]}"]
    want_arr = np.array(want, dtype=np.float64)
    try:
        ok = np.allclose(got.astype(np.float64), np.broadcast_to(want_arr, got.shape), rtol=rtol, atol=atol)
    except ValueError:
        return [f"{name}: shape {list(got.shape)} cannot match the expected {list(want_arr.shape)}"]
    return [] if ok else [f"{name}: got {got.ravel()[:5].tolist()}, expected {want_arr.ravel()[:5].tolist()} "
                          f"(rtol {rtol}, atol {atol})"]


@dataclass
class Inference:
    model: str
    protocol: str
    ok: bool = False
    outputs: dict[str, dict] = field(default_factory=dict)  # name -> {datatype, shape, sample}
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"model": self.model, "protocol": self.protocol, "ok": self.ok, "outputs": self.outputs,
                "problems": self.problems, "error": self.error, "seconds": self.seconds}


def _client(protocol: str, server):
    if protocol == "http":
        url = server.url.replace("http://", "", 1)
        return httpclient, httpclient.InferenceServerClient(url, network_timeout=120)
    return grpcclient, grpcclient.InferenceServerClient(server.grpc_url)


def infer(server, protocol: str, name: str, cfg: ModelConfig, inputs: dict[str, np.ndarray],
          expect: dict | None = None, rtol: float = 1e-5, atol: float = 1e-6) -> Inference:
    mod, client = _client(protocol, server)
    res = Inference(name, protocol)
    wire = []
    for tname, arr in inputs.items():
        tensor = next(t for t in cfg.input if t.name == tname)
        i = mod.InferInput(tname, list(arr.shape), triton_dtype(tensor.data_type))
        i.set_data_from_numpy(arr)
        wire.append(i)
    t0 = time.monotonic()
    try:
        result = client.infer(name, wire, outputs=[mod.InferRequestedOutput(t.name) for t in cfg.output])
    except InferenceServerException as e:
        res.error = e.message() or str(e)
        return res
    finally:
        res.seconds = round(time.monotonic() - t0, 3)
        client.close()
    for t in cfg.output:
        arr = result.as_numpy(t.name)
        if arr is None:
            res.problems.append(f"{t.name}: missing from the response")
            continue
        raw = result.get_output(t.name)
        datatype = raw["datatype"] if isinstance(raw, dict) else raw.datatype
        res.outputs[t.name] = {"datatype": datatype, "shape": list(arr.shape), "sample": _sample(arr)}
        res.problems += shape_problems(cfg, t, datatype, list(arr.shape))
        if expect and t.name in expect:
            res.problems += value_problems(t.name, arr, expect[t.name], rtol, atol)
    res.ok = not res.problems
    return res


def _sample(arr: np.ndarray) -> list:
    flat = arr.ravel()[:4].tolist()
    return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in flat]


def per_model(data: dict | None, name: str, models: set[str], what: str) -> dict | None:
    """{model: {tensor: value}} when any key names a model of the repository, else {tensor: value}
    for every model."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BadInput(f"{what} must be a JSON object", f'e.g. {{"{name}": {{"INPUT0": [1, 2]}}}}')
    return data.get(name) if set(data) & models else data
