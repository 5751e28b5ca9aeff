import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from envtool import api
from envtool.repo.config import ConfigSyntaxError, parse_config
from tests.conftest import FIXTURES, python_model, run_cli, write_repo

FP32, STR = "TYPE_FP32", "TYPE_STRING"


def rules(findings, severity="error"):
    return sorted({f.rule for f in findings if f.severity == severity})


def ensemble(name="ens", steps="", inputs=(("X", FP32, [-1]),), outputs=(("Y", FP32, [-1]),),
             header='platform: "ensemble"', mbs=0) -> str:
    def io(items):
        return ", ".join(f'{{ name: "{n}" data_type: {t} dims: [ {", ".join(map(str, d))} ] }}'
                         for n, t, d in items)
    return (f'name: "{name}"\n{header}\nmax_batch_size: {mbs}\ninput [ {io(inputs)} ]\n'
            f"output [ {io(outputs)} ]\nensemble_scheduling {{ step [ {steps} ] }}\n")


def step(model, ins, outs, version=-1):
    im = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in ins.items())
    om = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outs.items())
    return f'{{ model_name: "{model}" model_version: {version} {im} {om} }}'


ADD = python_model("add", [("IN", FP32, [-1])], [("OUT", FP32, [-1])])
GOOD_STEP = step("add", {"IN": "X"}, {"OUT": "Y"})


def lint_configs(tmp_path, configs):
    return api.lint(write_repo(tmp_path / "repo", configs))


def test_valid_python_ensemble_has_no_findings(tmp_path):
    assert lint_configs(tmp_path, {"add": ADD, "ens": ensemble(steps=GOOD_STEP)}) == []


def test_syntax_error_reports_path_line_col():
    with pytest.raises(ConfigSyntaxError) as e:
        parse_config('name: "x"\nbackend: "python"\n  bogus_field: 3\n', "m/config.pbtxt")
    assert e.value.where == "m/config.pbtxt:3:3" and "bogus_field" in e.value.message


def test_article_as_written_fails_to_parse_at_its_bracket_mistake():
    findings = api.lint(FIXTURES / "article")
    syntax = [f for f in findings if f.rule == "config-syntax"]
    assert [f.model for f in syntax] == ["ensemble_all"]
    assert syntax[0].where.endswith("ensemble_all/config.pbtxt:80:3")
    relative = {f.model for f in findings if f.rule == "env-path-relative"}
    assert relative == {"preprocess", "postprocess"}


def test_article_with_brackets_fixed_shows_backend_ensemble_and_missing_cuml_step(tmp_path):
    repo = tmp_path / "article"
    shutil.copytree(FIXTURES / "article", repo)
    cfg = repo / "ensemble_all" / "config.pbtxt"
    text = cfg.read_text()
    assert text.rstrip().endswith("}\n    }\n  }\n]")
    cfg.write_text(text.rstrip()[: -len("}\n  }\n]")] + "}\n  ]\n}\n")
    findings = api.lint(repo)
    by_rule = {f.rule: f for f in findings if f.model == "ensemble_all"}
    assert by_rule["ensemble-platform"].triton == (
        "ensemble scheduling cannot be set for model 'ensemble_all' whose platform is not ensemble")
    assert 'platform: "ensemble"' in by_rule["ensemble-platform"].fix
    # the cuml step the article leaves out: tree_feats is never consumed, cuml_score never produced
    assert "ensemble-tensor-unused" in by_rule and "ensemble-output-unwritten" in by_rule


def test_article_corrected_set_is_clean():
    findings = api.lint(FIXTURES / "article_fixed")
    assert [f for f in findings if f.severity == "error"] == []


