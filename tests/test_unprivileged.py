"""The core flows as an ordinary user (issue 27). Root ignores file modes, so a suite that runs as root misses
every permission bug: this module drops to `nobody` for lint, pack, stub, inject, verify (twice), serve and
doctor on the article's pipeline, with a cache, a HOME and a repository of nobody's own.

nobody cannot reach what root keeps under /root (pyenv's Pythons, the test virtualenv, the caches), so the
envtool under test is installed (not editable) into a virtualenv made from the system's /usr/bin/python3, and
the env and the stub are for that Python. Downloads nobody would repeat (the nvidia-pytriton wheel) are copied
into its cache; pip downloads the example's requirements itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import spawn

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")
pytestmark = [pytest.mark.slow, pytest.mark.server]


def _system_python() -> str:
    """X.Y of the system's Python, which must be a shared build (what a stub and an env need)."""
    out = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys, sysconfig; print(f'{sys.version_info[0]}."
                          "{sys.version_info[1]}', sysconfig.get_config_var('Py_ENABLE_SHARED') or "
                          "sysconfig.get_config_var('INSTSONAME'))"], capture_output=True, text=True)
    version, shared = out.stdout.split()
    if shared in ("0", "None"):
        pytest.skip("the system Python is not a shared build")
    return version


@pytest.fixture(scope="module")
def nobody_home():
    """(base, python, X.Y): a folder every user can read, holding envtool installed for the system Python."""
    if os.geteuid() != 0:
        pytest.skip("runs as root, to act as nobody")
    if not SYSTEM_PYTHON.is_file():
        pytest.skip("needs /usr/bin/python3")
    version = _system_python()
    from envtool.cache import cache_root
    base = Path(tempfile.mkdtemp(prefix="envtool-nobody-", dir="/tmp"))
    try:
        src = base / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "envtool", src / "envtool", ignore=shutil.ignore_patterns("__pycache__"))
        venv = base / "venv"
        # ensurepip runs pip from its wheel, which leaves certifi's cacert.pem in TMPDIR: the test's own
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True, env={**os.environ,
                                                                                   "TMPDIR": str(base)})
        subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(src)], check=True)  # root's pip cache makes this quick after the first run
        cache = base / "cache"
        (cache / "wheels").mkdir(parents=True)
        for wheel in (cache_root() / "wheels").glob("nvidia_pytriton-0.7.0-*.whl"):  # r24.10's server
            shutil.copy2(wheel, cache / "wheels" / wheel.name)
        work = base / "work"
        work.mkdir()
        from tests.test_example import prepare_example
        prepare_example(work)
        subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(cache), str(work)], check=True)
        yield base, venv / "bin/python", version
    finally:
        if not os.environ.get("ENVTOOL_TEST_KEEP"):  # keep it to read the logs of a failure
            shutil.rmtree(base, ignore_errors=True)


def _env(base: Path) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": str(base / "work"), "ENVTOOL_CACHE_DIR": str(base / "cache"),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "LANG": "C.UTF-8", "TMPDIR": str(base / "work")}


def as_nobody(base: Path, python: Path, *args, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run([str(python), "-m", "envtool", *map(str, args)], cwd=base / "work", env=_env(base),
                         user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, text=True,
                         timeout=timeout)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out


def test_the_article_pipeline_as_nobody(nobody_home):
    base, python, version = nobody_home
    work = base / "work"
    repo = "model_repository"
    pack = as_nobody(base, python, "pack", "--python", version, "--triton", "r24.10", "-r", "envs/example.txt",
                     "-o", "envs/custom_env.tar.gz", "--json")
    assert pack.returncode == 0, pack.stderr[-3000:]
    from envtool.env.view import view_env  # the packages where envs keep them (Debian's pip puts them in local/)
    assert view_env(work / "envs/custom_env.tar.gz").packages["numpy"].startswith("1."), pack.stdout[-2000:]
    assert (work / "envs/custom_env.tar.gz").stat().st_uid == NOBODY
    stub = as_nobody(base, python, "stub", "--triton", "r24.10", "--python", version, "--json")
    assert stub.returncode == 0, stub.stderr[-3000:]
    stub_path = json.loads(stub.stdout)["stub"]
    inject = as_nobody(base, python, "inject", repo, "--stub", stub_path, "--env", "envs/custom_env.tar.gz")
    assert inject.returncode == 0, inject.stderr[-3000:]
    lint = as_nobody(base, python, "lint", repo, "--json")
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
    modes = {str(p): p.stat().st_mode for p in work.glob(f"{repo}/*/triton_python_backend_stub*")}
    assert modes
    for round_ in ("serves", "reuses the lock"):
        verify = as_nobody(base, python, "verify", repo, "--triton", "r24.10", "--inputs",
                           f"{repo}/inputs.json", "--json")
        assert verify.returncode == 0, (round_, verify.stderr[-2000:], _problems(verify.stdout))
        assert bool(json.loads(verify.stdout)["reused"]) == (round_ == "reuses the lock")
    # Triton probed every stub as nobody and left the modes alone; every file is still readable by its owner.
    assert {str(p): p.stat().st_mode for p in work.glob(f"{repo}/*/triton_python_backend_stub*")} == modes
    doctor = as_nobody(base, python, "doctor", repo, "--triton", "r24.10", "--json")
    assert doctor.returncode == 0, doctor.stdout[-3000:]
    assert json.loads(doctor.stdout)["findings"] == [], doctor.stdout[-3000:]
    _serve_and_stop(base, python, repo)


def _problems(stdout: str) -> object:
    try:
        report = json.loads(stdout)
    except ValueError:
        return stdout[-3000:]
    return report.get("problems"), [i.get("error") for i in report.get("inferences", [])]


def _serve_and_stop(base: Path, python: Path, repo: str) -> None:
    from envtool.servers.base import free_ports
    http, grpc, metrics = (str(p) for p in free_ports(3))
    proc = spawn([python, "-m", "envtool", "serve", repo, "--triton", "r24.10", "--http-port", http,
                  "--grpc-port", grpc, "--metrics-port", metrics], cwd=base / "work", env=_env(base),
                 user=NOBODY, group=NOBODY, extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(1)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]  # 128 + SIGINT, as a shell reports
    left = subprocess.run(["pgrep", "-u", str(NOBODY), "-f", "tritonserver"], capture_output=True, text=True)
    assert not left.stdout.strip(), left.stdout
