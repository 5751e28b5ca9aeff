from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from envtool import api
from envtool.errors import BadInput
from envtool.inject import STUB_NAME
from envtool.repo.config import load_config
from envtool.repo.model_repo import load_repository
from tests.conftest import make_thin_env, python_model, run_cli, tree_snapshot, write_repo
from tests.test_lint import ensemble, step

FP32 = "TYPE_FP32"
COMMENTED = ("# preprocess: the user's own comment\n"
             + python_model("pre", [("IN", FP32, [-1])], [("OUT", FP32, [-1])])
             + "# trailing words\n")


def pipeline(root: Path) -> Path:
    """ens = pre -> post; `lonely` is a python model no ensemble uses."""
    return write_repo(root, {
        "pre": COMMENTED,
        "post": python_model("post", [("IN", FP32, [-1])], [("OUT", FP32, [-1])]),
        "lonely": python_model("lonely", [("IN", FP32, [-1])], [("OUT", FP32, [-1])]),
        "ens": ensemble("ens", steps=step("pre", {"IN": "X"}, {"OUT": "mid"}) + ", "
                        + step("post", {"IN": "mid"}, {"OUT": "Y"})),
    })


@pytest.fixture
def repo(tmp_path):
    return pipeline(tmp_path / "repo")


def opts(repo, stub, env, **kw):
    return api.InjectOptions(repo=repo, stub=stub, env=env, **kw)


def test_inject_places_stub_and_shared_env_and_edits_configs(repo, host_stub, thin_env_tarball):
    result = api.inject(opts(repo, host_stub, thin_env_tarball))
    assert result.models == ["post", "pre"]  # the ensemble's python models, not `lonely`
    first, other = repo / "post", repo / "pre"
    assert (first / "custom_env.tar.gz").is_file() and not (first / "custom_env.tar.gz").is_symlink()
    assert os.readlink(other / "custom_env.tar.gz") == "../post/custom_env.tar.gz"
    for m in (first, other):
        assert os.access(m / "triton_python_backend_stub", os.X_OK)
        cfg = load_config(m / "config.pbtxt")
        assert cfg.parameters["EXECUTION_ENV_PATH"].string_value == \
            "$$TRITON_MODEL_DIRECTORY/custom_env.tar.gz"
        assert cfg.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == "yes"
        assert [g.kind for g in cfg.instance_group] == [cfg.instance_group[0].KIND_CPU]
    text = (other / "config.pbtxt").read_text()
    assert text.startswith(COMMENTED)  # the user's bytes first, untouched; additions appended
    assert not (repo / "lonely" / "triton_python_backend_stub").exists()
    assert not api.lint(repo) or all(f.severity != "error" for f in api.lint(repo))


def test_the_stub_sits_behind_a_launcher_that_answers_tritons_probe(repo, host_stub, thin_env_tarball):
    """Triton r22.11-r25.07 runs a model's stub with no arguments and no env before each start, and chmods it to
    ---x------ unless that exits 1 (python_backend src/stub_launcher.cc). The real stub cannot answer where its
    libpython is only in the env (the loader exits 127); the launcher placed under the stub's name does, and
    runs the real stub, placed beside it, whenever arguments are given."""
    api.inject(opts(repo, host_stub, thin_env_tarball))
    m = repo / "pre"
    launcher, elf = m / STUB_NAME, m / "triton_python_backend_stub.elf"
    assert elf.read_bytes() == host_stub.read_bytes() and os.access(elf, os.X_OK)
    bare = {"PATH": "/usr/bin:/bin"}  # the probe's environment: no env applied, so no libpython
    elf_probe = subprocess.run([elf], env=bare, capture_output=True, text=True)
    assert elf_probe.returncode == 127 and "error while loading shared libraries" in elf_probe.stderr
    assert subprocess.run([launcher], env=bare, capture_output=True).returncode == 1
    launched = subprocess.run(["bash", "-c", f"exec env {launcher} a b"], env=bare, capture_output=True, text=True)
    assert launched.returncode == 127 and f"{elf}: error while loading" in launched.stderr  # the ELF ran
    assert load_repository(repo).models["pre"].stub == elf  # what doctor, lint and the lock read


