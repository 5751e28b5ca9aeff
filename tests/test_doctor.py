"""envtool doctor: one real broken artifact per failure mode (KNOWLEDGE.md section 4), checked
statically; and --log on the real log of a server that loaded a broken repository."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from envtool import api
from tests.conftest import needs_python, python_model, run_cli, write_repo
from tests.test_inject import pipeline

pytestmark = needs_python("3.9")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stubs")


@pytest.fixture(scope="module")
def env39(tmp_path_factory) -> Path:
    return api.pack(api.PackSpec(python="3.9", triton="r24.10"),
                    tmp_path_factory.mktemp("env39") / "custom_env.tar.gz").output


@pytest.fixture(scope="module")
def stub39(stubs) -> Path:
    return api.stub("r24.10", "3.9", root=stubs).path


def unpacked(env: Path, dest: Path) -> Path:
    with tarfile.open(env) as tar:
        tar.extractall(dest)
    return dest


def doctor(repo: Path, *args) -> tuple[int, dict]:
    out = run_cli("doctor", repo, *args, "--json")
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, json.loads(out.stdout)


def rules(report: dict) -> dict[str, dict]:
    return {f["rule"]: f for f in report["findings"]}


def repo_with(tmp_path: Path, stub: Path, env: Path, model_py: str | None = None) -> Path:
    configs = {"m": python_model("m", [("IN", "TYPE_FP32", [-1])], [("OUT", "TYPE_FP32", [-1])])}
    repo = write_repo(tmp_path / "repo", configs, model_py) if model_py else write_repo(tmp_path / "repo", configs)
    api.inject(api.InjectOptions(repo=repo, stub=stub, env=env, models=("m",), force=True))  # deliberately broken pairs
    return repo


def test_a_clean_repository_passes(tmp_path, stub39, env39):
    code, report = doctor(repo_with(tmp_path, stub39, env39), "--triton", "r24.10")
    assert code == 0 and report["ok"], report


def test_stub_of_another_python(tmp_path, stubs, env39):
    stub310 = api.stub("r24.10", "3.10", root=stubs).path
    code, report = doctor(repo_with(tmp_path, stub310, env39), "--triton", "r24.10")
    f = rules(report)["stub-python"]
    assert code == 1 and "libpython3.10" in f["message"] and "Python 3.9" in f["message"]
    assert "libpython3.10.so.1.0: cannot open shared object file" in f["triton"]
    assert f["fix"].startswith("envtool build --python 3.9 --triton r24.10")


def test_stub_of_another_release(tmp_path, stubs, env39, monkeypatch):
    monkeypatch.setenv("ENVTOOL_STUBS_DIR", str(stubs))  # where its manifest says which release it is for
    stub2211 = api.stub("r22.11", "3.8", root=stubs).path
    code, report = doctor(repo_with(tmp_path, stub2211, env39), "--triton", "r24.10")
    f = rules(report)["stub-release"]
    assert code == 1 and "built for r22.11" in f["message"] and "Starting Python backend stub" in f["triton"]


def test_numpy2_env_with_an_old_stub(tmp_path, stub39):
    env = api.pack(api.PackSpec(python="3.9", pip=("numpy==2.0.2",)), tmp_path / "np2.tar.gz").output
    repo = repo_with(tmp_path, stub39, env)
    code, report = doctor(repo, "--triton", "r24.10", "--no-import-check")
    assert code == 1 and "numpy 2.0.2" in rules(report)["env-numpy2"]["message"]
    code, report = doctor(repo, "--triton", "r24.11", "--no-import-check")  # pybind11 2.12: numpy 2 is fine
    assert "env-numpy2" not in rules(report)


def test_tarball_with_a_top_folder(tmp_path, stub39, env39):
    bad = tmp_path / "custom_env.tar.gz"
    src = unpacked(env39, tmp_path / "x" / "myenv")
    subprocess.run(["tar", "-czf", str(bad), "-C", str(src.parent), "myenv"], check=True)
    code, report = doctor(repo_with(tmp_path, stub39, bad), "--triton", "r24.10")
    f = rules(report)["env-top-folder"]
    assert code == 1 and "myenv/" in f["message"] and "bin/activate does not exist" in f["triton"]


def test_one_missing_file_is_one_finding(tmp_path, stub39, env39):
    """A directory env that lost bin/activate: lint and the model checks both see it; doctor says it once."""
    env = unpacked(env39, tmp_path / "custom_env")
    repo = repo_with(tmp_path, stub39, env)
    (repo / "m" / "custom_env" / "bin" / "activate").unlink()
    code, report = doctor(repo, "--triton", "r24.10")
    said = [f for f in report["findings"] if f["rule"] == "env-no-activate"]
    assert code == 1 and len(said) == 1, report["findings"]
    keys = [(f["rule"], f["model"]) for f in report["findings"]]
    assert len(keys) == len(set(keys)), keys


def test_xz_tarball(tmp_path, stub39, env39):
    repo = repo_with(tmp_path, stub39, env39)
    env_file = repo / "m" / "custom_env.tar.gz"
    src = unpacked(env39, tmp_path / "x")
    env_file.unlink()
    # xz at its fastest level, threaded: the format is what the test is about (-J's level 6 took 30 s)
    subprocess.run(["tar", "-c", "-I", "xz -0 -T0", "-f", str(env_file), "-C", str(src), "."], check=True)
    code, report = doctor(repo, "--triton", "r24.10")
    assert code == 1 and "archive_read_open_filename() failed" in rules(report)["env-not-gzip"]["triton"]


def test_env_with_an_older_libstdcxx(tmp_path, stub39, env39):
    """A real libstdc++.so.6 that defines GLIBCXX only up to 3.4.20 (built here with a version script),
    copied into the env's lib/ as old conda envs have it: the stub needs 3.4.30."""
    if not shutil.which("cc"):
        pytest.skip("needs a C compiler")
    env = unpacked(env39, tmp_path / "custom_env")
    script = tmp_path / "v.map"
    script.write_text("".join(f"GLIBCXX_3.4.{i} {{ global: f{i}; }};\n" if i else "GLIBCXX_3.4 { global: f0; };\n"
                              for i in range(21)))
    (tmp_path / "s.c").write_text("".join(f"int f{i}(void) {{ return {i}; }}\n" for i in range(21)))
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(env / "lib" / "libstdc++.so.6"), str(tmp_path / "s.c"),
                    f"-Wl,--version-script={script}", "-Wl,-soname,libstdc++.so.6"], check=True)
    code, report = doctor(repo_with(tmp_path, stub39, env), "--triton", "r24.10", "--no-import-check")
    f = rules(report)["env-libstdcxx"]
    assert code == 1 and "up to 3.4.20" in f["message"] and "GLIBCXX_3.4.30' not found" in f["triton"]


