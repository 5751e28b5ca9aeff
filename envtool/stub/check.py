"""What a stub must be to run in the release's container, read from its ELF (no execution):
it links libpython of the requested version, carries no build machine's RUNPATH, and needs no
newer GLIBC/GLIBCXX than the release's Ubuntu ships (catalog)."""

from __future__ import annotations

from pathlib import Path

from envtool import compat, facts
from envtool.catalog import Release
from envtool.elf import ElfFacts, read_elf
from envtool.errors import CheckFailed


def problems(elf: ElfFacts, release: Release, python: str, libs: list[ElfFacts] = ()) -> list[str]:
    out = []
    if elf.libpython != python:
        out.append(f"links libpython {elf.libpython or 'none'}, not {python}")
    absolute = [e for e in elf.runpath if e and not e.startswith("$ORIGIN")]
    if absolute:
        out.append(f"RUNPATH points at the build machine ({':'.join(absolute)})")
    target = facts.Target.of_release(release)
    for f in (elf, *libs):  # the stub and the libraries it carries: compat's stub-glibc/stub-glibcxx rules
        side = facts.Stub(f.libpython, f.versions.get("GLIBC"), f.versions.get("GLIBCXX"))
        out += [f"{f.path.name}: {x.message} ({release.system})".replace("the stub needs", "needs")
                for x in compat.check(side, None, target)]
    return out


def require_fit(stub: Path, release: Release, python: str, libs: list[Path] = ()) -> dict:
    """Raise CheckFailed listing every reason the stub would not run; return its ELF facts."""
    elf = read_elf(stub)
    lib_facts = [read_elf(p) for p in libs]
    found = problems(elf, release, python, lib_facts)
    if found:
        raise CheckFailed(f"the stub would not run in r{release.release}: " + "; ".join(found),
                          "build it inside the release's container (--builder docker, or Dockerfile.build)")
    return {"needed_libpython": next(n for n in elf.needed if n.startswith("libpython")),
            "needed": elf.needed, "runpath": elf.runpath,
            "requires": dict(elf.versions),
            "libs_require": {f.path.name: f.versions for f in lib_facts}}