BREAKERS = {
    "ensemble-platform": lambda: {"add": ADD, "ens": ensemble(steps=GOOD_STEP, header='backend: "ensemble"')},
    "ensemble-missing-model": lambda: {"add": ADD, "ens": ensemble(steps=step("nope", {"IN": "X"}, {"OUT": "Y"}))},
    "ensemble-version": lambda: {"add": ADD, "ens": ensemble(steps=step("add", {"IN": "X"}, {"OUT": "Y"}, 3))},
    "ensemble-input-map": lambda: {"add": ADD, "ens": ensemble(steps=step("add", {"X": "IN"}, {"OUT": "Y"}))},
    "ensemble-output-map": lambda: {"add": ADD, "ens": ensemble(steps=step("add", {"IN": "X"}, {"Y": "OUT"}))},
    "ensemble-input-unmapped": lambda: {
        "add2": python_model("add2", [("IN", FP32, [-1]), ("B", FP32, [-1])], [("OUT", FP32, [-1])]),
        "ens": ensemble(steps=step("add2", {"IN": "X"}, {"OUT": "Y"}))},
    "ensemble-input-unused": lambda: {"add": ADD, "ens": ensemble(
        steps=GOOD_STEP, inputs=(("X", FP32, [-1]), ("W", FP32, [-1])))},
    "ensemble-output-unwritten": lambda: {"add": ADD, "ens": ensemble(
        steps=GOOD_STEP, outputs=(("Y", FP32, [-1]), ("Z", FP32, [-1])))},
    "ensemble-tensor-unused": lambda: {
        "two": python_model("two", [("IN", FP32, [-1])], [("OUT", FP32, [-1]), ("AUX", FP32, [-1])]),
        "ens": ensemble(steps=step("two", {"IN": "X"}, {"OUT": "Y", "AUX": "dangling"}))},
    "ensemble-tensor-written-twice": lambda: {"add": ADD, "ens": ensemble(
        steps=GOOD_STEP + ", " + step("add", {"IN": "X"}, {"OUT": "Y"}))},
    "ensemble-cycle": lambda: {"add": ADD, "ens": ensemble(
        steps=step("add", {"IN": "t1"}, {"OUT": "t2"}) + ", " + step("add", {"IN": "t2"}, {"OUT": "t1"})
        + ", " + GOOD_STEP)},
    "ensemble-dtype": lambda: {"add": ADD, "ens": ensemble(steps=GOOD_STEP, inputs=(("X", "TYPE_INT32", [-1]),))},
    "ensemble-shape": lambda: {"add": ADD, "ens": ensemble(steps=GOOD_STEP, inputs=(("X", FP32, [2, 3]),))},
    "ensemble-max-batch": lambda: {
        "addb": python_model("addb", [("IN", FP32, [-1])], [("OUT", FP32, [-1])], mbs=4),
        "ens": ensemble(steps=step("addb", {"IN": "X"}, {"OUT": "Y"}), mbs=8)},
    "ensemble-instance-group": lambda: {"add": ADD, "ens": ensemble(steps=GOOD_STEP).replace(
        "max_batch_size", "instance_group [ { kind: KIND_CPU } ]\nmax_batch_size")},
    "ensemble-no-steps": lambda: {"ens": ensemble(steps="")},
    "ensemble-step-incomplete": lambda: {"add": ADD, "ens": ensemble(
        steps='{ model_name: "add" model_version: -1 input_map { key: "IN" value: "X" } }')},
    "name-mismatch": lambda: {"add": ADD.replace('name: "add"', 'name: "other"')},
    "no-backend": lambda: {"add": ADD.replace('backend: "python"', "")},
    # Triton reports this only where the library exists outside (else: "unable to find backend library")
    "runtime-escapes": lambda: {"add": ADD + 'runtime: "../other/libtriton_python.so"\n'},
    "force-cpu-value": lambda: {"add": ADD + 'parameters { key: "FORCE_CPU_ONLY_INPUT_TENSORS" '
                                "value: { string_value: \"false\" } }\n"},
}

