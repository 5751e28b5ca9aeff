"""Shared fixtures: real parts only (real Triton servers from nvidia-pytriton wheels, real Pythons)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# The fast tier (`pytest -m "not slow"`): no server, no build, no docker, no download. A test is slow when
# it is marked server or slow, or needs one of these fixtures (each starts, builds or downloads something).
SLOW_FIXTURES = {
    "server_tree_2410", "host_stub", "thin_env_tarball",  # the nvidia-pytriton wheel, numpy<2 from PyPI
    "docker_client", "build_image", "bookworm_image", "server_image", "server_image_2211", "fixture_sources",
    "env39", "stub39", "stubs", "packed", "pack_cache", "conda_prefix", "prebuilt", "built", "loaded",
    "half_broken", "sources",  # a CMake project that is compiled
}


# pytest-xdist (`-n 2 --dist loadfile`, pyproject.toml) runs the suite on two workers. A module's tests stay on
# one worker, so a module fixture (a packed env, a built stub) is made once; the docker modules share a worker,
# as they assert on the one daemon's containers and tags, and go first, being the longest by far.
DOCKER_MODULES = {"test_docker", "test_image"}


def _unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return "docker" if Path(path).stem in DOCKER_MODULES else path


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if item.get_closest_marker("server") or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: _unit(item.nodeid) != "docker")  # stable: each module keeps its order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile with the docker modules as one unit. (xdist_group marks cannot do it under pytest 9.2:
    xdist 3.8 groups by rewriting Item._nodeid, which pytest 9.2's nodeid no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModulesDockerTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)
    config.option.loadscopereorder = False  # collection order, docker first (xdist >= 3.7 reads it)
    return ModulesDockerTogether(config, log)


ADD_ONE_PY = textwrap.dedent('''
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def initialize(self, args):
            import json
            cfg = json.loads(args["model_config"])
            self.inputs = [i["name"] for i in cfg["input"]]
            self.outputs = [o["name"] for o in cfg["output"]]

        def execute(self, requests):
            responses = []
            for r in requests:
                x = pb_utils.get_input_tensor_by_name(r, self.inputs[0]).as_numpy()
                outs = [pb_utils.Tensor(n, (x + 1).astype(x.dtype)) for n in self.outputs]
                responses.append(pb_utils.InferenceResponse(outs))
            return responses
''')


# A python model that stays in initialize() for a minute: a server caught mid-load.
SLOW_INIT_PY = textwrap.dedent("""
    import time

    class TritonPythonModel:
        def initialize(self, args):
            time.sleep(60)

        def execute(self, requests):
            return []
""")

def python_model(name: str, inputs: list[tuple], outputs: list[tuple], extra: str = "",
                 mbs: int = 0) -> str:
    def io(items):
        return ",\n".join(f'  {{ name: "{n}" data_type: {t} dims: [ {", ".join(map(str, d))} ] }}'
                          for n, t, d in items)
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {mbs}\n'
            f"input [\n{io(inputs)}\n]\noutput [\n{io(outputs)}\n]\n"
            'instance_group [ { kind: KIND_CPU count: 1 } ]\n' + extra)


def write_repo(root: Path, configs: dict[str, str], model_py: str = ADD_ONE_PY) -> Path:
    """A model repository: each python model also gets 1/model.py, an ensemble an empty 1/."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in configs.items():
        d = root / name
        (d / "1").mkdir(parents=True, exist_ok=True)
        (d / "config.pbtxt").write_text(text)
        if 'backend: "python"' in text:
            (d / "1" / "model.py").write_text(model_py)
    return root


def tree_snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under root with its content (files) or link target: to prove nothing changed."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "->" + os.readlink(p)
        elif p.is_file():
            out[key] = p.read_bytes() + oct(p.stat().st_mode).encode()
        else:
            out[key] = "dir"
    return out


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envtool", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


_SPAWNED: list[subprocess.Popen] = []


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM as a terminal gives them. A background job or nohup starts us with
    SIGINT ignored, and children inherit that: a test's Ctrl-C would then do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@functools.lru_cache(maxsize=None)
def have_python(xy: str) -> bool:
    """Whether envtool finds a CPython X.Y with a shared libpython here (pyenv, uv, PATH or the system)."""
    from envtool.env.interpreters import find_interpreter
    from envtool.errors import EnvtoolError
    try:
        find_interpreter(xy)
    except EnvtoolError:
        return False
    return True