@needs_python("3.8")
def test_env_built_on_a_newer_distro_than_the_image(tmp_path, stubs, env39):
    stub38 = api.stub("r22.11", "3.8", root=stubs).path
    env38 = api.pack(api.PackSpec(python="3.8"), tmp_path / "custom_env.tar.gz").output
    code, report = doctor(repo_with(tmp_path, stub38, env38), "--triton", "r22.11", "--no-import-check")
    f = rules(report)["env-glibc"]  # pyenv's Python was built on this Debian 12 host
    assert code == 1 and "r22.11's image has 2.31" in f["message"]


def test_model_py_importing_a_missing_module(tmp_path, stub39, env39):
    repo = repo_with(tmp_path, stub39, env39, "import numpy\nimport sklearn_is_not_here\n")
    code, report = doctor(repo, "--triton", "r24.10")
    f = rules(report)["import-fails"]
    assert code == 1 and "No module named 'sklearn_is_not_here'" in f["message"]


def test_model_py_with_slow_imports(tmp_path, stub39, env39):
    repo = repo_with(tmp_path, stub39, env39, "import time\ntime.sleep(2)\n")
    code, report = doctor(repo, "--triton", "r24.10", "--stub-timeout", "1")
    assert code == 1 and "more than stub-timeout-seconds (1 s)" in rules(report)["import-slow"]["message"]


def test_model_py_whose_import_never_ends(tmp_path, stub39, env39):
    """Past --import-timeout (default: twice stub-timeout-seconds plus 30 s) the import probe gives up."""
    repo = repo_with(tmp_path, stub39, env39, "import time\ntime.sleep(600)\n")
    code, report = doctor(repo, "--triton", "r24.10", "--import-timeout", "3")
    assert code == 1 and "import-timeout" in rules(report), report["findings"]
    assert "took over 3 s" in rules(report)["import-timeout"]["message"]


