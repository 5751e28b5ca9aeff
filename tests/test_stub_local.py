"""The local CMake builder, run for real on a miniature of python_backend's build interface
(tests/fixtures/mini_python_backend): release tags, offline FetchContent, the dead Boost URL replaced
by local headers, pybind11 embedding the requested Python, then the ELF checks against the release.
An opt-in test builds the real python_backend from $ENVTOOL_TEST_SOURCES."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envtool import api
from envtool.elf import read_elf
from envtool.env.interpreters import candidates
from envtool.errors import BadInput, CheckFailed
from tests.conftest import spawn

FIXTURE = Path(__file__).parent / "fixtures" / "mini_python_backend"
HAVE39 = any(s == "pyenv" for _, s in candidates("3.9"))
pytestmark = pytest.mark.skipif(not (HAVE39 and shutil.which("c++") and shutil.which("cmake")),
                                reason="needs pyenv Python 3.9, a C++ compiler and cmake")


def make_sources(dest: Path) -> Path:
    """The fixture plus pybind11/: the PyPI pybind11 package (headers + CMake config) vendored inside, so
    the sources also build in a container."""
    shutil.copytree(FIXTURE, dest)
    cmakedir = Path(subprocess.run([sys.executable, "-m", "pybind11", "--cmakedir"], capture_output=True,
                                   text=True, check=True).stdout.strip())
    shutil.copytree(cmakedir.parents[2], dest / "pybind11" / "pkg", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "pybind11" / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.24)\nproject(pybind11 LANGUAGES CXX)\n"
        'find_package(pybind11 CONFIG REQUIRED GLOBAL PATHS "${CMAKE_CURRENT_SOURCE_DIR}/pkg/share/cmake/pybind11" '
        "NO_DEFAULT_PATH)\n")
    return dest


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    return make_sources(tmp_path_factory.mktemp("src") / "sources")


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory):
    return api.stub("r24.10", "3.9", builder="local", sources=sources, root=tmp_path_factory.mktemp("stubs"))


def test_local_build_follows_the_recipe(built):
    m = built.manifest
    assert m["builder"] == "local" and m["python"] == "3.9" and m["gpu"] is False
    flags = " ".join(m["build_flags"])
    for tag in ("COMMON", "CORE", "BACKEND"):
        assert f"-DTRITON_{tag}_REPO_TAG=r24.10" in flags
    assert "FETCHCONTENT_FULLY_DISCONNECTED=ON" in flags and "FETCHCONTENT_SOURCE_DIR_PYBIND11=" in flags
    assert set(m["timings"]) == {"configure_s", "build_s", "check_s"}
    facts = read_elf(built.path)
    assert facts.libpython == "3.9" and facts.runpath == []  # the build machine's RUNPATH is gone


def test_built_stub_carries_the_release_tags_and_local_boost(built):
    libdir = Path(next(p for p, s in candidates("3.9") if s == "pyenv")).parent.parent / "lib"
    out = subprocess.run(["env", "-i", f"LD_LIBRARY_PATH={libdir}", str(built.path)], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    assert "common=r24.10 core=r24.10 backend=r24.10" in out.stderr
    assert "boost=1" in out.stderr and "googletest=offline" in out.stderr
    run = subprocess.run(["env", "-i", f"LD_LIBRARY_PATH={libdir}", str(built.path), "import sys; print(sys.version)"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("3.9."), run.stderr  # pybind11 embedded 3.9


def test_stub_that_would_not_run_in_the_release_is_refused_before_building(sources, tmp_path):
    """On a host with glibc >= 2.34 every executable it links needs __libc_start_main@GLIBC_2.34: r22.11's
    Ubuntu 20.04 (2.31) cannot run it, so no minutes are spent building it."""
    import platform
    if tuple(int(x) for x in platform.libc_ver()[1].split(".")) < (2, 34):
        pytest.skip("this host's glibc is older than 2.34")
    with pytest.raises(CheckFailed, match=r"would not run in r22\.11: .*needs GLIBC_2\.34 \(__libc_start_main\); "
                                          r"r22\.11's image has 2\.31 \(Ubuntu 20\.04\)"):
        api.stub("r22.11", "3.9", builder="local", sources=sources, root=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name != "targets"]


def test_pybind11_of_old_branches_refuses_new_python(sources, tmp_path):
    with pytest.raises(BadInput, match=r"pins pybind11 2\.6\.\d+, which does not build for Python 3\.11"):
        api.stub("r22.11", "3.11", builder="local", sources=sources, root=tmp_path)


def test_incomplete_sources_are_listed(sources, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(sources, partial)
    shutil.rmtree(partial / "dlpack")
    with pytest.raises(BadInput, match="lacks dlpack"):
        api.stub("r24.10", "3.9", builder="local", sources=partial, root=tmp_path / "s")


def test_missing_compiler_gives_the_apt_line(sources, tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "cmake").symlink_to(shutil.which("cmake"))
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(BadInput, match="missing build tools or packages: c\\+\\+, make") as e:
        api.stub("r24.10", "3.9", builder="local", sources=sources, root=tmp_path / "s")
    assert "apt-get install -y build-essential" in e.value.fix


def test_compile_error_names_the_log(sources, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sources, broken)
    (broken / "python_backend" / "src" / "pb_stub_mini.cc").write_text("int main( {\n")
    with pytest.raises(CheckFailed) as e:
        api.stub("r24.10", "3.9", builder="local", sources=broken, root=tmp_path / "s")
    log = Path(e.value.fix.split("full build log: ")[1])
    assert log.is_file() and "pb_stub_mini.cc" in log.read_text()
    assert not list((tmp_path / "s").glob(".build-*"))


def test_interrupted_build_leaves_no_partial_artifact(sources, tmp_path):
    store = tmp_path / "s"
    proc = spawn([sys.executable, "-m", "envtool", "stub", "--triton", "r24.10", "--python", "3.9",
                  "--builder", "local", "--sources", str(sources), "--cache", str(store)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(store.glob(".tree-*/CMakeFiles")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert [p.name for p in store.iterdir()] == ["targets"]
    assert not list((store / "targets").glob("*.json"))


@pytest.mark.skipif(not os.environ.get("ENVTOOL_TEST_SOURCES"), reason="set ENVTOOL_TEST_SOURCES to real "
                    "python_backend/common/core/backend/pybind11/dlpack checkouts at r24.10")
@pytest.mark.server
def test_real_python_backend_r2410_serves(tmp_path, r2410):
    """Build the real stub from upstream sources, then serve an ensemble with it in r24.10."""
    from tests.test_inject import pipeline
    from tests.test_inject_server import serve_and_infer
    art = api.stub("r24.10", "3.9", builder="local", sources=Path(os.environ["ENVTOOL_TEST_SOURCES"]),
                   root=tmp_path / "stubs")
    assert read_elf(art.path).libpython == "3.9" and art.manifest["sources"]["python_backend"]
    env = api.pack(api.PackSpec(python="3.9", triton="r24.10"), tmp_path / "custom_env.tar.gz").output
    repo = pipeline(tmp_path / "repo")
    api.inject(api.InjectOptions(repo=repo, stub=art.path, env=env))
    states, out, server, _ = serve_and_infer(r2410, repo)
    assert states["pre"]["state"] == states["post"]["state"] == "READY", server.log()[-3000:]
    assert out["outputs"][0]["data"] == [3.0, 4.0, 5.0]


def _git_repo(path: Path, files: Path, branch: str | None = None, tag: str | None = None) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    shutil.copytree(files, path, dirs_exist_ok=True)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "main"], check=True)
    if branch:
        subprocess.run([*git, "checkout", "-q", "-b", branch], check=True)
        (path / "BRANCH").write_text(branch)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", branch], check=True)
        subprocess.run([*git, "checkout", "-q", "main"], check=True)
    if tag:
        subprocess.run([*git, "tag", tag], check=True)


def git_mirrors(sources: Path, mirrors: Path, release: str) -> str:
    """Real git repositories of the fixture, one per upstream repository, with the release's branch
    and pins; returns the $ENVTOOL_GIT_URL template that points at them."""
    from envtool.catalog import normalize_release
    from envtool.stub.sources import plan
    for folder, repo, ref in plan(normalize_release(release)):
        owner, name = repo.split("/")
        triton = owner == "triton-inference-server"
        if not (mirrors / f"{owner}+{name}").exists():
            _git_repo(mirrors / f"{owner}+{name}", sources / folder, branch=ref if triton else None,
                      tag=None if triton else ref)
    return f"file://{mirrors}/{{owner}}+{{name}}"


def test_fetch_sources_checks_out_the_release_branch_and_pins(sources, tmp_path, monkeypatch):
    from envtool.catalog import normalize_release
    rel = normalize_release("r22.11")
    monkeypatch.setenv("ENVTOOL_GIT_URL", git_mirrors(sources, tmp_path / "mirrors", "r22.11"))
    dest = api.fetch_sources(tmp_path / "src", "r22.11")
    assert sorted(p.name for p in dest.iterdir()) == ["backend", "common", "core", "dlpack", "pybind11",
                                                      "python_backend"]
    assert (dest / "core" / "BRANCH").read_text() == "r22.11"  # not main
    tag = subprocess.run(["git", "-C", str(dest / "pybind11"), "describe", "--tags"], capture_output=True,
                         text=True).stdout.strip()
    assert tag == rel.recipe.pybind11


def test_fetch_sources_without_network_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "envtool", "stub", "--triton", "r22.11", "--fetch-sources",
                          str(tmp_path / "src")], capture_output=True, text=True,
                         env={**os.environ, "ENVTOOL_GIT_URL": "file:///nonexistent/{owner}/{name}"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "git could not get file:///nonexistent/triton-inference-server/python_backend: fatal:" in \
        " ".join(out.stderr.split())
    assert not (tmp_path / "src").exists()


def test_a_source_build_fetches_the_release_sources_once_into_the_cache(sources, tmp_path):
    """No --sources: the checkouts come from $ENVTOOL_GIT_URL into the cache dir, once per release. On this
    host (glibc newer than Ubuntu 20.04's) the r22.11 stub is then refused, and never stored."""
    env = {**os.environ, "ENVTOOL_CACHE_DIR": str(tmp_path / "cache"),
           "ENVTOOL_GIT_URL": git_mirrors(sources, tmp_path / "mirrors", "r22.11")}

    def stub() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "envtool", "stub", "--triton", "r22.11", "--python", "3.9",
                               "--builder", "local", "--cache", str(tmp_path / "s")],
                              capture_output=True, text=True, env=env)
    first = stub()
    fetched = tmp_path / "cache" / "sources" / "r22.11"
    assert "fetching the python_backend sources of r22.11" in first.stderr
    assert (fetched / "core" / "BRANCH").read_text() == "r22.11"
    assert first.returncode == 1 and "the stub would not run in r22.11" in first.stderr, first.stderr
    assert "needs GLIBC_2." in first.stderr and "r22.11's image has 2.31 (Ubuntu 20.04)" in first.stderr
    assert not [p for p in (tmp_path / "s").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    shutil.rmtree(tmp_path / "mirrors")  # a second build must not need the network
    again = stub()
    assert again.returncode == 1 and "fetching" not in again.stderr, again.stderr
    assert not list((tmp_path / "cache" / "sources").glob(".r22.11.*"))  # no half-written checkout


@pytest.mark.slow
def test_auto_names_every_way_it_tried_when_none_works(tmp_path):
    """r22.11 has a prebuilt stub only for 3.8; no daemon, no sources reachable: one line, exit 2, nothing
    stored, nothing fetched."""
    env = {**os.environ, "ENVTOOL_CACHE_DIR": str(tmp_path / "cache"), "DOCKER_HOST": "unix:///nonexistent.sock",
           "ENVTOOL_GIT_URL": "file:///nonexistent/{owner}/{name}"}
    out = subprocess.run([sys.executable, "-m", "envtool", "stub", "--triton", "r22.11", "--python", "3.9",
                          "--cache", str(tmp_path / "s")], capture_output=True, text=True, env=env)
    text = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "no way to make the r22.11 stub for Python 3.9: prebuilt:" in text
    assert "docker: no Docker daemon answers" in text and "local: no python_backend sources for r22.11" in text
    assert "envtool stub --triton r22.11 --fetch-sources DIR" in text
    assert not [p for p in (tmp_path / "s").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert not (tmp_path / "cache" / "sources" / "r22.11").exists()


def test_several_pythons_share_one_build_tree(sources, tmp_path):
    """--python 3.8,3.9: the Python-independent library compiles once, each stub embeds its Python."""
    if not any(s == "pyenv" for _, s in candidates("3.8")):
        pytest.skip("needs pyenv Python 3.8")
    store = tmp_path / "s"
    out = subprocess.run([sys.executable, "-m", "envtool", "stub", "--triton", "r24.10", "--python", "3.8,3.9",
                          "--builder", "local", "--sources", str(sources), "--cache", str(store), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    arts = json.loads(out.stdout)
    assert [a["python"] for a in arts] == ["3.8", "3.9"]
    assert [a["reused_tree"] for a in arts] == [False, True]
    for a in arts:
        assert read_elf(Path(a["stub"])).libpython == a["python"]  # no stale Python from the shared tree
    assert "reusing the tree" in out.stderr
    assert not list(store.glob(".tree-*")) and not list(store.glob(".build-*"))
    # The same request again is answered from the store without building.
    again = json.loads(subprocess.run([sys.executable, "-m", "envtool", "stub", "--triton", "r24.10", "--python",
                                       "3.8,3.9", "--builder", "local", "--sources", str(sources), "--cache",
                                       str(store), "--json"], capture_output=True, text=True).stdout)
    assert [a["reused"] for a in again] == [True, True]


def test_shared_tree_compiles_python_independent_code_once(sources, tmp_path):
    if not any(s == "pyenv" for _, s in candidates("3.8")):
        pytest.skip("needs pyenv Python 3.8")
    from envtool import catalog
    from envtool.builders import local
    from envtool.stub.store import StubKey
    rel, tree = catalog.normalize_release("r24.10"), tmp_path / "tree"
    tree.mkdir()

    def build(py: str) -> dict[str, int]:
        work = tmp_path / py
        work.mkdir()
        m = local.build(rel, StubKey("24.10", py), work, sources, lambda _m: None, tree)
        assert read_elf(work / "triton_python_backend_stub").libpython == py and m["python"] == py
        return {o.name: o.stat().st_mtime_ns for o in tree.rglob("*.cc.o")}
    first, second = build("3.9"), build("3.8")
    assert first["backend_utils.cc.o"] == second["backend_utils.cc.o"]  # Python-independent: compiled once
    assert first["pb_stub_mini.cc.o"] != second["pb_stub_mini.cc.o"]  # the stub: compiled per Python


WERROR_PROJECT = """cmake_minimum_required(VERSION 3.17)
project(outer LANGUAGES CXX)
add_subdirectory(inner)
"""
WERROR_INNER = """project(inner LANGUAGES CXX)
add_executable(stub stub.cc)
target_compile_options(stub PRIVATE
  $<$<OR:$<CXX_COMPILER_ID:Clang>,$<CXX_COMPILER_ID:GNU>>:
    -Wall -Wextra -Werror>)
"""


@pytest.mark.slow
@pytest.mark.parametrize("relax", [False, True])
def test_werror_relaxation_replaces_the_targets_own_werror(tmp_path, relax):
    """The CMAKE_PROJECT_INCLUDE file: python_backend's `-Werror>` inside a generator expression becomes
    -Wno-error with ENVTOOL_RELAX_WERROR, and two project() calls do not define the override twice."""
    from envtool.builders.local import BOOST_CMAKE
    (tmp_path / "inner").mkdir()
    (tmp_path / "CMakeLists.txt").write_text(WERROR_PROJECT)
    (tmp_path / "inner" / "CMakeLists.txt").write_text(WERROR_INNER)
    (tmp_path / "inner" / "stub.cc").write_text("int main() { int unused = 0; return 0; }\n")
    cfg = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "b"),
                          f"-DCMAKE_PROJECT_INCLUDE={BOOST_CMAKE}", f"-DENVTOOL_RELAX_WERROR={'ON' if relax else 'OFF'}"],
                         capture_output=True, text=True)
    assert cfg.returncode == 0, cfg.stderr
    made = subprocess.run(["cmake", "--build", str(tmp_path / "b")], capture_output=True, text=True)
    if relax:
        assert made.returncode == 0, made.stdout[-2000:]
        assert "-Wno-error" in (tmp_path / "b" / "inner" / "CMakeFiles" / "stub.dir" / "flags.make").read_text()
    else:
        assert made.returncode != 0 and "unused" in made.stdout + made.stderr


def test_a_pybind11_override_is_built_recorded_and_keyed(sources, tmp_path, monkeypatch):
    """--pybind11 TAG: pybind11 comes from a checkout of that tag (a git repository of our own, through
    $ENVTOOL_GIT_URL), and the manifest, the relaxed -Werror and the store key say so; numpy 2 is then allowed
    in the env (facts.reads_numpy2)."""
    mirror = tmp_path / "mirror" / "pybind+pybind11"
    shutil.copytree(sources / "pybind11", mirror)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"],
                 ["tag", "v3.0.1"]):
        subprocess.run(["git", "-C", str(mirror), *args], check=True, capture_output=True)
    monkeypatch.setenv("ENVTOOL_GIT_URL", f"file://{tmp_path / 'mirror'}/{{owner}}+{{name}}")
    monkeypatch.setenv("ENVTOOL_CACHE_DIR", str(tmp_path / "cache"))
    py = "3.9"
    art = api.stub("r24.10", py, builder="local", sources=sources, root=tmp_path / "stubs", pybind11="v3.0.1")
    m = art.manifest
    assert m["pybind11"]["tag"] == "v3.0.1" and m["pybind11"]["override"] is True
    assert "pybind11 v3.0.1 replaces" in m["werror_relaxed"]
    assert f"-DFETCHCONTENT_SOURCE_DIR_PYBIND11={tmp_path / 'cache' / 'sources' / 'pybind11-v3.0.1'}" in \
        m["build_flags"] and "-DENVTOOL_RELAX_WERROR=ON" in m["build_flags"]
    assert (tmp_path / "stubs" / "targets" / f"r24.10-py{py}-cpu-{m['arch']}-pybind11-v3.0.1.json").is_file()
    from envtool.facts import reads_numpy2
    assert reads_numpy2(m) and not reads_numpy2({**m, "pybind11": {"tag": "v2.10.0", "override": True}})
    assert not reads_numpy2({"release": "24.10"})  # the release's own pin: the release decides
    # The env that goes with it: numpy 2 not pinned away, and not refused (pack --numpy2).
    from envtool.builders.env import PackSpec, pack
    env = pack(PackSpec(python=py, triton="24.10", numpy2=True, target="host"), tmp_path / "e.tar.gz")
    assert env.manifest["numpy"].startswith("2."), env.manifest["numpy"]


