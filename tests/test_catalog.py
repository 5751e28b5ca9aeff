import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from envtool import catalog
from envtool.errors import BadInput
from tests.conftest import run_cli

RELEASES_MD = Path(__file__).resolve().parents[2] / "shared" / "RELEASES.md"


@pytest.mark.parametrize("text", ["r22.11", "22.11", "2.28.0", " R22.11 "])
def test_release_forms_resolve_to_the_same_entry(text):
    r = catalog.normalize_release(text)
    assert (r.release, r.server, r.branch) == ("22.11", "2.28.0", "r22.11")


def test_catalog_spans_22_01_to_26_07_in_order():
    names = [r.release for r in catalog.releases()]
    assert names[0] == "22.01" and "26.07" in names
    assert len(names) == len(set(names)) >= 55


def test_server_version_is_a_table_not_arithmetic():
    assert catalog.normalize_release("25.07").server == "2.59.1"
    assert catalog.normalize_release("2.60.0").release == "25.08"


def test_recipe_facts_that_builds_depend_on():
    r2211 = catalog.normalize_release("r22.11")
    assert r2211.recipe.boost_url_dead and r2211.recipe.boost == "1.76.0"
    assert "3.11" not in r2211.recipe.pybind11_pythons
    assert r2211.recipe.cxx_flags_new_gcc == ("-includefunctional",)
    assert not r2211.dir_env and not r2211.numpy2
    assert catalog.normalize_release("23.07").dir_env
    assert not catalog.normalize_release("23.06").dir_env
    r2411 = catalog.normalize_release("24.11")
    assert r2411.numpy2 and r2411.max_glibcxx == "3.4.33" and r2411.default_python == "3.12"
    assert catalog.normalize_release("25.08").recipe.cmake_min_effective == "3.31.8"
    assert catalog.normalize_release("24.10").pytriton_stub_pythons == (
        "3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
    assert catalog.normalize_release("24.10").images["py3"] == "nvcr.io/nvidia/tritonserver:24.10-py3"


def test_every_fact_has_a_source():
    src = catalog.sources()
    r = catalog.releases()[0]
    fields = [f for f in r.__dataclass_fields__ if f not in ("release", "recipe", "runs_in")]  # runs_in: not a fact
    missing = [f for f in fields if f not in src]
    missing += [f"recipe.{f}" for f in r.recipe.__dataclass_fields__
                if f"recipe.{f}" not in src and f"recipe.{f.split('_')[0]}" not in src]
    assert not missing


@pytest.mark.parametrize("bad", ["r99.01", "21.99", "3.0.0", "latest"])
def test_unknown_release_is_bad_input_naming_neighbours(bad):
    with pytest.raises(BadInput) as e:
        catalog.normalize_release(bad)
    assert "releases" in e.value.fix


def test_unknown_release_cli_exits_2_with_nearest():
    p = run_cli("releases", "r26.09")
    assert p.returncode == 2
    assert "r26.07" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("text,expected", [("3.9", "3.9"), ("3.9.18", "3.9"), ("3.13", "3.13")])
def test_python_versions(text, expected):
    assert catalog.normalize_python(text) == expected


@pytest.mark.parametrize("bad", ["3.7", "3.16", "2.7", "three", "3"])
def test_python_outside_supported_range(bad):
    with pytest.raises(BadInput):
        catalog.normalize_python(bad)


def test_releases_json_table_and_detail():
    p = run_cli("releases", "--json")
    assert p.returncode == 0
    rows = json.loads(p.stdout)
    assert {r["release"] for r in rows} >= {"r22.11", "r24.10", "r26.07"}
    d = json.loads(run_cli("releases", "2.51.0", "--json").stdout)
    assert d["release"] == "24.10" and d["recipe"]["dlpack"] == "v0.8"


@pytest.mark.skipif(not RELEASES_MD.is_file(), reason="shared/RELEASES.md is not beside this checkout")
def test_catalog_is_what_the_generator_makes(tmp_path):
    """releases.toml must be regenerated, not hand-edited (wheel-measured column aside)."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "releases.toml"
    subprocess.run([sys.executable, root / "scripts/update_catalog.py", "--releases", RELEASES_MD,
                    "--out", out], check=True, capture_output=True)
    strip = [ln for ln in out.read_text().splitlines() if not ln.startswith("pytriton_stub_pythons")]
    have = [ln for ln in (root / "envtool/catalog/releases.toml").read_text().splitlines()
            if not ln.startswith("pytriton_stub_pythons")]
    assert strip == have


def test_the_launcher_changes_are_data():
    """r25.08 stopped sourcing bin/activate (ParseActivationScript); r26.06 extracts with libarchive's secure
    flags (python_backend sources, KNOWLEDGE section 3)."""
    seen = {r.release: (r.launcher, r.secure_extract) for r in catalog.releases()}
    assert seen["25.07"] == ("activate", False) and seen["25.08"] == ("parsed", False)
    assert seen["26.05"] == ("parsed", False) and seen["26.06"] == ("parsed", True)
    assert {v[0] for v in seen.values()} == {"activate", "parsed"}


def test_every_pinned_download_has_a_version_and_digests():
    from envtool.catalog import tomllib
    from envtool.catalog.downloads import DATA
    data = tomllib.loads(DATA.read_text())
    assert {"micromamba", "uv"} <= set(data)
    for name, entry in data.items():
        digests = entry["sha256"] if isinstance(entry["sha256"], list) else [entry["sha256"]]
        assert digests and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in digests), name
        assert entry["version"] and entry["source"], name
        assert entry.get("url", "").startswith("https://") or entry.get("requirement") == \
            f"{name}=={entry['version']}", name
        assert "latest" not in entry.get("url", ""), name


def test_a_download_is_put_in_place_only_when_its_digest_matches(tmp_path, monkeypatch):
    import hashlib

    from envtool.catalog import downloads
    payload = tmp_path / "tool"
    payload.write_bytes(b"\x7fELF pretend tool")
    good = hashlib.sha256(payload.read_bytes()).hexdigest()
    data = tmp_path / "downloads.toml"
    monkeypatch.setattr(downloads, "DATA", data)
    dest = tmp_path / "bin" / "tool"
    data.write_text(f'[tool]\nversion = "1"\nurl = "{payload.as_uri()}"\nsha256 = "{"0" * 64}"\n')
    with pytest.raises(ValueError, match="refused"):
        downloads.fetch("tool", dest)
    assert not dest.exists() and not list(dest.parent.glob(".tool.*"))
    data.write_text(f'[tool]\nversion = "1"\nurl = "{payload.as_uri()}"\nsha256 = "{good}"\n')
    assert downloads.fetch("tool", dest).read_bytes() == payload.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o755


@pytest.mark.slow
def test_the_pinned_uv_digest_is_the_one_pypi_serves_for_this_platform(tmp_path):
    """pip --require-hashes with the line artifacts.sh uses: a wrong digest fails the download."""
    from envtool.catalog.downloads import require_hashes_line
    req = tmp_path / "uv.txt"
    req.write_text(require_hashes_line("uv") + "\n")
    out = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                          "--require-hashes", "-r", req, "-d", tmp_path / "d"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list((tmp_path / "d").glob("uv-*.whl"))) == 1
