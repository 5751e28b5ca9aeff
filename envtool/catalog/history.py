"""Which release printed a log, as a span of releases, and what changed when (history.toml, and the
per-release flags of releases.toml): a cause that cannot apply to the span is not given."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from envtool.catalog import Release, releases, tomllib

# The per-release flags of releases.toml that are changes too (their first release is read from there).
_FLAGS = {"dir-env": "dir_env", "parsed-launcher": "launcher", "secure-extract": "secure_extract"}


@lru_cache(maxsize=None)
def _data() -> dict:
    return tomllib.loads((Path(__file__).parent / "history.toml").read_text())


def release_key(release: str) -> tuple[int, int]:
    yy, mm = release.split(".")
    return int(yy), int(mm)


@lru_cache(maxsize=None)
def first_release(change: str) -> str:
    """The first release that has the change, e.g. first_release("model-dir-variable") == "21.09"."""
    if change in _FLAGS:
        flag = _FLAGS[change]
        return next(r.release for r in sorted(releases(), key=lambda r: release_key(r.release))
                    if getattr(r, flag) not in (False, "activate"))
    return next(c["first"] for c in _data()["change"] if c["id"] == change)


def release_of_server(version: str) -> str | None:
    """2.28.0 -> 22.11 (the catalog), 2.13.0 -> 21.08 (history.toml for the releases before it)."""
    by_server = {r.server: r.release for r in releases()}
    return by_server.get(version) or _data()["server_versions"].get(version)


@dataclass(frozen=True)
class ReleaseSpan:
    """The releases a log can come from: lo..hi (None: unbounded), and how that was told."""

    lo: str | None = None
    hi: str | None = None
    how: str = "unknown"

    @property
    def exact(self) -> str | None:
        return self.lo if self.lo and self.lo == self.hi else None

    def may_be(self, first: str | None, before: str | None) -> bool:
        """Whether some release of the span is >= first and < before."""
        if first and self.hi and release_key(self.hi) < release_key(first):
            return False
        return not (before and self.lo and release_key(self.lo) >= release_key(before))

    def before(self, change: str) -> bool:
        """Every release of the span predates the change."""
        return self.hi is not None and release_key(self.hi) < release_key(first_release(change))

    def text(self) -> str:
        if self.exact:
            return f"r{self.exact}"
        if self.lo and not self.hi:
            return f"r{self.lo} or later"
        if self.hi and not self.lo:
            return f"r{self.hi} or earlier"
        return f"r{self.lo}..r{self.hi}" if self.lo else "the server's release"

    def to_dict(self) -> dict:
        return {"first": self.lo, "last": self.hi, "how": self.how}


def release_span(given: Release | None, banner: str | None, server_version: str | None,
                 quoted: bool) -> ReleaseSpan:
    """--triton first, then the container's banner, the server version, and the log format."""
    if given:
        return ReleaseSpan(given.release, given.release, "--triton")
    if banner:
        return ReleaseSpan(banner, banner, "the container's banner (NVIDIA Release)")
    if server_version and (r := release_of_server(server_version)):
        return ReleaseSpan(r, r, f"server_version {server_version}")
    if quoted:
        return ReleaseSpan(first_release("escaped-log"), None, "the log format (escaped messages: r24.05+)")
    return ReleaseSpan()