# core's ValidateModelConfig (the model keyed "add" is the broken one; test_lint_vs_triton loads each)
CORE_BREAKERS = {
    "max-batch-negative": lambda: {"add": ADD.replace("max_batch_size: 0", "max_batch_size: -1")},
    "io-data-type": lambda: {"add": ADD.replace('name: "IN" data_type: TYPE_FP32', 'name: "IN"')},
    "io-dims": lambda: {"add": ADD.replace('name: "IN" data_type: TYPE_FP32 dims: [ -1 ]',
                                           'name: "IN" data_type: TYPE_FP32 dims: [ ]')},
    "io-dim-zero": lambda: {"add": ADD.replace('name: "IN" data_type: TYPE_FP32 dims: [ -1 ]',
                                               'name: "IN" data_type: TYPE_FP32 dims: [ 0 ]')},
    "platform-unknown": lambda: {"add": ADD.replace('backend: "python"', 'platform: "tensorflo"')},
    "ensemble-backend": lambda: {"add": ADD, "ens": ensemble(steps=GOOD_STEP,
                                                             header='platform: "ensemble"\nbackend: "python"')},
    "platform-backend-pair": lambda: {"add": ADD.replace('backend: "python"',
                                                         'backend: "onnxruntime"\nplatform: "pytorch_libtorch"')},
    "io-reshape-size": lambda: {"add": ADD.replace('dims: [ -1 ]', 'dims: [ 2, 3 ] reshape: { shape: [ 5 ] }', 1)},
    "io-reshape-variable": lambda: {"add": ADD.replace('dims: [ -1 ]', 'dims: [ -1, 2 ] reshape: { shape: [ -1, -1, 2 ] }',
                                                       1)},
    "io-reshape-zero": lambda: {"add": ADD.replace('dims: [ -1 ]', 'dims: [ 4 ] reshape: { shape: [ 0, 4 ] }', 1)},
    "io-reshape-empty": lambda: {"add": ADD.replace('dims: [ -1 ]', 'dims: [ 1 ] reshape: { shape: [ ] }', 1)},
    "dynamic-batch-size-max": lambda: {"add": ADD.replace("max_batch_size: 0", "max_batch_size: 4")
                                       + "dynamic_batching { preferred_batch_size: [ 8 ] }\n"},
    "priority-default-level": lambda: {"add": ADD.replace("max_batch_size: 0", "max_batch_size: 4")
                                       + "dynamic_batching { priority_levels: 3 default_priority_level: 0 }\n"},
    "priority-queue-level": lambda: {"add": ADD.replace("max_batch_size: 0", "max_batch_size: 4")
                                     + "dynamic_batching { priority_levels: 2 default_priority_level: 1 "
                                       "priority_queue_policy { key: 3 value: { max_queue_size: 1 } } }\n"},
    "preserve-ordering-levels": lambda: {"add": ADD.replace("max_batch_size: 0", "max_batch_size: 4")
                                         + "dynamic_batching { preserve_ordering: true priority_levels: 2 "
                                           "default_priority_level: 1 }\n"},
    "sequence-control-multiple": lambda: {"add": ADD + SEQUENCE.format(
        'control_input [ { name: "S1" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] }, '
        '{ name: "S2" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]')},
    "sequence-control-no-value": lambda: {"add": ADD + SEQUENCE.format(
        'control_input [ { name: "R" control [ { kind: CONTROL_SEQUENCE_READY } ] } ]')},
    "sequence-control-entries": lambda: {"add": ADD + SEQUENCE.format(
        'control_input [ { name: "E" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0 ] } ] } ]')},
    "sequence-corrid-type": lambda: {"add": ADD + SEQUENCE.format(
        'control_input [ { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } ] } ]')},
    "batch-input-sources": lambda: {"add": ADD + 'batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "N" '
                                                 'data_type: TYPE_INT32 } ]\n'},
    "batch-source-unknown": lambda: {"add": ADD + 'batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "N" '
                                                  'data_type: TYPE_INT32 source_input: "NOPE" } ]\n'},
    "instance-gpus-on-cpu": lambda: {"add": ADD.replace("kind: KIND_CPU count: 1", "kind: KIND_CPU gpus: [ 0 ]")},
    "instance-gpu-invalid": lambda: {"add": ADD.replace("kind: KIND_CPU count: 1", "kind: KIND_GPU gpus: [ -1 ]")},
    "ensemble-optimization": lambda: {"add": ADD, "ens": ensemble(steps=GOOD_STEP) + "optimization { priority: "
                                                                                     "PRIORITY_MAX }\n"},
    "ensemble-warmup": lambda: {"add": ADD, "ens": ensemble(steps=GOOD_STEP) + 'model_warmup [ { name: "w" '
                                                                               "batch_size: 1 } ]\n"},
    "ensemble-decoupled-branching": lambda: {
        "add": ADD, "join": python_model("join", [("A", FP32, [-1]), ("B", FP32, [-1])], [("OUT", FP32, [-1])]),
        "dec": python_model("dec", [("IN", FP32, [-1])], [("OUT", FP32, [-1])],
                            "model_transaction_policy { decoupled: true }\n"),
        "ens": ensemble(steps=", ".join([step("dec", {"IN": "X"}, {"OUT": "d"}), step("add", {"IN": "X"}, {"OUT": "a"}),
                                         step("join", {"A": "d", "B": "a"}, {"OUT": "Y"})]))},
}
SEQUENCE = "sequence_batching {{ {} }}\n"
IN_DECL = 'name: "IN" data_type: TYPE_FP32 dims: [ -1 ]'
START = "kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ]"
SCATTER = "kind: BATCH_SCATTER_WITH_INPUT_SHAPE"
CORE_BREAKERS.update({
    "decoupled-cache": lambda: {"add": ADD + "model_transaction_policy { decoupled: true }\n"
                                             "response_cache { enable: true }\n"},
    "ensemble-scheduling-missing": lambda: {"ens": 'name: "ens"\nplatform: "ensemble"\nmax_batch_size: 0\n'
                                            'input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
                                            'output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'},
    "preserve-ordering-delay": lambda: {"add": ADD.replace("max_batch_size: 0", "max_batch_size: 4")
                                        + "dynamic_batching { preserve_ordering: true default_queue_policy { "
                                          "timeout_action: DELAY default_timeout_microseconds: 100 } }\n"},
    "sequence-cache": lambda: {"add": ADD + "response_cache { enable: true }\n" + SEQUENCE.format("")},
    "sequence-control-name": lambda: {"add": ADD + SEQUENCE.format(f"control_input [ {{ control [ {{ {START} }} ] }} ]")},
    "sequence-control-tensor-reused": lambda: {"add": ADD + SEQUENCE.format(
        f'control_input [ {{ name: "S" control [ {{ {START} }} ] }}, '
        '{ name: "S" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] } ]')},
    "sequence-control-many-values": lambda: {"add": ADD + SEQUENCE.format(
        f'control_input [ {{ name: "S" control [ {{ {START} fp32_false_true: [ 0, 1 ] }} ] }} ]')},
    "sequence-control-typed-value": lambda: {"add": ADD + SEQUENCE.format(
        'control_input [ { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 '
        "int32_false_true: [ 0, 1 ] } ] } ]")},
    "sequence-slot-utilization": lambda: {"add": ADD + SEQUENCE.format("direct { minimum_slot_utilization: 2.0 }")},
    "io-name": lambda: {"add": ADD.replace('name: "IN" data_type', "data_type")},
    "io-format-dims": lambda: {"add": ADD.replace(IN_DECL, 'name: "IN" data_type: TYPE_FP32 format: FORMAT_NHWC '
                                                           "dims: [ -1 ]")},
    "io-shape-tensor": lambda: {"add": ADD.replace(IN_DECL, IN_DECL + " is_shape_tensor: true")},
    "io-non-linear": lambda: {"add": ADD.replace(IN_DECL, IN_DECL + " is_non_linear_format_io: true")},
    "batch-input-type": lambda: {"add": ADD + 'batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "N" '
                                              'data_type: TYPE_INT64 source_input: "IN" } ]\n'},
    "batch-output-sources": lambda: {"add": ADD + f'batch_output [ {{ target_name: "OUT" {SCATTER} }} ]\n'},
    "batch-target-unknown": lambda: {"add": ADD + f'batch_output [ {{ target_name: "NOPE" {SCATTER} '
                                                  'source_input: "IN" } ]\n'},
    "batch-target-twice": lambda: {"add": ADD + f'batch_output [ {{ target_name: [ "OUT", "OUT" ] {SCATTER} '
                                                'source_input: "IN" } ]\n'},
    "instance-gpus-on-model": lambda: {"add": ADD.replace("kind: KIND_CPU count: 1", "kind: KIND_MODEL gpus: [ 0 ]")},
    "instance-profile": lambda: {"add": ADD.replace("kind: KIND_CPU count: 1", 'kind: KIND_CPU count: 1 profile: [ "0" ]')},
})
BREAKERS.update(CORE_BREAKERS)


