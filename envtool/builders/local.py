"""Build the stub from source with CMake on this host (inside an NGC container in pipelines, or any
Linux host), following the release's recipe from the catalog without patching the sources.

Sources come from `--sources DIR` holding python_backend/, common/, core/, backend/, pybind11/,
dlpack/ (and googletest/ where the recipe needs it), checked out at the release's branch and pins.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from envtool import compat
from envtool.cache import cache_root, publish_dir
from envtool.cache import file_sha256 as sha256
from envtool.catalog import Release
from envtool.elf import version_key
from envtool.env.interpreters import find_interpreter
from envtool.errors import BadInput, CheckFailed
from envtool.names import STUB_NAME as STUB
from envtool.runner import missing, patchelf, run
from envtool.stub.check import require_fit
from envtool.stub.sources import cached_sources, clone_once
from envtool.stub.store import StubKey

REPOS = ("python_backend", "common", "core", "backend", "pybind11", "dlpack")
FETCHCONTENT = {"common": "REPO-COMMON", "core": "REPO-CORE", "backend": "REPO-BACKEND", "pybind11": "PYBIND11",
                "dlpack": "DLPACK", "googletest": "GOOGLETEST"}
# Headers the real python_backend build needs, and the Debian/Ubuntu package of each.
BUILD_HEADERS = {"zlib.h": "zlib1g-dev", "rapidjson/rapidjson.h": "rapidjson-dev", "archive.h": "libarchive-dev"}
BOOST_CMAKE = Path(__file__).with_name("boost_local.cmake")
FORGET_PYTHON = ["-U", "*PYTHON*", "-U", "*Python*", "-U", "*python*"]  # cmake -U takes globs


def build(release: Release, target: StubKey, tmp: Path, sources: Path | None, log,
          tree: Path | None = None) -> dict:
    """Build into tmp; with tree (a build folder shared by the Pythons of one request), reconfigure it
    for this Python so that what does not depend on Python (triton-backend-utils, the fetched
    dependencies, the configure checks) is built once."""
    recipe = release.recipe
    if not target.pybind11 and (why := compat.pybind11_misfit(release, target.python)):
        raise BadInput(why, f"use Python {recipe.pybind11_pythons[-1]} or older with this release, or a newer "
                       "pybind11 (--pybind11 v3.0.1)")
    src = _check_sources(sources, release, log)
    _host_glibc_fits(release)
    it = find_interpreter(target.python)
    cmake = _cmake(recipe.cmake_min_effective)
    _preflight(src)
    build_dir, logfile = tree or tmp / "build", tmp / "build.log"
    pybind11 = pybind11_sources(target.pybind11, log, src) if target.pybind11 else None
    relax = relax_werror(release, target)
    flags = cmake_args(release, target, src, it.executable, _boost_include(log), cmake_version(cmake),
                       pybind11=pybind11, relax=bool(relax))
    # A tree configured for another Python keeps that Python's cached paths: forget them first.
    forget = FORGET_PYTHON if (build_dir / "CMakeCache.txt").is_file() else []
    times = {}
    try:
        log(f"configure ({cmake_version(cmake)}, Python {it.version}{', reusing the tree' if forget else ''})")
        times["configure_s"] = _run_logged([cmake, "-S", str(src / "python_backend"), "-B", str(build_dir),
                                            *forget, *flags], logfile)
        log(f"build triton-python-backend-stub (-j{os.cpu_count()})")
        times["build_s"] = _run_logged([cmake, "--build", str(build_dir), "--target", "triton-python-backend-stub",
                                        "-j", str(os.cpu_count() or 1)], logfile)
    except CheckFailed as e:
        kept = _keep_log(logfile, target)
        raise CheckFailed(e.message, f"full build log: {kept}") from None
    t0 = time.monotonic()
    stub = tmp / STUB
    shutil.move(next(build_dir.rglob(STUB)), stub)
    run([patchelf(), "--remove-rpath", str(stub)], check="patchelf")  # the build machine's Python lib dir
    facts = require_fit(stub, release, target.python)
    times["check_s"] = round(time.monotonic() - t0, 2)
    if tree is None:
        shutil.rmtree(build_dir)
    logfile.unlink()
    return {"release": release.release, "python": target.python, "gpu": target.gpu, "arch": target.arch,
            "builder": "local", "sha256": sha256(stub), "libs": [], **facts, "python_used": str(it.executable),
            "build_flags": flags, "sources": {n: _commit(src / n) for n in (*REPOS, "googletest")
                                              if (src / n).is_dir()},
            "pybind11": {"tag": target.pybind11 or recipe.pybind11, "override": bool(target.pybind11),
                         **({"commit": _commit(pybind11)} if pybind11 else {})},
            "werror_relaxed": relax, "timings": times, "reused_tree": bool(forget)}


def cmake_args(release: Release, target: StubKey, src: Path, python: Path, boost: Path,
               cmake_ver: str, pybind11: Path | None = None, relax: bool = False) -> list[str]:
    """The recipe as -D flags: release branch tags, offline FetchContent, local Boost, the Python, and
    where asked, another pybind11 and -Werror relaxed."""
    r = release.recipe
    args = ["-DCMAKE_BUILD_TYPE=Release", f"-DTRITON_ENABLE_GPU={'ON' if target.gpu else 'OFF'}",
            "-DFETCHCONTENT_FULLY_DISCONNECTED=ON", f"-DPYTHON_EXECUTABLE={python}",
            f"-DPython_EXECUTABLE={python}", f"-DPython3_EXECUTABLE={python}",
            f"-DCMAKE_PROJECT_INCLUDE={BOOST_CMAKE}", f"-DENVTOOL_BOOST_INCLUDE={boost}"]
    # The *_REPO_TAG options default to main on every branch: always pin the release's branch.
    args += [f"-DTRITON_{n}_REPO_TAG={release.branch}" for n in ("BACKEND", "COMMON", "CORE")]
    for name, var in FETCHCONTENT.items():
        path = src / name if (src / name).is_dir() else None
        if name == "googletest" and path is None and r.googletest:
            path = Path("/usr/src/googletest")
        if name == "pybind11" and pybind11 is not None:
            path = pybind11
        if path is not None:
            args.append(f"-DFETCHCONTENT_SOURCE_DIR_{var}={path}")
    if relax:
        args.append("-DENVTOOL_RELAX_WERROR=ON")
    if r.cxx_flags_new_gcc:
        args.append(f"-DCMAKE_CXX_FLAGS={' '.join(r.cxx_flags_new_gcc)}")
    if int(cmake_ver.split(".")[0]) >= 4:  # CMake 4 refuses cmake_minimum_required < 3.5 in dependencies
        args.append("-DCMAKE_POLICY_VERSION_MINIMUM=3.5")
    return args


# The GCC major of each Ubuntu the releases build on (Ubuntu's default gcc package: focal 9, jammy 11,
# noble 13): a newer compiler adds warnings that python_backend's -Werror turns into errors.
UBUNTU_GCC = {"20.04": 9, "22.04": 11, "24.04": 13}


def _host_glibc_fits(release: Release) -> None:
    """Refuse before building what the ELF check would refuse after it: an executable linked on glibc >= 2.34
    references __libc_start_main@GLIBC_2.34, which a release image with an older glibc lacks."""
    host = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else ""
    have = host.split()[-1] if host and host.startswith("glibc") else ""
    if have and version_key(have) >= (2, 34) > version_key(release.glibc):
        raise CheckFailed(f"the stub would not run in r{release.release}: a build on this host (glibc {have}) "
                          f"needs GLIBC_2.34 (__libc_start_main); r{release.release}'s image has {release.glibc} "
                          f"({release.system})",
                          "build it inside the release's container (--builder docker, or Dockerfile.build)")


def relax_werror(release: Release, target: StubKey) -> str | None:
    """Why -Werror is relaxed for this build (recorded in the manifest), or None to keep it."""
    if target.pybind11:
        return f"pybind11 {target.pybind11} replaces the release's {release.recipe.pybind11_version}"
    gcc = compiler_major()
    own = UBUNTU_GCC.get(release.ubuntu)
    if gcc and own and gcc > own:
        return f"GCC {gcc} is newer than Ubuntu {release.ubuntu}'s GCC {own}, which the release builds with"
    return None


def compiler_major() -> int | None:
    out = run([os.environ.get("CXX", "c++"), "-dumpversion"], why="to build the stub", timeout=60)
    m = re.match(r"(\d+)", out.stdout.strip()) if out.returncode == 0 else None
    return int(m.group(1)) if m and "clang" not in out.stdout else None


def pybind11_sources(tag: str, log, src: Path | None = None) -> Path:
    """pybind11 at `tag`: pybind11-<tag>/ beside the sources (as the docker builder stages it), else cloned
    once into the cache dir (from GitHub or $ENVTOOL_GIT_URL)."""
    if src is not None and (src / f"pybind11-{tag}" / "CMakeLists.txt").is_file():
        return src / f"pybind11-{tag}"
    return clone_once("pybind/pybind11", tag, cache_root() / "sources" / f"pybind11-{tag}", log)


def _check_sources(sources: Path | None, release: Release, log) -> Path:
    if sources is None:
        sources = cached_sources(release, log)
    missing = [n for n in REPOS if not (sources / n / "CMakeLists.txt").is_file()]
    if missing:
        raise BadInput(f"--sources {sources} lacks {', '.join(missing)} (each a checkout with CMakeLists.txt)",
                       f"put the {release.branch} checkouts of those repositories there")
    if release.recipe.googletest and not (sources / "googletest").is_dir() \
            and not Path("/usr/src/googletest").is_dir():
        raise BadInput(f"r{release.release}'s common fetches googletest, and no offline copy was found",
                       "apt-get install googletest, or add googletest/ to --sources")
    return sources.resolve()


def _preflight(src: Path) -> None:
    missing = [tool for tool in ("c++", "make") if not shutil.which(tool)]
    if (src / "python_backend" / "src" / "pb_stub.cc").is_file():  # the real sources, not a fixture
        missing += [pkg for h, pkg in BUILD_HEADERS.items() if not Path("/usr/include", h).is_file()]
    if missing:
        pkgs = sorted({"build-essential" if m in ("c++", "make") else m for m in missing})
        raise BadInput(f"missing build tools or packages: {', '.join(missing)}",
                       f"apt-get install -y {' '.join(pkgs)}")


def cmake_version(cmake: str) -> str:
    out = run([cmake, "--version"], why="to build the stub", timeout=60).stdout
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    return m.group(1) if m else "0"


def _cmake(minimum: str) -> str:
    """The system cmake if new enough, else PyPI's cmake installed once into the cache."""
    system = shutil.which("cmake")
    if system and version_key(cmake_version(system)) >= version_key(minimum):
        return system
    target = cache_root() / "tools" / "cmake"
    publish_dir(target, lambda tmp: run([sys.executable, "-m", "pip", "install", "-q", "--target", str(tmp),
                                         "cmake"], check="pip install cmake", timeout=600))
    found = next(target.glob("cmake/data/bin/cmake"), None)
    if not found:
        raise BadInput(f"CMake >= {minimum} is needed and none was found", "pip install cmake")
    return str(found)


