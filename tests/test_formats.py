"""lint and doctor findings as SARIF 2.1.0 (checked against the schema Microsoft's SARIF multitool ships)
and as GitHub workflow annotations; envtool lint as a pre-commit hook, run by the real pre-commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, write_repo
from tests.test_lint import ADD, GOOD_STEP, ensemble

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PACKAGE = "@microsoft/sarif-multitool-linux@5.7.0"  # its package/sarif-2.1.0.json


def _cli(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envtool", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def sarif_schema() -> dict:
    """The SARIF 2.1.0 JSON schema, fetched once with npm into the cache dir."""
    from envtool.cache import cache_root, publish_dir
    if not shutil.which("npm"):
        pytest.skip("npm is needed to fetch the SARIF schema")

    def fetch(tmp: Path) -> None:
        subprocess.run(["npm", "pack", "--silent", SCHEMA_PACKAGE], cwd=tmp, check=True, capture_output=True)
        tgz = next(tmp.glob("*.tgz"))
        with tarfile.open(tgz) as t:
            (tmp / "sarif-2.1.0.json").write_bytes(t.extractfile("package/sarif-2.1.0.json").read())
        tgz.unlink()
    return json.loads((publish_dir(cache_root() / "sarif-schema", fetch) / "sarif-2.1.0.json").read_text())


@pytest.mark.slow
def test_lint_sarif_is_valid_and_points_at_each_file(tmp_path, sarif_schema):
    import jsonschema
    shutil.copytree(FIXTURES / "article", tmp_path / "article")
    p = _cli("lint", "article", "--format", "sarif", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    sarif = json.loads(p.stdout)
    jsonschema.validate(sarif, sarif_schema, cls=jsonschema.Draft202012Validator)
    results = sarif["runs"][0]["results"]
    lint = json.loads(_cli("lint", "article", "--json", cwd=tmp_path).stdout)["findings"]
    assert [r["ruleId"] for r in results] == [f["rule"] for f in lint]
    syntax = next(r for r in results if r["ruleId"] == "config-syntax")
    assert syntax["level"] == "error"
    loc = syntax["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "article/ensemble_all/config.pbtxt"  # relative: code scanning
    assert loc["region"]["startLine"] > 1


@pytest.mark.slow
def test_doctor_log_sarif_is_valid(tmp_path, sarif_schema):
    import jsonschema
    log = tmp_path / "triton.log"
    log.write_text("/opt/m/triton_python_backend_stub: error while loading shared libraries: "
                   "libpython3.10.so.1.0: cannot open shared object file: No such file or directory\n")
    p = _cli("doctor", "--log", log, "--format", "sarif", cwd=tmp_path)
    sarif = json.loads(p.stdout)
    jsonschema.validate(sarif, sarif_schema, cls=jsonschema.Draft202012Validator)
    assert p.returncode == 1 and [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["stub-libpython"]


def test_github_annotations(tmp_path):
    shutil.copytree(FIXTURES / "article", tmp_path / "article")
    p = _cli("lint", "article", "--format", "github", cwd=tmp_path)
    lines = p.stdout.splitlines()
    assert p.returncode == 1 and lines and all(x.startswith(("::error ", "::warning ", "::notice ")) for x in lines)
    syntax = next(x for x in lines if "title=envtool config-syntax" in x)
    head, _, message = syntax[2:].partition("::")
    props = dict(kv.split("=", 1) for kv in head.split(" ", 1)[1].split(","))
    assert props["file"] == "article/ensemble_all/config.pbtxt" and int(props["line"]) > 1
    assert "\n" not in message and "%0AFix: " in message  # one line per annotation, newlines escaped
    clean = write_repo(tmp_path / "clean", {"add": ADD, "ens": ensemble(steps=GOOD_STEP)})
    p = _cli("lint", clean, "--format", "github", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout == ""


@pytest.mark.slow
def test_the_pre_commit_hook_runs_envtool_lint(tmp_path):
    """The real pre-commit installs envtool from this checkout (try-repo) and runs the hook."""
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which("pre-commit")
    if not pre_commit:
        pytest.skip("pre-commit is not installed")
    from envtool.cache import cache_root
    env = {**os.environ, "PRE_COMMIT_HOME": str(cache_root() / "pre-commit"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    work = tmp_path / "work"
    write_repo(work / "model_repository", {"add": ADD, "ens": ensemble(steps=GOOD_STEP)})
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "add", "."], cwd=work, check=True)

    def hook() -> subprocess.CompletedProcess:
        return subprocess.run([pre_commit, "try-repo", str(ROOT), "envtool-lint", "--all-files"], cwd=work,
                              capture_output=True, text=True, env=env, timeout=900)
    good = hook()
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-2000:]
    assert "envtool lint (Triton model repository)" in good.stdout and "Passed" in good.stdout
    (work / "model_repository" / "add" / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: x\n')
    subprocess.run(["git", "add", "."], cwd=work, check=True)
    bad = hook()
    assert bad.returncode == 1 and "Failed" in bad.stdout and "add/config.pbtxt:2:" in bad.stdout
