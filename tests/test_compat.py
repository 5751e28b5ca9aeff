"""The compatibility engine (envtool/compat.py): each rule on synthetic facts, its Triton message in step
with diagnoses.toml, and the same verdict from every entry point on real artifacts."""

from __future__ import annotations

import json
import os

import pytest

from envtool import api, compat, facts
from envtool.catalog import normalize_release
from envtool.diagnose import scan
from envtool.env.interpreters import candidates
from envtool.errors import CheckFailed
from tests.conftest import needs_python, python_model, run_cli, tree_snapshot, write_repo

R2211, R2410, R2411, R2508, R2606 = (normalize_release(r) for r in ("r22.11", "r24.10", "r24.11", "r25.08",
                                                                      "r26.06"))
FIT_STUB = facts.Stub("3.9", "2.31", "3.4.28", "24.10")
FIT_ENV = facts.Env("3.9", "1.26.4", "2.31", None)

# rule: (stub, env, target) that break it; the fitting facts above pass every rule.
BREAKERS = {
    "stub-python": (facts.Stub("3.10", "2.31", "3.4.28", "24.10"), FIT_ENV, facts.Target.of_release(R2410)),
    "stub-release": (facts.Stub("3.9", "2.31", "3.4.28", "22.11"), FIT_ENV, facts.Target.of_release(R2410)),
    "env-numpy2": (FIT_STUB, facts.Env("3.9", "2.0.2", "2.31"), facts.Target.of_release(R2410)),
    "stub-glibc": (facts.Stub("3.9", "2.34", "3.4.28", "22.11"), FIT_ENV, facts.Target.of_release(R2211)),
    "stub-glibcxx": (facts.Stub("3.9", "2.31", "3.4.30", "22.11"), FIT_ENV, facts.Target.of_release(R2211)),
    "env-glibc": (None, facts.Env("3.9", "1.26.4", "2.35"), facts.Target.of_release(R2211)),
    "env-libstdcxx": (FIT_STUB, facts.Env("3.9", "1.26.4", "2.31", "3.4.20"), None),
    "env-libstdcxx-shadow": (None, facts.Env("3.9", libstdcxx="3.4.20"), facts.Target.of_release(R2410)),
    "env-activate-hooks": (None, facts.Env("3.9", hooks=("etc/conda/activate.d/x.sh",)),
                           facts.Target.of_release(R2508)),
    "env-archive-refused": (None, facts.Env("3.9", refused="Cannot extract through symlink lib/x"),
                            facts.Target.of_release(R2606)),
    "env-top-folder": (None, facts.Env("3.9", top_folder="myenv/", path="/e.tar.gz"), None),
    "env-no-activate": (None, facts.Env("3.9", missing=("bin/activate",), path="/e.tar.gz"), None),
    "env-no-python3": (None, facts.Env("3.9", missing=("bin/python3",)), None),
    "env-libpython": (None, facts.Env("3.9", missing=("lib/libpython3.9.so.1.0",)), None),
    "env-activate-path": (None, facts.Env("3.9", activate_path=False), facts.Target.of_release(R2410)),
    "env-numpy": (None, facts.Env("3.9", listed=True), None),
    "env-editable": (None, facts.Env("3.9", editable=("mypkg",)), None),
    "env-arch": (None, facts.Env("3.9", machine="EM_ARM" if os.uname().machine != "armv7l" else "EM_X86_64"), None),
    "env-platform": (None, facts.Env("3.9", machine=""), None),
}


def test_every_rule_has_a_breaking_case():
    assert sorted(BREAKERS) == sorted(r.id for r in compat.RULES)


@pytest.mark.parametrize("rule", sorted(BREAKERS))
def test_each_rule_fires_alone_on_what_breaks_it(rule):
    found = compat.check(*BREAKERS[rule])
    assert [f.rule for f in found] == [rule]
    spec = next(r for r in compat.RULES if r.id == rule)
    assert found[0].severity == spec.severity and found[0].message and found[0].fix and found[0].triton


def test_fitting_facts_pass_and_missing_facts_say_nothing():
    for t in (facts.Target.of_release(R2410), facts.Target.of_release(R2211)):
        assert compat.check(FIT_STUB if t.release is R2410 else facts.Stub("3.9", "2.31", "3.4.28", "22.11"),
                            FIT_ENV, t) == []
    assert compat.check(None, None, None) == []
    assert compat.check(facts.Stub("3.10"), facts.Env("3.9"), None)[0].rule == "stub-python"  # no target needed


def test_activate_path_matters_only_where_activate_is_sourced():
    env = facts.Env("3.9", activate_path=False)
    assert compat.check(None, env, facts.Target.of_release(R2508)) == []  # r25.08 sets PATH itself


def test_launcher_rules_apply_from_the_release_that_changed_the_launcher():
    hooks = facts.Env("3.9", hooks=("etc/conda/activate.d/x.sh",), refused="Cannot extract through symlink")
    assert compat.check(None, hooks, facts.Target.of_release(R2410)) == []  # sourced, extracted as before
    assert [f.rule for f in compat.check(None, hooks, facts.Target.of_release(R2508))] == ["env-activate-hooks"]
    assert {f.rule for f in compat.check(None, hooks, facts.Target.of_release(R2606))} == {
        "env-activate-hooks", "env-archive-refused"}


def test_numpy2_is_fine_from_the_release_whose_stub_reads_it():
    assert compat.check(facts.Stub("3.9", release="24.11"), facts.Env("3.9", "2.0.2"),
                        facts.Target.of_release(R2411)) == []


