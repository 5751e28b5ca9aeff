"""Surgical edits of config.pbtxt text: replace or insert exactly one span per change.

Every byte outside the edited spans stays as the user wrote it (comments, order, spacing). The
result is re-parsed with protobuf and checked against the intended values before anyone writes it.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from envtool.errors import BadInput
from envtool.repo import pbtxt
from envtool.repo.config import parse_config

KINDS = ("KIND_CPU", "KIND_GPU")


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


def quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a valid protobuf text-format string literal


def apply(text: str, edits: list[Edit]) -> str:
    for e in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        text = text[: e.start] + e.text + text[e.end:]
    return text


def _append(text: str, block: str) -> Edit:
    sep = "" if not text or text.endswith("\n") else "\n"
    return Edit(len(text), len(text), f"{sep}{block}\n")


def set_parameter(text: str, key: str, value: str) -> list[Edit]:
    """Edits that make parameters[key].string_value == value (none if it already is)."""
    root = _parse(text)
    for f in root.get("parameters"):
        for entry in f.values:
            if not entry.is_message or [k.values[0].string() for k in entry.get("key")] != [key]:
                continue
            for v in entry.get("value"):
                for sv in (v.values[0].get("string_value") if v.values[0].is_message else []):
                    scalar = sv.values[0]
                    if scalar.string() == value:
                        return []
                    return [Edit(scalar.start, scalar.end, quote(value))]
            raise BadInput(f"parameters entry {key!r} has no value {{ string_value: ... }}",
                           f"write it as value: {{ string_value: {quote(value)} }}")
    block = f"parameters {{\n  key: {quote(key)}\n  value: {{ string_value: {quote(value)} }}\n}}"
    return [_append(text, block)]


def set_instance_kind(text: str, kind: str) -> list[Edit]:
    """Edits that make every instance_group's kind == kind (adds one group if there is none)."""
    assert kind in KINDS
    root = _parse(text)
    groups = [v for f in root.get("instance_group") for v in f.values if v.is_message]
    if not groups:
        return [_append(text, f"instance_group [ {{ kind: {kind} }} ]")]
    edits = []
    for g in groups:
        if kind == "KIND_CPU" and g.get("gpus"):
            raise BadInput("an instance_group lists gpus, which KIND_CPU forbids",
                           "remove its gpus field, or inject with --gpu")
        kinds = g.get("kind")
        if kinds:
            scalar = kinds[0].values[0]
            if scalar.text != kind:
                edits.append(Edit(scalar.start, scalar.end, kind))
        elif g.fields:
            first = g.fields[0]
            nl = "\n" in text[g.open_end:first.start]
            sep = "\n" + pbtxt.indent_of(text, first.start) if nl else " "
            edits.append(Edit(g.open_end, g.open_end, f"{sep}kind: {kind}"))
        else:
            edits.append(Edit(g.open_end, g.close_start, f" kind: {kind} "))
    return edits


def _parse(text: str) -> pbtxt.Value:
    try:
        return pbtxt.parse(text)
    except pbtxt.PbtxtError as e:
        line, col = pbtxt.line_col(text, e.offset)
        raise BadInput(f"{e} at {line}:{col}", "fix the syntax of config.pbtxt first") from None


@dataclass
class FileChange:
    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self, root: Path | None = None) -> str:
        """A unified diff; with root, its headers are relative to it (`patch -p1` from root applies it)."""
        name = self.path.relative_to(root).as_posix() if root is not None else str(self.path).lstrip("/")
        old = "/dev/null" if not self.before else f"a/{name}"
        return "".join(difflib.unified_diff(
            self.before.splitlines(keepends=True), self.after.splitlines(keepends=True), old, f"b/{name}"))


def plan_config_edit(path: Path, params: dict[str, str], kind: str | None,
                     create: str | None = None) -> FileChange:
    """Compute (not write) the new text of one config.pbtxt, verified by re-parsing. `create`: the
    text to start from where the file does not exist yet (a model Triton auto-completes)."""
    before = "" if create is not None and not path.exists() else path.read_text(encoding="utf-8")
    after = before or (create or "")
    for key, value in params.items():
        after = apply(after, set_parameter(after, key, value))
    if kind:
        after = apply(after, set_instance_kind(after, kind))
    cfg = parse_config(after, path)
    bad = [k for k, v in params.items() if cfg.parameters[k].string_value != v]
    if bad or (kind and any(g.kind != type(g).Kind.Value(kind) for g in cfg.instance_group)):
        raise BadInput(f"{path}: the edit did not produce the intended config ({bad or kind})",
                       "report this config to envtool's maintainers")
    return FileChange(path, before, after)