def test_a_repository_that_lost_its_execute_bits_still_starts_the_stub(repo, host_stub, thin_env_tarball):
    """Object storage (S3, GCS, Azure) keeps no modes: the launcher, given back its execute bit by Triton's
    probe, gives the real stub back its own before running it (as Triton does for a stub of its own). That holds
    for a server run as root; for any other user it is the documented limit of a script launcher."""
    api.inject(opts(repo, host_stub, thin_env_tarball))
    launcher, elf = repo / "pre" / STUB_NAME, repo / "pre" / "triton_python_backend_stub.elf"
    for p in (launcher, elf):
        p.chmod(0o644)
    launcher.chmod(0o100)  # what Triton's probe leaves on the launcher
    bare = {"PATH": "/usr/bin:/bin"}
    ran = subprocess.run(["bash", "-c", f"exec env {launcher} a b"], env=bare, capture_output=True, text=True)
    if os.geteuid() != 0:  # the limit docs/usage.md gives --no-launcher for: sh cannot read a ---x------ script
        assert ran.returncode != 0 and f"{launcher}: Permission denied" in ran.stderr, ran.stderr
        return
    assert ran.returncode == 127 and f"{elf}: error while loading" in ran.stderr, ran.stderr
    assert elf.stat().st_mode & 0o100


def test_no_launcher_copies_the_bare_stub(repo, host_stub, thin_env_tarball):
    api.inject(opts(repo, host_stub, thin_env_tarball, launcher=False))
    assert (repo / "pre" / STUB_NAME).read_bytes() == host_stub.read_bytes()
    assert not (repo / "pre" / "triton_python_backend_stub.elf").exists()
    assert load_repository(repo).models["pre"].stub == repo / "pre" / STUB_NAME


def test_doctor_names_a_bare_stub_that_fails_the_probe_in_the_release_image(repo, host_stub, thin_env_tarball):
    """A stub copied in by hand (no launcher) whose libpython the release's image lacks: Triton will chmod it
    at every load. doctor says so, statically (the image's Python from the catalog); envtool's own injection
    (the launcher) is clean."""
    from envtool.catalog import normalize_release
    from envtool.elf import read_elf
    release = "r22.11"
    if read_elf(host_stub).libpython == normalize_release(release).default_python:
        pytest.skip("this stub's Python is the image's own")
    api.inject(opts(repo, host_stub, thin_env_tarball))

    def probe_findings() -> list[dict]:
        out = run_cli("doctor", repo, "--triton", release, "--no-import-check", "--json")
        assert "findings" in json.loads(out.stdout), out.stdout[-2000:]
        return [f for f in json.loads(out.stdout)["findings"] if f["rule"] == "stub-probe"]
    assert probe_findings() == []
    (repo / "pre" / STUB_NAME).unlink()
    shutil.copy2(host_stub, repo / "pre" / STUB_NAME)
    found = probe_findings()
    assert [f["model"] for f in found] == ["pre"] and "exits 127" in found[0]["message"], found
    assert found[0]["severity"] == "warning" and "launcher" in found[0]["fix"]


def test_second_identical_run_changes_nothing(repo, host_stub, thin_env_tarball):
    api.inject(opts(repo, host_stub, thin_env_tarball))
    snap = tree_snapshot(repo)
    again = api.inject(opts(repo, host_stub, thin_env_tarball))
    assert not again.changed and tree_snapshot(repo) == snap


def test_dry_run_prints_a_diff_and_touches_nothing(repo, host_stub, thin_env_tarball):
    snap = tree_snapshot(repo)
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "+++ b/" in p.stdout and '+  key: "EXECUTION_ENV_PATH"' in p.stdout
    assert "would copy" in p.stdout and "would link" in p.stdout
    assert tree_snapshot(repo) == snap
    # the headers are relative to the repository: `patch -p1` from its root applies them there
    assert "--- a/pre/config.pbtxt" in p.stdout and str(repo) not in p.stdout.split("--- a/", 1)[1].split("\n")[0]
    applied = subprocess.run(["patch", "-p1", "--dry-run"], input=p.stdout, cwd=repo, capture_output=True, text=True)
    assert applied.returncode == 0 and "checking file pre/config.pbtxt" in applied.stdout, applied.stdout