@pytest.mark.parametrize("rule", sorted(BREAKERS))
def test_each_rule_fires_on_a_config_that_breaks_it(tmp_path, rule):
    findings = lint_configs(tmp_path, BREAKERS[rule]())
    assert rule in rules(findings), findings


def test_swapped_input_map_is_named_as_swapped(tmp_path):
    f = [x for x in lint_configs(tmp_path, BREAKERS["ensemble-input-map"]()) if x.rule == "ensemble-input-map"]
    assert f[0].triton == "in ensemble ens, ensemble tensor IN is mapping to non-existing input X in model add"
    assert "swapped" in f[0].fix and 'key: "IN" value: "X"' in f[0].fix


def test_batch_dim_is_implicit_when_max_batch_size_positive(tmp_path):
    """[-1] batched (full [-1,-1]) agrees with the ensemble's own [-1] batched input."""
    configs = {"addb": python_model("addb", [("IN", FP32, [3])], [("OUT", FP32, [3])], mbs=8),
               "ens": ensemble(steps=step("addb", {"IN": "X"}, {"OUT": "Y"}), mbs=8,
                               inputs=(("X", FP32, [3]),), outputs=(("Y", FP32, [3]),))}
    assert lint_configs(tmp_path, configs) == []
    # a non-batching ensemble whose dims spell the batch dim matches a batching step
    configs["ens"] = ensemble(steps=step("addb", {"IN": "X"}, {"OUT": "Y"}), mbs=0,
                              inputs=(("X", FP32, [-1, 3]),), outputs=(("Y", FP32, [-1, 3]),))
    assert lint_configs(tmp_path / "b", configs) == []


