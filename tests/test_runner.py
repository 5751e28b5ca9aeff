"""envtool.runner with real programs: a missing one is one line naming what to install, a failure keeps
the tail of its output, a hang is cut at the timeout, verbose mode shows the command."""

from __future__ import annotations

import pytest

from envtool.errors import BadInput
from envtool.runner import Timeout, run


def test_a_missing_program_names_what_to_install():
    with pytest.raises(BadInput) as e:
        run(["git-envtool-nonexistent", "--version"], why="to fetch sources")
    assert e.value.message == "git-envtool-nonexistent is not installed (needed to fetch sources)"
    with pytest.raises(BadInput) as e:
        run(["/nonexistent/bin/bsdtar"])
    assert "/nonexistent/bin/bsdtar does not exist" in e.value.message


def test_a_permission_error_from_exec_is_one_line(tmp_path, monkeypatch):
    """exec() gives EACCES, not ENOENT, where a PATH entry cannot be run (an unreadable folder, as root's pyenv
    shims on the PATH of `su user`; here a file without x bits, which root cannot run either): still one line
    naming what to install when nothing runnable is on PATH; a given path that may not run says so."""
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    for name in ("git-envtool-nonexistent", "tool"):
        (shelf / name).write_text("#!/bin/sh\n")
        (shelf / name).chmod(0o644)
    monkeypatch.setenv("PATH", f"{shelf}:/nonexistent")
    with pytest.raises(BadInput) as e:
        run(["git-envtool-nonexistent", "--version"], why="to fetch sources")
    assert e.value.message == "git-envtool-nonexistent is not installed (needed to fetch sources)"
    with pytest.raises(BadInput) as e:
        run([str(shelf / "tool")])
    assert e.value.message == f"{shelf / 'tool'}: permission denied" and "chmod +x" in e.value.fix


def test_known_programs_name_their_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BadInput) as e:
        run(["git", "--version"])
    assert e.value.fix == "apt-get install git"


def test_a_failure_keeps_the_tail_of_its_output():
    with pytest.raises(BadInput) as e:
        run(["sh", "-c", "echo one >&2; echo two >&2; echo three >&2; echo four >&2; exit 3"], check="the step")
    assert e.value.message == "the step failed: two | three | four"
    assert run(["sh", "-c", "exit 3"]).returncode == 3  # without check the caller reads it


def test_a_hang_is_cut_at_the_timeout():
    with pytest.raises(Timeout) as e:
        run(["sleep", "30"], timeout=0.5)
    assert e.value.message == "sleep did not finish within 0.5 s"
    assert "sleep 30" in e.value.fix


def test_verbose_shows_the_command(monkeypatch, capsys):
    monkeypatch.setenv("ENVTOOL_VERBOSE", "1")
    run(["echo", "a b"])
    assert capsys.readouterr().err == "$ echo 'a b'\n"
