"""What an execution env holds, read without extracting it: a .tar.gz in one streaming pass, or a
directory. Member names, the activate script, the ELF facts of bin/python3 and the top-level lib/
libraries (libpython, libstdc++ ...), Python X.Y, packages and their versions, editable installs."""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import posixpath
import re
import tarfile
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from envtool import elf
from envtool.atomic import write_atomic
from envtool.cache import cache_root, file_sha256
from envtool.elf import ElfFacts, elf_from_bytes
from envtool.env import deflate
from envtool.env.deflate import open_gzip

# site-packages, or where Debian's site.py also looks (an env made from Debian's own Python by other tools)
DIST_INFO = re.compile(r"^(?:local/)?lib/python(?P<py>3\.\d+)/(?:site|dist)-packages/"
                       r"(?P<name>[^/]+?)-(?P<ver>[^-/]+)\.dist-info/(?P<file>[^/]+)$")
LIB_PYTHON = re.compile(r"^lib/python(3\.\d+)$")  # the stdlib folder names X.Y where no dist-info does
TOP_LIB = re.compile(r"^(bin/python3(\.\d+)?|lib/lib[^/]+\.so[.\d]*)$")
MAX_ELF = 64 * 2**20


@dataclass
class EnvView:
    path: Path
    kind: str  # tarball | directory | not gzip | damaged | missing
    names: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)  # regular files (not links, not folders)
    top_folder: str | None = None  # "myenv/" when every member is under one folder (a venv tarball)
    activate: str | None = None
    elves: dict[str, ElfFacts] = field(default_factory=dict)
    python: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    editable: list[str] = field(default_factory=list)
    damage: str | None = None  # kind "damaged": why the archive does not read to its end
    escaping: list[str] = field(default_factory=list)  # members that land outside the env (a few): zip-slip
    links_out: list[str] = field(default_factory=list)  # symlinks that point outside it (a few): not relocatable

    def has(self, name: str) -> bool:
        return name in self.names


def _norm(name: str) -> str:
    return (name[2:] if name.startswith("./") else name).rstrip("/")


def _take(view: EnvView, name: str, read) -> None:
    """One member: record what the checks need (read() gives its bytes, on demand)."""
    view.names.add(name)
    if name == "bin/activate":
        view.activate = read().decode("utf-8", "replace")
    elif TOP_LIB.match(name):
        data = read()
        if data and len(data) < MAX_ELF and (facts := elf_from_bytes(data, name)):
            view.elves[name] = facts
    elif m := DIST_INFO.match(name):
        view.python = m["py"]
        view.packages[m["name"].replace("_", "-")] = m["ver"]
        if m["file"] == "direct_url.json" and b'"editable":true' in read().replace(b" ", b""):
            view.editable.append(m["name"])


def view_env(path: Path) -> EnvView:
    """Directories are read each time; a tarball once per (path, mtime, size), as models share one."""
    if path.is_file():
        st = path.stat()
        return _view_tarball(path, st.st_mtime_ns, st.st_size)
    if path.is_dir():
        view = EnvView(path, "directory")
        for p in sorted(path.rglob("*")):
            if p.is_file() or p.is_symlink():
                rel = p.relative_to(path).as_posix()
                if not p.is_symlink():
                    view.files.add(rel)
                _take(view, rel, lambda p=p: p.read_bytes() if p.is_file() else b"")
            elif p.is_dir():
                view.names.add(p.relative_to(path).as_posix())
        return _python_from_stdlib(view)
    return EnvView(path, "missing")


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    if not path.is_file():  # never open a FIFO or a device: reading could block forever
        return False
    try:
        with path.open("rb") as f:
            return f.read(2) == GZIP_MAGIC
    except OSError:
        return False


def _python_from_stdlib(view: EnvView) -> EnvView:
    """Python X.Y from lib/python3.X/ where no dist-info names it (an env without packages of its own)."""
    if view.python is None:
        found = sorted(m[1] for n in view.names if (m := LIB_PYTHON.match(n)))
        view.python = found[-1] if len(found) == 1 else None
    return view


@lru_cache(maxsize=None)
def _view_tarball(path: Path, _mtime: int, _size: int) -> EnvView:
    """Reading an 80 MB env's listing takes ~1.5 s; its sha256 0.1 s. A view is kept in envtool's cache by the
    archive's sha256 (pack leaves one from its validation pass), so build's inject and verify, and the model
    folders' copies, read the archive at most once."""
    if not is_gzip(path):
        return EnvView(path, "not gzip")
    digest = file_sha256(path)
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        view = pickle.loads(_stored(digest).read_bytes())
        if isinstance(view, EnvView):
            return replace(view, path=path)
    view = _read_tarball(path)
    if view.kind != "damaged":
        remember_view(view, digest)
    return view


def remember_view(view: EnvView, digest: str) -> None:
    """Keep the view of the tarball whose sha256 is digest (best effort: the cache may be read-only)."""
    with contextlib.suppress(OSError):
        _stored(digest).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(_stored(digest), pickle.dumps(view))


def _stored(digest: str) -> Path:
    return cache_root() / "views" / f"{_code_key()}-{digest}.pickle"


@lru_cache(maxsize=None)
def _code_key() -> str:
    """The code that reads a view (this module, elf.py): a change to either makes earlier views unused."""
    return hashlib.sha256(Path(__file__).read_bytes() + Path(elf.__file__).read_bytes()).hexdigest()[:12]


def escapes(name: str, link: str) -> bool:
    """A tar member (or its link) that lands or points outside the folder it is extracted into."""
    if posixpath.isabs(name) or (link and posixpath.isabs(link)):
        return True
    target = posixpath.normpath(posixpath.join(posixpath.dirname(name), link) if link else name)
    return target == ".." or target.startswith("../")


def member_escapes(m: tarfile.TarInfo) -> bool:
    """The member lands outside, or links outside (a symlink relative to its folder, a hard link to the
    archive's root)."""
    return escapes(m.name, "") or ((m.issym() or m.islnk()) and escapes(m.name if m.issym() else "", m.linkname))


def add_member(view: EnvView, m: tarfile.TarInfo, read) -> None:
    """One archive member into the view (read() gives its bytes, on demand)."""
    if member_escapes(m):
        shown = m.name + (f" -> {m.linkname}" if m.linkname else "")
        lands_outside = escapes(m.name, "") or m.islnk()
        found = view.escaping if lands_outside else view.links_out
        if len(found) < 5:
            found.append(shown)
    name = _norm(m.name)
    if not name:
        return
    view.names.add(name)
    if m.isfile():
        view.files.add(name)
        _take(view, name, read)


def finish_view(view: EnvView) -> EnvView:
    """After the last member: the archive's top folder, if all is under one, and Python X.Y."""
    tops = {n.split("/", 1)[0] for n in view.names}
    if len(tops) == 1 and not view.has("bin/activate"):
        view.top_folder = tops.pop() + "/"
    return _python_from_stdlib(view)


def _read_tarball(path: Path) -> EnvView:
    """The listing, read to the gzip trailer (its CRC checked): a truncated, corrupt or non-tar archive is a
    view of kind "damaged" naming why, never an exception."""
    view = EnvView(path, "tarball")
    try:
        with open_gzip(path) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:  # a stream: read once
            for m in tar:
                add_member(view, m, lambda m=m: tar.extractfile(m).read())
            while gz.read(2**20):  # to the end of the gzip stream: its CRC and size are checked there
                pass
    except (EOFError, tarfile.TarError, OSError, *deflate.ERRORS) as e:
        return EnvView(path, "damaged", damage=f"{type(e).__name__}: {e}")
    return finish_view(view)