def test_version_policy_decides_which_versions_load(tmp_path):
    repo = write_repo(tmp_path / "repo", {"add": ADD, "ens": ensemble(steps=step("add", {"IN": "X"}, {"OUT": "Y"}, 1))})
    (repo / "add" / "2").mkdir()
    (repo / "add" / "2" / "model.py").write_text("")
    f = [x for x in api.lint(repo) if x.rule == "ensemble-version"]
    assert f and "whose required version 1 is not loaded" in f[0].triton


@pytest.mark.parametrize("value,rule", [
    ("path/to/custom_env.tar.gz", "env-path-relative"),
    ("s3:///no-bucket", "env-path-cloud-form"),
    ("$$TRITON_MODEL_DIRECTORY/missing.tar.gz", "env-missing"),
    ("/opt/$$TRITON_MODEL_DIRECTORY/env.tar.gz", "env-path-var-position"),
])
def test_execution_env_path_forms(tmp_path, value, rule):
    cfg = ADD + f'parameters {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{value}" }} }}\n'
    assert rule in rules(lint_configs(tmp_path, {"add": cfg}))


def test_env_outside_the_model_folder_is_a_cloud_only_warning_and_cloud_urls_are_not_errors(tmp_path):
    """Core collapses '..' and loads an env beside the model folder from a local repository; it fetches
    s3://, gs:// and as:// URLs. Neither is an error."""
    up = ADD + 'parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/../env.tar.gz" } }\n'
    repo = write_repo(tmp_path / "repo", {"add": up})
    with tarfile.open(repo / "env.tar.gz", "w:gz"):
        pass  # a real (empty) gzip tarball: lint reads it to its end
    findings = api.lint(repo)
    assert rules(findings) == [] and rules(findings, "warning") == ["env-path-escapes"]
    assert "cloud repository" in next(f.message for f in findings if f.rule == "env-path-escapes")
    s3 = ADD + 'parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "s3://bucket/envs/env.tar.gz" } }\n'
    assert rules(lint_configs(tmp_path / "s3", {"add": s3})) == []


def test_env_must_be_gzip_or_activate_dir(tmp_path):
    cfg = ADD + 'parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }\n'
    repo = write_repo(tmp_path / "repo", {"add": cfg})
    (repo / "add" / "env.tar.gz").write_bytes(b"\xfd7zXZ\x00 not gzip")
    assert "env-not-gzip" in rules(api.lint(repo))
    (repo / "add" / "env.tar.gz").unlink()
    (repo / "add" / "env.tar.gz").mkdir()
    assert "env-no-activate" in rules(api.lint(repo))
    (repo / "add" / "env.tar.gz" / "bin").mkdir()
    (repo / "add" / "env.tar.gz" / "bin" / "activate").write_text("")
    assert api.lint(repo) == []


def test_python_model_without_model_py(tmp_path):
    repo = write_repo(tmp_path / "repo", {"add": ADD})
    (repo / "add" / "1" / "model.py").unlink()
    assert "python-model-file" in rules(api.lint(repo))


