import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envtool.errors import BadInput
from envtool.repo.config import parse_config
from envtool.repo.edit import apply, set_instance_kind, set_parameter

KEY = "EXECUTION_ENV_PATH"
NEW = "$$TRITON_MODEL_DIRECTORY/custom_env.tar.gz"


def edited(text, key=KEY, value=NEW):
    return apply(text, set_parameter(text, key, value))


@pytest.mark.parametrize("form", [
    'parameters: {{ key: "{k}", value: {{string_value: "old"}} }}',
    'parameters {{\n  key: "{k}"\n  value: {{ string_value: "old" }}\n}}',
    "parameters < key: '{k}' value < string_value: 'old' > >",
    'parameters [ {{ key: "OTHER" value: {{ string_value: "x" }} }}, {{ key: "{k}" value: {{ string_value: "old" }} }} ]',
])
def test_existing_parameter_value_is_replaced_in_place(form):
    text = f'name: "m"  # keep me\nbackend: "python"\n{form.format(k=KEY)}\n# trailing comment\n'
    out = edited(text)
    assert parse_config(out).parameters[KEY].string_value == NEW
    assert out.replace(f'"{NEW}"', "").replace("'old'", "").replace('"old"', "") == \
        text.replace("'old'", "").replace('"old"', "")


def test_absent_parameter_is_appended_and_comments_stay():
    text = 'backend: "python"\n# last line comment, no newline at end'
    out = edited(text)
    assert out.startswith(text + "\n") and parse_config(out).parameters[KEY].string_value == NEW


def test_same_value_means_no_edit():
    text = f'backend: "python"\nparameters {{ key: "{KEY}" value: {{ string_value: "{NEW}" }} }}\n'
    assert set_parameter(text, KEY, NEW) == []


@pytest.mark.parametrize("text,expected", [
    ("instance_group [ { kind: KIND_GPU count: 2 } ]\n", "instance_group [ { kind: KIND_CPU count: 2 } ]\n"),
    ("instance_group [ { count: 2 } ]\n", "instance_group [ { kind: KIND_CPU count: 2 } ]\n"),
    ("instance_group [\n  {\n    count: 2\n  }\n]\n", "instance_group [\n  {\n    kind: KIND_CPU\n    count: 2\n  }\n]\n"),
    ("instance_group [{}]\n", "instance_group [{ kind: KIND_CPU }]\n"),
    ('backend: "python"\n', 'backend: "python"\ninstance_group [ { kind: KIND_CPU } ]\n'),
])
def test_instance_kind(text, expected):
    assert apply(text, set_instance_kind(text, "KIND_CPU")) == expected


def test_cpu_kind_with_gpus_listed_is_refused():
    with pytest.raises(BadInput, match="gpus"):
        set_instance_kind("instance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]", "KIND_CPU")


# --- property tests over generated configs with comments and odd formatting ---------------------

ws = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", " \n  "])
comment = st.sampled_from(["", "# a comment\n", "#{ tricky } \"quote\n", "  # parameters { key: \"X\" }\n"])


@st.composite
def configs(draw):
    parts = [f'name: "m"{draw(ws)}', f'backend:{draw(ws)}"python"']
    if draw(st.booleans()):
        parts.append(f"max_batch_size: {draw(st.integers(0, 64))}")
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["", "kind: KIND_GPU", "kind: KIND_AUTO", "kind:KIND_CPU"]))
        sep = draw(st.sampled_from([" ", ",", "\n    "])) if kind else ""
        parts.append(f"instance_group [{draw(ws)}{{ {kind}{sep}count: 1 }}{draw(ws)}]")
    for key in draw(st.lists(st.sampled_from([KEY, "FORCE_CPU_ONLY_INPUT_TENSORS", "OTHER"]), unique=True)):
        style = draw(st.integers(0, 2))
        if style == 0:
            parts.append(f'parameters {{ key: "{key}" value: {{ string_value: "v" }} }}')
        elif style == 1:
            parts.append(f'parameters: {{{draw(ws)}key: "{key}",{draw(ws)}value: {{string_value:"v"}}}}')
        else:
            parts.append(f"parameters <{draw(ws)}key: '{key}' value < string_value: 'v' > >")
    body = ""
    for p in parts:
        body += draw(comment) + p + draw(st.sampled_from(["\n", "\n\n", " ", ";\n", ",\n"]))
    return body + draw(st.sampled_from(["", "# end", "\n# end\n"]))


def comments_of(text):
    return re.findall(r"#[^\n]*", text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(configs(), st.sampled_from(["KIND_CPU", "KIND_GPU"]), st.sampled_from(["yes", "no"]))
def test_edits_are_surgical_correct_and_idempotent(text, kind, force):
    before = parse_config(text)
    edits = set_parameter(text, KEY, NEW)
    after = apply(text, edits)
    for e in edits:  # each replaced span is a single value, never a comment or structure
        assert "#" not in text[e.start:e.end] and "\n" not in text[e.start:e.end]
    after = apply(after, set_parameter(after, "FORCE_CPU_ONLY_INPUT_TENSORS", force))
    after = apply(after, set_instance_kind(after, kind))
    cfg = parse_config(after)
    assert cfg.parameters[KEY].string_value == NEW
    assert cfg.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == force
    assert cfg.instance_group and all(g.kind == type(g).Kind.Value(kind) for g in cfg.instance_group)
    # everything else is the same config, and every comment is still there in order
    for c in (before, cfg):
        for k in (KEY, "FORCE_CPU_ONLY_INPUT_TENSORS"):
            c.parameters.pop(k, None)
        del c.instance_group[:]
    assert before == cfg
    assert comments_of(after)[: len(comments_of(text))] == comments_of(text)
    # a second run changes nothing
    assert set_parameter(after, KEY, NEW) == [] and set_instance_kind(after, kind) == []
