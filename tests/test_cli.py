"""The CLI's contract for failures: a bug is exit 3 with one line (the traceback only with --debug or
ENVTOOL_DEBUG=1), never the exit code of a verdict."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from envtool import api, cli


def _crash(*_a, **_kw):
    raise ZeroDivisionError("division by zero")


@pytest.fixture
def crashing_lint(monkeypatch):
    monkeypatch.setattr(api, "lint", _crash)
    monkeypatch.delenv("ENVTOOL_DEBUG", raising=False)


def _run(*args: str, env: dict | None = None):
    res = CliRunner().invoke(cli.main, list(args), env=env)
    return res.exit_code, res.output  # stdout and stderr together (click 8.1 and 8.2)


def test_a_crash_is_exit_3_and_one_line(crashing_lint, tmp_path):
    code, text = _run("lint", str(tmp_path))
    assert code == 3 and "Traceback" not in text
    lines = [x for x in text.splitlines() if x.strip()]
    assert lines == ["envtool crashed: ZeroDivisionError: division by zero; rerun with --debug for the traceback; "
                     "please report it"]


@pytest.mark.parametrize("how", ["--debug", "ENVTOOL_DEBUG"])
def test_debug_shows_the_traceback(crashing_lint, tmp_path, how):
    args, env = (["--debug"], None) if how == "--debug" else ([], {"ENVTOOL_DEBUG": "1"})
    code, text = _run(*args, "lint", str(tmp_path), env=env)
    assert code == 3 and "Traceback" in text and "ZeroDivisionError" in text


def test_usage_errors_stay_clicks(tmp_path):
    assert _run("lint")[0] == 2  # missing argument: click's usage error, not a crash
    assert _run("lint", str(tmp_path / "nope"))[0] == 2  # BadInput


def test_text_output_does_not_wrap_when_piped(tmp_path):
    """Off a terminal (a pipe, a CI log) each finding stays on one line, however long."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import FIXTURES
    shutil.copytree(FIXTURES / "article", tmp_path / "article")
    p = subprocess.run([sys.executable, "-m", "envtool", "lint", "article"], capture_output=True, text=True,
                       cwd=tmp_path)
    line = next(x for x in p.stdout.splitlines() if "env-path" in x or "is relative" in x)
    assert len(line) > 100 and "server's working directory, not the model folder" in line
