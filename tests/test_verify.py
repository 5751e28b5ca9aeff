"""verify, serve and build against real Triton servers (nvidia-pytriton wheels, CPU), real pyenv
Pythons, real packed envs and NVIDIA's prebuilt stubs. Mismatches must be diagnosed from the log
long before the readiness deadline."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from envtool import api
from envtool.env.interpreters import candidates
from tests.conftest import (
    ADD_ONE_PY,
    SLOW_INIT_PY,
    needs_python,
    python_model,
    run_cli,
    serve_cli,
    spawn,
    write_repo,
)
from tests.test_inject import pipeline
from tests.test_lint import ensemble, step

pytestmark = [pytest.mark.server,
              needs_python("3.9")]
DEADLINE = 300  # the readiness deadline given to verify: diagnoses must come long before it


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stubs")


@pytest.fixture(scope="module")
def env39(tmp_path_factory) -> Path:
    """Python 3.9 + numpy<2, packed for r24.10 (cached across runs in ENVTOOL_CACHE_DIR)."""
    out = tmp_path_factory.mktemp("env39") / "custom_env.tar.gz"
    return api.pack(api.PackSpec(python="3.9", triton="r24.10"), out).output


def injected(tmp_path: Path, stub: Path, env: Path, **kw) -> Path:
    repo = pipeline(tmp_path / "repo")
    api.inject(api.InjectOptions(repo=repo, stub=stub, env=env, force=True, **kw))  # verify meets broken pairs too
    return repo


def test_build_verify_r2410_py39_end_to_end(tmp_path, stubs):
    repo = pipeline(tmp_path / "model_repository")
    shutil.rmtree(repo / "lonely")  # no ensemble runs it, so no env: see test_a_model_without_env_is_named
    args = ["build", "--python", "3.9", "--triton", "r24.10", "--repo", repo, "--verify", "--cache", stubs,
            "-o", tmp_path / "envs" / "custom_env.tar.gz", "--json"]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    res = json.loads(out.stdout)
    v = res["verify"]
    assert v["ok"] and v["models"]["pre"]["state"] == v["models"]["post"]["state"] == "READY"
    assert [(i["model"], i["protocol"], i["ok"]) for i in v["inferences"]] == [("ens", "http", True),
                                                                               ("ens", "grpc", True)]
    assert v["inferences"][0]["outputs"]["Y"] == {"datatype": "FP32", "shape": [2], "sample": [2.5, 2.5]}
    assert set(res["timings"]) == {"stub_s", "env_s", "preflight_s", "inject_s", "verify_s"}
    lock = json.loads((tmp_path / "envtool.lock").read_text())
    assert lock["release"] == "24.10" and lock["server"]["version"] == "2.51.0"
    for m in ("pre", "post"):
        assert lock["models"][m]["stub"]["libpython"] == "3.9"
        assert lock["models"][m]["env"]["python"] == "3.9"
        assert lock["models"][m]["env"]["sha256"] == res["env"]["sha256"]
        assert lock["models"][m]["env"]["packages"]["numpy"].startswith("1.")
    assert lock["inputs_sha256"] and v["reused"] is None
    # Warm: every artifact comes from a cache, the repository is already up to date, and the lock says these
    # exact inputs were served: no server starts, and the report is that serve's.
    again = json.loads(run_cli(*args).stdout)
    assert again["stub"]["reused"] and again["env"]["reused"] and not again["inject"]["changed"]
    assert again["verify"]["ok"] and again["verify"]["reused"] == lock["verified_at"]
    assert again["verify"]["inferences"] == v["inferences"] and again["verify"]["models"] == v["models"]
    assert json.loads((tmp_path / "envtool.lock").read_text()) == lock  # nothing served, nothing rewritten
    # A changed model file is served again; so is everything with --reverify
    model_py = repo / "pre" / "1" / "model.py"
    model_py.write_text(model_py.read_text() + "\n# changed\n")
    changed = json.loads(run_cli(*args).stdout)["verify"]
    assert changed["ok"] and changed["reused"] is None and changed["timings"]["start_to_ready_s"] > 0
    forced = json.loads(run_cli(*args, "--reverify").stdout)["verify"]
    assert forced["ok"] and forced["reused"] is None
    # `envtool verify` with the same server and options reuses build's verdict, and says so
    plain = run_cli("verify", repo, "--triton", "r24.10")
    assert plain.returncode == 0 and "verified earlier (lock unchanged" in plain.stdout, plain.stdout
    assert "--reverify serves it again" in plain.stdout


def test_build_unpacked_serves_a_shared_directory_env_and_reuses_its_verdict(tmp_path, stubs):
    """r23.07+: the env as a directory, stored once and linked from the other model; served, locked, and a
    second build reuses the verdict (the lock digests the directory's files too)."""
    repo = pipeline(tmp_path / "model_repository")
    shutil.rmtree(repo / "lonely")
    args = ["build", "--python", "3.9", "--triton", "r24.10", "--repo", repo, "--verify", "--cache", stubs,
            "--unpacked", "-o", tmp_path / "envs" / "custom_env", "--json"]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    res = json.loads(out.stdout)
    assert res["env"]["format"] == "directory" and res["verify"]["ok"] and res["verify"]["reused"] is None
    assert (repo / "post" / "custom_env").is_dir() and os.readlink(repo / "pre" / "custom_env") == "../post/custom_env"
    assert 'string_value: "$$TRITON_MODEL_DIRECTORY/custom_env"' in (repo / "pre" / "config.pbtxt").read_text()
    lock = json.loads((tmp_path / "envtool.lock").read_text())
    assert lock["models"]["pre"]["env"]["kind"] == "directory" and lock["models"]["pre"]["env"]["python"] == "3.9"
    again = json.loads(run_cli(*args).stdout)
    assert again["verify"]["reused"] == lock["verified_at"]
    # a file added inside the directory env is a new input: verify serves again (build would first restore
    # the env from its cache, and then reuse)
    (repo / "post" / "custom_env" / "lib" / "python3.9" / "site-packages" / "extra.py").write_text("X = 1\n")
    out = run_cli("verify", repo, "--triton", "r24.10", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["reused"] is None, out.stderr[-2000:]


def test_build_verify_r2211_py38(tmp_path, stubs):
    if not any(s == "pyenv" for _, s in candidates("3.8")):
        pytest.skip("needs pyenv 3.8")
    repo = pipeline(tmp_path / "repo")  # `lonely` too: a model without an env would run pyenv 3.8 without numpy
    spec = api.BuildSpec(python="3.8", triton="r22.11", env=api.PackSpec(python="3.8"), repo=repo,
                         models=("pre", "post", "lonely"), env_output=tmp_path / "custom_env.tar.gz",
                         stubs_root=stubs, verify=True, target="host")  # pyenv's 3.8 needs this host's glibc
    res = api.build(spec)
    assert res.ok, res.verify.problems
    assert res.verify.server["version"] == "2.28.0"
    assert {i.protocol for i in res.verify.inferences if i.ok} == {"http", "grpc"}


ZIPPED_MODEL_PY = ADD_ONE_PY.replace("import numpy as np\n", """import numpy as np
import idna
import packaging.version

# pure-Python packages come from the env's zip (envtool/env/sitezip.py), in the stub's embedded interpreter
assert "envtool-packages.zip" in idna.__file__ and "envtool-packages.zip" in packaging.version.__file__
assert idna.encode("bücher.example") == b"xn--bcher-kva.example"
assert packaging.version.Version("22.11") > packaging.version.Version("9.0")
""")


@pytest.mark.parametrize("xy, release, unpacked", [("3.8", "r22.11", False), ("3.9", "r24.10", True)])
def test_zipped_pure_packages_import_in_the_stub(tmp_path, stubs, xy, release, unpacked):
    """r22.11 (activate sourced, tarball extracted by Triton) and r24.10 (a directory env): a model whose
    module imports packages that pack moved into site-packages/envtool-packages.zip loads and infers."""
    if not any(s == "pyenv" for _, s in candidates(xy)):
        pytest.skip(f"needs pyenv {xy}")
    repo = write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [-1])],
                                                            [("OUT", "TYPE_FP32", [-1])])}, ZIPPED_MODEL_PY)
    env = api.PackSpec(python=xy, pip=("idna", "packaging"), unpacked=unpacked)
    out = tmp_path / "envs" / ("custom_env" if unpacked else "custom_env.tar.gz")
    res = api.build(api.BuildSpec(python=xy, triton=release, env=env, repo=repo, models=("m",), env_output=out,
                                  stubs_root=stubs, verify=True, target="host"))
    assert res.ok, res.verify.problems
    assert {"idna", "packaging"} <= set(res.env.manifest["zipped_packages"]["packages"])
    assert [(i.model, i.ok) for i in res.verify.inferences] == [("m", True), ("m", True)]


