"""What lint rejects, a real Triton (r24.10, nvidia-pytriton wheel) rejects; what it accepts, loads."""

import pytest

from envtool import api
from envtool.servers.embedded import EmbeddedServer
from tests.conftest import python_model, write_repo
from tests.test_lint import ADD, BREAKERS, CORE_BREAKERS, GOOD_STEP, ensemble

pytestmark = pytest.mark.server

ENSEMBLE_RULES = ["ensemble-platform", "ensemble-missing-model", "ensemble-version",
                  "ensemble-input-map", "ensemble-output-map", "ensemble-input-unmapped",
                  "ensemble-input-unused", "ensemble-output-unwritten", "ensemble-tensor-unused",
                  "ensemble-dtype", "ensemble-shape", "ensemble-max-batch",
                  "ensemble-instance-group"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, r2410, server_tree_2410):
    """One repository holding a good ensemble and one broken ensemble per rule; one server run."""
    configs = {"good": ensemble("good", steps=GOOD_STEP), "add": ADD}
    for rule in ENSEMBLE_RULES:
        parts = BREAKERS[rule]()
        name = "e_" + rule.replace("-", "_")
        configs[name] = parts.pop("ens").replace('name: "ens"', f'name: "{name}"')
        configs.update(parts)
    configs["mismatch"] = python_model("other", [("IN", "TYPE_FP32", [-1])], [("OUT", "TYPE_FP32", [-1])])
    configs["forcecpu"] = python_model("forcecpu", [("IN", "TYPE_FP32", [-1])], [("OUT", "TYPE_FP32", [-1])],
                                       'parameters { key: "FORCE_CPU_ONLY_INPUT_TENSORS" '
                                       'value: { string_value: "false" } }\n')
    for rule in CORE_BREAKERS:  # one broken model per core rule, renamed c_<rule>
        parts = BREAKERS[rule]()
        key = "ens" if "ens" in parts else "add"
        name = "c_" + rule.replace("-", "_")
        configs[name] = parts[key].replace(f'name: "{key}"', f'name: "{name}"')
        configs.update({k: v for k, v in parts.items() if k != key and k not in configs})
    repo = write_repo(tmp_path_factory.mktemp("lintvs") / "repo", configs)
    with EmbeddedServer(r2410, repo) as server:
        server.wait_live()
        states = server.model_states()
    return api.lint(repo), states, server.log()


def test_accepted_models_load(loaded):
    findings, states, log = loaded
    assert states["good"]["state"] == "READY", log[-3000:]
    assert states["add"]["state"] == "READY"


@pytest.mark.parametrize("rule", ENSEMBLE_RULES)
def test_rejected_ensemble_is_rejected_by_triton_with_that_message(loaded, rule):
    findings, states, log = loaded
    name = "e_" + rule.replace("-", "_")
    mine = [f for f in findings if f.model == name and f.severity == "error"]
    assert rule in {f.rule for f in mine}
    assert states[name]["state"] == "UNAVAILABLE", states[name]
    triton_texts = [f.triton for f in mine if f.triton]
    assert any(t in states[name]["reason"] for t in triton_texts), (triton_texts, states[name])


def test_name_mismatch_and_force_cpu_value(loaded):
    findings, states, log = loaded
    for model, rule in (("mismatch", "name-mismatch"), ("forcecpu", "force-cpu-value")):
        assert rule in {f.rule for f in findings if f.model == model}
        assert states.get(model, {}).get("state") != "READY", (model, states.get(model), log[-2000:])


@pytest.mark.parametrize("rule", sorted(CORE_BREAKERS))
def test_core_validation_is_rejected_by_triton_with_that_message(loaded, rule):
    """Core's ValidateModelConfig, predicted with Triton's own text."""
    findings, states, log = loaded
    name = "c_" + rule.replace("-", "_")
    mine = [f for f in findings if f.model == name and f.rule == rule]
    assert mine and mine[0].severity == "error"
    assert states.get(name, {}).get("state") != "READY", (name, states.get(name))
    assert mine[0].triton in (states[name]["reason"] + log), (mine[0].triton, states.get(name))
