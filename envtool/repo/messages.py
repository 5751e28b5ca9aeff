"""Triton's own error texts (triton_messages.toml), as the release given to lint prints them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from envtool.catalog import Release, tomllib
from envtool.elf import version_key


@lru_cache(maxsize=None)
def _table() -> dict:
    return tomllib.loads((Path(__file__).parent / "triton_messages.toml").read_text())



@dataclass(frozen=True)
class Messages:
    """Texts for one release (None: the newest)."""
    release: Release | None = None

    def __call__(self, message_id: str, **fields) -> str:
        entry = _table()[message_id]
        text = entry["text"]
        if self.release is not None:
            for older in entry.get("until", []):
                if version_key(self.release.release) <= version_key(older["release"]):
                    text = older["text"]
        return text.format(**fields)


NEWEST = Messages()  # Triton's texts as the newest release prints them


def message_ids() -> list[str]:
    return list(_table())
