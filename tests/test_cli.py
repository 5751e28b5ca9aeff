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


def test_a_usage_error_is_one_line_naming_the_help(tmp_path):
    res = CliRunner().invoke(cli.main, ["lint", str(tmp_path), "--bogus"], prog_name="envtool")
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1  # click 8.1 and 8.2 word the message differently
    assert lines[0].startswith("error: No such option") and lines[0].endswith("(fix: envtool lint --help)")


@pytest.mark.parametrize("args,words", [
    (["verify", "r", "--triton", "r24.10", "--timeout", "nan"], "'--timeout'"),
    (["verify", "r", "--triton", "r24.10", "--timeout", "-1"], "'--timeout'"),
    (["build", "--python", "3.9", "--triton", "r24.10", "--timeout", "inf"], "'--timeout'"),
    (["doctor", "--log", "x", "--stub-timeout", "-5"], "'--stub-timeout'"),
    (["serve", "r", "--triton", "r24.10", "--http-port", "70000"], "'--http-port'"),
    (["serve", "r", "--triton", "r24.10", "--http-port", "0"], "'--http-port'"),
    (["serve", "r", "--triton", "r24.10", "--http-port", "9000", "--grpc-port", "9000"], "must differ"),
])
def test_bad_numbers_are_refused_before_anything_runs(tmp_path, args, words):
    code, text = _run(*args)
    assert code == 2 and words in text and "Traceback" not in text
    assert len([x for x in text.splitlines() if x.strip()]) == 1


def _separate_streams() -> CliRunner:
    """stdout apart from stderr: click 8.1 mixes them unless told, 8.2 always keeps them apart."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


@pytest.mark.parametrize("fmt", ["--json", "--format=json", "sarif"])
def test_machine_formats_print_a_document_on_every_exit(monkeypatch, tmp_path, fmt):
    """A CI step `lint --format sarif > x.sarif` never uploads an empty file: bad input, usage errors and
    crashes print a valid document too."""
    import json
    flag = ["--format", "sarif"] if fmt == "sarif" else [fmt]
    for args, code in (([str(tmp_path / "nope")], 2), ([str(tmp_path), "--bogus"], 2), ([str(tmp_path)], 3)):
        if code == 3:
            monkeypatch.setattr(api, "lint", _crash)
        res = _separate_streams().invoke(cli.main, ["lint", *args, *flag])
        assert res.exit_code == code, res.output
        doc = json.loads(res.stdout)
        if fmt == "sarif":
            run = doc["runs"][0]
            assert doc["version"] == "2.1.0" and run["invocations"][0]["executionSuccessful"] is False
        else:
            assert doc["exit_code"] == code and doc["error"]
