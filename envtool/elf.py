"""ELF facts about stubs and native libraries, read with pyelftools (no ldd, no execution)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection

from envtool.atomic import restore_after_triton_probe
from envtool.errors import BadInput

LIBPYTHON = re.compile(r"^libpython3(?:-[0-9a-f]+)?\.(\d+)[dm]*\.so")


@dataclass
class ElfFacts:
    path: Path
    machine: str
    executable: bool  # has a program interpreter: can be exec'd, not just dlopen'd
    needed: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # GLIBC/GLIBCXX/CXXABI -> max required
    defines: dict[str, str] = field(default_factory=dict)  # the newest version it provides (libstdc++, libc)

    @property
    def libpython(self) -> str | None:
        """'3.10' for a binary that NEEDS libpython3.10.so.1.0 (or auditwheel's libpython3-<hash>.8.so.1.0)."""
        for n in self.needed:
            m = LIBPYTHON.match(n)
            if m:
                return f"3.{m.group(1)}"
        return None


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def read_elf(path: Path) -> ElfFacts:
    try:
        with path.open("rb") as f:
            return _facts(f)
    except PermissionError:
        if not restore_after_triton_probe(path):
            raise BadInput(f"{path} cannot be read (permission denied)",
                           "make it readable (chmod 0755) for the user running envtool") from None
        return read_elf(path)
    except (OSError, ELFError) as e:
        raise BadInput(f"{path} is not an ELF binary ({e})",
                       "pass a triton_python_backend_stub built for Linux") from None


def elf_from_bytes(data: bytes, name: str) -> ElfFacts | None:
    """The facts of an ELF held in memory (a member of an env tarball); None if it is not one."""
    import io
    try:
        return _facts(io.BytesIO(data), Path(name))
    except ELFError:
        return None


def _newest(table: dict[str, str], name: str) -> None:
    prefix, _, ver = name.partition("_")
    if ver and ver[0].isdigit():
        cur = table.get(prefix)
        if cur is None or version_key(ver) > version_key(cur):
            table[prefix] = ver


def _facts(f, path: Path | None = None) -> ElfFacts:
    elf = ELFFile(f)
    facts = ElfFacts(path or Path(f.name), elf["e_machine"],
                     any(s["p_type"] == "PT_INTERP" for s in elf.iter_segments()))
    for sec in elf.iter_sections():
        if isinstance(sec, DynamicSection):
            for tag in sec.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    facts.needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    facts.runpath += (tag.runpath if tag.entry.d_tag == "DT_RUNPATH"
                                      else tag.rpath).split(":")
        elif isinstance(sec, GNUVerNeedSection):
            for _, auxiliaries in sec.iter_versions():
                for aux in auxiliaries:
                    _newest(facts.versions, aux.name)
        elif isinstance(sec, GNUVerDefSection):
            for _, auxiliaries in sec.iter_versions():
                for aux in auxiliaries:
                    _newest(facts.defines, aux.name)
    return facts


def require_executable(path: Path, what: str = "stub") -> ElfFacts:
    if path.is_dir():
        inside = path / "triton_python_backend_stub"
        raise BadInput(f"{what} {path} is a folder", f"pass the stub file itself, e.g. {inside}")
    if not path.is_file():
        why = "is not a regular file (a FIFO, device or socket)" if path.exists() else "does not exist"
        raise BadInput(f"{what} {path} {why}", "pass the path of a built stub (`envtool stub` produces one)")
    facts = read_elf(path)
    if not facts.executable:
        raise BadInput(f"{what} {path} is an ELF library, not an executable",
                       "pass triton_python_backend_stub itself, not a .so")
    return facts
