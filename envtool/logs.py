"""A Triton server log read into events, in one streaming pass with bounded memory (a log of any size).

What it keeps: which release printed the log (the container's banner, the server_version row, the log format),
the model being loaded at each line, whether each got an execution env ("Using Python execution env"), each
stub start (its stub, its env, its model), the status table, every line a cause of diagnoses.toml matches,
and the lines after the last stub start. envtool/diagnose.py reasons over these facts.
"""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from envtool.errors import BadInput

# The default format (I0421 10:08:17.917892 1 python_be.cc:1811] msg) and ISO8601 (2024-05-20T20:03:25Z I 1
# file:line] msg), anywhere in the line: docker compose and kubectl put their own prefix first.
_PREFIX = re.compile(
    r"(?:^|[\s|>])(?:(?P<lvl>[IWEF])\d{4} \d\d:\d\d:\d\d\.\d+|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?P<lvl2>[IWEF]))"
    r" +\d+ (?P<src>[\w.\-]+:\d+)\] ?(?P<msg>.*)$")
_BANNER = re.compile(r"NVIDIA Release (?P<rel>\d\d\.\d\d)")
_VERSION_ROW = re.compile(r"server_version\s*\|\s*(?P<v>\d+\.\d+\.\d+)")
_LOADING = re.compile(r"loading: (?P<model>[^:\s\"]+):\d+")
_MODEL_INIT = re.compile(r"TRITONBACKEND_ModelInitialize: (?P<model>\S+) \(version")
_ENV = re.compile(r"Using Python execution env (?P<env>\S+?)\"?$")
_START = re.compile(r"Starting Python backend stub(?P<custom> with custom environment)?: (?P<cmd>.*?)\"?$")
_ROW = re.compile(r"^\s*\|\s*(?P<model>[^|\s]+)\s*\|\s*(?P<ver>-?\d+)\s*\|\s*(?P<status>[^|]*?)\s*\|?\s*$")
# Every line a cause (diagnoses.toml) or an error can match holds one of these (tests/test_doctor_logs.py
# checks it over the corpus and every cause's example): a cheap test before the patterns run.
KEYWORDS = ("rror", "ailed", "xception", "denied", "permitted", "not found", "annot", "atal", "Traceback",
            "UNAVAILABLE", "shared memory", "healthy", "xited", "Timed out", "TLS", "numpy", "archive",
            "activate", "anonical", "No module", "does not", "ssertion", "No space", "exists", "No such")
_BINARY_SAMPLE = 8192
_MAX_MATCHES = 1000  # matched lines kept from the start of a log, and as many from its end
_MAX_SEEN = 100_000  # distinct messages remembered, so a message repeated a million times is kept once
_TAIL = 60
_AFTER_START = 400


@dataclass(frozen=True)
class Line:
    n: int  # 1-based line number in the log
    text: str  # as written (stripped of trailing blanks)
    msg: str  # the message: the Triton prefix removed and, in r24.05+'s escaped format, unquoted
    level: str | None  # I W E F for Triton's own lines; None for the stub's stderr, the shell, tracebacks
    src: str | None = None  # "stub_launcher.cc:385"
    model: str | None = None  # the model Triton was loading when it was written (latest loading/stub start)
    pieces: int = 1  # > 1: the physical lines a terminal wrapped, joined back

    @property
    def triton(self) -> bool:
        return self.level is not None


@dataclass
class StubStart:
    line: Line
    model: str | None  # the model folder of the model.py it runs
    stub: str  # the stub's path
    env: str | None  # the env the launcher activates (source ENV/bin/activate, or r25.08+'s custom env)
    runtime_dir: str | None = None  # the stub's last argument where it is a folder: model.py is loaded from it

    @property
    def default_stub(self) -> bool:
        """The backend's own stub (backends/python/), not one in the model folder."""
        return "/backends/python/" in self.stub or self.stub.startswith("/opt/tritonserver/backends")