def test_a_model_without_env_is_exercised_and_named(tmp_path, stubs, env39):
    """`lonely` (no ensemble uses it) is READY, so verify exercises it. It has no env: on the embedded server
    it runs envtool's own Python, whose numpy 2 the r24.10 stub misreads; the report says where it ran."""
    repo = injected(tmp_path, api.stub("r24.10", "3.9", root=stubs).path, env39)
    report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", timeout=DEADLINE, lock=False))
    runs = {(i.model, i.protocol): i.ok for i in report.inferences}
    assert runs[("ens", "http")] and ("lonely", "http") in runs
    import numpy
    host_numpy2 = int(numpy.__version__.split(".")[0]) >= 2
    assert runs[("lonely", "http")] is not host_numpy2
    named = any(p.rule == "model-no-env" and p.model == "lonely" for p in report.problems)
    assert named is host_numpy2


def test_a_model_that_never_answers_is_a_finding_not_a_hang(tmp_path, stubs, env39, monkeypatch):
    """A stub that spins or deadlocks in execute (seen: the r24.10 server stand-in on Debian sid) held verify
    in a gRPC call without a deadline, for ever. Each request has a deadline now, on both protocols: the
    inference fails naming it, and verify ends."""
    from envtool import infer
    monkeypatch.setattr(infer, "INFER_TIMEOUT_S", 3.0)
    hung = ADD_ONE_PY.replace("        responses = []", "        import time\n        time.sleep(60)\n"
                                                         "        responses = []")
    assert hung != ADD_ONE_PY
    repo = write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [-1])],
                                                            [("OUT", "TYPE_FP32", [-1])])}, hung)
    api.inject(api.InjectOptions(repo=repo, stub=api.stub("r24.10", "3.9", root=stubs).path, env=env39))
    t0 = time.monotonic()
    report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", timeout=DEADLINE, lock=False))
    assert time.monotonic() - t0 < 50  # two deadlines and a server's start and stop, not the model's 60 s twice
    runs = {i.protocol: i for i in report.inferences if i.model == "m"}
    assert set(runs) == {"http", "grpc"} and not report.ok
    for i in runs.values():
        assert not i.ok and i.error.startswith("no answer within 3 s: the model hangs"), i.error


