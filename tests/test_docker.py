"""Docker, for real: the docker stub builder and pack builder run Dockerfile.build on a local image
(debootstrapped Debian + build tools + a pyenv Python: the stand-in for an NGC image, which cannot be
pulled here), and the docker server runs the nvidia-pytriton server tree in NGC's layout."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker
import pytest

from envtool import api
from envtool.containers import engine
from envtool.elf import read_elf, version_key
from envtool.env.interpreters import candidates
from envtool.env.prefix import elf_files
from envtool.errors import EnvtoolError
from envtool.servers.docker import SHM_MIN, SHM_PER_INSTANCE, shm_size
from tests import docker_images as images
from tests.conftest import SLOW_INIT_PY, python_model, run_cli, spawn, write_repo
from tests.test_inject import pipeline
from tests.test_stub_local import make_sources

PYENV39 = next((Path(p).parent.parent for p, s in candidates("3.9") if s == "pyenv"), None)


@pytest.fixture(scope="session")
def docker_client(tmp_path_factory):
    """The daemon of DOCKER_HOST (CI starts one), else one started here for the session."""
    started = None
    try:
        cl = engine.client()
    except EnvtoolError as e:
        from envtool.cache import cache_root
        started = images.start_daemon(cache_root() / "docker")
        if started is None:
            pytest.skip(f"no Docker daemon can run here ({e.message})")
        cl = engine.client()
    yield cl
    if started is not None:
        started.terminate()
        started.wait(30)


@pytest.fixture(scope="session")
def build_image(docker_client):
    """The stand-in for an r20.12-r23.04 NGC image: Debian bullseye (glibc 2.31, GLIBCXX 3.4.28) with python3
    (3.9) and nothing else; the docker builder apt-installs what the build needs."""
    return images.release_image(docker_client, "bullseye")


@pytest.fixture(scope="session")
def bookworm_image(docker_client):
    """A plain Debian 12 image: glibc 2.36, newer than any release up to r24.10 has."""
    return images.base_image(docker_client)


@pytest.fixture(scope="session")
def server_image(docker_client, server_tree_2410):
    return images.server_image(docker_client, server_tree_2410, "24.10")


@pytest.fixture(scope="module")
def fixture_sources(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("src") / "sources")


def test_docker_stub_builder_builds_the_fixture_and_checks_it(build_image, fixture_sources, tmp_path):
    """r22.11 x 3.9 in the bullseye stand-in: Debian's python3.9 apt-installed in the image, and a stub that
    fits Ubuntu 20.04 (this host's own build of it would not)."""
    art = api.stub("r22.11", "3.9", builder="docker", base_image=build_image, sources=fixture_sources,
                   root=tmp_path / "stubs")
    m = art.manifest
    assert m["builder"] == "docker" and m["built_with"] == "local" and m["base_image"] == build_image
    assert m["base_image_id"].startswith("sha256:") and m["artifacts_image_id"].startswith("sha256:")
    assert "-DTRITON_CORE_REPO_TAG=r22.11" in m["build_flags"]
    assert m["python_used"] == "/usr/bin/python3.9"  # Debian's, not a pyenv build
    facts = read_elf(art.path)
    assert facts.libpython == "3.9" and facts.runpath == []  # the same ELF checks as a local build
    assert version_key(facts.versions["GLIBC"]) <= version_key("2.31")
    assert version_key(facts.versions.get("GLIBCXX", "3.4")) <= version_key("3.4.28")
    if PYENV39:
        out = subprocess.run(["env", "-i", f"LD_LIBRARY_PATH={PYENV39 / 'lib'}", str(art.path)],
                             capture_output=True, text=True)
        assert out.returncode == 1 and "common=r22.11 core=r22.11 backend=r22.11" in out.stderr
    again = api.stub("r22.11", "3.9", builder="docker", base_image=build_image, root=tmp_path / "stubs")
    assert again.reused and again.path == art.path


def test_docker_pack_builds_the_env_in_the_image(build_image, docker_client, tmp_path):
    """An env from the image's apt Python 3.9 (Debian layout: dist-packages, sys.prefix /usr), made
    relocatable and validated inside the image; every binary in it fits r22.11."""
    spec = api.PackSpec(python="3.9", pip=("pyyaml",), triton="r22.11", builder="docker", base_image=build_image)
    res = api.pack(spec, tmp_path / "custom_env.tar.gz", rebuild=True)
    m = res.manifest
    assert m["builder"] == "docker" and m["base_image"] == build_image and m["python"] == "3.9.2"
    assert m["numpy"].startswith("1.") and "PyYAML" in m["packages"]
    env = tmp_path / "env"
    env.mkdir()
    with tarfile.open(res.output) as tar:
        names = [n[2:] if n.startswith("./") else n for n in tar.getnames()]
        tar.extractall(env)
    assert "bin/activate" in names and "lib/libpython3.9.so.1.0" in names
    assert any(n.startswith("lib/python3.9/site-packages/numpy-1.") for n in names)  # not Debian's local/lib/...
    assert os.readlink(env / "lib/python3.9/dist-packages") == "site-packages"  # Debian's site.py reads it
    for path in elf_files(env):
        need = read_elf(path).versions
        assert version_key(need.get("GLIBC", "2.0")) <= version_key("2.31"), (path, need)
        assert version_key(need.get("GLIBCXX", "3.4")) <= version_key("3.4.28"), (path, need)
    assert api.pack(spec, tmp_path / "again.tar.gz").reused
    # Other requirements reuse the image's apt and envtool layers: only the last step runs again
    layers = _envtool_layers(docker_client, m["artifacts_image_id"])
    other = api.pack(dataclasses.replace(spec, pip=("six",)), tmp_path / "six.tar.gz", rebuild=True)
    assert "six" in other.manifest["packages"]
    assert _envtool_layers(docker_client, other.manifest["artifacts_image_id"]) == layers


def _envtool_layers(cl, image_id: str) -> list[str]:
    """The ids of the builder image's layers up to envtool's own install (Dockerfile.build)."""
    history = list(reversed(cl.api.history(image_id)))
    last = next(i for i, h in enumerate(history) if "install-envtool" in h["CreatedBy"])
    assert all(h["Id"] != "<missing>" for h in history[:last + 1])
    return [h["Id"] for h in history[:last + 1]]


def test_ctrl_c_during_a_docker_build_leaves_no_container_image_or_entry(build_image, docker_client, tmp_path):
    """SIGINT while the env is being packed in the image: exit 130, the step's container removed by the
    daemon, no new tagged image, nothing in the env cache, no output."""
    tags_before = {t: i.id for i in docker_client.images.list() for t in i.tags}
    # The raw list (no inspect per container): the builder's step containers come and go between the two.
    containers_before = {c["Id"] for c in docker_client.api.containers(all=True)}
    out = tmp_path / "e.tar.gz"
    unique = f"six!=0.0.{time.time_ns()}"  # a build arg no earlier build had: the last step really runs
    # pandas: the step downloads, installs, packs and imports it (several seconds), and the apt and envtool
    # layers before it are reused, so the signal lands in the step, not after the build
    # spawn: SIGINT as a terminal gives it (a suite started under nohup or as a background job ignores it, and
    # a bare Popen child inherits that: the build then finished, exit 0)
    proc = spawn([sys.executable, "-m", "envtool", "pack", "--python", "3.9", "--triton", "r22.11",
                  "--builder", "docker", "--base-image", build_image, "--pip", unique, "--pip", "pandas",
                  "-o", str(out)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env={**os.environ, "ENVTOOL_CACHE_DIR": str(tmp_path / "cache")})

    def new_containers() -> list[dict]:
        return [c for c in docker_client.api.containers(all=True) if c["Id"] not in containers_before]
    deadline = time.monotonic() + 300
    while not new_containers() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    # Until the last step's container (the pack) runs, then at once: the step takes only 2-3 s here
    while proc.poll() is None and time.monotonic() < deadline:
        if any("artifacts.sh build" in c.get("Command", "") and c.get("State") == "running"
               for c in new_containers()):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    deadline = time.monotonic() + 60
    while new_containers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not new_containers()
    assert {t: i.id for i in docker_client.images.list() for t in i.tags} == tags_before  # nothing (re)tagged
    assert not out.exists()
    assert not [p for p in (tmp_path / "cache" / "envs").glob("*") if not p.name.endswith(".lock")]


def test_an_image_newer_than_the_release_is_refused_before_building(bookworm_image, fixture_sources, tmp_path):
    out = run_cli("stub", "--triton", "r22.11", "--python", "3.9", "--builder", "docker", "--base-image",
                  bookworm_image, "--sources", fixture_sources, "--cache", tmp_path / "s")
    text = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"base image {bookworm_image} has glibc 2.36, newer than r22.11's 2.31" in text
    assert not [p for p in (tmp_path / "s").rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_a_python_the_image_cannot_get_is_one_line(build_image, tmp_path):
    out = run_cli("pack", "--python", "3.12", "--triton", "r22.11", "--builder", "docker", "--base-image",
                  build_image, "-o", tmp_path / "e.tar.gz")
    text = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "python3.12, which this image's apt sources do not have" in text and "full build log" in text
    assert not (tmp_path / "e.tar.gz").exists()


def _servers(docker_client, running_only: bool = False) -> set[str]:
    """The ids of envtool's server containers (a crashed earlier run's may still be there: compare with these)."""
    return {c.id for c in docker_client.containers.list(all=not running_only, filters={"label": "envtool"})}


def test_verify_with_the_docker_server(server_image, docker_client, tmp_path, server_tree_2410):
    before = _servers(docker_client)
    env = api.pack(api.PackSpec(python="3.9", triton="r24.10"), tmp_path / "custom_env.tar.gz").output
    repo = pipeline(tmp_path / "repo")
    api.inject(api.InjectOptions(repo=repo, stub=api.stub("r24.10", "3.9", root=tmp_path / "s").path, env=env,
                                 models=("pre", "post", "lonely")))
    out = run_cli("verify", repo, "--triton", "r24.10", "--server", "docker", "--image", server_image, "--json")
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    report = json.loads(out.stdout)
    assert report["server"]["kind"] == "docker" and report["server"]["version"] == "2.51.0"
    assert {i["protocol"] for i in report["inferences"] if i["ok"]} == {"http", "grpc"}
    lock = json.loads((tmp_path / "envtool.lock").read_text())
    assert lock["server"]["image_id"].startswith("sha256:")
    assert _servers(docker_client) <= before



def test_docker_server_is_removed_when_envtool_is_terminated(server_image, docker_client, tmp_path):
    repo = write_repo(tmp_path / "repo", {"slow": python_model("slow", [("IN", "TYPE_FP32", [-1])],
                                                               [("OUT", "TYPE_FP32", [-1])])}, SLOW_INIT_PY)
    env = api.pack(api.PackSpec(python="3.9", triton="r24.10"), tmp_path / "custom_env.tar.gz").output
    api.inject(api.InjectOptions(repo=repo, stub=api.stub("r24.10", "3.9", root=tmp_path / "s").path, env=env))
    before = _servers(docker_client)
    proc = subprocess.Popen([sys.executable, "-m", "envtool", "verify", str(repo), "--triton", "r24.10",
                             "--server", "docker", "--image", server_image], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while not _servers(docker_client, running_only=True) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _servers(docker_client, running_only=True) - before, "the server container never started"
    time.sleep(3)  # the model is in its 60 s initialize
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]
    assert _servers(docker_client) <= before


def test_no_daemon_and_no_image_are_one_line(tmp_path, docker_client):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    out = subprocess.run([sys.executable, "-m", "envtool", "stub", "--triton", "r24.10", "--python", "3.9",
                          "--builder", "docker", "--cache", str(tmp_path / "s")], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 2 and "no Docker daemon answers" in out.stderr and "--builder prebuilt" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("stub", "--triton", "r24.10", "--python", "3.9", "--builder", "docker", "--base-image",
                  "envtool-test/absent:0", "--cache", tmp_path / "s")
    assert out.returncode == 2 and "envtool-test/absent:0 is not on this machine" in out.stderr
    assert not [p for p in (tmp_path / "s").iterdir() if p.name != "targets"]
    out = run_cli("verify", pipeline(tmp_path / "repo"), "--triton", "r24.10", "--server", "docker")
    assert out.returncode == 2 and "nvcr.io/nvidia/tritonserver:24.10-py3" in out.stderr


def test_a_rebuild_drops_the_image_it_took_the_tag_from(build_image, docker_client, tmp_path):
    """Each stub/env build retags envtool/<what>:<cell>; the image it replaced (1.3 GB) must not pile up as
    <none>, unless something else still names it."""
    def build(text: str):
        (tmp_path / "Dockerfile").write_text(f"FROM {build_image}\nRUN echo {text} > /marker\n")
        return engine.build(docker_client, tmp_path, dockerfile="Dockerfile", tag="envtool-test/rebuilt:1")
    try:
        first = build("one")
        docker_client.images.get(first.id).tag("envtool-test/kept", "1")  # a second name keeps it
        second = build("two")
        assert docker_client.images.get(first.id).tags == ["envtool-test/kept:1"]
        docker_client.images.remove("envtool-test/kept:1")
        third = build("three")
        assert third.id != second.id
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(second.id)
    finally:
        for tag in ("envtool-test/rebuilt:1", "envtool-test/kept:1"):
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(tag)


def test_shm_size_follows_the_python_instances(tmp_path):
    def repo(count: int) -> Path:
        cfg = python_model("m", [("IN", "TYPE_FP32", [-1])], [("OUT", "TYPE_FP32", [-1])])
        return write_repo(tmp_path / f"r{count}", {"m": cfg.replace("count: 1", f"count: {count}")})
    assert shm_size(repo(1)) == SHM_MIN
    assert shm_size(repo(8)) == 9 * SHM_PER_INSTANCE


def test_build_with_the_docker_builder_makes_stub_and_env_in_the_image(build_image, fixture_sources, tmp_path):
    env = api.PackSpec(python="3.9", builder="docker", base_image=build_image)
    res = api.build(api.BuildSpec(python="3.9", triton="r24.10", env=env, builder="docker", base_image=build_image,
                                  sources=fixture_sources, stubs_root=tmp_path / "stubs",
                                  env_output=tmp_path / "custom_env.tar.gz"))
    assert res.stub.manifest["builder"] == res.env.manifest["builder"] == "docker"
    assert res.stub.manifest["python"] == "3.9" and res.env.manifest["python"].startswith("3.9.")
    assert set(res.timings) == {"stub_s", "env_s", "preflight_s"}  # no --repo: stops after the preflight


def test_doctor_reads_glibc_and_libstdcxx_from_an_image(bookworm_image, tmp_path):
    """A pyenv Python needs GLIBC 2.35: refused against r22.11's catalog image (Ubuntu 20.04, 2.31), fine
    against the Debian 12 image whose runtime doctor reads with docker."""
    from envtool.containers.engine import runtime_versions
    assert runtime_versions(bookworm_image) == ("2.36", "3.4.30")
    stub = api.stub("r22.11", "3.8", root=tmp_path / "s").path
    env = api.pack(api.PackSpec(python="3.8"), tmp_path / "custom_env.tar.gz").output
    repo = write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [-1])],
                                                            [("OUT", "TYPE_FP32", [-1])])})
    # put there as for a server on this host (inject knows the stub's release from its store, and would refuse)
    api.inject(api.InjectOptions(repo=repo, stub=stub, env=env, models=("m",), target="host"))

    def rules(*args):
        out = run_cli("doctor", repo, "--triton", "r22.11", "--no-import-check", "--json", *args)
        return {f["rule"]: f for f in json.loads(out.stdout)["findings"]}
    assert "r22.11's image has 2.31" in rules()["env-glibc"]["message"]
    assert "env-glibc" not in rules("--image", bookworm_image)


