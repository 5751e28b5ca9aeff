"""`envtool image`: the build context (no Docker needed), then the article's pipeline for r24.10 built into a
real image FROM the bookworm stand-in of r24.10's server image, verified as shipped, started with plain
`docker run` (no envtool), rebuilt after a model.py change, pushed to a real local registry (Debian's
docker-registry) and pulled back. r22.11's add_sub image is built in test_docker's headline test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envtool import api
from envtool.errors import BadInput
from envtool.servers.base import free_ports
from tests.conftest import run_cli
from tests.docker_images import health, plain_docker_run, wait_http
from tests.test_docker import docker_client, server_image  # noqa: F401 (fixtures)
from tests.test_inject import pipeline

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture
def injected(tmp_path, host_stub, thin_env_tarball) -> Path:
    """A small injected repository (the inject tests' pipeline: ens = pre -> post) with NVIDIA's r24.10 stub and
    a thin env for the Python running the tests."""
    repo = pipeline(tmp_path / "repo")
    api.inject(api.InjectOptions(repo=repo, stub=host_stub, env=thin_env_tarball))
    (repo / "pre" / "1" / "weights.bin").write_bytes(bytes(2 << 20))
    return repo


def test_the_context_puts_envs_stubs_data_and_code_in_four_layers(injected, tmp_path):
    ctx = tmp_path / "ctx"
    res = api.image(api.ImageSpec(repo=injected, triton="r24.10", tag="pipe:1", base_image="tritonserver:x",
                                  dockerfile_only=ctx))
    files = {layer: sorted(p.relative_to(ctx / layer).as_posix() for p in (ctx / layer).rglob("*")
                           if p.is_file() or p.is_symlink()) for layer in ("env", "stub", "data", "models")}
    assert files["env"] == ["post/custom_env.tar.gz"]  # the shared env: pre links to it
    assert files["stub"] == ["post/triton_python_backend_stub", "post/triton_python_backend_stub.elf",
                             "pre/triton_python_backend_stub", "pre/triton_python_backend_stub.elf"]
    assert "pre/custom_env.tar.gz" in files["models"] and (ctx / "models/pre/custom_env.tar.gz").is_symlink()
    assert "pre/config.pbtxt" in files["models"] and "pre/1/model.py" in files["models"]
    text = (ctx / "Dockerfile").read_text()
    assert text.index("COPY env/") < text.index("COPY stub/") < text.index("COPY data/") < text.index("COPY models/")
    assert files["data"] == ["pre/1/weights.bin"]  # 1 MiB and more: its own layer
    assert (ctx / "stub/pre/triton_python_backend_stub.elf").stat().st_ino == \
        (ctx / "stub/post/triton_python_backend_stub.elf").stat().st_ino  # one copy in the layer
    assert "FROM tritonserver:x" in text and '"--strict-readiness=true"' in text and "HEALTHCHECK" in text
    assert 'tags       = ["pipe:1"]' in (ctx / "docker-bake.hcl").read_text()
    labels = res.labels
    assert labels["io.envtool.triton.release"] == "24.10" and labels["io.envtool.python"] == PY
    assert len(labels["io.envtool.stub.sha256"]) == 64 and len(labels["io.envtool.env.sha256"]) == 64
    assert f'io.envtool.env.sha256="{labels["io.envtool.env.sha256"]}"' in text


def test_what_cannot_ship_is_one_line_and_writes_nothing(injected, tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    (injected / "pre" / "1" / "notes.txt").symlink_to(outside)
    ctx = tmp_path / "ctx"
    with pytest.raises(BadInput, match="outside the repository"):
        api.image(api.ImageSpec(repo=injected, triton="r24.10", tag="pipe:1", dockerfile_only=ctx))
    assert not ctx.exists() and not list(tmp_path.glob(".envtool-image-*"))
    out = run_cli("image", injected, "--triton", "r24.10", "-t", "pipe:1", "--dockerfile-only", ctx)
    assert out.returncode == 2 and "outside the repository" in out.stderr and "Traceback" not in out.stderr
    bad = run_cli("image", injected, "--triton", "r24.10", "-t", "bad name", "--dockerfile-only", ctx)
    assert bad.returncode == 2 and "--tag" in bad.stderr


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Debian's docker-registry (the distribution registry) on a free port, storage in a temp folder."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("no docker-registry (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    port = free_ports(1)[0]
    (root / "config.yml").write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                                     f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", 30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        _untag(f"127.0.0.1:{port}/")


def _untag(prefix: str) -> None:
    """Tags a test gave images for this registry's port: each run has its own port, so they would pile up."""
    import docker
    client = docker.from_env()
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(prefix):
                client.images.remove(tag)


@pytest.mark.server
def test_the_pipeline_image_serves_as_shipped_rebuilds_one_layer_and_round_trips_a_registry(
        server_image, docker_client, registry, tmp_path):  # noqa: F811
    from tests.test_example import prepare_example
    prepare_example(tmp_path)
    out = run_cli("build", "--python", "3.9", "--triton", "r24.10", "-r", "envs/example.txt", "--repo",
                  "model_repository", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    tag = "envtool-test/pipeline:1"
    img = run_cli("image", "model_repository", "--triton", "r24.10", "-t", tag, "--base-image", server_image,
                  "--inputs", "model_repository/inputs.json", "--json", cwd=tmp_path)
    assert img.returncode == 0, img.stderr[-3000:] + img.stdout[-3000:]
    res = json.loads(img.stdout)
    models = res["verify"]["models"]
    assert set(models) == {"ensemble_all", "preprocess", "minilm", "forest", "postprocess"}
    assert all(m["state"] == "READY" for m in models.values()), models
    assert res["verify"]["server"]["kind"] == "docker"
    lock = json.loads((tmp_path / "envtool.lock").read_text())
    assert lock["server"]["image_id"] == res["image_id"] and lock["server"]["repo_in_image"] == "/models"
    labels = docker_client.images.get(tag).labels
    assert labels["io.envtool.triton.release"] == "24.10" and labels["io.envtool.python"] == "3.9"
    assert [x["layer"] for x in res["layers"]] == ["env", "stub", "data", "models"]
    assert res["layers"][0]["bytes"] > 50 * 2**20  # the env, in its own layer

    # A model.py change: only the models layer is built again
    model_py = tmp_path / "model_repository" / "postprocess" / "1" / "model.py"
    model_py.write_text(model_py.read_text() + "\n# a change\n")
    again = json.loads(run_cli("image", "model_repository", "--triton", "r24.10", "-t", tag, "--base-image",
                               server_image, "--no-verify", "--push", f"{registry}/pipeline:1", "--json",
                               cwd=tmp_path).stdout)
    assert [x["reused"] for x in again["layers"]] == [True, True, True, False], again["layers"]
    env, _, data, code = (x["bytes"] for x in again["layers"])
    assert code * 10 < min(env, data)  # what a push of this change sends: configs, code, small files
    assert again["image_id"] != res["image_id"] and again["pushed"]["digest"].startswith("sha256:")

    # Pulled back from the registry (the local copy removed first) and started with plain docker run
    ref = f"{registry}/pipeline:1"
    docker_client.images.remove(ref)
    pulled = subprocess.run(["docker", "pull", ref], capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    with plain_docker_run(ref) as cid:
        wait_http("http://127.0.0.1:8000/v2/health/ready", 300)
        import tritonclient.http as th
        client = th.InferenceServerClient("127.0.0.1:8000")
        assert all(client.is_model_ready(m) for m in models)
        inputs = json.loads((tmp_path / "model_repository" / "inputs.json").read_text())["ensemble_all"]
        import numpy as np
        excerpt = np.array([t.encode() for t in inputs["excerpt"]], dtype=object)
        weight = np.array(inputs["BERT_WEIGHT"], dtype=np.float32)
        tensors = [th.InferInput("excerpt", [len(excerpt)], "BYTES"), th.InferInput("BERT_WEIGHT", [1], "FP32")]
        tensors[0].set_data_from_numpy(excerpt)
        tensors[1].set_data_from_numpy(weight)
        score = client.infer("ensemble_all", tensors).as_numpy("SCORE")
        easy, _, hard = score[:, 0]
        assert easy > hard  # the same verdict envtool's verify gave
        assert score.shape == (len(excerpt), 1)
        deadline = time.monotonic() + 60
        while health(cid) != "healthy" and time.monotonic() < deadline:
            time.sleep(2)
        assert health(cid) == "healthy"
    assert os.environ.get("DOCKER_HOST") is None or docker_client.containers.list(all=True, filters={
        "ancestor": ref}) == []