def needs_python(xy: str):
    return pytest.mark.skipif(not have_python(xy), reason=f"needs a CPython {xy} with a shared libpython")


def spawn(args: list, **kw) -> subprocess.Popen:
    """Popen for a test that signals its child: default signal dispositions, its own process group, and
    killed with everything it started when the test ends, pass or fail (see _no_process_left)."""
    proc = subprocess.Popen([str(a) for a in args], preexec_fn=_default_signals, start_new_session=True, **kw)
    _SPAWNED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_process_left():
    yield
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def serve_cli(repo: Path, *extra: str) -> tuple[subprocess.Popen, list[str], list[str]]:
    """`envtool serve REPO --triton r24.10` on free ports: (process, its stdout up to "Ctrl-C", ports)."""
    from envtool.servers.base import free_ports
    ports = [str(p) for p in free_ports(3)]
    proc = spawn([sys.executable, "-m", "envtool", "serve", str(repo), "--triton", "r24.10",
                  "--http-port", ports[0], "--grpc-port", ports[1], "--metrics-port", ports[2], *extra],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    return proc, lines, ports


@pytest.fixture(scope="session")
def r2410():
    from envtool.catalog import normalize_release
    return normalize_release("r24.10")


@pytest.fixture(scope="session")
def server_tree_2410(r2410):
    """The unpacked nvidia-pytriton wheel of r24.10 (downloaded once into ENVTOOL_CACHE_DIR)."""
    from envtool.servers.embedded import server_tree
    return server_tree(r2410)


@pytest.fixture(scope="session")
def host_stub(server_tree_2410) -> Path:
    """NVIDIA's prebuilt r24.10 stub for the Python running the tests."""
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    return server_tree_2410 / "pytriton/tritonserver/python_backend_stubs" / v / \
        "triton_python_backend_stub"


def numpy1_site_packages() -> Path:
    """A site-packages holding numpy<2 for the Python running the tests, built once into the cache dir.

    The stubs of r24.10 and older (pybind11 2.10) misread numpy 2 arrays (KNOWLEDGE failure mode 3), so a
    thin env must never inherit whatever numpy the host Python happens to have.
    """
    from envtool.cache import cache_root, publish_dir
    v = f"{sys.version_info.major}.{sys.version_info.minor}"

    def install(tmp: Path) -> None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--no-compile", "--target", str(tmp), "--only-binary", "numpy", "numpy<2"], check=True)
    return publish_dir(cache_root() / "test-site-packages" / f"py{v}-numpy1", install)


def make_thin_env(dest: Path) -> Path:
    """A real env directory on the stdlib of the Python running the tests, with its own numpy<2.

    Holds what Triton needs from an env: bin/activate that puts bin/ first on PATH, bin/python3,
    lib/libpython3.X.so.1.0 and lib/python3.X/. bin/python3 is a copy, not a symlink, so the embedded
    Python takes the env as its prefix (it resolves symlinks) and reads the env's site-packages, never
    the host's. Small, so tarballs of it are fast to extract.
    """
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix)
    libdir = Path(sysconfig.get_config_var("LIBDIR"))
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(base), "base": str(base)})["stdlib"])
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(Path(sys.executable).resolve(), dest / "bin" / "python3")
    (dest / "lib").mkdir()
    (dest / "lib" / f"libpython{v}.so.1.0").symlink_to(libdir / f"libpython{v}.so.1.0")
    lib = dest / "lib" / f"python{v}"
    lib.mkdir()
    for entry in stdlib.iterdir():
        if entry.name != "site-packages":
            (lib / entry.name).symlink_to(entry)
    # Where this Python's site.py looks for a prefix's packages: lib/python3.X/site-packages, or Debian's
    # dist-packages folders for the system Python a README-following user makes the test venv from
    for site_dir in site.getsitepackages([str(dest)]):
        if not os.path.lexists(site_dir):
            Path(site_dir).parent.mkdir(parents=True, exist_ok=True)
            Path(site_dir).symlink_to(numpy1_site_packages())
    (dest / "bin" / "activate").write_text(
        'ENV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"\n'
        'export PATH="$ENV_DIR/bin:$PATH"\n')
    return dest


@pytest.fixture
def thin_env_tarball(tmp_path) -> Path:
    env = make_thin_env(tmp_path / "thin_env")
    out = tmp_path / "custom_env.tar.gz"
    subprocess.run(["tar", "-czf", str(out), "-C", str(env), "."], check=True)
    shutil.rmtree(env)
    return out
