"""Triton log lines -> causes and fixes, from the data file diagnoses.toml.

Used by the servers (model states the repository index does not report), verify's log watcher
(stop at once on a cause that makes Triton hang) and doctor --log.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from envtool.catalog import tomllib
from envtool.findings import Finding


@dataclass(frozen=True)
class Diagnosis:
    id: str
    cause: str
    fix: str
    line: str  # the log line it was recognised in
    hang: bool  # Triton waits forever instead of failing
    mode: int  # KNOWLEDGE.md section 4 item

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=None)
def _data() -> dict:
    return tomllib.loads((Path(__file__).parent / "diagnoses.toml").read_text())


@lru_cache(maxsize=None)
def _causes() -> list[tuple[re.Pattern, dict]]:
    return [(re.compile(c["pattern"]), c) for c in _data()["cause"]]


def causes() -> dict[str, dict]:
    """id -> the cause's entry (pattern, cause, fix, and for some an `example` line of what Triton prints)."""
    return {c["id"]: c for c in _data()["cause"]}


@lru_cache(maxsize=None)
def _load_failure_patterns() -> list[re.Pattern]:
    return [re.compile(d["pattern"]) for d in _data()["load_failure"]]


def scan(text: str) -> list[Diagnosis]:
    """Every known cause in text, once each, in the order they first appear."""
    found: dict[tuple[str, str], Diagnosis] = {}
    for line in text.splitlines():
        for pattern, c in _causes():
            if m := pattern.search(line):
                groups = {k: v or "" for k, v in m.groupdict().items()}
                d = Diagnosis(c["id"], c["cause"].format(**groups), c["fix"].format(**groups), line.strip()[:400],
                              c.get("hang", False), c["mode"])
                found.setdefault((d.id, d.cause), d)
    return list(found.values())


def load_failures(log: str) -> dict[str, str]:
    """model -> the reason Triton logged for rejecting it (first one wins)."""
    out: dict[str, str] = {}
    for line in log.splitlines():
        for pat in _load_failure_patterns():
            if m := pat.search(line):
                out.setdefault(m.group("model"), m.group("reason"))
    return out


def hang_hint(text: str) -> str:
    """A hang that prints no error line: the log ends while a stub is being started or initialised."""
    tail = [ln for ln in text.splitlines() if ln.strip()][-3:]
    if any("Starting Python backend stub" in ln for ln in tail):
        return ("the last log line starts a stub that never answered: a stub from another Triton release "
                "(build one for this release: envtool stub --triton <release>)")
    if tail and "TRITONBACKEND_ModelInstanceInitialize" in tail[-1]:
        return ("the log ends in a model instance's initialize(): it is still running or stuck there "
                "(heavy work or a deadlock in initialize)")
    return ""


def explain(text: str) -> tuple[list[Finding], list[Diagnosis]]:
    """A whole Triton log: the models it rejected (with Triton's reason), the hang signature of a log that
    ends while a stub starts, and every known cause."""
    findings = []
    for model, reason in load_failures(text).items():
        first = reason.strip().splitlines()[0] if reason.strip() else reason
        findings.append(Finding("load-failed", "error", model, first, reason))
    if hint := hang_hint(text):
        findings.append(Finding("hang", "error", None, hint, "no error line: the server waits forever",
                                "envtool stub --triton <the server's release>"))
    return findings, scan(text)