def test_gpu_flag_and_models_option_and_json(repo, host_stub, thin_env_tarball):
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--models", "lonely",
                "--gpu", "--no-share", "--json")
    data = json.loads(p.stdout)
    assert p.returncode == 0 and data["models"] == ["lonely"] and data["changed"]
    cfg = load_config(repo / "lonely" / "config.pbtxt")
    assert cfg.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == "no"
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU


def test_env_directory_is_copied_once_and_linked(repo, host_stub, tmp_path):
    env = make_thin_env(tmp_path / "dir_env")
    api.inject(opts(repo, host_stub, env))
    assert (repo / "post" / "dir_env" / "bin" / "activate").is_file()
    assert os.readlink(repo / "pre" / "dir_env") == "../post/dir_env"
    assert not api.inject(opts(repo, host_stub, env)).changed


def _bad_inputs(repo, stub, env, tmp_path):
    text_stub = tmp_path / "stub.txt"
    text_stub.write_text("#!/bin/sh\n")
    libpython = Path(sysconfig.get_config_var("LIBDIR")) / f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    xz = tmp_path / "env.tar.xz"
    xz.write_bytes(b"\xfd7zXZ\x00\x00")
    return {
        "no such repo": (tmp_path / "nope", stub, env, ()),
        "no such model": (repo, stub, env, ("ghost",)),
        "model not python": (repo, stub, env, ("ens",)),
        "stub not ELF": (repo, text_stub, env, ()),
        "stub is a library": (repo, libpython, env, ()),
        "stub missing": (repo, tmp_path / "missing_stub", env, ()),
        "stub is another program": (repo, Path("/bin/ls"), env, ()),
        "env xz": (repo, stub, xz, ()),
        "env missing": (repo, stub, tmp_path / "missing.tar.gz", ()),
        "env dir without activate": (repo, stub, tmp_path, ()),
    }


@pytest.mark.parametrize("case", ["no such repo", "no such model", "model not python", "stub not ELF",
                                  "stub is a library", "stub missing", "stub is another program", "env xz", "env missing",
                                  "env dir without activate"])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(repo, host_stub, thin_env_tarball, tmp_path, case):
    r, stub, env, models = _bad_inputs(repo, host_stub, thin_env_tarball, tmp_path)[case]
    with pytest.raises(BadInput):
        api.inject(opts(r, stub, env, models=models))
    snap = tree_snapshot(repo)
    args = ["inject", r, "--stub", stub, "--env", env] + (["--models", ",".join(models)] if models else [])
    p = run_cli(*args)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error:")
    assert tree_snapshot(repo) == snap


def test_hostile_config_syntax_is_refused_cleanly(repo, host_stub, thin_env_tarball):
    (repo / "pre" / "config.pbtxt").write_text('backend: "python"\ninput [ { name: "IN" \n')
    snap = tree_snapshot(repo)
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--models", "pre")
    assert p.returncode == 2 and "config.pbtxt:" in p.stderr and tree_snapshot(repo) == snap


def test_a_stub_and_env_of_different_pythons_are_refused(repo, server_tree_2410, thin_env_tarball, tmp_path,
                                                          monkeypatch):
    """build's preflight, for a pair put together by hand: both sides and real values in the message."""
    monkeypatch.setenv("ENVTOOL_STUBS_DIR", str(tmp_path / "stubs"))
    other = "3.10" if sys.version_info[:2] != (3, 10) else "3.9"
    stub = api.stub("r24.10", other).path  # in the store: its release is known
    snap = tree_snapshot(repo)
    p = run_cli("inject", repo, "--stub", stub, "--env", thin_env_tarball)
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    text = " ".join(p.stderr.split())
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"the stub links libpython{other} and the env has Python {mine}" in text
    assert f"envtool build --python {mine} --triton r24.10" in text
    assert tree_snapshot(repo) == snap


