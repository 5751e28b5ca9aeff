"""What a stub must be to run in the release's container, read from its ELF (no execution):
it links libpython of the requested version, carries no build machine's RUNPATH, and needs no
newer GLIBC/GLIBCXX than the release's Ubuntu ships (catalog)."""

from __future__ import annotations

from pathlib import Path

from envtool.catalog import Release
from envtool.elf import ElfFacts, read_elf, version_key
from envtool.errors import CheckFailed


def problems(facts: ElfFacts, release: Release, python: str, libs: list[ElfFacts] = ()) -> list[str]:
    out = []
    if facts.libpython != python:
        out.append(f"links libpython {facts.libpython or 'none'}, not {python}")
    absolute = [e for e in facts.runpath if e and not e.startswith("$ORIGIN")]
    if absolute:
        out.append(f"RUNPATH points at the build machine ({':'.join(absolute)})")
    for f in (facts, *libs):
        need = f.versions
        if need.get("GLIBC") and version_key(need["GLIBC"]) > version_key(release.glibc):
            out.append(f"{f.path.name} needs GLIBC_{need['GLIBC']}, r{release.release} (Ubuntu {release.ubuntu}) "
                       f"has {release.glibc}")
        if need.get("GLIBCXX") and version_key(need["GLIBCXX"]) > version_key(release.max_glibcxx):
            out.append(f"{f.path.name} needs GLIBCXX_{need['GLIBCXX']}, r{release.release} has "
                       f"{release.max_glibcxx}")
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


def require_pair(release: Release | None, stub_python: str | None, env_python: str | None,
                 numpy: str | None) -> None:
    """The stub/env mismatches that make Triton hang or fail every inference (build's preflight, inject)."""
    if stub_python and env_python and stub_python != env_python:
        rel = f"r{release.release}" if release else "<the server's release>"
        raise CheckFailed(f"the stub embeds Python {stub_python} and the env has Python {env_python}: Triton "
                          f"would hang on `libpython{stub_python}.so.1.0: cannot open shared object file`",
                          f"envtool build --python {env_python} --triton {rel} (a stub for the env's Python), or "
                          f"an env of Python {stub_python}")
    if numpy and release is not None and not release.numpy2 and version_key(numpy) >= (2,):
        raise CheckFailed(f"the env has numpy {numpy}; r{release.release}'s stub (pybind11 < 2.12) misreads "
                          "numpy 2 arrays: every inference would fail with `output tensor shape does not match`",
                          "pin numpy<2 in the env's requirements (envtool pack --triton R does)")