def test_a_model_without_its_own_stub_runs_the_backends(tmp_path, stub39, env39):
    repo = repo_with(tmp_path, stub39, env39)
    for stub in (repo / "m").glob("triton_python_backend_stub*"):
        stub.unlink()
    code, report = doctor(repo, "--triton", "r24.10")
    f = rules(report)["stub-default"]
    assert f["severity"] == "info" and "default stub" in f["message"]


def test_relative_env_path_and_editable_install_and_macos_python(tmp_path, stub39, env39):
    env = unpacked(env39, tmp_path / "custom_env")
    dist = next(env.glob("lib/python3.9/site-packages/numpy-*.dist-info"))
    (dist / "direct_url.json").write_text('{"url": "file:///src/numpy", "dir_info": {"editable": true}}')
    for exe in env.glob("bin/python3*"):  # Mach-O headers: an env packed on macOS
        exe.unlink()
        exe.write_bytes(b"\xcf\xfa\xed\xfe" + bytes(4096))
    repo = repo_with(tmp_path, stub39, env)
    cfg = repo / "m" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("$$TRITON_MODEL_DIRECTORY/custom_env", "custom_env"))
    code, report = doctor(repo, "--triton", "r24.10", "--no-import-check")
    assert {"env-path-relative"} <= set(rules(report))
    cfg.write_text(cfg.read_text().replace('"custom_env"', '"$$TRITON_MODEL_DIRECTORY/custom_env"'))
    code, report = doctor(repo, "--triton", "r24.10", "--no-import-check")
    r = rules(report)
    assert code == 1 and "env-editable" in r and "env-platform" in r


def test_docker_shm_too_small(tmp_path, stub39, env39):
    repo = repo_with(tmp_path, stub39, env39)
    cfg = repo / "m" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("count: 1", "count: 8"))
    code, report = doctor(repo, "--triton", "r23.08", "--docker-shm", "64", "--no-import-check")
    f = rules(report)["docker-shm"]  # 64 MiB regions up to r23.08
    assert f["severity"] == "warning" and "--shm-size=576m" in f["fix"] and "8 instance(s) x 64 MiB" in f["message"]
    code, report = doctor(repo, "--triton", "r24.10", "--docker-shm", "64", "--no-import-check")
    assert "docker-shm" not in rules(report)  # 1 MiB regions from r23.09: 8 fit in docker's default 64 MiB
    code, report = doctor(repo, "--triton", "r24.10", "--docker-shm", "4", "--no-import-check")
    assert "--shm-size=72m" in rules(report)["docker-shm"]["fix"]


@pytest.mark.server
def test_log_of_a_real_server_names_the_cause(tmp_path, stubs, env39):
    """A 3.10 stub with a 3.9 env makes Triton hang; verify stops it, and doctor --log reads that log."""
    stub310 = api.stub("r24.10", "3.10", root=stubs).path
    repo = pipeline(tmp_path / "repo")
    api.inject(api.InjectOptions(repo=repo, stub=stub310, env=env39, force=True))
    log = tmp_path / "server.log"
    report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", log_path=log, lock=False))
    assert not report.ok
    out = run_cli("doctor", "--log", log, "--json")
    assert out.returncode == 1
    causes = [d["id"] for d in json.loads(out.stdout)["diagnoses"]]
    assert causes[0] == "stub-libpython"


@pytest.mark.server
def test_log_of_a_model_rejected_at_load(tmp_path, stub39, env39):
    bad = tmp_path / "custom_env.tar.gz"
    src = unpacked(env39, tmp_path / "x" / "myenv")
    subprocess.run(["tar", "-czf", str(bad), "-C", str(src.parent), "myenv"], check=True)
    repo = pipeline(tmp_path / "repo")
    api.inject(api.InjectOptions(repo=repo, stub=stub39, env=bad, force=True))
    log = tmp_path / "server.log"
    api.verify(api.VerifyOptions(repo=repo, release="r24.10", log_path=log, lock=False))
    report = api.explain_log(log)
    assert any(d.id == "activate-missing" for d in report.diagnoses)
    assert {f.model for f in report.findings if f.rule == "load-failed"} >= {"pre", "post"}


