"""Pure-Python packages in one zip (envtool/env/sitezip.py), on a site-packages compiled and made sourceless
by this Python (as pack does), then imported by this Python through site.py's .pth handling: what goes in,
what stays files and why, and that a zipped package imports from the zip."""

from __future__ import annotations

import compileall
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from envtool.builders.validate import _zip_broke
from envtool.env.condapack import TRIM
from envtool.env.sitezip import PTH_NAME, ZIP_NAME, zip_packages
from envtool.env.sourceless import make_sourceless

XY = f"{sys.version_info[0]}.{sys.version_info[1]}"
SO = Path(zipfile.__file__).parent / "lib-dynload"


def _site(prefix: Path) -> Path:
    return prefix / "lib" / f"python{XY}" / "site-packages"


def _write(site: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)


@pytest.fixture
def prefix(tmp_path) -> Path:
    site = _site(tmp_path)
    _write(site, {
        "pure/__init__.py": "from .sub.deep import VALUE\n",
        "pure/sub/__init__.py": "",
        "pure/sub/deep.py": "VALUE = 42\n",
        "pure/py.typed": "",  # trimmed at pack time: no reason to keep the package out
        "pure/tests/test_x.py": "def test(): pass\n",  # trimmed too, and never compiled
        "withdata/__init__.py": "import pathlib\nDATA = (pathlib.Path(__file__).parent / 'd.txt').read_text()\n",
        "withdata/d.txt": "data",
        "single.py": "X = 7\n",
        "nsonly/mod.py": "Y = 1\n",  # a namespace package: no __init__
        "hooked/__init__.py": "Z = 3\n",
        "hooked.pth": "import hooked\n",  # a .pth imports it before any zip could be on sys.path
        "pkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: pure\nVersion: 1.0\n",
    })
    ext = next(SO.glob("_json*.so"), None) or next(SO.glob("*.so"))
    (site / "native").mkdir()
    (site / "native" / "__init__.py").write_text("")
    shutil.copy(ext, site / "native" / ext.name)
    assert compileall.compile_dir(str(site), quiet=1, rx=__import__("re").compile(r"/tests/"),
                                  invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH)
    make_sourceless(tmp_path, XY, lambda _: None)
    return tmp_path


def _import(site: Path, code: str) -> dict:
    """This Python with `site` added the way site.py adds site-packages (its .pth files processed)."""
    out = subprocess.run([sys.executable, "-I", "-c", f"import site, json; site.addsitedir({str(site)!r}); {code}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_packages_of_bytecode_alone_go_into_one_zip_and_import_from_it(prefix):
    site = _site(prefix)
    res = zip_packages(prefix, XY, TRIM, lambda _: None)
    assert res.packages == ["pure", "single"] and res.files == 4
    assert not (site / "pure").exists() and not (site / "single.pyc").exists()
    assert (site / PTH_NAME).read_text() == ZIP_NAME + "\n"
    with zipfile.ZipFile(site / ZIP_NAME) as z:
        assert sorted(z.namelist()) == ["pure/__init__.pyc", "pure/sub/__init__.pyc", "pure/sub/deep.pyc",
                                        "single.pyc"]
    # what stays files: data beside the code, an extension module, a namespace package, a .pth's import
    assert {p.name for p in site.iterdir()} >= {"withdata", "native", "nsonly", "hooked", "pkg-1.0.dist-info"}
    got = _import(site, "import pure, single, withdata, hooked; print(json.dumps([pure.VALUE, single.X, "
                        "pure.__file__, withdata.DATA, hooked.Z]))")
    assert got[:2] == [42, 7] and ZIP_NAME in got[2] and got[3:] == ["data", 3]


def test_the_zip_is_the_same_bytes_for_the_same_packages(prefix, tmp_path_factory):
    zip_packages(prefix, XY, TRIM, lambda _: None)
    first = (_site(prefix) / ZIP_NAME).read_bytes()
    again = tmp_path_factory.mktemp("again")
    shutil.copytree(prefix, again, dirs_exist_ok=True, ignore=shutil.ignore_patterns(ZIP_NAME, PTH_NAME))
    with zipfile.ZipFile(_site(prefix) / ZIP_NAME) as z:
        z.extractall(_site(again))  # the packages back as files, with new mtimes
    zip_packages(again, XY, TRIM, lambda _: None)
    assert (_site(again) / ZIP_NAME).read_bytes() == first


def test_nothing_to_zip_writes_nothing(tmp_path):
    site = _site(tmp_path)
    _write(site, {"withdata/__init__.pyc": "", "withdata/d.txt": "x"})
    assert zip_packages(tmp_path, XY, TRIM, lambda _: None) is None
    assert sorted(p.name for p in site.iterdir()) == ["withdata"]


def test_a_package_that_opens_files_beside_itself_is_caught_by_the_probe(tmp_path):
    """What validate's probe reports for a zipped package: failures a zip causes (a path into it opened) are
    problems; a failure the package has anyway (a missing dependency) is not the zip's."""
    site = _site(tmp_path)
    _write(site, {"peeker/__init__.py": "import os\nopen(os.path.join(os.path.dirname(__file__), 'sib.pyc'))\n",
                  "peeker/sib.py": "", "needy/__init__.py": "import not_installed_anywhere\n"})
    compileall.compile_dir(str(site), quiet=1)
    make_sourceless(tmp_path, XY, lambda _: None)
    assert zip_packages(tmp_path, XY, TRIM, lambda _: None).packages == ["needy", "peeker"]
    code = ("from importlib import import_module\nerrs = {}\nfor m in ('peeker', 'needy'):\n"
            "    try:\n        import_module(m)\n    except BaseException as e:\n"
            "        errs[m] = 'import %s: %s: %s' % (m, type(e).__name__, e)\nprint(json.dumps(errs))")
    errs = subprocess.run([sys.executable, "-I", "-c", f"import site, json; site.addsitedir({str(site)!r})\n{code}"],
                          capture_output=True, text=True, timeout=60)
    errs = json.loads(errs.stdout)
    assert _zip_broke(errs["peeker"]) and not _zip_broke(errs["needy"]), errs