def test_a_broken_config_is_reported_not_skipped_and_strict_refuses_it(repo, host_stub, thin_env_tarball):
    """No ensemble: every python model is a target. One whose config does not parse is an error naming its
    file; the others are injected (exit 1), or, with --strict, nothing changes (exit 2)."""
    shutil.rmtree(repo / "ens")
    (repo / "lonely" / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: oops\n')
    snap = tree_snapshot(repo)
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--strict")
    assert p.returncode == 2 and "lonely/config.pbtxt:2:" in p.stderr and "without --strict" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and tree_snapshot(repo) == snap
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--json")
    report = json.loads(p.stdout)
    assert p.returncode == 1 and [(e["rule"], e["model"]) for e in report["errors"]] == [("inject-model", "lonely")]
    assert "lonely/config.pbtxt:2:" in report["errors"][0]["where"] and "lonely" not in report["models"]
    assert report["models"] and all((repo / m / STUB_NAME).exists() for m in report["models"])
    assert (repo / "lonely" / "config.pbtxt").read_text() == 'backend: "python"\nmax_batch_size: oops\n'


def test_a_model_without_config_is_a_python_model_and_gets_the_minimal_config(tmp_path, host_stub,
                                                                            thin_env_tarball):
    """Triton takes <model>/1/model.py as python (core's AutoCompleteBackendFields) and completes the rest."""
    repo = tmp_path / "repo"
    (repo / "auto" / "1").mkdir(parents=True)
    (repo / "auto" / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    (repo / "data" / "1").mkdir(parents=True)  # neither config nor model.py: not python
    assert [m.name for m in load_repository(repo).python_models()] == ["auto"]
    assert not [f for f in api.lint(repo) if f.model == "auto" and f.severity != "info"]
    snap = tree_snapshot(repo)
    dry = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--dry-run")
    assert dry.returncode == 0 and '+backend: "python"' in dry.stdout and tree_snapshot(repo) == snap
    result = api.inject(opts(repo, host_stub, thin_env_tarball))
    assert result.models == ["auto"]
    cfg = load_config(repo / "auto" / "config.pbtxt")
    assert cfg.backend == "python" and not cfg.name and not len(cfg.input)  # the rest is Triton's to complete
    assert cfg.parameters["EXECUTION_ENV_PATH"].string_value == "$$TRITON_MODEL_DIRECTORY/custom_env.tar.gz"
    assert sorted(p.name for p in (repo / "auto").iterdir()) == ["1", "config.pbtxt", "custom_env.tar.gz",
                                                                  "triton_python_backend_stub",
                                                                  "triton_python_backend_stub.elf"]
    assert not (repo / "data" / "config.pbtxt").exists()
    assert not api.inject(opts(repo, host_stub, thin_env_tarball)).changed  # idempotent


def test_overriding_an_explicit_setting_is_said(repo, host_stub, thin_env_tarball):
    """--cpu (the default) on a model the user set to KIND_GPU with GPU tensors: both changes are warned about,
    in the text and the JSON; and an instance_group with gpus names the model and its file."""
    cfg = repo / "pre" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("KIND_CPU", "KIND_GPU") +
                   'parameters { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value: { string_value: "no" } }\n')
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--dry-run", "--json")
    warnings = json.loads(p.stdout)["warnings"]
    assert p.returncode == 0 and any('FORCE_CPU_ONLY_INPUT_TENSORS "no" becomes "yes"' in w for w in warnings)
    assert any("instance_group kind KIND_GPU becomes KIND_CPU" in w for w in warnings)
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--dry-run")
    assert "warning: model pre: FORCE_CPU_ONLY_INPUT_TENSORS" in p.stderr
    cfg.write_text(cfg.read_text().replace("kind: KIND_GPU", "kind: KIND_GPU gpus: [ 0 ]"))
    snap, before = tree_snapshot(repo), cfg.read_text()
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball, "--strict")
    assert p.returncode == 2 and "model pre: an instance_group lists gpus" in p.stderr and "pre/config.pbtxt" in p.stderr
    assert tree_snapshot(repo) == snap
    p = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball)  # the other models go ahead
    assert p.returncode == 1 and "error: model pre: an instance_group lists gpus" in p.stderr, p.stderr
    assert (repo / "post" / STUB_NAME).exists() and not (repo / "pre" / STUB_NAME).exists()
    assert cfg.read_text() == before
