"""envtool stub with NVIDIA's real prebuilt stubs (nvidia-pytriton wheels for r22.11 and r24.10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envtool import api
from envtool.cache import file_sha256 as sha256
from envtool.catalog import normalize_release
from envtool.elf import read_elf, version_key
from envtool.env.interpreters import candidates, find_interpreter
from envtool.errors import BadInput

PYENV = {v for v in ("3.8", "3.9") if any(s == "pyenv" for _, s in candidates(v))}
CASES = [("r22.11", "3.8"), ("r24.10", "3.9")]


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stubs")


@pytest.fixture(scope="session", params=CASES, ids=[f"{r}-py{p}" for r, p in CASES])
def prebuilt(request, store):
    release, python = request.param
    return release, python, api.stub(release, python, root=store)


def test_manifest_and_elf_facts(prebuilt):
    release, python, art = prebuilt
    m, rel = art.manifest, normalize_release(release)
    assert (m["release"], m["python"], m["builder"]) == (rel.release, python, "prebuilt")
    assert m["sha256"] == sha256(art.path) and art.folder.name == m["sha256"][:16]
    facts = read_elf(art.path)
    assert facts.libpython == python and m["needed_libpython"] == f"libpython{python}.so.1.0"
    assert facts.runpath == ["$ORIGIN"]  # no path into the wheel or a build machine
    assert version_key(m["requires"]["GLIBC"]) <= version_key(rel.glibc)
    assert version_key(m["requires"]["GLIBCXX"]) <= version_key(rel.max_glibcxx)
    assert m["libs"] and all((art.folder / lib).is_file() for lib in m["libs"])
    assert m["sources"]["wheel"].startswith("nvidia_pytriton-" + rel.pytriton[-1] if release == "r24.10" else
                                            "nvidia_pytriton-0.1.5")
    assert json.loads((art.folder / "manifest.json").read_text())["sha256"] == m["sha256"]


def test_self_contained_needs_only_the_envs_libpython(prebuilt):
    """Triton runs the stub once without arguments and expects exit 1; nothing but <env>/lib on
    LD_LIBRARY_PATH (here: the Python's own lib folder standing in for the env's)."""
    _, python, art = prebuilt
    if python not in PYENV:
        pytest.skip(f"no pyenv Python {python}")
    libdir = find_interpreter(python).libdir
    ok = subprocess.run(["env", "-i", f"LD_LIBRARY_PATH={libdir}", str(art.path)], capture_output=True, text=True)
    assert ok.returncode == 1 and "Expected 9 arguments" in ok.stdout + ok.stderr
    bare = subprocess.run(["env", "-i", str(art.path)], capture_output=True, text=True)
    assert bare.returncode == 127 and f"libpython{python}.so.1.0" in bare.stderr


def test_store_is_reused(prebuilt, store):
    release, python, art = prebuilt
    again = api.stub(release, python, root=store)
    assert again.reused and again.path == art.path and again.manifest["chosen"].startswith("store:")


def test_a_python_the_wheel_lacks_is_named(store):
    with pytest.raises(BadInput, match=r"has stubs for Python 3\.8, not 3\.9.*") as e:
        api.stub("r22.11", "3.9", builder="prebuilt", root=store)
    assert "--builder local" in e.value.fix


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "envtool", "stub", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def test_unknown_release_is_one_line(tmp_path):
    out = cli("--triton", "r19.01", "--python", "3.9", "--cache", tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "r19.01" in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_concurrent_requests_extract_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "envtool", "stub", "--triton", "r24.10", "--python", "3.9",
                               "--cache", str(tmp_path), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert sorted(r["reused"] for r in results) == [False, True]
    assert results[0]["stub"] == results[1]["stub"]
    assert not list(tmp_path.glob(".build-*"))


@pytest.mark.server
def test_prebuilt_stub_and_packed_env_serve_in_r2410(tmp_path, store, r2410):
    if "3.9" not in PYENV:
        pytest.skip("no pyenv Python 3.9")
    from tests.test_inject import pipeline
    from tests.test_inject_server import serve_and_infer
    art = api.stub("r24.10", "3.9", root=store)
    env = api.pack(api.PackSpec(python="3.9", triton="r24.10"), tmp_path / "custom_env.tar.gz").output
    repo = pipeline(tmp_path / "repo")
    api.inject(api.InjectOptions(repo=repo, stub=art.path, env=env))
    assert (repo / "pre" / art.manifest["libs"][0]).is_file()  # the bundled libcudart travels with it
    states, out, server, _ = serve_and_infer(r2410, repo)
    assert states["pre"]["state"] == states["post"]["state"] == "READY", server.log()[-3000:]
    assert out["outputs"][0]["data"] == [3.0, 4.0, 5.0]
