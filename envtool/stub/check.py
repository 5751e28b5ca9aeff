"""What a stub must be to run in the release's container, read from its ELF (no execution):
it links libpython of the requested version, carries no build machine's RUNPATH, and needs no
newer GLIBC/GLIBCXX than the release's Ubuntu ships (catalog)."""

from __future__ import annotations

from pathlib import Path

from envtool import compat
from envtool.catalog import Release
from envtool.elf import ElfFacts, read_elf
from envtool.errors import CheckFailed


def problems(facts: ElfFacts, release: Release, python: str, libs: list[ElfFacts] = ()) -> list[str]:
    out = []
    if facts.libpython != python:
        out.append(f"links libpython {facts.libpython or 'none'}, not {python}")
    absolute = [e for e in facts.runpath if e and not e.startswith("$ORIGIN")]
    if absolute:
        out.append(f"RUNPATH points at the build machine ({':'.join(absolute)})")
    target = compat.Target.of_release(release)
    for f in (facts, *libs):  # the stub and the libraries it carries: compat's stub-glibc/stub-glibcxx rules
        side = compat.Stub(f.libpython, f.versions.get("GLIBC"), f.versions.get("GLIBCXX"))
        out += [f"{f.path.name}: {x.message} ({release.system})".replace("the stub needs", "needs")
                for x in compat.check(side, None, target)]
    return out


def require_fit(stub: Path, release: Release, python: str, libs: list[Path] = ()) -> dict:
    """Raise CheckFailed listing every reason the stub would not run; return its ELF facts."""
    facts = read_elf(stub)
    lib_facts = [read_elf(p) for p in libs]
    found = problems(facts, release, python, lib_facts)
    if found:
        raise CheckFailed(f"the stub would not run in r{release.release}: " + "; ".join(found),
                          "build it inside the release's container (--builder docker, or Dockerfile.build)")
    return {"needed_libpython": next(n for n in facts.needed if n.startswith("libpython")),
            "needed": facts.needed, "runpath": facts.runpath,
            "requires": dict(facts.versions),
            "libs_require": {f.path.name: f.versions for f in lib_facts}}