def test_stub_of_another_python_is_diagnosed_in_seconds(tmp_path, stubs, env39):
    stub310 = api.stub("r24.10", "3.10", root=stubs).path
    repo = injected(tmp_path, stub310, env39)
    report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", timeout=DEADLINE))
    assert not report.ok
    assert [d.id for d in report.diagnoses if d.hang] == ["stub-libpython"]
    d = report.diagnoses[0]  # both sides and a fix with the real values, from the model folders
    assert d.cause.startswith("model ") and "the stub links libpython3.10 and the env has Python 3.9" in d.cause
    assert d.fix.startswith("envtool build --python 3.9 --triton r24.10")
    hang = report.problems[0]
    assert hang.rule == "server-hang" and "3.10" in hang.message and "--python 3.9 --triton r24.10" in hang.fix
    # stopped by the log watcher, not by the deadline (the seconds: benchmarks/diagnose_hang.py)
    assert hang.message.startswith("stopped after") and "start_to_ready_s" not in report.timings
    assert not (tmp_path / "envtool.lock").exists()


def test_numpy2_env_on_r2410_fails_at_inference_and_says_why(tmp_path, stubs, env39):
    env = api.pack(api.PackSpec(python="3.9", pip=("numpy==2.0.2",)), tmp_path / "np2.tar.gz").output
    repo = injected(tmp_path, api.stub("r24.10", "3.9", root=stubs).path, env)
    report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", timeout=DEADLINE))
    assert report.models["pre"]["state"] == "READY"  # loads fine, fails at inference
    assert not report.ok and any(not i.ok for i in report.inferences)
    assert any(d.id in ("numpy2-output", "numpy2-empty-tensor") for d in report.diagnoses)
    assert any(p.rule == "env-numpy2" and "numpy 2" in p.message for p in report.problems), report.problems
    assert any(p.rule == "inference-error" and p.model == "ens" for p in report.problems), report.problems


