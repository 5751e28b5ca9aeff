"""Triton core's ValidateModelConfig, ValidateModelIOConfig (with ValidateBatchIO) and ValidateInstanceGroup,
run on a config.pbtxt as core runs them after normalisation (core r24.10 src/model_config_utils.cc).
Each violation is an error carrying Triton's own text (triton_messages.toml, per release)."""

from __future__ import annotations

from envtool.findings import Finding
from envtool.repo.config import ModelConfig, dtype_name
from envtool.repo.messages import Messages
from envtool.repo.model_repo import Model

# Platforms core knows without a backend (it fills the backend from them).
KNOWN_PLATFORMS = {"ensemble", "tensorrt_plan", "onnxruntime_onnx", "pytorch_libtorch", "tensorflow_savedmodel",
                   "tensorflow_graphdef"}
# GetBackendType / GetBackendTypeFromPlatform: a known backend must agree with its platform.
BACKEND_PLATFORMS = {"tensorrt": {"tensorrt_plan"}, "onnxruntime": {"onnxruntime_onnx"},
                     "pytorch": {"pytorch_libtorch"},
                     "tensorflow": {"tensorflow_savedmodel", "tensorflow_graphdef"}}
BOOL_CONTROLS = ("CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_READY")
CORRID_TYPES = {"TYPE_UINT64", "TYPE_INT64", "TYPE_UINT32", "TYPE_INT32", "TYPE_STRING"}
BATCH_INPUT_KINDS = {"BATCH_ELEMENT_COUNT", "BATCH_ACCUMULATED_ELEMENT_COUNT",
                     "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE",
                     "BATCH_ITEM_SHAPE", "BATCH_ITEM_SHAPE_FLATTEN"}
MIN_COMPUTE_CAPABILITY = "6.000000"  # TRITON_MIN_COMPUTE_CAPABILITY, as std::to_string prints it
GPU_IDS_PLAUSIBLE = 16  # no DGX/HGX machine has more GPUs: an id past them fails to load


