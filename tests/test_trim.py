"""What trim keeps although its patterns match (envtool/env/trim.py), read from a package's own code, and
conda-pack's real filters packing it (condapack.load_env): numpy 2's shape (numpy.testing imports
numpy._core.tests._natype) and lazy_loader's (attach_stub reads the .pyi beside a module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from envtool.env.condapack import load_env
from envtool.env.trim import needed_anyway

XY = f"{sys.version_info[0]}.{sys.version_info[1]}"
SITE = f"lib/python{XY}/site-packages"
FILES = {
    "nump/__init__.py": "from . import testing\n",
    "nump/testing/__init__.py": "from ._private.utils import NA\n",
    "nump/testing/_private/__init__.py": "",
    "nump/testing/_private/utils.py": "from nump._core.tests._natype import NA\n",
    "nump/_core/__init__.py": "",
    "nump/_core/tests/__init__.py": "",
    "nump/_core/tests/_natype.py": "NA = 'NA'\n",
    "nump/_core/tests/test_x.py": "def test(): pass\n",
    "nump/conftest.py": "from nump._core.tests import test_x\n",  # test code: its imports do not count
    "rel/__init__.py": "from .sub import H\n",
    "rel/sub/__init__.py": "from ..tests import helper\nH = helper.H\n",
    "rel/tests/__init__.py": "",
    "rel/tests/helper.py": "H = 1\n",
    "rel/tests/test_rel.py": "",
    "lazy/__init__.py": "import lazy_loader as lazy\n__getattr__, __dir__, __all__ = lazy.attach_stub(__name__, __file__)\n",
    "lazy/__init__.pyi": "from .core import f\n",
    "lazy/core.py": "def f():\n    return 3\n",
    "lazy/other.pyi": "def g() -> int: ...\n",  # a typing stub no one reads
}


@pytest.fixture
def prefix(tmp_path) -> Path:
    (tmp_path / "conda-meta").mkdir()
    (tmp_path / "conda-meta" / "history").write_text("")
    for rel, text in FILES.items():
        (tmp_path / SITE / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / SITE / rel).write_text(text)
    return tmp_path


def test_modules_and_stubs_that_code_outside_tests_uses_are_kept(prefix):
    keep = needed_anyway(prefix / SITE, prefix)
    assert keep == {
        f"{SITE}/nump/_core/tests/__init__.py": "imported by nump/testing/_private/utils.py",
        f"{SITE}/nump/_core/tests/_natype.py": "imported by nump/testing/_private/utils.py",
        f"{SITE}/rel/tests/__init__.py": "imported by rel/sub/__init__.py",
        f"{SITE}/rel/tests/helper.py": "imported by rel/sub/__init__.py",
        f"{SITE}/lazy/__init__.pyi": "lazy_loader.attach_stub reads it (lazy/__init__.py)",
    }


def test_conda_pack_packs_them_and_trims_the_rest(prefix):
    keep = needed_anyway(prefix / SITE, prefix)
    packed = {f.target for f in load_env(prefix, trim=True, keep=keep).files}
    assert set(keep) <= packed
    dropped = {f"{SITE}/nump/_core/tests/test_x.py", f"{SITE}/rel/tests/test_rel.py", f"{SITE}/lazy/other.pyi"}
    assert not dropped & packed
    assert dropped <= {f.target for f in load_env(prefix, trim=False).files}
    # what was packed imports: the files conda-pack lists, copied out and imported by this Python
    out = prefix.parent / "packed"
    for target in packed:
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        (out / target).write_bytes((prefix / target).read_bytes())
    run = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "import nump, rel; print(nump.testing.NA, rel.H)", str(out / SITE)],
                         capture_output=True, text=True)
    assert run.stdout.split() == ["NA", "1"], run.stderr
