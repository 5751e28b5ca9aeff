"""Injected repositories served by a real Triton (r24.10 from its nvidia-pytriton wheel)."""

import os

import pytest

from envtool import api
from envtool.servers.embedded import EmbeddedServer
from tests.test_inject import pipeline

pytestmark = pytest.mark.server


def serve_and_infer(r2410, repo):
    with EmbeddedServer(r2410, repo) as server:
        server.wait_live()
        states = server.model_states()
        body = {"inputs": [{"name": "X", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}
        status, out = server.get("/v2/models/ens/infer", "POST", body)
        extracted = server.extracted_envs()
    # nothing of its own left in /tmp after the server stops (a server on another test worker may have some)
    assert not [d for d in extracted if os.path.exists(d)]
    return states, out, server, extracted


@pytest.mark.parametrize("share,extractions", [(True, 1), (False, 2)])
def test_shared_env_is_extracted_once(tmp_path, r2410, host_stub, thin_env_tarball, share, extractions):
    repo = pipeline(tmp_path / "repo")
    api.inject(api.InjectOptions(repo=repo, stub=host_stub, env=thin_env_tarball, share=share))
    states, out, server, extracted = serve_and_infer(r2410, repo)
    log = server.log()
    assert states["pre"]["state"] == states["post"]["state"] == "READY", log[-3000:]
    assert out["outputs"][0]["data"] == [3.0, 4.0, 5.0]  # +1 in pre, +1 in post
    assert len(extracted) == extractions, extracted
    assert log.count("custom_env.tar.gz") >= 2  # both models were given the env