def test_a_version_folder_that_is_not_a_plain_integer_is_named(tmp_path):
    repo = write_repo(tmp_path / "repo", {"add": ADD})
    (repo / "add" / "1").rename(repo / "add" / "01")
    findings = api.lint(repo)
    assert "version-folder-name" in rules(findings, "warning") and "no-version" in rules(findings)


def test_a_step_mapping_a_tensor_auto_complete_adds_is_not_an_error(tmp_path):
    """The model declares IN in config.pbtxt and adds B in auto_complete_config: core validates the ensemble
    against the completed config, so lint cannot call B unknown."""
    partial = python_model("auto", [("IN", FP32, [-1])], [("OUT", FP32, [-1])])
    steps = step("auto", {"IN": "X", "B": "W"}, {"OUT": "Y"})
    ens = ensemble(steps=steps, inputs=(("X", FP32, [-1]), ("W", FP32, [-1])))
    py = "class TritonPythonModel:\n    @staticmethod\n    def auto_complete_config(c):\n        return c\n"
    findings = api.lint(write_repo(tmp_path / "repo", {"auto": partial, "ens": ens}, model_py=py))
    assert rules(findings) == [] and "ensemble-step-autocomplete" in rules(findings, "info")
    plain = api.lint(write_repo(tmp_path / "plain", {"auto": partial, "ens": ens}))  # no auto_complete_config
    assert "ensemble-input-map" in rules(plain)


def test_auto_complete_models_are_not_held_to_declared_tensors(tmp_path):
    bare = 'backend: "python"\n'
    repo = write_repo(tmp_path / "repo", {"auto": bare, "ens": ensemble(steps=step("auto", {"IN": "X"}, {"OUT": "Y"}))},
                      model_py="class TritonPythonModel:\n    @staticmethod\n    def auto_complete_config(c):\n        return c\n")
    findings = api.lint(repo)
    assert rules(findings) == [] and "ensemble-step-autocomplete" in rules(findings, "info")


