"""Putting files in place so that readers see the old or the new version, never half of one, and
an interruption (disk full, Ctrl-C) leaves no temp behind: work in a temp beside the target, rename."""

from __future__ import annotations

import filecmp
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, text: str | bytes) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old or the new file, never half."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stage(dest: Path, fill: Callable[[Path], None]) -> Path:
    """A temp path beside dest (in its own hidden folder), filled by fill(tmp); removed on failure."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent)) / dest.name
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp.parent, ignore_errors=True)
        raise
    return tmp


@contextmanager
def staging_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh hidden folder in parent to build into; removed on the way out unless publish_folder renamed it
    into place: the temp-then-rename of every build (the env cache, the stub store, the server trees)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_folder(tmp: Path, dest: Path) -> None:
    """Rename a staging folder to dest, replacing what an earlier run left there; mode 0755 (mkdtemp makes
    0700, and the server may run as another user)."""
    tmp.chmod(0o755)
    if dest.exists() or dest.is_symlink():
        remove(dest)
    tmp.rename(dest)


def publish(tmp: Path, dest: Path) -> None:
    """Rename tmp over dest; an existing directory is swapped out first, then removed."""
    if dest.is_dir() and not dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old")
        remove(old)
        dest.rename(old)
        tmp.rename(dest)
        remove(old)
    else:
        os.replace(tmp, dest)


def remove(path: Path) -> None:
    """Remove a file, link or tree, and the hidden staging folder around it once empty."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    parent = path.parent
    if parent.name.startswith(".") and parent.exists() and not any(parent.iterdir()):
        parent.rmdir()


def same_content(src: Path, dest: Path) -> bool:
    """dest is already a copy of src: a file byte for byte; a tree with the same names, links and files (by
    type, size and mtime, which copies keep: comparing 5 600 files' bytes would cost what copying them does)."""
    if dest.is_symlink() or not dest.exists():
        return False
    if src.is_dir():
        return dest.is_dir() and not _dir_differs(src, dest)
    if not dest.is_file():
        return False
    try:
        return filecmp.cmp(src, dest, shallow=False)
    except PermissionError:  # a stub Triton's probe left at ---x------: given back 0755, then compared
        if not restore_after_triton_probe(dest):
            raise
        return filecmp.cmp(src, dest, shallow=False)


def _dir_differs(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return True
    return any(_dir_differs(a / d, b / d) for d in cmp.common_dirs)


def copy_into_place(src: Path, dest: Path) -> None:
    """Copy a file or a tree (symlinks kept) to dest atomically; nothing is written where dest is already
    that copy (same_content)."""
    if same_content(src, dest):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = stage(dest, lambda t: shutil.copytree(src, t, symlinks=True) if src.is_dir() else shutil.copy2(src, t))
    try:
        publish(tmp, dest)
    finally:
        remove(tmp)


TRITON_PROBE_MODE = stat.S_IXUSR  # ---x------


def restore_after_triton_probe(path: Path) -> bool:
    """Triton runs a stub with no arguments before starting it and, unless that exits 1, chmods it to S_IXUSR
    (python_backend src/stub_launcher.cc, r22.11 on): a stub the user owns is then unreadable to them, and the
    next inject, doctor or verify could not read it. Give it back 0755; True if it was so."""
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) != TRITON_PROBE_MODE or st.st_uid != os.geteuid():
            return False
        os.chmod(path, 0o755)
        return True
    except OSError:
        return False
