"""Packages as bytecode alone (envtool/env/sourceless.py), on a site-packages compiled by this Python and
imported by it: what ships, what keeps its sources and why, and that the result imports."""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
from pathlib import Path

import pytest

from envtool.env.sourceless import make_sourceless, reads_own_source

XY = f"{sys.version_info[0]}.{sys.version_info[1]}"

PLAIN = '''from . import helper
DATA = (__import__("pathlib").Path(__file__).parent / "data.txt").read_text().strip()
def answer():
    return helper.double(21)
'''
COMPILER = '''import ast, inspect
def compile_fn(fn):
    return ast.parse(inspect.getsource(fn))
'''


@pytest.fixture
def prefix(tmp_path) -> Path:
    site = tmp_path / "lib" / f"python{XY}" / "site-packages"
    (site / "plain").mkdir(parents=True)
    (site / "plain" / "__init__.py").write_text(PLAIN)
    (site / "plain" / "helper.py").write_text("def double(x):\n    return 2 * x\n")
    (site / "plain" / "data.txt").write_text("read at import\n")
    (site / "single.py").write_text("VALUE = 7\n")
    (site / "jitlike").mkdir()
    (site / "jitlike" / "__init__.py").write_text("from .frontend import compile_fn\n")
    (site / "jitlike" / "frontend.py").write_text(COMPILER)
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text("X = 1\n")
    assert compileall.compile_dir(str(site), quiet=1, invalidation_mode=compileall.py_compile.PycInvalidationMode
                                  .UNCHECKED_HASH)
    return tmp_path


def test_modules_ship_as_bytecode_alone_and_still_import(prefix):
    out = make_sourceless(prefix, XY, lambda m: None)
    site = prefix / "lib" / f"python{XY}" / "site-packages"
    assert out.files == 3  # plain/__init__, plain/helper, single
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()
                  and p.parts[-2] not in ("jitlike", "torch") and "__pycache__" not in p.parts) == [
        "plain/__init__.pyc", "plain/data.txt", "plain/helper.pyc", "single.pyc"]
    assert not (site / "plain" / "__pycache__").exists()
    code = ("import json, plain, single, jitlike; print(json.dumps([plain.answer(), plain.DATA, single.VALUE, "
            "plain.__file__, jitlike.compile_fn(plain.answer) is None]))")
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
                         capture_output=True, text=True, cwd=prefix)
    assert run.returncode != 0 and "OSError" in run.stderr  # getsource of a sourceless function: what is lost
    code = code.replace(", jitlike.compile_fn(plain.answer) is None", "")
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
                         capture_output=True, text=True, cwd=prefix, check=True)
    assert json.loads(run.stdout) == [42, "read at import", 7, str(site / "plain" / "__init__.pyc")]


def test_packages_that_compile_their_own_source_keep_it(prefix):
    site = prefix / "lib" / f"python{XY}" / "site-packages"
    out = make_sourceless(prefix, XY, lambda m: None)
    assert set(out.kept) == {"jitlike", "torch"}
    assert "jitlike/frontend.py parses source text" in out.kept["jitlike"]
    assert "TorchScript" in out.kept["torch"]
    assert (site / "jitlike" / "frontend.py").is_file() and (site / "torch" / "__init__.py").is_file()
    assert list((site / "jitlike" / "__pycache__").glob("frontend.*.pyc"))  # its bytecode stays where it was
    assert reads_own_source(site / "plain") is None
    assert out.manifest()["kept_sources"] == out.kept


def test_a_module_without_bytecode_keeps_its_source(prefix):
    site = prefix / "lib" / f"python{XY}" / "site-packages"
    (site / "plain" / "template.py").write_text("{{ not python }}\n")  # compileall could not compile it
    make_sourceless(prefix, XY, lambda m: None)
    assert (site / "plain" / "template.py").is_file()


CV2_LIKE = {  # the shape of OpenCV's loader (cv2/__init__.py, cv2/load_config_py3.py): config.py run with exec
    "__init__.py": "import os\nfrom .load_config import exec_file\nHERE = os.path.dirname(__file__)\n"
                   "CONF = {}\nexec_file(os.path.join(HERE, 'config.py'), CONF)\nPATHS = CONF['PATHS']\n",
    "load_config.py": "def exec_file(path, g):\n    with open(path) as f:\n"
                      "        exec(compile(f.read(), path, 'exec'), g)\n",
    "config.py": "PATHS = ['lib']\n",
}


def test_a_package_that_executes_its_own_py_files_keeps_them(tmp_path):
    """A loader that runs config.py beside itself (OpenCV's) fails as bytecode alone: its sources stay, and it
    imports; a package that only opens files or only executes code it builds does not lose its bytecode."""
    site = tmp_path / "lib" / f"python{XY}" / "site-packages"
    for rel, text in {**{f"confy/{k}": v for k, v in CV2_LIKE.items()},
                      "opener/__init__.py": "import os\nTEXT = open(os.path.join(os.path.dirname(__file__), "
                                            "'x.txt')).read() if False else ''\n",
                      "builder/__init__.py": "exec(compile('X = 1', '<gen>', 'exec'))\n"}.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    assert compileall.compile_dir(str(site), quiet=1, invalidation_mode=compileall.py_compile.PycInvalidationMode
                                  .UNCHECKED_HASH)
    out = make_sourceless(tmp_path, XY, lambda m: None)
    assert list(out.kept) == ["confy"] and "executes .py files it opens" in out.kept["confy"], out.kept
    assert (site / "confy" / "config.py").is_file() and (site / "opener" / "__init__.pyc").is_file()
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); "
                          "import confy, builder; print(confy.PATHS, builder.X)"], capture_output=True, text=True)
    assert run.stdout.split() == ["['lib']", "1"], run.stderr
