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

from envtool.env.condapack import TRIM
from envtool.env.sitezip import PTH_NAME, ZIP_NAME, zip_broke, zip_packages
from envtool.env.sourceless import make_sourceless

XY = f"{sys.version_info[0]}.{sys.version_info[1]}"
SO = Path(zipfile.__file__).parent / "lib-dynload"
PY = Path(sys.executable)  # imports the zipped packages (pack uses the prefix's own Python)


def quiet(_line: str) -> None:
    pass


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
    make_sourceless(tmp_path, XY, quiet)
    return tmp_path


def _import(site: Path, code: str) -> dict:
    """This Python with `site` added the way site.py adds site-packages (its .pth files processed)."""
    out = subprocess.run([sys.executable, "-I", "-c", f"import site, json; site.addsitedir({str(site)!r}); {code}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_packages_of_bytecode_alone_go_into_one_zip_and_import_from_it(prefix):
    site = _site(prefix)
    res = zip_packages(prefix, XY, TRIM, quiet, PY)
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
    zip_packages(prefix, XY, TRIM, quiet, PY)
    first = (_site(prefix) / ZIP_NAME).read_bytes()
    again = tmp_path_factory.mktemp("again")
    shutil.copytree(prefix, again, dirs_exist_ok=True, ignore=shutil.ignore_patterns(ZIP_NAME, PTH_NAME))
    with zipfile.ZipFile(_site(prefix) / ZIP_NAME) as z:
        z.extractall(_site(again))  # the packages back as files, with new mtimes
    zip_packages(again, XY, TRIM, quiet, PY)
    assert (_site(again) / ZIP_NAME).read_bytes() == first


def test_nothing_to_zip_writes_nothing(tmp_path):
    site = _site(tmp_path)
    _write(site, {"withdata/__init__.pyc": "", "withdata/d.txt": "x"})
    assert zip_packages(tmp_path, XY, TRIM, quiet, PY) is None
    assert sorted(p.name for p in site.iterdir()) == ["withdata"]


def test_a_package_that_opens_files_beside_itself_goes_back_to_files(tmp_path):
    """Each zipped package is imported from the zip before packing: one that fails the way a zip makes code
    fail (a path into it opened) goes back to files, as it was, with the error in the manifest; a failure the
    package has anyway (a missing dependency) is not the zip's, and that package stays zipped."""
    site = _site(tmp_path)
    _write(site, {"peeker/__init__.py": "import os\nopen(os.path.join(os.path.dirname(__file__), 'sib.pyc'))\n",
                  "peeker/sib.py": "", "needy/__init__.py": "import not_installed_anywhere\n",
                  "fine.py": "OK = 1\n"})
    compileall.compile_dir(str(site), quiet=1)
    make_sourceless(tmp_path, XY, quiet)
    before = (site / "peeker" / "__init__.pyc").read_bytes()
    res = zip_packages(tmp_path, XY, TRIM, quiet, PY)
    assert res.packages == ["fine", "needy"] and res.files == 2
    assert list(res.kept) == ["peeker"] and "NotADirectoryError" in res.kept["peeker"], res.kept
    assert res.manifest()["kept_as_files"] == res.kept
    assert (site / "peeker" / "__init__.pyc").read_bytes() == before and (site / "peeker" / "sib.pyc").is_file()
    with zipfile.ZipFile(site / ZIP_NAME) as z:
        assert sorted(z.namelist()) == ["fine.pyc", "needy/__init__.pyc"]
    assert _import(site, "import peeker, fine; print(json.dumps([peeker.__file__, fine.OK]))")[1] == 1
    assert zip_broke(res.kept["peeker"])
    assert not zip_broke("import needy: ModuleNotFoundError: No module named 'not_installed_anywhere'")


def test_nothing_left_in_the_zip_removes_it(tmp_path):
    site = _site(tmp_path)
    _write(site, {"peeker/__init__.py": "import os\nos.listdir(os.path.dirname(__file__))\n"})
    compileall.compile_dir(str(site), quiet=1)
    make_sourceless(tmp_path, XY, quiet)
    res = zip_packages(tmp_path, XY, TRIM, quiet, PY)
    assert res.zip is None and res.packages == [] and list(res.kept) == ["peeker"]
    assert sorted(p.name for p in site.iterdir()) == ["peeker"] and (site / "peeker" / "__init__.pyc").is_file()