@dataclass
class LogFacts:
    path: str
    lines: int = 0
    triton_lines: int = 0
    quoted: bool = False  # r24.05+ escapes messages (server r24.05 docs/protocol/extension_logging.md)
    banner_release: str | None = None  # "22.11", from the container's "NVIDIA Release 22.11" banner
    server_version: str | None = None  # "2.28.0", from the options table
    envs: dict[str, str] = field(default_factory=dict)  # model -> EXECUTION_ENV_PATH as Triton resolved it
    starts: list[StubStart] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # the status table: model -> READY / UNAVAILABLE: ...
    matched: list[Line] = field(default_factory=list)  # lines worth reasoning over (see _interesting)
    tail: list[Line] = field(default_factory=list)  # the last non-blank lines
    after_last_start: list[Line] = field(default_factory=list)

    @property
    def recognised(self) -> bool:
        return self.triton_lines > 0 or bool(self.matched)

    @property
    def any_env(self) -> bool:
        return bool(self.envs) or any(s.env for s in self.starts)

    def env_of(self, model: str | None) -> str | None:
        """The env Triton applied to the model, as the log shows it."""
        start = next((s for s in reversed(self.starts) if s.model == model and s.env), None)
        return self.envs.get(model or "") or (start.env if start else None)


def _unquote(msg: str) -> str:
    """r24.05+ writes messages as JSON strings: "Starting ...: \\"x\\"" -> Starting ...: "x"."""
    if len(msg) >= 2 and msg[0] == '"' and msg[-1] == '"':
        try:
            return json.loads(msg)
        except ValueError:
            return msg[1:-1]
    return msg


def parse_line(n: int, text: str) -> Line:
    text = text.rstrip()
    m = _PREFIX.search(text)
    if not m:
        row = _ROW.match(text)  # a status-table row: its message is the status cell, without the closing |
        return Line(n, text, row.group("status") if row else text.strip(), None)
    return Line(n, text, _unquote(m.group("msg").strip()), m.group("lvl") or m.group("lvl2"), m.group("src"))


def _start_of(line: Line) -> StubStart | None:
    m = _START.search(line.msg)
    if not m:
        return None
    cmd = m.group("cmd").replace("'", "")
    stub = next((t for t in cmd.split() if t.endswith("triton_python_backend_stub")), "")
    env = re.search(r"source (\S+)/bin/activate", cmd)
    env_path = env.group(1) if env else None
    model_py = re.search(r"(?:^|/)(?P<model>[^/\s]+)/[^/\s]+/[^/\s]+\.py(?:\s|$)", cmd)
    if m.group("custom") and not env_path:
        env_path = "(r25.08+ custom environment)"
    # r23.xx+ pass runtime_modeldir last: DEFAULT for a python model, a folder for a python-based backend
    # (python_backend src/stub_launcher.cc), whose model.py the stub then loads instead of the model's own.
    tokens = cmd.split()
    runtime = (tokens[-1] if len(tokens) > 4 and tokens[-3].isdigit() and not tokens[-2].isdigit()
               and tokens[-1].startswith("/")
               else None)  # [..., python_lib, ipc_handle, stub_name, runtime_modeldir]
    return StubStart(line, model_py.group("model") if model_py else None, stub, env_path, runtime)