class CoreRules:
    def __init__(self, m: Model, t: Messages, io_final: bool):
        self.m, self.c, self.t, self.io_final = m, m.config, t, io_final
        self.backend, self.platform = m.autofilled()  # core's autofill: read the model folder once
        self.out: list[Finding] = []

    def add(self, msg_id: str, message: str, fix: str, rule: str | None = None, severity: str = "error",
            **fields) -> None:
        named = self.c.name or self.m.name  # core names the config's name: it checks the folder later
        self.out.append(Finding(rule or msg_id, severity, self.m.name, message,
                                self.t(msg_id, model=named, **fields), fix, str(self.m.config_path)))

    def run(self) -> list[Finding]:
        self.header()
        self.dynamic_batching()
        self.sequence_batching()
        if self.c.model_transaction_policy.decoupled and self.c.response_cache.enable:
            self.add("decoupled-cache", "a decoupled model cannot use the response cache",
                     "remove response_cache { enable: true }")
        if self.io_final:
            for kind, tensors in (("input", self.c.input), ("output", self.c.output)):
                for io in tensors:
                    self.io(kind, io)
        self.batch_io()
        if not self.m.is_ensemble:
            self.instance_groups()
        return self.out

    # --- ValidateModelConfig ------------------------------------------------------------------

    def header(self) -> None:
        c = self.c
        backend, platform = self.backend, self.platform
        if c.platform == "ensemble" and c.backend:
            self.add("ensemble-backend", f"an ensemble also sets backend {c.backend!r}", "remove its backend line")
        elif c.platform and not backend and c.platform != "ensemble":
            self.add("platform-unknown", f"platform {c.platform!r} is not one Triton knows",
                     f"use one of {', '.join(sorted(KNOWN_PLATFORMS))}, or set backend", platform=c.platform)
        elif backend in BACKEND_PLATFORMS and platform and platform not in BACKEND_PLATFORMS[backend]:
            self.add("platform-backend-pair", f"backend {backend!r} does not run platform {platform!r}",
                     "drop the platform line (the backend decides)", platform=platform, backend=backend)
        if c.runtime and ".." in c.runtime.replace("\\", "/").split("/"):
            self.add("runtime-escapes", f"runtime {c.runtime!r} leaves the backend directory",
                     "name a library inside the backend's folder", runtime=c.runtime)
        if c.max_batch_size < 0:
            self.add("max-batch-negative", f"max_batch_size is {c.max_batch_size}",
                     "set 0 (no batching) or a positive size")
        if c.platform == "ensemble" and not c.HasField("ensemble_scheduling"):
            self.add("ensemble-scheduling-missing", "platform is ensemble but ensemble_scheduling is not set",
                     "add ensemble_scheduling { step [ ... ] }, or set the model's backend")

    def dynamic_batching(self) -> None:
        c = self.c
        if not c.HasField("dynamic_batching"):
            return
        db = c.dynamic_batching
        self.preferred_sizes(db.preferred_batch_size, "dynamic-batch-size", "dynamic_batching")
        levels = db.priority_levels
        if levels:
            if not 1 <= db.default_priority_level <= levels:
                self.add("priority-default-level", f"default_priority_level {db.default_priority_level} is "
                         f"outside 1..{levels}", f"set default_priority_level between 1 and {levels}",
                         levels=levels)
            bad = sorted(k for k in db.priority_queue_policy if not 1 <= k <= levels)
            if bad:
                self.add("priority-queue-level", f"priority_queue_policy names level {bad[0]}, outside "
                         f"1..{levels}",
                         f"key the policies 1..{levels}", levels=levels)
        if db.preserve_ordering:
            if levels > 1:
                self.add("preserve-ordering-levels", "preserve_ordering allows one priority level only",
                         "set priority_levels to 1 or drop preserve_ordering")
            policies = [db.default_queue_policy, *db.priority_queue_policy.values()]
            if any(p.default_timeout_microseconds and p.timeout_action == p.DELAY for p in policies):
                self.add("preserve-ordering-delay", "preserve_ordering forbids a DELAY timeout action",
                         "use timeout_action: REJECT, or drop preserve_ordering")

    def preferred_sizes(self, sizes, prefix: str, where: str) -> None:
        if any(s <= 0 for s in sizes):
            self.add(f"{prefix}-positive", f"{where} has a preferred batch size <= 0", "use sizes >= 1")
        elif any(s > self.c.max_batch_size for s in sizes):
            self.add(f"{prefix}-max", f"{where} prefers a batch size above max_batch_size "
                     f"{self.c.max_batch_size}", "keep preferred sizes <= max_batch_size")

    def sequence_batching(self) -> None:
        c = self.c
        if not c.HasField("sequence_batching"):
            return
        sb = c.sequence_batching
        if c.response_cache.enable:
            self.add("sequence-cache", "the sequence batcher cannot use the response cache",
                     "remove response_cache { enable: true }")
        for kind in BOOL_CONTROLS:
            if self.control(sb, kind, typed=False):
                return
        if self.control(sb, "CONTROL_SEQUENCE_CORRID", typed=True):
            return
        if sb.HasField("oldest"):
            self.preferred_sizes(sb.oldest.preferred_batch_size, "sequence-batch-size", "sequence_batching.oldest")
        if sb.HasField("direct") and not 0.0 <= sb.direct.minimum_slot_utilization <= 1.0:
            self.add("sequence-slot-utilization", "minimum_slot_utilization is outside (0.0, 1.0]",
                     "set a value in (0.0, 1.0]")

    def control(self, sb, kind: str, typed: bool) -> bool:
        """GetBooleanSequenceControlProperties / GetTypedSequenceControlProperties; True on a violation."""
        fix = "give each control kind one tensor with its false/true values"
        seen_tensors, seen = set(), False
        for ci in sb.control_input:
            if not ci.name:
                self.add("sequence-control-name", "a control_input has no name", "name the control tensor")
                return True
            if ci.name in seen_tensors:
                self.add("sequence-control-tensor-reused", f"control tensor {ci.name} is listed twice", fix,
                         tensor=ci.name)
                return True
            seen_tensors.add(ci.name)
            for ctl in ci.control:
                if sb.Control.Kind.Name(ctl.kind) != kind:
                    continue
                if seen:
                    self.add("sequence-control-multiple", f"more than one tensor carries {kind}", fix, kind=kind)
                    return True
                seen = True
                if self.control_values(ctl, kind, typed, ci.name):
                    return True
        return False

    def control_values(self, ctl, kind: str, typed: bool, tensor: str) -> bool:
        given = {f: len(getattr(ctl, f)) for f in ("int32_false_true", "fp32_false_true", "bool_false_true")
                 if len(getattr(ctl, f))}
        fix = f"give {tensor} exactly one of int32_false_true, fp32_false_true or bool_false_true: [false, true]"
        if typed:
            if given:
                self.add("sequence-control-typed-value", f"{kind} takes a data_type, not false/true values",
                         "set data_type and drop the *_false_true values", kind=kind)
                return True
            if dtype_name(ctl.data_type) not in CORRID_TYPES:
                self.add("sequence-corrid-type", f"{kind} is {dtype_name(ctl.data_type)}",
                         "use TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING")
                return True
            return False
        if not given:
            self.add("sequence-control-no-value", f"{kind} on {tensor} gives no false/true values", fix, kind=kind)
        elif len(given) > 1:
            self.add("sequence-control-many-values", f"{kind} on {tensor} gives more than one kind of values",
                     fix, kind=kind)
        elif (field := next(iter(given))) and given[field] != 2:
            self.add("sequence-control-entries", f"{kind} on {tensor}: {field} has {given[field]} entries, not 2",
                     fix, kind=kind, field=field)
        else:
            return False
        return True

    # --- ValidateModelIOConfig ----------------------------------------------------------------

    def io(self, kind: str, io) -> None:
        """ValidateIOShape, first failure only (as core reports it), then the format rules."""
        def add(msg_id: str, message: str, fix: str) -> None:
            self.add(msg_id, f"{kind} {io.name}: {message}", fix, kind=kind, tensor=io.name)
        reshape = list(io.reshape.shape) if io.HasField("reshape") else None
        if not io.name:
            return self.add("io-name", f"an {kind} has no name", "name it", kind=kind)
        if not io.data_type:
            return add("io-data-type", "no data_type", "add data_type: TYPE_...")
        if not len(io.dims):
            return add("io-dims", "no dims", "add dims: [ ... ] (-1 for a variable size)")
        if reshape == [] and self.c.max_batch_size == 0:
            return add("io-reshape-empty", "empty reshape on a model without batching",
                       "give reshape a shape, or drop it")
        if any(d < 1 and d != -1 for d in io.dims):
            return add("io-dim-zero", "a dimension < 1 that is not -1", "use a positive size, or -1")
        if reshape is not None:
            if any(d < 1 and d != -1 for d in reshape):
                return add("io-reshape-zero", "a reshape dimension < 1 that is not -1",
                           "use a positive size, or -1")
            why = _reshape_mismatch(list(io.dims), reshape)
            if why:
                return add(why, "dims and reshape hold different element counts", "make their products agree")
        if kind == "input" and io.format in (1, 2) and len(io.dims) != 3:  # FORMAT_NHWC, FORMAT_NCHW
            return self.add("io-format-dims", f"input {io.name}: NHWC/NCHW need 3 dims", "give 3 dims")
        trt = self.platform == "tensorrt_plan"
        if not trt and io.is_shape_tensor:
            return self.add("io-shape-tensor", f"{kind} {io.name} is a shape tensor, a TensorRT-only feature",
                            "drop is_shape_tensor")
        if not trt and io.is_non_linear_format_io:
            return self.add("io-non-linear", f"{kind} {io.name} uses a non-linear IO format, a TensorRT-only "
                            "feature", "drop is_non_linear_format_io")

    def batch_io(self) -> None:
        c = self.c
        inputs, outputs = {i.name for i in c.input}, {o.name for o in c.output}
        fix = "see model_config.proto: batch_input / batch_output"
        for b in c.batch_input:
            kind = b.Kind.Name(b.kind)
            if kind in BATCH_INPUT_KINDS and len(b.source_input) != 1:
                self.add("batch-input-sources", f"batch_input {b.target_name or kind} has {len(b.source_input)} "
                         "source inputs, not 1", fix, kind=kind, count=len(b.source_input))
            elif dtype_name(b.data_type) not in ("TYPE_INT32", "TYPE_FP32"):
                self.add("batch-input-type", f"batch_input {b.target_name or kind} is {dtype_name(b.data_type)}",
                         "use TYPE_INT32 or TYPE_FP32")
            else:
                self.unknown_sources(b.source_input, inputs)
        for b in c.batch_output:
            kind = b.Kind.Name(b.kind)
            if len(b.source_input) != 1:
                self.add("batch-output-sources", f"batch_output has {len(b.source_input)} source inputs, not 1",
                         fix, kind=kind, count=len(b.source_input))
                continue
            if self.unknown_sources(b.source_input, inputs):
                continue
            unknown = [n for n in b.target_name if n not in outputs]
            twice = [n for i, n in enumerate(b.target_name) if n in b.target_name[:i]]
            if unknown:
                self.add("batch-target-unknown", f"batch_output targets {unknown[0]!r}, not an output", fix,
                         tensor=unknown[0])
            elif twice:
                self.add("batch-target-twice", f"batch_output targets {twice[0]!r} twice", fix, tensor=twice[0])

    def unknown_sources(self, sources, inputs: set) -> bool:
        unknown = [s for s in sources if s not in inputs]
        if unknown:
            self.add("batch-source-unknown", f"batch source {unknown[0]!r} is not an input",
                     "name one of the model's inputs", tensor=unknown[0])
        return bool(unknown)

    # --- ValidateInstanceGroup ----------------------------------------------------------------

    def instance_groups(self) -> None:
        for i, g in enumerate(self.c.instance_group):
            group = g.name or f"{self.m.name}_{i}"  # NormalizeInstanceGroup's default name
            kind = g.Kind.Name(g.kind)
            fix = f"drop gpus from instance group {group}, or make it KIND_GPU"
            if kind == "KIND_CPU" and len(g.gpus):
                self.add("instance-gpus-on-cpu", f"instance group {group} is KIND_CPU but lists gpus", fix,
                         group=group)
            elif kind == "KIND_MODEL" and len(g.gpus):
                self.add("instance-gpus-on-model", f"instance group {group} is KIND_MODEL but lists gpus", fix,
                         group=group)
            for gpu in g.gpus if kind in ("KIND_GPU", "KIND_AUTO") else ():
                if gpu < 0 or gpu >= GPU_IDS_PLAUSIBLE:
                    self.add("instance-gpu-invalid", f"instance group {group} names GPU {gpu}, which "
                             + ("no machine has" if gpu < 0 else f"no server Triton supports has (at most "
                                f"{GPU_IDS_PLAUSIBLE} GPUs: ids 0..{GPU_IDS_PLAUSIBLE - 1})"),
                             "list the ids of GPUs the server has (nvidia-smi -L)", group=group, gpu=gpu,
                             capability=MIN_COMPUTE_CAPABILITY)
            if len(g.profile) and self.platform != "tensorrt_plan":
                self.add("instance-profile", f"instance group {group} sets profile, a TensorRT-only field",
                         "drop profile", group=group, platform=self.platform)


def _reshape_mismatch(dims: list[int], reshape: list[int]) -> str | None:
    """ValidateIOShape's element-count rules; the message id on a mismatch."""
    def count(shape: list[int]) -> int:  # common's GetElementCount: -1 with a wildcard, 0 when empty
        if -1 in shape:
            return -1
        n = 1
        for d in shape:
            n *= d
        return n if shape else 0

    def chunks(shape: list[int]) -> list[int]:
        out, n = [], 1
        for d in shape:
            if d == -1:
                out.append(n)
                n = 1
            else:
                n *= d
        return out + [n]
    a, b = count(dims), count(reshape)
    if a != b and (b != 0 or a != 1):
        return "io-reshape-size"
    if a == -1:
        ca, cb = chunks(dims), chunks(reshape)
        if len(ca) != len(cb):
            return "io-reshape-variable"
        if ca != cb:
            return "io-reshape-size"
    return None


def core_findings(m: Model, t: Messages, io_final: bool) -> list[Finding]:
    """Core's validation of one model's config; io_final: its inputs/outputs are final as written."""
    if m.config is None or not isinstance(m.config, ModelConfig):
        return []
    return CoreRules(m, t, io_final).run()
