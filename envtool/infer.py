"""One inference per model over HTTP and gRPC with tritonclient, checked against the model's config.

Inputs come from the user (JSON: {model: {input: value}} or {input: value}) or are generated from the
config's data types and dims; outputs are checked for data type and shape, and with expectations
for their values within a tolerance.
"""

from __future__ import annotations

import json
import queue
import socket
import time
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from envtool.errors import BadInput
from envtool.repo.config import ModelConfig, dims_str, dtype_name

SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog. It was not amused."
# One request's deadline, both protocols: a stub that spins or deadlocks must end as a finding, not as a verify
# that waits forever (gRPC calls have no deadline unless given one)
INFER_TIMEOUT_S = 120.0
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


def expected_form(cfg: ModelConfig, tensor) -> str:
    """How a value for `tensor` must look, as the user writes it in --inputs."""
    dims = dims_str(tensor.dims)
    form = f"{triton_dtype(tensor.data_type)} {dims}"
    return form + (f" (or [batch]+{dims}, batch <= {cfg.max_batch_size})" if cfg.max_batch_size > 0 else "")


def given_input(model: str, cfg: ModelConfig, tensor, value) -> np.ndarray:
    """The user's value as the tensor's array, or BadInput naming the model, the tensor and the form."""
    dtype = triton_dtype(tensor.data_type)
    where = f"--inputs: {model}.{tensor.name}"
    fix = f"give {tensor.name} as {expected_form(cfg, tensor)}"
    try:
        if dtype == "BYTES":
            arr = np.array(value, dtype=object)
            arr = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(arr)
        else:
            arr = np.array(value, dtype=triton_to_np_dtype(dtype))
    except (ValueError, TypeError, OverflowError):
        raise BadInput(f"{where} is {json.dumps(value)[:60]}, not {dtype} data", fix) from None
    want = _batched(cfg, tensor.dims)
    if arr.ndim == len(want) - 1 and cfg.max_batch_size > 0:
        arr = arr[None]  # a single sample: add the batch dim
    batch_ok = cfg.max_batch_size <= 0 or (arr.ndim and 1 <= arr.shape[0] <= cfg.max_batch_size)
    if arr.ndim != len(want) or not batch_ok or any(
            w >= 0 and w != s for w, s in list(zip(want, arr.shape))[1 if cfg.max_batch_size > 0 else 0:]):
        raise BadInput(f"{where} has shape {list(arr.shape)}, not {expected_form(cfg, tensor)}", fix)
    return arr


def model_inputs(model: str, cfg: ModelConfig, given: dict | None) -> tuple[dict[str, np.ndarray], list[str]]:
    """(arrays to send, names generated from the config). Every given name must be an input of the
    model: a typo would otherwise be ignored and a generated value sent in its place."""
    given = given or {}
    names = [t.name for t in cfg.input]
    if unknown := sorted(set(given) - set(names)):
        raise BadInput(f"--inputs: model {model} has no input {unknown[0]!r}",
                       f"its inputs are {', '.join(names) or '(none)'}")
    out, generated = {}, []
    for t in cfg.input:
        if t.name in given:
            out[t.name] = given_input(model, cfg, t, given[t.name])
        elif not t.optional:
            out[t.name] = generated_input(cfg, t)
            generated.append(t.name)
    return out, generated


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
    protocol: str  # http, grpc, or grpc-stream (decoupled models)
    ok: bool = False
    outputs: dict[str, dict] = field(default_factory=dict)  # name -> {datatype, shape, sample}
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    generated: list[str] = field(default_factory=list)  # inputs made up from the config
    responses: int | None = None  # grpc-stream: how many responses carried tensors

    def to_dict(self) -> dict:
        return {"model": self.model, "protocol": self.protocol, "ok": self.ok, "outputs": self.outputs,
                "problems": self.problems, "error": self.error, "seconds": self.seconds,
                "generated_inputs": self.generated, "responses": self.responses}

    @classmethod
    def from_dict(cls, d: dict) -> Inference:
        """One to_dict() wrote (envtool.lock keeps the inferences of the serve it records)."""
        return cls(d["model"], d["protocol"], d.get("ok", False), d.get("outputs") or {}, d.get("problems") or [],
                   d.get("error"), d.get("seconds", 0.0), d.get("generated_inputs") or [], d.get("responses"))


def _client(protocol: str, server):
    if protocol == "http":
        url = server.url.replace("http://", "", 1)
        return httpclient, httpclient.InferenceServerClient(url, network_timeout=INFER_TIMEOUT_S)
    return grpcclient, grpcclient.InferenceServerClient(server.grpc_url)


def _wire(mod, cfg: ModelConfig, inputs: dict[str, np.ndarray]) -> list:
    wire = []
    for tname, arr in inputs.items():
        tensor = next(t for t in cfg.input if t.name == tname)
        i = mod.InferInput(tname, list(arr.shape), triton_dtype(tensor.data_type))
        i.set_data_from_numpy(arr)
        wire.append(i)
    return wire


