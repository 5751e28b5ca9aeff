"""Every module of envtool imports on the Python running the tests: CI runs this file (and most of the
suite) under Python 3.8 too, the Python of the r20.12-r23.04 NGC images envtool must run in."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import envtool

MODULES = sorted(m.name for m in pkgutil.walk_packages(envtool.__path__, "envtool."))


def test_every_module_is_found():
    assert {"envtool.cli", "envtool.builders.stub", "envtool.builders.docker", "envtool.servers.embedded"} \
        <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)


def test_the_cli_answers():
    out = subprocess.run([sys.executable, "-m", "envtool", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "build" in out.stdout and "doctor" in out.stdout
