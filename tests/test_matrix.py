"""envtool matrix: every (release, Python) cell made as build makes it, checked, served where asked; a cell
that cannot exist says why; --bake writes the matrix for BuildKit."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from envtool import api, catalog, matrix
from tests.conftest import needs_python, run_cli


def why(release: str, python: str) -> str | None:
    return matrix.impossible(catalog.normalize_release(release), python)


def test_cells_that_cannot_exist_say_why_in_words_to_act_on():
    assert "invalid use of incomplete type 'PyFrameObject'" in why("r22.11", "3.11")
    assert "use Python 3.10 or older" in why("r22.11", "3.11")
    assert "numpy 1.x has no build for Python 3.13" in why("r24.10", "3.13")
    assert "r24.11+" in why("r24.10", "3.14")
    assert "not known to build for Python 3.14" in why("r25.01", "3.14")
    assert "pre-release" in why("r24.10", "3.15")
    assert why("r22.11", "3.10") is None and why("r24.10", "3.12") is None and why("r25.01", "3.13") is None


def test_the_fifteen_releases_with_a_server_here_leave_73_possible_cells():
    """15 releases x 3.8-3.14: 3.13 and 3.14 need numpy 2 (none of these stubs reads it), and r22.11's
    pybind11 2.6 stops at 3.10. Of the rest, 62 have NVIDIA's prebuilt stub."""
    rels = [r for r in catalog.releases() if r.embedded_available]
    cells = matrix.plan(rels, catalog.python_facts()["matrix"])
    possible = [c for c in cells if not c.why]
    assert len(rels) == 15 and len(cells) == 105 and len(possible) == 73
    prebuilt = [c for c in possible if c.python in catalog.normalize_release(c.release).pytriton_stub_pythons]
    assert len(prebuilt) == 62


def test_bad_matrix_input_is_one_line(tmp_path):
    p = run_cli("matrix", "--triton", "r24.10", "--python", "3.7")
    assert p.returncode == 2 and "3.7" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_cli("matrix", "--triton", "r99.01", "--python", "3.9")
    assert p.returncode == 2 and "unknown Triton release" in p.stderr


def test_bake_file_has_one_target_per_possible_cell(tmp_path):
    src = tmp_path / "src"
    (src / "python_backend").mkdir(parents=True)
    (src / "python_backend" / "CMakeLists.txt").write_text("project(x)\n")
    out = tmp_path / "bake" / "docker-bake.hcl"
    out.parent.mkdir()
    p = run_cli("matrix", "--triton", "r22.11,r24.10", "--python", "3.9,3.11", "--bake", out, "--sources", src,
                "--base-image", "stand-in:1", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["targets"] == ["r22_11-py3_9", "r24_10-py3_9", "r24_10-py3_11"]  # r22.11 x 3.11 cannot be
    text = out.read_text()
    assert 'network = "host"' in text and 'target = "artifacts"' in text and "type=local" in text
    ctx = out.parent / "docker-bake.contexts" / "r24.10"
    assert (ctx / "Dockerfile.build").is_file() and (ctx / ".envtool-inputs/sources/python_backend").is_dir()
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "buildx", "version"], capture_output=True).returncode == 0:
        printed = subprocess.run([docker, "buildx", "bake", "-f", str(out), "--print"], capture_output=True,
                                 text=True, cwd=out.parent)
        assert printed.returncode == 0, printed.stderr
        targets = json.loads(printed.stdout)["target"]
        assert targets["r24_10-py3_11"]["args"] == {"BASE_IMAGE": "stand-in:1", "ONLY": "", "PYTHON": "3.11",
                                                    "REQUIREMENTS": "", "TRITON": "24.10", "PYBIND11": "",
                                                    "NUMPY2": "0", "TARGET": "release"}
    # For a server image of the user's own, every cell is built in it and for it (TARGET=host inside).
    own = tmp_path / "own" / "docker-bake.hcl"
    own.parent.mkdir()
    p = run_cli("matrix", "--triton", "r24.10", "--python", "3.12", "--bake", own,
                "--sources", src, "--target", "image:my/triton-sid:1", "--json")
    assert p.returncode == 0, p.stderr
    text = own.read_text()
    assert '"my/triton-sid:1"' in text and 'default = "host"' in text and "TARGET = TARGET" in text
    assert json.loads(p.stdout)["targets"] == ["r24_10-py3_12"]
    refused = run_cli("matrix", "--triton", "r24.10", "--bake", own, "--target", "host")
    assert refused.returncode == 2 and "--target release" in refused.stderr and "Traceback" not in refused.stderr
    bad = run_cli("matrix", "--triton", "r24.10", "--target", "imag:x")
    assert bad.returncode == 2 and "release, host or image:NAME" in bad.stderr


@pytest.mark.server
@needs_python("3.9")
def test_a_prebuilt_cell_is_made_checked_and_served(tmp_path, server_tree_2410):
    cells = api.matrix(["r24.10"], ["3.9", "3.13"], verify=True, stubs_root=tmp_path / "stubs")
    served, impossible = cells
    assert served.status == "served" and served.elf == "fits" and served.made.startswith("prebuilt"), served
    assert impossible.status == "impossible" and "numpy 1.x" in impossible.why
