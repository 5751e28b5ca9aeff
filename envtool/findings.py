"""A finding: what is wrong, where, what Triton would print, and the fix. Shared by lint and doctor."""

from __future__ import annotations

from dataclasses import asdict, dataclass

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    model: str | None
    message: str
    triton: str | None = None  # the message Triton itself prints for this, where there is one
    fix: str | None = None
    where: str | None = None  # path or path:line:col

    def to_dict(self) -> dict:
        return asdict(self)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