def test_lint_cli_json_and_exit_codes(tmp_path):
    good = write_repo(tmp_path / "good", {"add": ADD, "ens": ensemble(steps=GOOD_STEP)})
    p = run_cli("lint", good, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["ok"] is True
    p = run_cli("lint", FIXTURES / "article", "--json")
    data = json.loads(p.stdout)
    assert p.returncode == 1 and not data["ok"] and data["findings"][0]["severity"] == "error"
    p = run_cli("lint", tmp_path / "nope")
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr


def _backend_model(name: str, header: str, extra: str = "") -> str:
    return (f'name: "{name}"\n{header}\nmax_batch_size: 0\n'
            'input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
            'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n' + extra)


@pytest.mark.parametrize("header,extra,present,missing", [
    ('platform: "tensorrt_plan"', "", None, "model.plan"),  # upstream's preprocessing example, plan not built
    ('backend: "onnxruntime"', "", "model.onnx", None),
    ('backend: "pytorch"', 'default_model_filename: "traced.pt"', "model.pt", "traced.pt"),
    ('backend: "fil"', 'parameters { key: "model_type" value: { string_value: "treelite_checkpoint" } }',
     "checkpoint.tl", None),
    ('backend: "fil"', "", "checkpoint.tl", "xgboost.model"),  # FIL's default model_type is xgboost
    ('backend: "identity"', "", None, None),  # a backend whose file envtool does not know: not checked
])
def test_a_missing_model_file_is_flagged_by_its_backend_name(tmp_path, header, extra, present, missing):
    repo = write_repo(tmp_path / "repo", {"m": _backend_model("m", header, extra)})
    if present:
        (repo / "m" / "1" / present).write_bytes(b"x")
    found = [f for f in api.lint(repo) if f.rule == "model-file"]
    if missing:
        assert [f.message for f in found] == [f"m/1/{missing} does not exist"]
    else:
        assert found == []


def test_a_savedmodel_folder_counts_as_the_model_file(tmp_path):
    repo = write_repo(tmp_path / "repo", {"m": _backend_model("m", 'platform: "tensorflow_savedmodel"')})
    (repo / "m" / "1" / "model.savedmodel").mkdir()
    assert not [f for f in api.lint(repo) if f.rule == "model-file"]


def test_an_env_path_naming_a_fifo_is_refused_without_blocking(tmp_path):
    """A FIFO would block whoever opens it: lint and inject refuse it in one line, without opening it."""
    cfg = ADD + 'parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }\n'
    repo = write_repo(tmp_path / "repo", {"add": cfg})
    os.mkfifo(repo / "add" / "env.tar.gz")
    p = subprocess.run([sys.executable, "-m", "envtool", "lint", str(repo), "--json"], capture_output=True,
                       text=True, timeout=60)
    found = {f["rule"]: f for f in json.loads(p.stdout)["findings"]}
    assert p.returncode == 1 and "neither a file nor a folder" in found["env-special-file"]["message"]
    from envtool.elf import read_elf
    if not read_elf(Path(sys.executable).resolve()).libpython:  # Debian's python3 links libpython statically
        pytest.skip("inject needs a stub-like executable that links libpython: this Python does not")
    p = subprocess.run([sys.executable, "-m", "envtool", "inject", str(repo), "--stub", sys.executable, "--env",
                        str(repo / "add" / "env.tar.gz")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "neither a file nor a folder" in p.stderr and "Traceback" not in p.stderr


def test_a_model_named_for_its_backend_needs_no_backend_line(tmp_path):
    """Core's custom-backend autofill: model.identity gets backend identity; another name is refused with
    Triton's own text."""
    bare = ADD.replace('backend: "python"\n', "").replace('name: "add"', 'name: "model.identity"')
    assert "no-backend" not in rules(lint_configs(tmp_path / "a", {"model.identity": bare}))
    f = [x for x in lint_configs(tmp_path / "b", {"add": ADD.replace('backend: "python"\n', "")})
         if x.rule == "no-backend"]
    assert f and f[0].triton.startswith("Invalid model name: Could not determine backend for model 'add'")


def test_an_ensemble_needs_a_version_folder_too(tmp_path):
    """Triton (r24.10) refuses an ensemble without <ensemble>/1/: 'at least one version must be available'."""
    repo = write_repo(tmp_path / "repo", {"add": ADD, "ens": ensemble(steps=GOOD_STEP)})
    shutil.rmtree(repo / "ens" / "1")
    f = [x for x in api.lint(repo) if x.rule == "no-version"]
    assert f and f[0].model == "ens" and "at least one version must be available" in f[0].triton


def test_messages_follow_the_release_given(tmp_path):
    """core r24.07 added the tensor's name to ValidateIOShape's texts; r23.03 'or ambiguous'."""
    repo = write_repo(tmp_path / "r", BREAKERS["io-dims"]())
    new = [f.triton for f in api.lint(repo, "r24.10") if f.rule == "io-dims"]
    old = [f.triton for f in api.lint(repo, "r22.11") if f.rule == "io-dims"]
    assert new == ["model input 'IN' must specify 'dims' for add"]
    assert old == ["model input must specify 'dims' for add"]
    missing = write_repo(tmp_path / "m", BREAKERS["ensemble-missing-model"]())
    texts = {r: [f.triton for f in api.lint(missing, r) if f.rule == "ensemble-missing-model"][0]
             for r in ("r22.11", "r24.10")}
    assert "not available: nope" in texts["r22.11"] and "not available or ambiguous: nope" in texts["r24.10"]
    result = run_cli("lint", str(repo), "--triton", "r22.11", "--json")
    assert result.returncode == 1, result.stderr
    assert "model input must specify 'dims' for add" in result.stdout


def test_without_auto_complete_every_config_is_final(tmp_path):
    """--disable-auto-complete-config: no config is an error, and declared tensors are judged as written
    even for a model.py that defines auto_complete_config."""
    repo = write_repo(tmp_path / "r", {"add": ADD.replace('dims: [ -1 ]', 'dims: [ 0 ]', 1)},
                      model_py="class TritonPythonModel:\n    @staticmethod\n    def auto_complete_config(c):\n"
                               "        return c\n")
    (repo / "bare" / "1").mkdir(parents=True)
    (repo / "bare" / "1" / "model.py").write_text("class TritonPythonModel: pass\n")
    assert "io-dim-zero" not in rules(api.lint(repo))
    strict = api.lint(repo, autocomplete=False)
    assert "io-dim-zero" in rules(strict)
    bare = [f for f in strict if f.model == "bare"]
    assert bare[0].severity == "error" and bare[0].triton == "model configuration is not provided"


@pytest.mark.parametrize("folder, file, backend", [
    ("1", "model.onnx", "onnxruntime"), ("1", "model.plan", "tensorrt"), ("1", "model.savedmodel/", "tensorflow"),
    ("7", "model.py", "python")])
def test_backend_is_filled_from_the_model_file_as_core_fills_it(tmp_path, folder, file, backend):
    d = tmp_path / "repo" / "m"
    (d / folder).mkdir(parents=True)
    target = d / folder / file.rstrip("/")
    target.mkdir() if file.endswith("/") else target.write_text("")
    (d / "config.pbtxt").write_text('name: "m"\nmax_batch_size: 0\n')
    model = api.load_repository(tmp_path / "repo").models["m"]
    assert model.autofilled()[0] == backend
    assert "no-backend" not in rules(api.lint(tmp_path / "repo"))
    (d / "0").mkdir()  # core reads the FIRST folder by name: an empty 0/ hides the file
    assert "no-backend" in rules(api.lint(tmp_path / "repo"))


def test_ensembles_that_run_each_other_are_a_circular_dependency(tmp_path):
    configs = {"add": ADD, "outer": ensemble("outer", steps=step("inner", {"X": "X"}, {"Y": "Y"})),
               "inner": ensemble("inner", steps=step("outer", {"X": "X"}, {"Y": "Y"}))}
    findings = [f for f in lint_configs(tmp_path, configs) if f.rule == "ensemble-circular"]
    assert {f.triton for f in findings} == {
        "circular dependency between ensembles: outer -> ... -> inner -> outer",
        "circular dependency between ensembles: inner -> ... -> outer -> inner"}
    assert rules(lint_configs(tmp_path / "ok", {"add": ADD, "outer": ensemble(
        "outer", steps=step("inner", {"X": "X"}, {"Y": "Y"})), "inner": ensemble("inner", steps=GOOD_STEP)})) == []


def test_auto_complete_is_needed_only_where_a_model_asks_for_it(tmp_path):
    """verify's --disable-auto-complete-config decision, read from the files alone (ast, nothing run)."""
    from envtool.repo.model_repo import load_repository
    from tests.conftest import ADD_ONE_PY
    configs = {"m": python_model("m", [("IN", "TYPE_FP32", [-1])], [("OUT", "TYPE_FP32", [-1])]),
               "chain": ensemble("chain", steps=step("m", {"IN": "a"}, {"OUT": "b"}),
                                 inputs=[("a", "TYPE_FP32", [-1])], outputs=[("b", "TYPE_FP32", [-1])])}
    repo = write_repo(tmp_path / "repo", configs)
    assert load_repository(repo).auto_complete_needed() is None
    (repo / "m" / "2").mkdir()
    (repo / "m" / "2" / "model.py").write_text(ADD_ONE_PY.replace(
        "    def execute(", "    def auto_complete_config(cfg):\n        return cfg\n\n    def execute("))
    assert load_repository(repo).auto_complete_needed() == "model m's 2/model.py defines auto_complete_config"
    (repo / "m" / "2" / "model.py").write_text("def broken(:\n")  # cannot tell: keep it on
    assert "defines auto_complete_config" in load_repository(repo).auto_complete_needed()
    shutil.rmtree(repo / "m" / "2")
    (repo / "onnx" / "1").mkdir(parents=True)
    (repo / "onnx" / "1" / "model.onnx").write_bytes(b"")
    assert load_repository(repo).auto_complete_needed() == "model onnx has no readable config.pbtxt"
    (repo / "onnx" / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\n')
    assert "may be completed by its backend" in load_repository(repo).auto_complete_needed()


def test_a_model_folder_without_config_is_named_by_how_triton_would_take_it(tmp_path):
    """No config.pbtxt: a python model (model.py) is completed by Triton (info); another model file must be
    auto-completed (warning); with --disable-auto-complete-config neither loads (error)."""
    repo = tmp_path / "repo"
    (repo / "py" / "1").mkdir(parents=True)
    (repo / "py" / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    (repo / "onnx" / "1").mkdir(parents=True)
    (repo / "onnx" / "1" / "model.onnx").write_bytes(b"onnx")
    found = {(f.model, f.severity) for f in api.lint(repo) if f.rule == "config-missing"}
    assert found == {("py", "info"), ("onnx", "warning")}
    strict = {(f.model, f.severity) for f in api.lint(repo, autocomplete=False) if f.rule == "config-missing"}
    assert strict == {("py", "error"), ("onnx", "error")}
