"""The ensemble rules: what core's ValidateEnsembleConfig (ensemble_utils.cc) and ValidateModelConfig check of
an ensemble's steps, tensors and dependencies, predicted with Triton's own texts; and cycles of ensembles
that run each other."""

from __future__ import annotations

import re
from dataclasses import dataclass

from envtool.findings import Finding
from envtool.repo.config import dims_str, dtype_name
from envtool.repo.messages import Messages
from envtool.repo.model_repo import Model, Repository, Step


def autocompletes(m: Model) -> bool:
    """A python model whose model.py may add inputs/outputs at load (auto_complete_config)."""
    if not m.is_python:
        return False
    for v in m.loaded_versions():
        f = m.path / str(v) / m.model_file()
        if f.is_file() and re.search(r"def\s+auto_complete_config\b", f.read_text(errors="replace")):
            return True
    return False


def _dims_match(a, b) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


@dataclass
class _Tensor:
    model: str
    batching: bool
    dtype: int
    dims: tuple[int, ...]

    @property
    def full_dims(self) -> tuple[int, ...]:
        return ((-1,) if self.batching else ()) + self.dims


# Checks of ValidateModelConfig, which names the config's `name` (the folder name is checked later); the
# others (ensemble_utils.cc) name the model's id, the folder.
CONFIG_NAMED = {"ensemble-platform", "ensemble-instance-group", "ensemble-optimization", "ensemble-warmup",
                "ensemble-no-steps", "ensemble-step-incomplete", "ensemble-tensor-written-twice",
                "ensemble-input-unused", "ensemble-output-unused", "ensemble-output-unwritten",
                "ensemble-output-unconnected", "ensemble-tensor-unused"}


