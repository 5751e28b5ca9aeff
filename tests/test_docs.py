"""The docs cannot drift from the tool: the command reference is the CLI's own help, the log-line table is
diagnoses.toml, the compatibility page is its JSON (docs/gen.py --check), and the site builds with --strict."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_pages_are_current():
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "gen.py"), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_the_reference_holds_every_commands_help_as_the_cli_prints_it():
    from envtool.cli import main
    text = (ROOT / "docs" / "reference.md").read_text()
    for name, cmd in main.commands.items():
        assert f"## envtool {name}\n" in text
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert opt in text, (name, opt)
    help_text = subprocess.run([sys.executable, "-m", "envtool", "image", "--help"], capture_output=True,
                               text=True, env={"COLUMNS": "110", "PATH": "/usr/bin:/bin"}).stdout
    assert " ".join(help_text.split()[4:40]) in " ".join(text.split())  # the same words as `--help` prints
    assert isinstance(main, click.Group)


def test_the_troubleshooting_page_lists_every_cause_of_diagnoses_toml():
    from envtool.diagnose import cause_entries
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    for c in cause_entries():
        assert f"| `{c['id']}` |" in text, c["id"]
    assert "the stub links &lt;lib&gt;" in text  # a placeholder outside code: escaped, not an HTML tag


def test_the_readme_is_short_and_keeps_the_ci_entry_points():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 300
    assert "## Two commands on a fresh machine\n\n```bash\n" in text  # .ci/run runs the first command from here


def test_the_site_builds_strictly(tmp_path):
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").is_file()