# The headline command for its own release, with the real python_backend r22.11: opt-in, since GitHub is not
# reachable here. ENVTOOL_TEST_GIT_URL is an $ENVTOOL_GIT_URL template of local mirrors of the upstream
# repositories (python_backend, common, core, backend, pybind11, dlpack), e.g.
# file:///work/.mirror/{owner}+{name}/repo; the sources are fetched from it once into the cache dir.
GIT_URL = os.environ.get("ENVTOOL_TEST_GIT_URL")
UPSTREAM_REPOS = ("triton-inference-server/python_backend", "triton-inference-server/common",
                  "triton-inference-server/core", "triton-inference-server/backend", "pybind/pybind11",
                  "dmlc/dlpack")


def _missing_mirrors() -> list[str]:
    """The upstream repositories a file:// ENVTOOL_TEST_GIT_URL has no mirror of (a source build needs all)."""
    if not GIT_URL or not GIT_URL.startswith("file://"):
        return []
    return [r for r in UPSTREAM_REPOS
            if not Path(GIT_URL.format(owner=r.split("/")[0], name=r.split("/")[1])[len("file://"):]).is_dir()]


NEEDS_MIRRORS = pytest.mark.skipif(not GIT_URL or bool(_missing_mirrors()),
                                   reason="set ENVTOOL_TEST_GIT_URL to mirrors of all the upstream repositories "
                                   f"(missing: {', '.join(_missing_mirrors()) or 'the variable'})")