def infer(server, protocol: str, name: str, cfg: ModelConfig, inputs: dict[str, np.ndarray],
          expect: dict | None = None, rtol: float = 1e-5, atol: float = 1e-6) -> Inference:
    mod, client = _client(protocol, server)
    res = Inference(name, protocol)
    t0 = time.monotonic()
    deadline = {"client_timeout": INFER_TIMEOUT_S} if protocol == "grpc" else {}
    try:
        result = client.infer(name, _wire(mod, cfg, inputs),
                              outputs=[mod.InferRequestedOutput(t.name) for t in cfg.output], **deadline)
    except InferenceServerException as e:
        message = e.message() or str(e)
        res.error = _no_answer() if "Deadline Exceeded" in message else message
        return res
    except (TimeoutError, socket.timeout):  # http: network_timeout (one class from Python 3.10, two before)
        res.error = _no_answer()
        return res
    finally:
        res.seconds = round(time.monotonic() - t0, 3)
        client.close()
    names = result_names(result)
    res.problems += [f"{t.name}: missing from the response" for t in cfg.output if t.name not in names]
    _check_outputs(res, cfg, result, expect, rtol, atol)
    res.ok = res.error is None and not res.problems
    return res


def _no_answer() -> str:
    return (f"no answer within {INFER_TIMEOUT_S:.0f} s: the model hangs or spins (its stub still runs; see the "
            "server log)")


def result_names(result) -> set[str]:
    response = result.get_response()
    outputs = response["outputs"] if isinstance(response, dict) else response.outputs
    return {o["name"] if isinstance(o, dict) else o.name for o in outputs or []}


def _check_outputs(res: Inference, cfg: ModelConfig, result, expect: dict | None, rtol: float,
                   atol: float) -> None:
    """Data type and shape of every output the response carries (values too, where expected); the first
    response that carries an output is the one recorded."""
    for t in cfg.output:
        try:
            arr = result.as_numpy(t.name)
        except ValueError as e:  # tritonclient cannot decode it: an empty tensor of a non-empty shape
            res.error = res.error or f"the response does not decode: {e}"
            continue
        if arr is None or t.name in res.outputs:
            continue
        raw = result.get_output(t.name)
        datatype = raw["datatype"] if isinstance(raw, dict) else raw.datatype
        res.outputs[t.name] = {"datatype": datatype, "shape": list(arr.shape), "sample": _sample(arr)}
        res.problems += shape_problems(cfg, t, datatype, list(arr.shape))
        if expect and t.name in expect:
            res.problems += value_problems(t.name, arr, expect[t.name], rtol, atol)


FINAL = "triton_final_response"


def infer_stream(server, name: str, cfg: ModelConfig, inputs: dict[str, np.ndarray], expect: dict | None = None,
                 rtol: float = 1e-5, atol: float = 1e-6, timeout: float = 60.0, quiet: float = 5.0) -> Inference:
    """One request over the gRPC stream of a decoupled model: every response until the final flag
    (servers that do not send one: until `quiet` seconds pass without a response)."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    res = Inference(name, "grpc-stream", responses=0)
    got: queue.Queue = queue.Queue()
    t0 = time.monotonic()
    try:
        client.start_stream(callback=lambda result, error: got.put((result, error)))
        client.async_stream_infer(name, _wire(grpcclient, cfg, inputs), enable_empty_final_response=True,
                                  outputs=[grpcclient.InferRequestedOutput(t.name) for t in cfg.output])
        final = _collect(res, cfg, got, expect, rtol, atol, t0 + timeout, quiet)
    except InferenceServerException as e:
        res.error, final = e.message() or str(e), True
    finally:
        client.stop_stream()
        client.close()
        res.seconds = round(time.monotonic() - t0, 3)
    if not final and res.error is None and not res.responses:
        res.error = f"no response and no final flag within {timeout:.0f} s"
    if res.error is None and not res.responses and len(cfg.output):
        res.problems.append("the stream ended with no response, and the model declares outputs")
    res.ok = res.error is None and not res.problems
    return res


def _collect(res: Inference, cfg: ModelConfig, got: queue.Queue, expect, rtol, atol, deadline: float,
             quiet: float) -> bool:
    """Read responses into res until the final flag (True) or silence/deadline (False)."""
    while time.monotonic() < deadline:
        try:
            result, error = got.get(timeout=quiet if res.responses else max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            return False
        if error is not None:
            res.error = error.message() if isinstance(error, InferenceServerException) else str(error)
            return True
        response = result.get_response()
        if response.outputs:
            res.responses += 1
            _check_outputs(res, cfg, result, expect, rtol, atol)
        param = response.parameters.get(FINAL)
        if param is not None and param.bool_param:
            return True
    return False


def _sample(arr: np.ndarray) -> list:
    flat = arr.ravel()[:4].tolist()
    return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in flat]


def per_model(data: dict | None, name: str, models: set[str], what: str) -> dict | None:
    """{model: {tensor: value}} when any key names a model of the repository (then every key must),
    else {tensor: value} for every model."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BadInput(f"{what} must be a JSON object", f'e.g. {{"{name}": {{"INPUT0": [1, 2]}}}}')
    if not set(data) & models:
        return data
    if stray := sorted(set(data) - models):
        raise BadInput(f"{what}: {stray[0]!r} is no model of the repository, and other keys name models",
                       'key every entry by model ({"model": {"INPUT": value}}), or none')
    value = data.get(name)
    if value is not None and not isinstance(value, dict):
        raise BadInput(f"{what}: the entry of model {name} is not an object",
                       f'e.g. {{"{name}": {{"INPUT0": [1, 2]}}}}')
    return value
