from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envtool.builders.env import PackSpec
from envtool.env.interpreters import Interpreter, candidates, find_interpreter, probe
from envtool.errors import BadInput

ALL = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
HAVE = [v for v in ALL if any(src == "pyenv" for _, src in candidates(v))]


@pytest.mark.parametrize("xy", HAVE)
def test_finds_each_pyenv_python_with_its_shared_libpython(xy):
    it = find_interpreter(xy)
    assert it.xy == xy and it.shared
    assert it.libpython.name == f"libpython{xy}.so.1.0" and it.libpython.is_file()


def test_full_version_is_accepted():
    if not HAVE:
        pytest.skip("no pyenv Pythons on this machine")
    it = find_interpreter(HAVE[0])
    spec = PackSpec(python=it.version)  # 3.8.18: the request keeps X.Y, and the newest 3.8 is the one found
    assert spec.python == HAVE[0] and find_interpreter(spec.python).version == it.version


def test_given_interpreter_of_another_version_is_refused():
    other = next(v for v in ALL if v != f"{sys.version_info.major}.{sys.version_info.minor}")
    with pytest.raises(BadInput, match=f"not {other}"):
        find_interpreter(other, given=Path(sys.executable))


def test_given_non_python_is_refused():
    with pytest.raises(BadInput, match="not a working CPython"):
        find_interpreter("3.11", given=Path("/bin/true"))


def test_missing_version_lists_what_was_seen_and_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))  # an empty pyenv: nothing of 3.8 anywhere
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", f"/usr/bin{os.pathsep}/bin")  # no pyenv shims on PATH either
    with pytest.raises(BadInput) as e:
        find_interpreter("3.8")
    assert "pyenv install 3.8" in e.value.fix and "uv python install 3.8" in e.value.fix


def test_probe_reports_shared_build_facts():
    it = probe(Path(sys.executable), "given")
    assert it is not None and it.version.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")


def _hide_managed(monkeypatch, tmp_path) -> None:
    """No pyenv, no uv: what PATH names is all there is (a user with another Python manager)."""
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "no-uv"))


def _pyenv_xy_not_in_system() -> tuple[str, Interpreter]:
    for xy in HAVE:
        if not any(Path(d, f"python{xy}").exists() for d in ("/usr/bin", "/usr/local/bin")):
            return xy, find_interpreter(xy)
    pytest.skip("every pyenv Python here is also a system one")


def test_a_python_on_path_through_a_shim_is_found_as_the_install_behind_it(monkeypatch, tmp_path):
    xy, real = _pyenv_xy_not_in_system()
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / f"python{xy}"
    shim.write_text(f'#!/bin/sh\nexec "{real.executable}" "$@"\n')  # what pyenv's and asdf's shims do
    shim.chmod(0o755)
    _hide_managed(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}/usr/bin{os.pathsep}/bin")
    it = find_interpreter(xy)
    assert it.source == "path" and it.usable
    assert it.executable == real.executable and it.prefix == real.prefix


def test_a_virtualenvs_python_on_path_resolves_to_its_base_install(monkeypatch, tmp_path):
    xy, real = _pyenv_xy_not_in_system()
    subprocess.run([str(real.executable), "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    _hide_managed(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path / 'venv' / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    it = find_interpreter(xy)
    assert it.source == "path" and it.executable == real.executable and it.libpython == real.libpython