@pytest.mark.server
def test_a_real_servers_log_of_a_model_without_env_that_imports_a_missing_module(tmp_path):
    """Served by the real r24.10: no env, so the verdict is the image's own Python, not "add it to the env";
    with the repository, the same; and no harmless line of a CPU-only server is a cause."""
    py = "import json\nimport sklearn_not_here\nclass TritonPythonModel:\n    def execute(self, r):\n        return []\n"
    repo = write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [1])],
                                                            [("OUT", "TYPE_FP32", [1])])}, py)
    log = tmp_path / "server.log"
    assert not api.verify(api.VerifyOptions(repo=repo, release="r24.10", log_path=log, lock=False)).ok
    for report in (api.explain_log(log), api.explain_log(log, "r24.10", repo)):
        assert [d.id for d in report.diagnoses] == ["module-no-env"], report.diagnoses
        assert report.log.release.exact == "24.10" and "sklearn-not-here" in report.diagnoses[0].fix


def test_doctor_without_repo_or_log_is_one_line(tmp_path):
    out = run_cli("doctor")
    assert out.returncode == 2 and "give a repository, or --log FILE" in out.stderr
    out = run_cli("doctor", "--log", tmp_path / "nope.log")
    assert out.returncode == 2 and "nope.log" in out.stderr and "Traceback" not in out.stderr


# --- the launcher of each release, emulated (envtool/env/launch.py) -------------------------------------

def _with_extra(env: Path, dest: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A copy of the env tarball with extra members appended (a real gzip tarball, as a user might make)."""
    import io
    with tarfile.open(env) as src, tarfile.open(dest, "w:gz", compresslevel=1) as dst:  # level 1: content is what counts
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        for info, data in extra:
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def _no_stub_repo(tmp_path: Path, stub: Path, env: Path, model_py: str | None = None) -> Path:
    """One model with the env and no stub of its own: only the env is judged (no stub-release noise)."""
    repo = repo_with(tmp_path, stub, env, model_py)
    (repo / "m" / "triton_python_backend_stub").unlink()
    return repo


def test_an_entry_under_a_symlinked_folder_is_refused_from_r26_06(tmp_path, stub39, env39):
    link = tarfile.TarInfo("lib/alias")
    link.type, link.linkname = tarfile.SYMTYPE, "python3.9"
    data = b"print('through a symlinked folder')\n"
    entry = tarfile.TarInfo("lib/alias/through_link.py")
    entry.size = len(data)
    env = _with_extra(env39, tmp_path / "custom_env.tar.gz", [(link, None), (entry, data)])
    repo = _no_stub_repo(tmp_path, stub39, env)
    for release, refused in (("r24.10", False), ("r25.08", False), ("r26.06", True)):
        code, report = doctor(repo, "--triton", release, "--no-import-check")
        f = rules(report).get("env-archive-refused")
        assert (f is not None) is refused and (code == 1) is refused, (release, report)
    assert "lib/alias" in f["message"] and "archive_write_header() failed" in f["triton"]


ACTIVATE_HOOK = b'export NEEDED_BY_MODEL="set by activate.d"\n'
NEEDS_HOOK_PY = "import os\nVALUE = os.environ['NEEDED_BY_MODEL']  # set by the env's activate.d hook\n" + \
    "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def test_an_activate_d_hook_the_model_needs_fails_from_r25_08(tmp_path, stub39, env39):
    hook = tarfile.TarInfo("etc/conda/activate.d/needed.sh")
    hook.size = len(ACTIVATE_HOOK)
    env = _with_extra(env39, tmp_path / "custom_env.tar.gz", [(hook, ACTIVATE_HOOK)])
    repo = _no_stub_repo(tmp_path, stub39, env, NEEDS_HOOK_PY)
    code, report = doctor(repo, "--triton", "r24.10")  # bin/activate is sourced: the hook runs
    assert code == 0 and not {"import-fails", "env-activate-hooks"} & set(rules(report)), report
    code, report = doctor(repo, "--triton", "r25.08")  # ParseActivationScript: not sourced
    found = rules(report)
    assert code == 1 and "NEEDED_BY_MODEL" in found["import-fails"]["message"]
    assert found["env-activate-hooks"]["severity"] == "warning"
    assert "etc/conda/activate.d/needed.sh" in found["env-activate-hooks"]["message"]