@pytest.fixture(scope="session")
def server_image_2211(docker_client):
    from envtool.catalog import normalize_release
    from envtool.servers.embedded import server_tree
    return images.server_image(docker_client, server_tree(normalize_release("r22.11")), "22.11", "bullseye")


@pytest.mark.server
@NEEDS_MIRRORS
def test_the_headline_command_serves_the_article_and_add_sub_in_r22_11(build_image, server_image_2211,
                                                                      tmp_path, monkeypatch):
    from envtool.catalog import normalize_release
    from envtool.stub.sources import cached_sources
    from tests.test_example import prepare_example
    monkeypatch.setenv("ENVTOOL_GIT_URL", GIT_URL)
    prepare_example(tmp_path)
    # Upstream's own example, as the r22.11 branch has it (the sources the build uses, fetched once).
    sources = cached_sources(normalize_release("r22.11"))
    add_sub = sources / "python_backend" / "examples" / "add_sub"
    (tmp_path / "add_sub_repo" / "add_sub" / "1").mkdir(parents=True)
    shutil.copy2(add_sub / "config.pbtxt", tmp_path / "add_sub_repo" / "add_sub" / "config.pbtxt")
    shutil.copy2(add_sub / "model.py", tmp_path / "add_sub_repo" / "add_sub" / "1" / "model.py")

    def build(repo: str = "model_repository", *extra: str) -> dict:
        out = run_cli("build", "--python", "3.9", "--triton", "r22.11", "--builder", "docker", "--base-image",
                      build_image, "-r", "envs/example.txt", "--repo", repo, "--verify", "--server", "docker",
                      "--image", server_image_2211, "--json", *extra, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
        return json.loads(out.stdout)
    res = build("model_repository", "--inputs", "model_repository/inputs.json")
    models = res["verify"]["models"]
    assert set(models) == {"ensemble_all", "preprocess", "minilm", "forest", "postprocess"}
    assert all(m["state"] == "READY" for m in models.values()), models
    assert res["verify"]["server"]["version"] == "2.28.0"
    easy, _, hard = next(i for i in res["verify"]["inferences"] if i["model"] == "ensemble_all")[
        "outputs"]["SCORE"]["sample"][:3]
    assert easy > hard
    # Upstream's add_sub served the same way, with the same stub and env.
    add = build("add_sub_repo")
    assert add["verify"]["models"]["add_sub"]["state"] == "READY"
    assert add["stub"]["reused"] and add["env"]["reused"]
    assert {i["protocol"] for i in add["verify"]["inferences"] if i["model"] == "add_sub" and i["ok"]} == \
        {"http", "grpc"}
    # add_sub's serving image FROM the r22.11 server stand-in (envtool image), verified as shipped, then started
    # with plain `docker run` (no envtool) and asked over HTTP
    img = run_cli("image", "add_sub_repo", "--triton", "r22.11", "-t", "envtool-test/add-sub:r22.11",
                  "--base-image", server_image_2211, "--json", cwd=tmp_path)
    assert img.returncode == 0, img.stderr[-3000:] + img.stdout[-3000:]
    shipped = json.loads(img.stdout)
    assert shipped["ok"] and shipped["verify"]["models"]["add_sub"]["state"] == "READY"
    assert shipped["labels"]["io.envtool.python"] == "3.9" and shipped["labels"]["io.envtool.triton.release"] == \
        "22.11"
    with images.plain_docker_run("envtool-test/add-sub:r22.11"):
        images.wait_http("http://127.0.0.1:8000/v2/health/ready", 300)
        import numpy as np
        import tritonclient.http as th
        a, b = np.array([1, 2, 3, 4], np.float32), np.array([0.5, 0.5, 0.5, 0.5], np.float32)
        tensors = [th.InferInput(n, [4], "FP32") for n in ("INPUT0", "INPUT1")]
        tensors[0].set_data_from_numpy(a)
        tensors[1].set_data_from_numpy(b)
        answer = th.InferenceServerClient("127.0.0.1:8000").infer("add_sub", tensors)
        assert np.allclose(answer.as_numpy("OUTPUT0"), a + b) and np.allclose(answer.as_numpy("OUTPUT1"), a - b)
    # Triton's no-argument probe ran in the release's image before every stub start and left the modes alone:
    # the launcher answered it (the stub itself, its libpython only in the env, exits 127 there: ---x------).
    stubs = [*tmp_path.glob("model_repository/*/triton_python_backend_stub*"),
             *tmp_path.glob("add_sub_repo/*/triton_python_backend_stub*")]
    assert len(stubs) >= 4 and all(p.stat().st_mode & 0o777 == 0o755 for p in stubs), \
        {str(p): oct(p.stat().st_mode) for p in stubs}
    # Everything fits the release: the stub and every ELF file in the env.
    stub = read_elf(tmp_path / res["stub"]["stub"])  # the store is stubs/ beside the command
    assert stub.libpython == "3.9" and version_key(stub.versions["GLIBC"]) <= version_key("2.31")
    env = tmp_path / "env"
    env.mkdir()
    with tarfile.open(res["env"]["output"]) as tar:
        tar.extractall(env)
    for path in elf_files(env):
        need = read_elf(path).versions
        assert version_key(need.get("GLIBC", "2.0")) <= version_key("2.31"), (path, need)
        assert version_key(need.get("GLIBCXX", "3.4")) <= version_key("3.4.28"), (path, need)
    doctor = run_cli("doctor", tmp_path / "model_repository", "--triton", "r22.11", "--json")
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["findings"] == [], doctor.stdout[-3000:]
    again = build("model_repository", "--inputs", "model_repository/inputs.json")
    assert again["stub"]["reused"] and again["env"]["reused"]


def test_a_two_cell_bake_makes_the_stubs_the_docker_builder_makes(build_image, fixture_sources, docker_client,
                                                                   tmp_path):
    """`envtool matrix --bake` run by BuildKit (docker buildx bake, docker driver): r22.11 and r23.04 x 3.9 in
    the bullseye stand-in give the stubs `envtool stub --builder docker` gives, by ELF facts and manifest."""
    if images.buildx() is None:
        pytest.skip("no docker-buildx plugin (Debian sid's package) could be installed")
    bake = tmp_path / "docker-bake.hcl"
    p = run_cli("matrix", "--triton", "r22.11,r23.04", "--python", "3.9", "--bake", bake, "--sources",
                fixture_sources, "--base-image", build_image)
    assert p.returncode == 0, p.stderr
    env = {**os.environ, "OUT": str(tmp_path / "out"), "ONLY": "stub"}
    run = subprocess.run(["docker", "buildx", "bake", "-f", str(bake), "--allow", "network.host", "--progress",
                          "plain"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    for release in ("22.11", "23.04"):
        made = json.loads((tmp_path / "out" / f"r{release}-py3.9" / "stub.json").read_text())
        baked = tmp_path / "out" / f"r{release}-py3.9" / "stubs" / Path(made["stub"]).parent.name
        ours = api.stub(f"r{release}", "3.9", builder="docker", base_image=build_image, sources=fixture_sources,
                        root=tmp_path / "stubs")
        a, b = read_elf(baked / "triton_python_backend_stub"), read_elf(ours.path)
        assert (a.libpython, a.needed, a.versions, a.runpath) == (b.libpython, b.needed, b.versions, b.runpath)
        manifest = json.loads((baked / "manifest.json").read_text())
        for key in ("release", "python", "python_used", "build_flags", "needed_libpython", "requires"):
            assert manifest[key] == ours.manifest[key], key


def _stand_in_flaked(report_json: str) -> bool:
    """The sid stand-in's known flakes: its r24.10 server (built for Ubuntu's glibc) took SIGSEGV in
    libtriton_python.so once, and once (2026-12-07) the server and the minilm stub both spun at 100% CPU
    without a system call during an inference (verify now ends that at its request deadline)."""
    try:
        report = json.loads(report_json)["verify"]
        hung = any((i.get("error") or "").startswith("no answer within") for i in report["inferences"])
        return hung or "Signal (11) received" in Path(report["server"]["log"]).read_text(errors="replace")
    except (ValueError, KeyError, TypeError, OSError):
        return False


@pytest.fixture(scope="session")
def sid_server_image(docker_client, server_tree_2410):
    """r24.10's server (the nvidia-pytriton 0.7.0 tree) in Debian's newest suite, which has Python 3.14: the
    stand-in for a user's own server image on a newer distro than the release's."""
    return images.server_image(docker_client, server_tree_2410, "24.10", "sid")


@pytest.mark.server
@NEEDS_MIRRORS
def test_python_3_14_is_built_for_and_served_in_its_own_image(sid_server_image, tmp_path, monkeypatch):
    """r24.10 x Python 3.14, which no release image has: pybind11 v3.0.1 in place of the release's pin, the
    warnings its newer compiler adds not fatal, numpy 2 (no numpy 1 exists for 3.14), the stub and env
    made in and judged against the image they run in (--target image:NAME), served there."""
    from envtool.catalog import normalize_release
    from envtool.stub.sources import cached_sources
    from tests.test_example import prepare_example
    monkeypatch.setenv("ENVTOOL_GIT_URL", GIT_URL)
    prepare_example(tmp_path)
    add_sub = cached_sources(normalize_release("r24.10")) / "python_backend" / "examples" / "add_sub"
    (tmp_path / "add_sub_repo" / "add_sub" / "1").mkdir(parents=True)
    shutil.copy2(add_sub / "config.pbtxt", tmp_path / "add_sub_repo" / "add_sub" / "config.pbtxt")
    shutil.copy2(add_sub / "model.py", tmp_path / "add_sub_repo" / "add_sub" / "1" / "model.py")
    target = f"image:{sid_server_image}"

    def build(repo: str, *extra: str) -> dict:
        args = ("build", "--python", "3.14", "--triton", "r24.10", "--builder", "docker", "--pybind11", "v3.0.1",
                "--target", target, "--repo", repo, "--verify", "--server", "docker", "--json", *extra)
        out = run_cli(*args, cwd=tmp_path)
        if out.returncode != 0 and _stand_in_flaked(out.stdout):
            # The stand-in's r24.10 server, built for Ubuntu's glibc, flakes on sid's glibc 2.43 with artifacts
            # that served in the other runs (a SIGSEGV, a spin: _stand_in_flaked). One more try, so the flake of
            # the stand-in does not hide what this test is about.
            out = run_cli(*args, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
        return json.loads(out.stdout)
    add = build("add_sub_repo")
    assert add["verify"]["models"]["add_sub"]["state"] == "READY"
    assert {i["protocol"] for i in add["verify"]["inferences"] if i["model"] == "add_sub" and i["ok"]} == \
        {"http", "grpc"}
    stub = add["stub"]
    assert read_elf(tmp_path / stub["stub"]).libpython == "3.14"
    assert stub["pybind11"]["tag"] == "v3.0.1" and stub["werror_relaxed"], stub
    assert stub["base_image"] == sid_server_image
    assert add["env"]["numpy"].startswith("2.") and add["env"]["python"].startswith("3.14"), add["env"]
    # The article's pipeline, with the same stub (its env has the example's packages).
    res = build("model_repository", "-r", "envs/example.txt", "--inputs", "model_repository/inputs.json")
    assert all(m["state"] == "READY" for m in res["verify"]["models"].values()), res["verify"]["models"]
    assert res["stub"]["reused"]
    easy, _, hard = next(i for i in res["verify"]["inferences"] if i["model"] == "ensemble_all")[
        "outputs"]["SCORE"]["sample"][:3]
    assert easy > hard
    # Judged against the release's own image instead, the same stub is refused, naming what it needs.
    doctor = run_cli("doctor", tmp_path / "add_sub_repo", "--triton", "r24.10", "--no-import-check", "--json")
    assert doctor.returncode != 0 and "GLIBC" in doctor.stdout, doctor.stdout[-2000:]