class _Reader:
    """Feeds physical lines; keeps the facts. Lines a terminal wrapped are joined where a pattern needs it."""

    def __init__(self, facts: LogFacts, interesting: re.Pattern):
        self.f = facts
        self.interesting = interesting
        self.tail: deque[Line] = deque(maxlen=_TAIL)
        self.after: list[Line] | None = None
        self.current: str | None = None
        self.prev_raw, self.prev_n = "", 0
        self.wrap: Line | None = None  # the lines a terminal wrapped, joined so far
        self.wrap_raw, self.wrap_width = "", 0
        self.seen: set[int] = set()
        self.late: deque[Line] = deque(maxlen=_MAX_MATCHES)

    def feed(self, n: int, raw: str) -> None:
        raw = raw.rstrip("\r\n")
        line = parse_line(n, raw)
        f = self.f
        f.lines = n
        if not line.text.strip():
            self.prev_raw = ""
            return
        if line.triton:
            f.triton_lines += 1
            f.quoted = f.quoted or '] "' in line.text
        self._events(line)
        line = replace(line, model=self.current)
        joined = self._joined(n, raw, line)
        if joined is not None:
            self._events(joined)  # a start or env path the wrap had cut
        if self._interesting(line.text):
            self._keep(line)
        if joined is not None and self._interesting(joined.text):
            self._keep(joined)
        self.tail.append(line)
        if self.after is not None and len(self.after) < _AFTER_START:
            self.after.append(line)
        self.prev_raw, self.prev_n = raw, n

    def _interesting(self, text: str) -> bool:
        return any(k in text for k in KEYWORDS) and self.interesting.search(text) is not None

    def _keep(self, line: Line) -> None:
        """The first _MAX_MATCHES matched lines and the last _MAX_MATCHES, each message once."""
        key = hash(line.msg)
        if key in self.seen:
            return
        if len(self.seen) < _MAX_SEEN:
            self.seen.add(key)
        if len(self.f.matched) < _MAX_MATCHES:
            self.f.matched.append(line)
        else:
            self.late.append(line)

    def _joined(self, n: int, raw: str, line: Line) -> Line | None:
        """The logical line a terminal wrapped: the line before was long (>= 60 columns; every piece but the
        last of one width) and this one starts no new log entry. Its pieces count, so a cause read from the
        whole line wins over one read from its first piece."""
        prev = self.prev_raw
        if line.triton or self.prev_n != n - 1 or len(prev) < 60:
            self.wrap = None
            return None
        if self.wrap is not None and len(prev) == self.wrap_width:  # a third (fourth...) piece
            first, text, pieces = self.wrap.n, self.wrap_raw + raw, self.wrap.pieces + 1
        else:
            first, text, pieces = n - 1, prev + raw, 2
            self.wrap_width = len(prev)
        self.wrap_raw = text
        self.wrap = replace(parse_line(first, text), model=line.model, pieces=pieces)
        return self.wrap

    def _events(self, line: Line) -> None:
        f, msg, text = self.f, line.msg, line.text
        if f.banner_release is None and "Release" in text and (m := _BANNER.search(text)):
            f.banner_release = m.group("rel")
        if f.server_version is None and "server_version" in text and (m := _VERSION_ROW.search(text)):
            f.server_version = m.group("v")
        if ("loading: " in msg or "ModelInitialize: " in msg) and (m := _LOADING.search(msg) or
                                                                    _MODEL_INIT.search(msg)):
            self.current = m.group("model")
        if "execution env" in msg and (m := _ENV.search(msg)):
            f.envs[self.current or "?"] = m.group("env")
        if "Starting Python backend stub" in msg and (start := _start_of(line)):
            if f.starts and f.starts[-1].line.n == line.n:  # the same start, read whole after a wrap
                f.starts.pop()
            f.starts.append(start)
            self.current = start.model or self.current
            self.after = []
        if not line.triton and "|" in text and (m := _ROW.match(text)) and m.group("model") not in ("Model",
                                                                                                 "Backend"):
            f.status[m.group("model")] = m.group("status")


def read(path: Path, interesting: re.Pattern) -> LogFacts:
    """Read a server log (a file, or - for stdin) into facts, streaming: memory stays bounded."""
    if str(path) == "-":
        return parse(sys.stdin, interesting, "<stdin>")
    try:
        with open(path, "rb") as fh:
            head = fh.read(_BINARY_SAMPLE)
    except IsADirectoryError:
        raise BadInput(f"--log {path} is a folder", "pass the server's log file") from None
    except OSError as e:
        raise BadInput(f"--log {path}: {e.strerror}", "pass the server's log file") from None
    if not head.strip():
        raise BadInput(f"--log {path} is empty", "pass the server's log (tritonserver ... 2>&1 | tee server.log)")
    if b"\0" in head:
        raise BadInput(f"--log {path} is a binary file, not a Triton log",
                       "pass the server's text log (tritonserver ... 2>&1 | tee server.log)")
    with open(path, encoding="utf-8", errors="replace", newline=None) as fh:
        return parse(fh, interesting, str(path))


def parse(lines, interesting: re.Pattern, name: str = "<log>") -> LogFacts:
    """Facts from an iterable of lines (a file object streams: memory stays bounded)."""
    facts = LogFacts(name)
    reader = _Reader(facts, interesting)
    for n, raw in enumerate(lines, 1):
        reader.feed(n, raw)
    facts.matched += reader.late
    facts.tail = list(reader.tail)
    facts.after_last_start = reader.after or []
    return facts


def read_corpus_entry(path: Path) -> dict:
    """A log of tests/fixtures/logs: its header (source, release, expect, established) and `body` (the log);
    `expect` is the set of cause ids the thread allows ("none" for a log that shows no failure)."""
    head: dict = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    header, sep, body = text.partition("\n# ---\n")
    for raw in header.splitlines():
        key, _, value = raw[2:].partition(":")
        head[key.strip()] = value.strip()
    head["expect"] = {e.strip() for e in head.get("expect", "none").split("|")}
    head["body"] = body if sep else text
    return head