def _boost_include(log) -> Path:
    """Local Boost headers: $ENVTOOL_BOOST_INCLUDE, Debian's libboost-dev, or PyPI boost-headers."""
    for cand in (os.environ.get("ENVTOOL_BOOST_INCLUDE"), "/usr/include"):
        if cand and Path(cand, "boost", "version.hpp").is_file():
            return Path(cand)
    target = cache_root() / "tools" / "boost-headers"

    def fetch(tmp: Path) -> None:
        log("downloading Boost headers (PyPI boost-headers)")
        # Headers only: any Python's wheel will do (boost-headers declares Python >= 3.9, envtool runs on 3.8).
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
             "--python-version", "3.12", "boost-headers", "-d", str(tmp)], check="pip download boost-headers",
            timeout=600)
        with zipfile.ZipFile(next(tmp.glob("*.whl"))) as z:
            z.extractall(tmp)
    root = publish_dir(target, fetch)
    return root / "boost_headers" / "include"


def _run_logged(cmd: list[str], logfile: Path) -> float:
    """Run with output appended to logfile; its own process group, killed whole on Ctrl-C."""
    t0 = time.monotonic()
    with logfile.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError:
            raise missing(cmd[0], "to build the stub") from None
        try:
            rc = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if rc != 0:
        tail = [ln for ln in logfile.read_text(errors="replace").splitlines() if "error" in ln.lower()][-2:]
        raise CheckFailed(f"{Path(cmd[0]).name} {cmd[1]} failed: {' | '.join(tail) or f'exit {rc}'}", None)
    return round(time.monotonic() - t0, 2)


def _keep_log(logfile: Path, target: StubKey) -> Path:
    kept = cache_root() / "logs" / f"stub-{target.key}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(logfile, kept)
    return kept


def _commit(repo: Path) -> str | None:
    out = run(["git", "-C", str(repo), "rev-parse", "HEAD"], why="to record the sources' commit", timeout=60)
    return out.stdout.strip() if out.returncode == 0 else None
