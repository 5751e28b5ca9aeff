"""All-or-nothing changes to a model repository (inject): every new file is staged beside its destination,
a journal at the repository's root lists each move, the moves run with Ctrl-C and SIGTERM held, and only then
is the journal marked committed. A run killed anywhere (even by SIGKILL) leaves either the old repository or
the new one: the next envtool run that loads the repository rolls an uncommitted journal back, finishes a
committed one, and removes staging folders no journal names."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envtool.atomic import write_atomic

JOURNAL = ".envtool-inject.journal"
STAGE_PREFIX = ".envtool-stage."  # hidden folders beside each destination: Triton ignores them
BACKUP_SUFFIX = ".envtool-old"


@dataclass
class _Move:
    dest: Path
    staged: Path
    backup: Path | None = None

    def to_dict(self) -> dict:
        return {"dest": str(self.dest), "staged": str(self.staged),
                "backup": str(self.backup) if self.backup else None}


class Transaction:
    """stage() each file, then commit(); on any exception before commit() nothing has changed."""

    def __init__(self, root: Path):
        self.root = root
        self.moves: list[_Move] = []

    def stage(self, dest: Path, fill: Callable[[Path], None]) -> None:
        folder = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{dest.name}.", dir=dest.parent))
        self.moves.append(_Move(dest, folder / dest.name))
        fill(folder / dest.name)

    def stage_text(self, dest: Path, text: str) -> None:
        """A new version of a text file (a config): written through a symlink, its mode kept."""
        target = dest.resolve() if dest.is_symlink() else dest
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644

        def fill(tmp: Path) -> None:
            tmp.write_text(text)
            os.chmod(tmp, mode)
        self.stage(target, fill)

    def commit(self) -> None:
        """The journal, then the moves (call with signals held), then the journal marked committed."""
        for m in self.moves:
            if m.dest.exists() or m.dest.is_symlink():
                m.backup = m.dest.with_name(m.dest.name + BACKUP_SUFFIX)
        journal = self.root / JOURNAL
        write_atomic(journal, json.dumps({"committed": False, "moves": [m.to_dict() for m in self.moves]}))
        for m in self.moves:
            if m.backup is not None:
                _remove(m.backup)
                os.rename(m.dest, m.backup)
            os.rename(m.staged, m.dest)
        write_atomic(journal, json.dumps({"committed": True, "moves": [m.to_dict() for m in self.moves]}))
        _finish(journal)

    def abandon(self) -> None:
        """Before commit: remove what was staged."""
        for m in self.moves:
            _remove(m.staged.parent)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _finish(journal: Path) -> None:
    """A committed journal: the backups and staging folders go, then the journal."""
    for m in json.loads(journal.read_text())["moves"]:
        if m["backup"]:
            _remove(Path(m["backup"]))
        _remove(Path(m["staged"]).parent)
    journal.unlink()


def _roll_back(journal: Path) -> None:
    """An uncommitted journal: every destination gets its old content back, in reverse order."""
    for m in reversed(json.loads(journal.read_text())["moves"]):
        dest, staged, backup = Path(m["dest"]), Path(m["staged"]), m["backup"]
        if backup and (Path(backup).exists() or Path(backup).is_symlink()):
            _remove(dest)
            os.rename(backup, dest)
        elif not backup and not staged.exists() and (dest.exists() or dest.is_symlink()):
            _remove(dest)  # it was placed by the interrupted run: the repository had none
        _remove(staged.parent)
    journal.unlink()


def recover(root: Path) -> str | None:
    """Make a repository whole after an interrupted inject; what was done, or None when nothing was needed."""
    journal = root / JOURNAL
    done = None
    if journal.is_file():
        try:
            committed = json.loads(journal.read_text()).get("committed")
        except ValueError:  # the journal itself half-written: nothing was moved yet
            journal.unlink()
            committed = None
        if committed is True:
            _finish(journal)
            done = "finished an interrupted inject"
        elif committed is False:
            _roll_back(journal)
            done = "rolled back an interrupted inject"
    if not journal.exists():
        for folder in _stage_folders(root):
            shutil.rmtree(folder, ignore_errors=True)
            done = done or "removed an interrupted inject's staging folders"
    for tmp in root.glob(f".{JOURNAL}.*"):  # write_atomic's temp file: a run killed while writing the journal
        tmp.unlink(missing_ok=True)
        done = done or "removed an interrupted inject's half-written journal"
    return done


def _stage_folders(root: Path) -> list[Path]:
    """Staging folders at the root and one level below (model folders), which only a killed run leaves."""
    out = []
    with os.scandir(root) as top:
        for entry in top:
            if entry.name.startswith(STAGE_PREFIX) and entry.is_dir(follow_symlinks=False):
                out.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                with contextlib.suppress(OSError):
                    out += [p for p in Path(entry.path).iterdir() if p.name.startswith(STAGE_PREFIX)]
    return out
