"""Findings where users look: SARIF 2.1.0 (code scanning) and GitHub workflow annotations.

A Finding's `where` is a path or path:line:col; paths are written relative to the working directory
when they lie under it (code scanning resolves them against the repository's root)."""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from pathlib import Path

import envtool
from envtool.findings import Finding

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
GITHUB_COMMAND = {"error": "error", "warning": "warning", "info": "notice"}
_WHERE = re.compile(r"^(?P<path>.*?)(?::(?P<line>\d+)(?::(?P<col>\d+))?)?$")


def _split(where: str | None) -> tuple[str | None, int | None, int | None]:
    if not where:
        return None, None, None
    m = _WHERE.match(where)
    path = m.group("path")
    with contextlib.suppress(ValueError):  # outside the working directory: it stays absolute
        path = str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    line, col = m.group("line"), m.group("col")
    return path, int(line) if line else None, int(col) if col else None


def _text(f: Finding) -> str:
    parts = [f"{f.model}: {f.message}" if f.model else f.message]
    if f.triton:
        parts.append(f"Triton says: {f.triton}")
    if f.fix:
        parts.append(f"Fix: {f.fix}")
    return "\n".join(parts)


def to_sarif(findings: list[Finding]) -> dict:
    rules = sorted({f.rule for f in findings})
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "envtool", "version": envtool.__version__,
                            "rules": [{"id": r, "name": r} for r in rules]}},
        "results": [_result(f, rules.index(f.rule)) for f in findings]}]}


def sarif_failure(message: str) -> dict:
    """A valid SARIF log for a run that could not check anything (bad input, a crash): no results, and the
    reason as a failed invocation, so a CI step uploading the file gets a document, not an empty file."""
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "envtool", "version": envtool.__version__, "rules": []}},
        "invocations": [{"executionSuccessful": False,
                         "toolExecutionNotifications": [{"level": "error", "message": {"text": message}}]}],
        "results": []}]}


def _result(f: Finding, rule_index: int) -> dict:
    out = {"ruleId": f.rule, "ruleIndex": rule_index, "level": SARIF_LEVEL[f.severity],
           "message": {"text": _text(f)}}
    path, line, col = _split(f.where)
    if path:
        region = {"startLine": line, **({"startColumn": col} if col else {})} if line else None
        physical = {"artifactLocation": {"uri": urllib.parse.quote(Path(path).as_posix())},
                    **({"region": region} if region else {})}
        out["locations"] = [{"physicalLocation": physical}]
    return out


def _escape(value: str, prop: bool = False) -> str:
    """GitHub's workflow-command escaping (actions/toolkit issueCommand)."""
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if prop else value


def to_github(findings: list[Finding]) -> str:
    """One `::error file=...,line=...::message` line per finding."""
    lines = []
    for f in findings:
        path, line, col = _split(f.where)
        props = [("file", path), ("line", line), ("col", col), ("title", f"envtool {f.rule}")]
        head = ",".join(f"{k}={_escape(str(v), prop=True)}" for k, v in props if v is not None)
        lines.append(f"::{GITHUB_COMMAND[f.severity]} {head}::{_escape(_text(f))}")
    return os.linesep.join(lines)