class EnsembleLinter:
    def __init__(self, repo: Repository, ensemble: Model, t: Messages):
        self.repo, self.e, self.c, self.t = repo, ensemble, ensemble.config, t
        self.name = ensemble.name
        self.where = str(ensemble.config_path)
        self.out: list[Finding] = []

    def add(self, rule: str, message: str, fix: str | None = None, severity: str = "error",
            msg_id: str | None = None, **fields) -> None:
        """A finding with Triton's text for msg_id (default: the rule); msg_id "" for none."""
        msg_id = rule if msg_id is None else msg_id
        named = self.c.name or self.name if msg_id in CONFIG_NAMED else self.name
        triton = self.t(msg_id, model=named, **fields) if msg_id else None
        self.out.append(Finding(rule, severity, self.name, message, triton, fix, self.where))

    def run(self) -> list[Finding]:
        self.check_header()
        steps = self.e.steps()
        if not steps:
            self.add("ensemble-no-steps", "the ensemble has no step", "add ensemble_scheduling { step [ ... ] }")
            return self.out
        self.check_steps(steps)
        self.check_data_flow(steps)
        self.check_decoupled(steps)
        return self.out

    def check_header(self) -> None:
        """ValidateEnsembleSchedulingConfig's checks before the steps."""
        c = self.c
        if c.platform != "ensemble":
            wrong = f'backend: "{c.backend}"' if c.backend else f'platform: "{c.platform}"'
            self.add("ensemble-platform", f"an ensemble must declare platform: \"ensemble\", not {wrong}",
                     f'replace {wrong} with platform: "ensemble"')
        for rule, present, what in (("ensemble-instance-group", len(c.instance_group), "instance_group"),
                                    ("ensemble-optimization", c.HasField("optimization"), "optimization"),
                                    ("ensemble-warmup", len(c.model_warmup), "model_warmup")):
            if present:
                self.add(rule, f"an ensemble takes no {what}", f"remove {what} from the ensemble (keep it on "
                         "its steps)")

    def check_steps(self, steps: list[Step]) -> None:
        tensors: dict[str, _Tensor] = {}
        batching = self.c.max_batch_size > 0
        for io in list(self.c.input) + list(self.c.output):
            dims = tuple(io.reshape.shape) if io.HasField("reshape") else tuple(io.dims)
            tensors[io.name] = _Tensor(self.name, batching, io.data_type, dims)
        for s in steps:
            for field in ("model_name", "input_map", "output_map"):
                if not getattr(s, field):
                    self.add("ensemble-step-incomplete", f"step {s.index} has no {field}",
                             f"add {field} to step {s.index}", field=field, step=s.index)
            model = self.repo.models.get(s.model_name)
            if s.model_name and not self.check_dependency(s, model):
                continue
            if model is None or model.config is None:
                continue
            self.check_batch(s, model)
            declared = {t.name for t in (*model.config.input, *model.config.output)}
            if autocompletes(model) and not set(s.input_map) | set(s.output_map) <= declared:
                self.add("ensemble-step-autocomplete",
                         f"{s.model_name} declares tensors in model.py (auto_complete_config) that this "
                         "step maps; its mapping is checked only when Triton loads it", severity="info", msg_id="")
                continue
            self.check_mapping(s, model, tensors)

    def check_dependency(self, s: Step, model: Model | None) -> bool:
        if model is None:
            self.add("ensemble-missing-model", f"step {s.index} runs {s.model_name!r}, which is not in the "
                     "repository", f"add the folder {s.model_name}/ or correct model_name",
                     step_model=s.model_name)
            return False
        if s.model_version != -1 and s.model_version not in model.loaded_versions():
            loaded = model.loaded_versions()
            self.add("ensemble-version", f"step {s.index} asks for {s.model_name} version "
                     f"{s.model_version}; Triton loads {loaded or 'none'} under its version policy",
                     "use model_version: -1 (latest) or add/allow that version folder",
                     step_model=s.model_name, version=s.model_version)
        return True

    def check_batch(self, s: Step, model: Model) -> None:
        mbs, own = model.config.max_batch_size, self.c.max_batch_size
        if mbs != 0 and mbs < own:
            self.add("ensemble-max-batch", f"max_batch_size {own} exceeds {s.model_name}'s {mbs}",
                     f"set the ensemble's max_batch_size to at most {mbs}", own=own, step_model=s.model_name,
                     theirs=mbs)

    def check_mapping(self, s: Step, model: Model, tensors: dict[str, _Tensor]) -> None:
        cfg = model.config
        batching = cfg.max_batch_size > 0
        ins = {i.name: i for i in cfg.input}
        outs = {o.name: o for o in cfg.output}
        self._unknown_keys(s, "input", s.input_map, ins)
        for name, io in ins.items():
            mapped = [v for k, v in s.input_map.items() if k == name]
            if not mapped and not io.optional:
                self.add("ensemble-input-unmapped", f"step {s.index}: input {name} of {s.model_name} is fed by no "
                         "ensemble tensor", f'add input_map {{ key: "{name}" value: "<tensor>" }}',
                         tensor=name, step_model=s.model_name)
            for value in mapped:
                self.link(tensors, value, _Tensor(s.model_name, batching, io.data_type, tuple(io.dims)))
        self._unknown_keys(s, "output", s.output_map, outs)
        for key, value in s.output_map.items():
            if key in outs:
                io = outs[key]
                self.link(tensors, value, _Tensor(s.model_name, batching, io.data_type, tuple(io.dims)))

    def _unknown_keys(self, s: Step, kind: str, mapping: dict, names: dict) -> None:
        """input_map / output_map keys that are not the step model's tensor names."""
        for key, value in mapping.items():
            if key not in names:
                self.add(f"ensemble-{kind}-map", f"step {s.index}: {s.model_name} has no {kind} {key!r} (its "
                         f"{kind}s: {', '.join(names) or 'none'})",
                         self._swap_fix(f"{kind}_map", key, value, names), value=value, key=key,
                         step_model=s.model_name)

    @staticmethod
    def _swap_fix(kind: str, key: str, value: str, names: dict) -> str:
        if value in names:
            return (f"{kind} is swapped: keys are the step model's tensor names, values the "
                    f'ensemble\'s: write key: "{value}" value: "{key}"')
        return f"use one of {', '.join(names) or '(none declared)'} as the {kind} key"

    def link(self, tensors: dict[str, _Tensor], name: str, t: _Tensor) -> None:
        seen = tensors.setdefault(name, t)
        if seen is t:
            return
        pair = {"tensor": name, "model_a": seen.model, "model_b": t.model}
        if seen.dtype != t.dtype:
            a, b = dtype_name(seen.dtype), dtype_name(t.dtype)
            self.add("ensemble-dtype", f"tensor {name} is {a} in {seen.model} but {b} in {t.model}",
                     "make both data_type entries agree", a=a, b=b, **pair)
        elif not (_dims_match(seen.dims, t.dims) or _dims_match(seen.full_dims, t.full_dims)):
            a, b = dims_str(seen.full_dims), dims_str(t.full_dims)
            self.add("ensemble-shape", f"tensor {name} is {a} in {seen.model} but {b} in {t.model}"
                     " (batch dimension included where max_batch_size > 0)",
                     "make the dims agree (use -1 for variable sizes)", a=a, b=b, **pair)

    def check_data_flow(self, steps: list[Step]) -> None:
        """Triton's BuildEnsembleGraph and readiness walk, plus an explicit cycle report."""
        produced: dict[str, int] = {}
        for s in steps:
            for t in s.output_map.values():
                if t in produced:
                    self.add("ensemble-tensor-written-twice", f"tensor {t} is written by steps {produced[t]} and "
                             f"{s.index}", "rename one of the outputs", tensor=t, step=s.index)
                produced.setdefault(t, s.index)
        consumed = {t for s in steps for t in s.input_map.values()}
        inputs = [i.name for i in self.c.input]
        for name in inputs:
            if name not in consumed and name not in produced:
                self.add("ensemble-input-unused", f"ensemble input {name} feeds no step",
                         f"map {name} into a step's input_map, or remove the input", tensor=name)
        ready = _ready_tensors(steps, inputs)
        cycle = self._cycle(steps)
        if cycle:
            self.add("ensemble-cycle", "steps form a cycle: " + " -> ".join(cycle),
                     "an ensemble is a DAG: break the cycle", msg_id="")
        outputs = {o.name for o in self.c.output}
        for name in outputs:
            fix = f"map a step's output to {name} in its output_map"
            if name not in produced and name not in consumed:
                self.add("ensemble-output-unwritten", f"ensemble output {name} is never produced", fix,
                         msg_id="ensemble-output-unused", tensor=name)
            elif name not in ready:
                source = _unconnected_source(steps, name, ready)
                self.add("ensemble-output-unwritten", f"ensemble output {name} is never produced"
                         + (f": it depends on {source}, which nothing produces" if source else ""), fix,
                         msg_id="ensemble-output-unconnected" if source else None, tensor=name, source=source)
        for t in sorted((set(produced) | consumed) - outputs - set(inputs)):
            if t not in consumed or t not in ready:
                self.add("ensemble-tensor-unused", f"tensor {t} is "
                         + ("never consumed" if t not in consumed else "never produced"),
                         "map it to a step input, or drop it from the output_map"
                         if t not in consumed else f"produce {t} in a step's output_map", tensor=t)

    def check_decoupled(self, steps: list[Step]) -> None:
        """ensemble_utils.cc: every step's inputs must come from the same decoupled model (or none)."""
        label = {i.name: 0 for i in self.c.input}
        outputs = {o.name for o in self.c.output}
        fresh, done = 0, set()
        for s in _ready_order(steps, set(label)):
            labels = {label.get(t, 0) for t in s.input_map.values()}
            if len(labels) > 1:
                first_out = next(iter(s.output_map.values()), "")
                owner = self.name if first_out in outputs else s.model_name
                return self.add("ensemble-decoupled-branching", f"step {s.index} ({s.model_name}) takes inputs "
                                "that come from different decoupled models", "let one decoupled model feed each "
                                "step, or join the streams in a model of your own", step_model=owner)
            own = labels.pop() if labels else 0
            if self._decoupled(s.model_name):
                fresh += 1
                own = fresh
            label.update({t: own for t in s.output_map.values()})
            done.add(s.index)
        if len({label[o] for o in outputs if o in label}) > 1:
            self.add("ensemble-decoupled-branching", "the ensemble's outputs come from different decoupled models",
                     "let one decoupled model produce all outputs", step_model=self.name)

    def _decoupled(self, name: str) -> bool:
        m = self.repo.models.get(name)
        if m is None or m.config is None:
            return False
        if m.is_ensemble:
            return any(self._decoupled(n) for n in self.repo.ensemble_members(m) if n != name)
        return m.config.model_transaction_policy.decoupled

    @staticmethod
    def _cycle(steps: list[Step]) -> list[str]:
        producer = {t: s for s in steps for t in s.output_map.values()}
        state: dict[int, int] = {}
        path: list[Step] = []

        def visit(s: Step) -> list[str]:
            state[s.index] = 1
            path.append(s)
            for t in s.input_map.values():
                p = producer.get(t)
                if p is None:
                    continue
                if state.get(p.index) == 1:
                    loop = path[[x.index for x in path].index(p.index):]
                    return [x.model_name for x in loop] + [p.model_name]
                if p.index not in state and (found := visit(p)):
                    return found
            state[s.index] = 2
            path.pop()
            return []

        for s in steps:
            if s.index not in state and (found := visit(s)):
                return found
        return []