@pytest.mark.slow
def test_old_googletest_gets_the_gtest_aliases_common_links(tmp_path):
    """common r23.04+ links GTest::gtest; the googletest of Ubuntu 20.04 / Debian 11 (1.10), used offline, has
    only `gtest`. The CMAKE_PROJECT_INCLUDE file adds the aliases: configure fails without it, passes with it."""
    from envtool.builders.local import BOOST_CMAKE
    (tmp_path / "old").mkdir()
    (tmp_path / "use").mkdir()
    (tmp_path / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.18)\nproject(top LANGUAGES CXX)\n"
                                             "add_subdirectory(old)\nadd_subdirectory(use)\n")
    (tmp_path / "old" / "CMakeLists.txt").write_text("add_library(gtest STATIC g.cc)\n")
    (tmp_path / "old" / "g.cc").write_text("int g() { return 1; }\n")
    (tmp_path / "use" / "CMakeLists.txt").write_text("add_executable(t t.cc)\ntarget_link_libraries(t GTest::gtest)\n")
    (tmp_path / "use" / "t.cc").write_text("int main() { return 0; }\n")

    def configure(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / f"b{len(extra)}"), *extra],
                              capture_output=True, text=True)
    without = configure()
    assert without.returncode != 0 and "GTest::gtest" in without.stderr
    assert configure(f"-DCMAKE_PROJECT_INCLUDE={BOOST_CMAKE}").returncode == 0
