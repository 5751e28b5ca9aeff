"""Debug info off the ELF files of an env, on the way into the archive: binutils' `strip --strip-debug` on a
copy, so a user's prefix is never written. Nothing at run time reads .debug_* sections, and every model load
extracts them: pyenv's libpython alone carries 10 MB, PyYAML's extension 2 MB, OpenBLAS 0.7 MB.

A stripped copy is used only where the process image is provably the same: equal program headers and, for
each loadable segment, the same bytes (the ELF header masked: strip rewrites its section-table fields). An
ELF that patchelf or auditwheel rewrote is where strip has been known to misplace segments; such a copy is
dropped and the original packed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import conda_pack
from conda_pack.core import File
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from envtool.runner import run

DEBUG_SECTIONS = (".debug_", ".zdebug_")


@dataclass
class Stripped:
    files: int = 0
    bytes: int = 0  # saved
    refused: int = 0  # copies whose loadable segments strip changed: packed unstripped

    def manifest(self) -> dict:
        return {"files": self.files, "bytes_saved": self.bytes, "refused": self.refused,
                "why": "debug sections (.debug_*) are never read at run time; the loadable segments are "
                       "byte-identical to the originals"}


def _read(path: str, fn):
    """fn(ELFFile) for an ELF file; None for anything else or a damaged one."""
    try:
        with open(path, "rb") as f:
            return fn(ELFFile(f)) if f.read(4) == b"\x7fELF" and f.seek(0) == 0 else None
    except (ELFError, OSError, ValueError):
        return None


def has_debug(path: str) -> bool:
    """A debug section's name is in the section-name table: one section read, not every header parsed (the
    scan of an env's ~300 ELF files takes a tenth of the time). A name there with no such section only costs
    a copy that strip leaves as it was."""
    return bool(_read(path, _names_debug))


def _names_debug(elf: ELFFile) -> bool:
    if not elf["e_shstrndx"] or elf["e_shstrndx"] >= elf.num_sections():
        return False
    names = elf.get_section(elf["e_shstrndx"]).data()
    return any(b"\0" + prefix.encode() in names for prefix in DEBUG_SECTIONS)


def image_digest(path: str) -> str | None:
    """What the loader maps: the program headers (less file offsets) and each loadable segment's bytes."""
    return _read(path, _image_digest)


def _image_digest(elf: ELFFile) -> str:
    h = hashlib.sha256()
    ehsize = elf["e_ehsize"]
    for seg in elf.iter_segments():
        hdr = seg.header
        h.update(repr((hdr.p_type, hdr.p_vaddr, hdr.p_filesz, hdr.p_memsz, hdr.p_flags, hdr.p_align)).encode())
        if hdr.p_type == "PT_LOAD":
            data = bytearray(seg.data())
            if hdr.p_offset < ehsize:  # the segment holding the ELF header, whose section-table fields change
                data[:ehsize - hdr.p_offset] = bytes(ehsize - hdr.p_offset)
            h.update(data)
    return h.hexdigest()


def strip_debug(env: conda_pack.CondaEnv, work: Path, log) -> tuple[conda_pack.CondaEnv, Stripped]:
    """env with each ELF file that has debug sections packed from a stripped copy in work/."""
    out = Stripped()
    tool = shutil.which("strip")
    # conda's binary prefix placeholders are rewritten by conda-unpack at fixed offsets: left as they are
    debug = [f for f in env.files if f.prefix_placeholder is None and has_debug(f.source)]
    if tool is None or not debug:
        if tool is None and debug:
            log("no `strip` (binutils) here: the env keeps its debug info")
        return env, out
    work.mkdir(parents=True, exist_ok=True)
    copies = {}
    for i, f in enumerate(debug):
        copies[f.target] = dest = work / f"{i}-{Path(f.source).name}"
        shutil.copyfile(f.source, dest)
        dest.chmod(0o700)
    with ThreadPoolExecutor(1) as pool:  # strip is another process: the originals are read meanwhile
        stripping = pool.submit(run, [tool, "--strip-debug", *map(str, copies.values())], check="strip")
        originals = {f.target: image_digest(f.source) for f in debug}
        stripping.result()
    replaced = {}
    for f in debug:
        copy = copies[f.target]
        digest = image_digest(str(copy))
        if digest is None or digest != originals[f.target]:
            out.refused += 1
            continue
        st = os.stat(f.source)
        copy.chmod(st.st_mode & 0o7777)  # the archive takes its mode from the source
        out.files += 1
        out.bytes += st.st_size - copy.stat().st_size
        replaced[f.target] = File(str(copy), f.target, f.is_conda, f.file_mode, f.prefix_placeholder)
    log(f"debug info stripped from {out.files} ELF files ({out.bytes / 2**20:.1f} MB)"
        + (f"; {out.refused} left as they were (strip changed what the loader maps)" if out.refused else ""))
    files = [replaced.get(f.target, f) for f in env.files]
    return conda_pack.CondaEnv(env.prefix, files, env._excluded_files), out