def _ready_order(steps: list[Step], ready: set[str]) -> list[Step]:
    """Steps in the order their inputs become available (core's data-flow walk)."""
    order, ready, pending = [], set(ready), list(steps)
    while True:
        runnable = [s for s in pending if set(s.input_map.values()) <= ready]
        if not runnable:
            return order
        for s in runnable:
            ready |= set(s.output_map.values())
            pending.remove(s)
        order += runnable


def _ready_tensors(steps: list[Step], inputs: list[str]) -> set[str]:
    ready = set(inputs)
    for s in _ready_order(steps, ready):
        ready |= set(s.output_map.values())
    return ready


def _unconnected_source(steps: list[Step], tensor: str, ready: set[str]) -> str | None:
    """The not-ready tensor an unwritten output depends on, as core walks prev_nodes to find it."""
    prev = {}
    for s in steps:
        for t in s.output_map.values():
            prev.setdefault(t, []).extend(s.input_map.values())
    last, seen, nodes = tensor, set(), prev.get(tensor, [])
    while nodes:
        nxt = next((n for n in nodes if n not in ready and n not in seen), None)
        if nxt is None:
            break
        seen.add(nxt)
        last, nodes = nxt, prev.get(nxt, [])
    return None if last == tensor else last


def ensemble_cycles(repo: Repository, t: Messages) -> list[Finding]:
    """model_repository_manager's CircularDependencyCheck: ensembles that run themselves, through nesting."""
    out = []
    for e in repo.ensembles():
        last = _closes_loop(repo, e.name, e.name, frozenset())
        if last is not None:
            out.append(Finding("ensemble-circular", "error", e.name, f"{e.name} runs itself through {last}",
                               t("ensemble-cycle", model=e.name, last=last), "an ensemble cannot run itself, "
                               "directly or through nested ensembles", str(e.config_path)))
    return out


def _closes_loop(repo: Repository, start: str, name: str, seen: frozenset) -> str | None:
    """The ensemble whose step runs `start` again, on a path from `name`; None without a loop."""
    m = repo.models.get(name)
    if m is None or not m.is_ensemble or name in seen:
        return None
    for s in m.steps():
        if s.model_name == start:
            return name
        found = _closes_loop(repo, start, s.model_name, seen | {name})
        if found is not None:
            return found
    return None
