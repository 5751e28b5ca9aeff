"""A tritonserver behind a context manager: start, wait, ask, and always stop.

Cleanup is guaranteed in __exit__: the whole process group (server and stubs) is terminated, then
killed after a grace period, and the /tmp/python_env_* folders that appeared while it ran are removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from google.protobuf import json_format

from envtool.cache import cache_root
from envtool.catalog import Release
from envtool.diagnose import load_failures
from envtool.errors import BadInput, CheckFailed
from envtool.repo.config import ModelConfig
from envtool.signals import deferred_signals

ENV_GLOB = "/tmp/python_env_*"
# The python backend's shared-memory region per model instance: unlinked on a clean exit, left behind (1 MiB
# and more each, in RAM) when the server is killed
SHM_GLOB = "/dev/shm/triton_python_backend_shm_region_*"


def free_ports(n: int) -> list[int]:
    """n distinct free ports: the sockets are held until all are chosen (one at a time, the kernel may hand out
    the same port twice, and Triton then refuses "GRPC and metrics at the same address and port")."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


KEEP_LOGS = 20  # server logs kept in the cache's logs/ folder: the newest, for doctor --log


def new_log_path() -> Path:
    """A fresh server log in $ENVTOOL_CACHE_DIR/logs/, the oldest beyond KEEP_LOGS removed (one per verify
    piled up in /tmp before)."""
    folder = cache_root() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    logs = sorted(folder.glob("envtool-triton-*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:max(0, len(logs) - KEEP_LOGS + 1)]:
        with contextlib.suppress(OSError):
            old.unlink()
    return Path(tempfile.mkstemp(prefix="envtool-triton-", suffix=".log", dir=folder)[1])


def require_free_ports(address: str, ports: dict[str, int]) -> None:
    """Each option's port can be bound on address; else one line naming the option and the port (exit 2), not
    a server that fails to start with "see its log"."""
    for option, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as e:
                raise BadInput(f"{option} {port} cannot be used on {address}: {e.strerror}",
                               f"stop what listens there, or pass another {option}") from None


def _die_with_parent() -> None:
    """In the child: be killed if envtool dies, even by SIGKILL (Linux PR_SET_PDEATHSIG). The stubs
    watch their server and exit with it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class Server:
    """What every kind shares: arguments, ports, the log file, HTTP helpers and readiness. A kind
    implements start(args), stop(), exited() and wait()."""

    kind = "server"

    def __init__(self, release: Release, repo: Path, *, log_path: Path | None = None,
                 extra_args: tuple[str, ...] = (), ports: tuple[int, int, int] | None = None,
                 address: str = "127.0.0.1", allow_partial: bool = False):
        self.release = release
        # Strict readiness: /v2/health/ready fails while any model asked for is not READY (a probe must
        # not pass a server that serves nothing); allow_partial serves the rest as ready.
        self.allow_partial = allow_partial
        self.ports = ports  # http, grpc, metrics; free ones when None
        self.address = address
        self.repo = Path(repo).resolve()  # relative repos race in Triton's chdir (KNOWLEDGE 3)
        self.extra_args = extra_args
        self.log_path = log_path or new_log_path()
        self.http_port = self.grpc_port = self.metrics_port = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def identity(self) -> dict:
        """What a verdict of this server depends on (envtool.lock's inputs): its binary and arguments."""
        binary = Path(self.command()[0])
        st = binary.stat()
        return {"kind": self.kind, "binary": str(binary), "stamp": [st.st_size, st.st_mtime_ns],
                "args": list(self.extra_args)}

    def start(self, args: list[str]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def exited(self) -> int | None:
        """The exit code once the server has ended, else None."""
        raise NotImplementedError

    def wait(self) -> int:
        raise NotImplementedError

    def repository_arg(self) -> str:
        """--model-repository as the server sees it."""
        return str(self.repo)

    def triton_args(self) -> list[str]:
        return [*self.command(), "--model-repository", self.repository_arg(),
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--metrics-port", str(self.metrics_port), "--http-address", self.address,
                "--grpc-address", self.address, "--model-control-mode", "explicit",
                "--load-model", "*", "--exit-on-error", "false",
                "--strict-readiness", "false" if self.allow_partial else "true",
                *self.extra_args]

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._host}:{self.grpc_port}"

    @property
    def _host(self) -> str:
        return "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address

    def __enter__(self):
        self.http_port, self.grpc_port, self.metrics_port = self.ports or free_ports(3)
        try:
            self.start(self.triton_args())
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        with deferred_signals():  # a second Ctrl-C or SIGTERM must not cut the clean-up short
            self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, method: str = "GET", body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)

    def wait_live(self, timeout: float = 120.0, watch=None) -> None:
        """Until the HTTP endpoint answers (in explicit mode, after the initial loads). watch(), called
        on every poll, may raise to stop early (verify's log watcher)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if watch is not None:
                watch()
            if (code := self.exited()) is not None:
                raise CheckFailed(f"tritonserver exited with code {code}",
                                  f"see its log: {self.log_path}")
            try:
                if self.get("/v2/health/live")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise CheckFailed(f"tritonserver was not live after {timeout:.0f} s",
                          f"see its log: {self.log_path}")

    def ready(self) -> bool:
        try:
            return self.get("/v2/health/ready")[0] == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def loaded_config(self, name: str) -> ModelConfig:
        """The config Triton runs the model with: auto-completed, defaults filled in."""
        _, data = self.get(f"/v2/models/{urllib.parse.quote(name)}/config")
        return json_format.ParseDict(data, ModelConfig(), ignore_unknown_fields=True)

    def version(self) -> str:
        return self.get("/v2")[1].get("version", "")

    def model_states(self) -> dict[str, dict]:
        """name -> {state, reason}: the repository index, plus the models the log says were
        rejected before they could be indexed (their config failed validation at poll time)."""
        _, index = self.get("/v2/repository/index", "POST", {})
        states = {m["name"]: {"state": m.get("state", ""), "reason": m.get("reason", "")}
                  for m in index}
        for model, reason in load_failures(self.log()).items():
            st = states.setdefault(model, {"state": "", "reason": ""})
            if st["state"] in ("", "UNAVAILABLE"):
                st["state"], st["reason"] = "UNAVAILABLE", st["reason"] or reason
        return states


class ProcessServer(Server):
    """A tritonserver process on this host, in its own process group."""

    kind = "process"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.env_add: dict[str, str] = {}  # set by subclasses: variables their binary needs
        self.path_add: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._envs_before: set[str] = set()
        self._shm_before: set[str] = set()

    def start(self, args: list[str]) -> None:
        env = dict(os.environ)
        env.update(self.env_add)
        if "LD_LIBRARY_PATH" in self.env_add and os.environ.get("LD_LIBRARY_PATH"):
            env["LD_LIBRARY_PATH"] += os.pathsep + os.environ["LD_LIBRARY_PATH"]
        env["PATH"] = os.pathsep.join([*self.path_add, env.get("PATH", "")])
        self._envs_before = set(glob.glob(ENV_GLOB))
        self._shm_before = set(glob.glob(SHM_GLOB))
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True, preexec_fn=_die_with_parent)

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        ours = _shared_paths_used_by(_group(self.proc.pid)) if self.proc is not None else set()
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self._signal(signal.SIGKILL)  # stubs left in the group
        leftover = self._new_env_roots()  # Triton leaves them behind when killed
        regions = sorted(set(glob.glob(SHM_GLOB)) - self._shm_before)
        used_elsewhere, triton_elsewhere = _claimed_elsewhere() if leftover or regions else (set(), False)
        for d in leftover:
            if removable(d, ours, used_elsewhere, triton_elsewhere):
                shutil.rmtree(d, ignore_errors=True)
        for r in regions:  # what this server's processes mapped (dying, they may still show it), or nobody maps
            if removable(r, ours, used_elsewhere, triton_elsewhere):
                with contextlib.suppress(OSError):
                    os.unlink(r)

    def _new_env_roots(self) -> list[str]:
        return sorted(set(glob.glob(ENV_GLOB)) - self._envs_before)

    def extracted_envs(self) -> list[str]:
        """The env extractions this server's stubs run from (/tmp/python_env_*/N), not another server's beside
        it: asked while the server runs."""
        used = _shared_paths_used_by(_group(self.proc.pid)) if self.proc is not None else set()
        return [p for d in self._new_env_roots() if d in used for p in sorted(glob.glob(f"{d}/*"))]

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


# /tmp/python_env_* is shared by every Triton on the machine: another server's extraction (a second envtool
# verify, a CI job beside this one) must survive this server's clean-up. What this server's processes use is
# ours; a new folder nobody uses is ours too. Another tritonserver extracting one has it as its cwd (the python
# backend's ExtractTarFile chdir()s into it) or holds its files open: that is "used elsewhere". Only in the
# moment between its mkdtemp() and that chdir() is it unused, so while another tritonserver runs a folder
# younger than FRESH_S is kept.
FRESH_S = 5.0


def removable(path: str, ours: set[str], used_elsewhere: set[str], triton_elsewhere: bool) -> bool:
    """May this server's clean-up remove an env folder or shm region that appeared while it ran?"""
    if path in ours:
        return True
    if path in used_elsewhere:
        return False
    if triton_elsewhere:
        try:
            return time.time() - os.stat(path).st_mtime > FRESH_S
        except OSError:
            return False
    return True

def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _group(pgid: int) -> list[int]:
    out = []
    for pid in _pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                out.append(pid)
    return out


def _shared_paths_used_by(pids: list[int]) -> set[str]:
    """The /tmp/python_env_* folders these processes run in, map files from, hold open or name in their
    environment, and the python backend's shared-memory regions they map or hold open. The environment
    counts: Triton's launcher starts a stub with the env's lib/ in LD_LIBRARY_PATH (python_backend,
    src/stub_launcher.cc), and an env whose libpython is a symlink maps nothing from its own folder."""
    roots: set[str] = set()
    prefix, shm = ENV_GLOB[:-1], SHM_GLOB[:-1]
    for pid in pids:
        with contextlib.suppress(OSError):
            paths = [os.readlink(f"/proc/{pid}/cwd")] + Path(f"/proc/{pid}/maps").read_text().split()
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
                paths += [p for var in environ.split("\0") for p in var.partition("=")[2].split(":")]
            with contextlib.suppress(OSError):
                paths += [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            roots |= {"/".join(p.split("/")[:3]) for p in paths if p.startswith(prefix)}
            roots |= {p for p in paths if p.startswith(shm)}
    return roots


def _claimed_elsewhere() -> tuple[set[str], bool]:
    """The env folders other processes use, and whether another tritonserver runs (it may be extracting
    one right now): one pass over /proc for every folder to judge."""
    live = [pid for pid in _pids() if pid != os.getpid()]
    triton = False
    for pid in live:
        with contextlib.suppress(OSError):
            triton = triton or Path(f"/proc/{pid}/comm").read_text().strip() == "tritonserver"
    return _shared_paths_used_by(live), triton