@pytest.mark.parametrize("rule", sorted(r.id for r in compat.RULES if r.cause))
def test_what_a_rule_predicts_is_what_verify_recognises_in_a_log(rule):
    """The rule's Triton text, scanned as a log line, is diagnosed as the cause the rule names."""
    spec = next(r for r in compat.RULES if r.id == rule)
    finding = compat.check(*BREAKERS[rule])[0]
    assert [d.id for d in scan(finding.triton)] == [spec.cause]


def test_require_raises_on_the_first_error_and_counts_the_rest():
    stub, env = facts.Stub("3.10", "2.34", None, "22.11"), facts.Env("3.9", "2.0.2", "2.35")
    with pytest.raises(CheckFailed) as e:
        compat.require(stub, env, facts.Target.of_release(R2410))
    assert "and 2 more: stub-release, env-numpy2" in e.value.message


def test_the_host_target_reads_this_machine():
    t = facts.Target.host()
    assert t.glibc and t.glibc[0].isdigit() and t.name == "this host"


# --- the same verdict from every entry point ------------------------------------------------------

PYENV38 = any(s == "pyenv" for _, s in candidates("3.8"))


@pytest.fixture(scope="module")
def host_env38(tmp_path_factory):
    """pyenv's 3.8, built on this host (glibc newer than Ubuntu 20.04's 2.31), packed with no target."""
    if not PYENV38:
        pytest.skip("needs pyenv 3.8")
    return api.pack(api.PackSpec(python="3.8"), tmp_path_factory.mktemp("e") / "custom_env.tar.gz").output


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["pack", "build", "inject", "doctor"])
def test_an_env_built_on_a_newer_distro_gets_the_same_verdict_everywhere(entry, host_env38, tmp_path,
                                                                          monkeypatch):
    """The case the copies disagreed on: a warning in pack, an error in doctor, unchecked in build/inject."""
    stubs = tmp_path / "stubs"
    monkeypatch.setenv("ENVTOOL_STUBS_DIR", str(stubs))
    repo = write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [-1])],
                                                            [("OUT", "TYPE_FP32", [-1])])})
    stub = api.stub("r22.11", "3.8").path  # NVIDIA's prebuilt 3.8 stub of r22.11 (fits Ubuntu 20.04)

    def run(*target: str):
        if entry == "pack":
            return run_cli("pack", "--python", "3.8", "--triton", "r22.11", "-o", tmp_path / "o.tar.gz", *target)
        if entry == "build":
            return run_cli("build", "--python", "3.8", "--triton", "r22.11", "--repo", repo, "-o",
                           tmp_path / "o.tar.gz", *target)
        if entry == "inject":
            return run_cli("inject", repo, "--stub", stub, "--env", host_env38, *target)
        api.inject(api.InjectOptions(repo=repo, stub=stub, env=host_env38, force=True))
        return run_cli("doctor", repo, "--triton", "r22.11", "--no-import-check", "--json", *target)
    snap = tree_snapshot(repo)
    p = run()
    text = " ".join((p.stdout + p.stderr).split())
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "binaries in the env need GLIBC_2." in text and "r22.11's image has 2.31" in text
    if entry != "doctor":
        assert tree_snapshot(repo) == snap and not (tmp_path / "o.tar.gz").exists()  # refused before writing
    ok = run("--target", "host")  # inject: the stub store says the stub is r22.11's
    assert ok.returncode == 0, ok.stderr[-2000:]
    if entry == "doctor":
        assert "env-glibc" not in {f["rule"] for f in json.loads(ok.stdout)["findings"]}


@pytest.mark.slow
@needs_python("3.9")
def test_every_entry_point_reads_the_same_facts_from_the_same_artifacts(tmp_path, monkeypatch):
    """The entry points differ only in how they gather facts: build reads the manifests, inject and verify
    read the artifacts in place, pack and doctor the extracted env. The same artifacts give the same facts,
    so every rule gives the same verdict wherever it runs."""
    import tarfile

    from envtool.env.view import view_env
    from envtool.lockfile import stub_release
    monkeypatch.setenv("ENVTOOL_STUBS_DIR", str(tmp_path / "stubs"))
    stub = api.stub("r24.10", "3.9")
    env = api.pack(api.PackSpec(python="3.9", triton="r24.10"), tmp_path / "custom_env.tar.gz")
    root = tmp_path / "x"
    with tarfile.open(env.output) as t:
        t.extractall(root)
    from_build = facts.Stub.from_manifest(stub.manifest)
    from_elf = facts.Stub.from_elf(stub.path, stub_release(stub.path))
    assert (from_build.python, from_build.glibc, from_build.glibcxx, from_build.release) == \
        (from_elf.python, from_elf.glibc, from_elf.glibcxx, from_elf.release) == (
            "3.9", from_elf.glibc, from_elf.glibcxx, "24.10")
    view = facts.Env.from_view(view_env(env.output))
    seen = {
        "build (manifest)": facts.Env.from_manifest(env.manifest),
        "doctor (view + extracted)": view.with_tree(root),
        "pack (extracted)": facts.Env.from_tree(root, view.python, view.numpy),
    }
    read = {k: (e.python, e.numpy, e.glibc, e.libstdcxx, e.hooks) for k, e in seen.items()}
    assert len(set(read.values())) == 1, read
    assert (view.python, view.numpy) == (env.manifest["python"][:3], env.manifest["numpy"])  # inject, verify
    for target in (facts.Target.of_release(R2410), facts.Target.of_release(R2211), facts.Target.host()):
        verdicts = {k: [f.rule for f in compat.check(from_build, e, target)] for k, e in seen.items()}
        assert len({tuple(v) for v in verdicts.values()}) == 1, verdicts