def test_env_without_activate(tmp_path, stubs, env39):
    bad = tmp_path / "venv_style.tar.gz"
    with tarfile.open(env39) as src, tarfile.open(bad, "w:gz", compresslevel=1) as dst:  # all under a top folder
        for m in src:
            f = src.extractfile(m) if m.isfile() else None
            m.name = "myenv/" + (m.name[2:] if m.name.startswith("./") else m.name)
            dst.addfile(m, f)
    repo = injected(tmp_path, api.stub("r24.10", "3.9", root=stubs).path, bad)
    report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", timeout=DEADLINE))
    assert not report.ok and report.models["pre"]["state"] == "UNAVAILABLE"
    assert any(d.id == "activate-missing" for d in report.diagnoses)
    assert "start_to_ready_s" in report.timings  # the server went on without the model: no deadline reached


def test_several_tarball_envs_from_a_relative_repo_path_load(tmp_path, stubs, env39):
    """Four models, each with its own tarball (four extractions, each with Triton's chdir), given as a
    relative path: the server gets the absolute one, so the loads cannot race."""
    names = [f"m{i}" for i in range(4)]
    configs = {n: python_model(n, [("IN", "TYPE_FP32", [-1])], [("OUT", "TYPE_FP32", [-1])]) for n in names}
    steps = ", ".join(step(n, {"IN": f"t{i}"}, {"OUT": f"t{i + 1}"}) for i, n in enumerate(names))
    configs["chain"] = ensemble("chain", steps=steps, inputs=[("t0", "TYPE_FP32", [-1])],
                                outputs=[("t4", "TYPE_FP32", [-1])])
    write_repo(tmp_path / "repo", configs)
    api.inject(api.InjectOptions(repo=tmp_path / "repo", stub=api.stub("r24.10", "3.9", root=stubs).path,
                                 env=env39, share=False))
    (tmp_path / "expect.json").write_text(json.dumps({"t4": [4.5, 4.5]}))
    out = run_cli("verify", "repo", "--triton", "r24.10", "--expect", "expect.json", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    report = json.loads(out.stdout)
    assert all(report["models"][n]["state"] == "READY" for n in names)
    assert report["inferences"][0]["outputs"]["t4"]["sample"] == [4.5, 4.5]  # 0.5 + 4
    assert report["server"]["auto_complete_config"] == "off: no model needs it"


def test_a_model_that_completes_its_own_config_keeps_auto_complete_on(tmp_path, stubs, env39):
    """verify starts Triton with --disable-auto-complete-config only where no model needs auto-complete: a
    model.py whose auto_complete_config declares the output the config.pbtxt lacks loads only with it on."""
    config = python_model("m", [("IN", "TYPE_FP32", [-1])], [("OUT", "TYPE_FP32", [-1])])
    config = config[:config.index("output [")] + config[config.index("instance_group"):]
    completes = ADD_ONE_PY.replace("class TritonPythonModel:\n", """class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [-1]})
        return auto_complete_model_config

""")
    assert completes != ADD_ONE_PY
    repo = write_repo(tmp_path / "repo", {"m": config}, completes)
    api.inject(api.InjectOptions(repo=repo, stub=api.stub("r24.10", "3.9", root=stubs).path, env=env39))
    report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", timeout=DEADLINE))
    assert report.ok and report.models["m"]["state"] == "READY", report.problems
    assert report.server["auto_complete_config"] == "on: model m's 1/model.py defines auto_complete_config"



def _children(pid: int) -> set[int]:
    """Every live descendant of pid (by /proc PPid)."""
    parents: dict[int, int] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            parents[int(stat.split("/")[2])] = int(fields[1])
        except (OSError, IndexError, ValueError):
            pass
    out, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_no_orphan_when_envtool_is_signalled(tmp_path, stubs, env39, sig, code):
    repo = write_repo(tmp_path / "repo", {"slow": python_model("slow", [("IN", "TYPE_FP32", [-1])],
                                                               [("OUT", "TYPE_FP32", [-1])])}, SLOW_INIT_PY)
    api.inject(api.InjectOptions(repo=repo, stub=api.stub("r24.10", "3.9", root=stubs).path, env=env39))
    proc = spawn([sys.executable, "-m", "envtool", "verify", str(repo), "--triton", "r24.10"],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    ours: set[str] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the server and the model's stub run
        seen |= _children(proc.pid)
        cmds = [Path(f"/proc/{p}/cmdline").read_bytes() for p in seen if _alive(p)]
        # The launcher's `bash -c` names the stub before its exec puts the env in the stub's environment
        if any(b"triton_python_backend_stub" in c and b"slow" in c for c in cmds) and (ours := _env_folders(seen)):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        proc.communicate()
        pytest.fail("the stub never started from a /tmp/python_env_* folder")
    seen |= _children(proc.pid)
    assert ours, "the stub runs from no /tmp/python_env_* folder"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and "Traceback" not in err, err[-2000:]
    assert not [p for p in seen if _alive(p)]  # server and stubs are gone
    assert not [f for f in ours if os.path.exists(f)]  # its extractions removed (other servers may run beside)


def _env_folders(pids: set[int]) -> set[str]:
    """The extraction folders these processes run from: Triton's launcher puts the env's lib/ and bin/ in the
    stub's environment (python_backend, src/stub_launcher.cc)."""
    found: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            found |= set(re.findall(r"/tmp/python_env_\w+", Path(f"/proc/{pid}/environ").read_text(errors="replace")))
    return found


def _mapped(pid: int, prefix: str) -> set[str]:
    """The files under prefix that process pid maps (Triton maps each python model's shared-memory region)."""
    return {p for p in Path(f"/proc/{pid}/maps").read_text().split() if p.startswith(prefix)}


def test_a_killed_server_leaves_no_shared_memory_behind(tmp_path, stubs, env39):
    """Killed, Triton unlinks none of the python backend's /dev/shm regions (1 MiB each, in RAM); stop() removes
    those its own server made, as it does its env extractions."""
    from envtool.catalog import normalize_release
    from envtool.servers.base import SHM_GLOB
    from envtool.servers.embedded import EmbeddedServer
    repo = injected(tmp_path, api.stub("r24.10", "3.9", root=stubs).path, env39)
    with EmbeddedServer(normalize_release("r24.10"), repo) as server:
        server.wait_live(DEADLINE)
        made = _mapped(server.proc.pid, SHM_GLOB[:-1])  # its own: other servers may run beside it
        assert made, "the python models made no shared-memory region"
        os.kill(server.proc.pid, signal.SIGKILL)  # tritonserver itself: no clean-up of its own
        server.proc.wait(30)
        assert made <= set(glob.glob(SHM_GLOB))  # left behind by the kill...
    assert not made & set(glob.glob(SHM_GLOB))  # ...and removed by stop()


def test_serve_prints_endpoints_and_stops_on_ctrl_c(tmp_path, stubs, env39):
    repo = injected(tmp_path, api.stub("r24.10", "3.9", root=stubs).path, env39)
    proc, lines, ports = serve_cli(repo)
    text = "".join(lines)
    assert f"http://127.0.0.1:{ports[0]}" in text and f"127.0.0.1:{ports[1]}" in text and "ready: ens" in text
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/models/ens/ready") as r:
        assert r.status == 200
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130 and not [p for p in kids if _alive(p)]


def test_verify_bad_inputs_are_one_line(tmp_path):
    repo = pipeline(tmp_path / "repo")
    (tmp_path / "in.json").write_text("{not json")
    out = run_cli("verify", repo, "--triton", "r24.10", "--inputs", tmp_path / "in.json")
    assert out.returncode == 2 and "in.json is not valid JSON" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("verify", tmp_path / "nope", "--triton", "r24.10")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    out = run_cli("serve", tmp_path / "nope", "--triton", "r24.10")
    assert out.returncode == 2 and "nope" in out.stderr and "Traceback" not in out.stderr
    work = tmp_path / "work"
    work.mkdir()
    out = run_cli("build", "--python", "3.9", "--triton", "r24.10", "--repo", repo, "--models", "nosuch", cwd=work)
    assert out.returncode == 2 and "no model 'nosuch'" in out.stderr
    assert not list(work.iterdir())  # refused before any stub or env was written
    (repo / "pre" / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: oops\n')
    out = run_cli("build", "--python", "3.9", "--triton", "r24.10", "--repo", repo, cwd=work)
    assert out.returncode == 2 and "pre/config.pbtxt:2:" in out.stderr and not list(work.iterdir())
    (repo / "pre" / "config.pbtxt").write_text(pipeline(tmp_path / "again").joinpath("pre/config.pbtxt").read_text())
    out = run_cli("verify", repo, "--triton", "r24.10", "--server", "local", "--server-bin", tmp_path / "nope")
    assert out.returncode == 2 and "--server-bin" in out.stderr
    assert not (tmp_path / "envtool.lock").exists()
    assert os.listdir(repo) == os.listdir(pipeline(tmp_path / "fresh"))


def test_a_server_of_another_release_is_warned_about(tmp_path, stubs, env39, server_tree_2410):
    repo = injected(tmp_path, api.stub("r24.10", "3.9", root=stubs).path, env39, models=("pre", "post", "lonely"))
    binary = server_tree_2410 / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    env = {**os.environ, "LD_LIBRARY_PATH": str(server_tree_2410 / "nvidia_pytriton.libs")}
    out = subprocess.run([sys.executable, "-m", "envtool", "verify", str(repo), "--triton", "r24.09", "--server",
                          "local", "--server-bin", str(binary), "--no-lock"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "the server is Triton 2.51.0, not r24.09's 2.50.0" in out.stderr


def test_a_server_stopping_leaves_another_servers_envs_alone(tmp_path, stubs, env39, r2410):
    """/tmp/python_env_* is shared by every Triton on the machine. `other` starts first; `keeps` extracts its
    env while `other` runs; `other` stops: `keeps` still has its extracted env and still serves."""
    from envtool.infer import infer, model_inputs
    from envtool.servers import open_server
    stub = api.stub("r24.10", "3.9", root=stubs).path
    first, second = injected(tmp_path / "a", stub, env39), injected(tmp_path / "b", stub, env39)
    other = open_server("embedded", r2410, second)
    with contextlib.ExitStack() as stack:
        stack.enter_context(other).wait_live(DEADLINE)
        keeps = stack.enter_context(open_server("embedded", r2410, first))
        keeps.wait_live(DEADLINE)
        mine = keeps.extracted_envs()
        theirs = set(other.extracted_envs()) - set(mine)
        other.__exit__(None, None, None)  # stopped while `keeps` runs
        assert mine and all(os.path.isdir(d) for d in mine)
        assert theirs and not any(os.path.isdir(d) for d in theirs)  # it cleaned up its own
        cfg = keeps.loaded_config("ens")
        assert infer(keeps, "http", "ens", cfg, model_inputs("ens", cfg, None)[0]).ok


def test_a_server_that_dies_at_start_is_one_finding(tmp_path):
    """A --server-bin that exits before it is live (here a script standing in for a broken binary): the report
    fails with one server-start finding, the exit code named, and no lock."""
    repo = write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [1])],
                                                             [("OUT", "TYPE_FP32", [1])])})
    (repo / "m" / "1" / "model.py").write_text(ADD_ONE_PY)
    dying = tmp_path / "tritonserver"
    dying.write_text("#!/bin/sh\necho 'error: creating server: Internal - stand-in that exits' >&2\nexit 3\n")
    dying.chmod(0o755)
    report = api.verify(api.VerifyOptions(repo=repo, release="r24.10", server="local", server_bin=dying,
                                          timeout=30))
    assert not report.ok and [p.rule for p in report.problems] == ["server-start"], report.problems
    assert "exited with code 3" in report.problems[0].message and report.problems[0].severity == "error"
    assert report.to_dict()["problems"][0]["rule"] == "server-start"
    assert not (repo / "envtool.lock").exists()
