"""One compatibility engine: every rule between a stub, an env and the place they will run, written once.

A rule reads facts (`Stub`, `Env`, `Target`) and returns a Finding or nothing. build's preflight, inject,
pack's validation, doctor and verify's explanations all call `check()`, so the same artifacts get the same
verdict everywhere. Severity is decided here, once: "fails in the target" is an error, "may fail" a warning.
Each rule's Triton message is the `example` of a cause in diagnoses.toml, so what a rule predicts is what
verify and doctor --log recognise in a real log (tests/test_compat.py keeps the two in step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Optional

from envtool.catalog import Release
from envtool.diagnose import causes
from envtool.elf import version_key
from envtool.errors import CheckFailed
from envtool.facts import Env, Stub, Target
from envtool.findings import Finding
from envtool.names import ACTIVATE, PARSED

Check = Callable[[Optional[Stub], Optional[Env], Optional[Target]], Optional[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    cause: str | None  # the diagnoses.toml cause whose `example` is what Triton prints
    silent: str | None  # what happens where Triton prints nothing (a hang with no error line)
    check: Check


RULES: list[Rule] = []


def rule(id: str, severity: str, cause: str | None = None, silent: str | None = None):
    def register(fn):
        RULES.append(Rule(id, severity, cause, silent, fn))
        return fn
    return register


def triton_says(r: Rule, **values: str) -> str | None:
    """The cause's example line with the rule's values filled in."""
    return causes()[r.cause]["example"].format(**values) if r.cause else r.silent


def _finding(r: str, message: str, fix: str, where: str | None, **values: str) -> Finding:
    spec = next(x for x in RULES if x.id == r)
    return Finding(r, spec.severity, None, message, triton_says(spec, **values), fix, where)


def _newer(need: str | None, have: str | None) -> bool:
    return bool(need and have and version_key(need) > version_key(have))


@rule("stub-python", "error", "stub-libpython")
def _stub_python(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (s and e and s.python and e.python and s.python != e.python):
        return None
    rel = f"r{t.release.release}" if t and t.release else (f"r{s.release}" if s.release else "<release>")
    return _finding("stub-python",
                    f"the stub links libpython{s.python} and the env has Python {e.python}: Triton hangs",
                    f"envtool build --python {e.python} --triton {rel} (a stub for the env's Python), or an env "
                    f"of Python {s.python}", s.path, python=s.python)


@rule("stub-release", "error", silent="no error: the server hangs after `Starting Python backend stub`")
def _stub_release(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (s and s.release and t and t.release and s.release != t.release.release):
        return None
    want = t.release.release
    return _finding("stub-release", f"the stub was built for r{s.release}, the server is r{want}: its IPC "
                    "differs, and the server hangs at `Starting Python backend stub`",
                    f"envtool stub --triton r{want} --python {s.python}", s.path)


@rule("env-numpy2", "error", "numpy2-output")
def _env_numpy2(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    rel = t.release if t else None
    if s is not None and s.numpy2:
        return None
    if not (e and e.numpy and rel is not None and not rel.numpy2 and version_key(e.numpy) >= (2,)):
        return None
    return _finding("env-numpy2", f"the env has numpy {e.numpy}; r{rel.release}'s stub (pybind11 < 2.12) "
                    "misreads numpy 2 arrays: every inference fails",
                    f"pin numpy<2 (envtool pack --triton r{rel.release} does)", e.path, output="OUTPUT0")


STUB_IN_CONTAINER = "build the stub inside the release's container (envtool stub --builder docker)"


@rule("stub-glibc", "error", "glibc-too-old")
def _stub_glibc(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (s and t and _newer(s.glibc, t.glibc)):
        return None
    return _finding("stub-glibc", f"the stub needs GLIBC_{s.glibc}; {t.name} has {t.glibc}", STUB_IN_CONTAINER,
                    s.path, sym=f"GLIBC_{s.glibc}", by="triton_python_backend_stub")


@rule("stub-glibcxx", "error", "glibcxx-too-old")
def _stub_glibcxx(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (s and t and _newer(s.glibcxx, t.glibcxx)):
        return None
    return _finding("stub-glibcxx", f"the stub needs GLIBCXX_{s.glibcxx}; {t.name} has {t.glibcxx}",
                    STUB_IN_CONTAINER, s.path, sym=f"GLIBCXX_{s.glibcxx}", by="triton_python_backend_stub")


@rule("env-glibc", "error", "glibc-too-old")
def _env_glibc(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and t and _newer(e.glibc, t.glibc)):
        return None
    return _finding("env-glibc", f"binaries in the env need GLIBC_{e.glibc}; {t.name} has {t.glibc}",
                    "pack the env inside the release's container (--builder docker) or from conda; "
                    "--target host if it only ever runs on this machine", e.path,
                    sym=f"GLIBC_{e.glibc}", by="python3")


@rule("env-libstdcxx", "error", "glibcxx-too-old")
def _env_libstdcxx(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (s and e and e.libstdcxx and _newer(s.glibcxx, e.libstdcxx)):
        return None
    return _finding("env-libstdcxx", f"the env's lib/libstdc++ provides GLIBCXX up to {e.libstdcxx} and the "
                    f"stub needs {s.glibcxx}; the env's lib/ comes first on LD_LIBRARY_PATH",
                    "remove lib/libstdc++.so* from the env (the system's is newer), or install a newer "
                    "libstdcxx-ng into it", e.path, sym=f"GLIBCXX_{s.glibcxx}", by="triton_python_backend_stub")


@rule("env-activate-hooks", "warning", silent="no error: the hooks do not run, and what they set is missing")
def _env_activate_hooks(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and e.hooks and t and t.release and t.release.launcher == PARSED):
        return None
    return _finding("env-activate-hooks", f"the env has {', '.join(e.hooks)}: from r25.08 Triton no longer "
                    f"sources bin/activate, so r{t.release.release} does not run them",
                    "set what they set in the model (initialize()) or in the server's environment; envtool doctor "
                    f"imports model.py as r{t.release.release} starts it", e.path)


@rule("env-archive-refused", "error", "archive-refused")
def _env_archive_refused(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and e.refused and t and t.release and t.release.secure_extract):
        return None
    return _finding("env-archive-refused", f"r{t.release.release} extracts env tarballs securely and refuses this "
                    f"one: {e.refused}", "repack it without '..' entries, absolute paths or entries under a "
                    "symlinked folder (envtool pack writes none)", e.path, why=e.refused)


@rule("env-libstdcxx-shadow", "warning", "glibcxx-too-old")
def _env_libstdcxx_shadow(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and e.libstdcxx and t and _newer(t.glibcxx, e.libstdcxx)):
        return None
    return _finding("env-libstdcxx-shadow", f"the env's lib/libstdc++ (GLIBCXX up to {e.libstdcxx}) shadows "
                    f"{t.name}'s newer one ({t.glibcxx}): anything there that needs more fails to load",
                    "remove lib/libstdc++.so* from the env, or install a newer libstdcxx-ng into it", e.path,
                    sym=f"GLIBCXX_{t.glibcxx}", by="a library of the image")


@rule("env-top-folder", "error", "activate-missing")
def _env_top_folder(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and e.top_folder):
        return None
    return _finding("env-top-folder", f"every file of the env is under {e.top_folder}: bin/activate is not at "
                    "the top", "pack it without a top folder (envtool pack, or conda-pack)", e.path, path=e.path)


@rule("env-no-activate", "error", "activate-missing")
def _env_no_activate(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and "bin/activate" in e.missing):
        return None
    return _finding("env-no-activate", "the env has no bin/activate: every release checks it exists",
                    "pack the env with envtool pack (or conda-pack)", e.path, path=e.path)


@rule("env-no-python3", "error", "stub-python-home")
def _env_no_python3(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and "bin/python3" in e.missing):
        return None
    return _finding("env-no-python3", "the env has no bin/python3: the stub finds its Python's prefix by it",
                    "pack the env with envtool pack (or conda-pack)", e.path)


@rule("env-libpython", "error", "stub-libpython")
def _env_libpython(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and e.python and f"lib/libpython{e.python}.so.1.0" in e.missing):
        return None
    return _finding("env-libpython", f"the env has no lib/libpython{e.python}.so.1.0",
                    "use a Python built with --enable-shared (envtool pack checks it)", e.path, python=e.python)


@rule("env-activate-path", "error", "stub-python-home")
def _env_activate_path(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    """Only where bin/activate is sourced: from r25.08 Triton puts <env>/bin on PATH itself."""
    if not (e and e.activate_path is False and (t is None or t.launcher == ACTIVATE)):
        return None
    return _finding("env-activate-path", "bin/activate does not put the env's bin/ on PATH: the stub would find "
                    "another python3", "use conda-pack's activate (envtool pack writes it)", e.path)


@rule("env-numpy", "error", "module-not-found")
def _env_numpy(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and e.listed and e.python and e.numpy is None and not e.top_folder):
        return None
    return _finding("env-numpy", "the env has no numpy; the stub imports it", "add numpy to the env", e.path,
                    module="numpy")


@rule("env-editable", "error", "module-not-found")
def _env_editable(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and e.editable):
        return None
    return _finding("env-editable", f"{', '.join(e.editable)}: an editable install, its code is outside the env",
                    "install it normally (pip install .)", e.path, module=e.editable[0])


ARCH = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}


@rule("env-arch", "error", "autocomplete-stub")
def _env_arch(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    want = ARCH.get(os.uname().machine)
    if not (e and e.machine and want and e.machine != want):
        return None
    return _finding("env-arch", f"the env's python3 is built for {e.machine}, this machine is "
                    f"{os.uname().machine}", "pack the env on Linux for this architecture", e.path)


@rule("env-platform", "error", "autocomplete-stub")
def _env_platform(s: Stub | None, e: Env | None, t: Target | None) -> Finding | None:
    if not (e and e.machine == ""):
        return None
    return _finding("env-platform", "the env's python3 is not a Linux ELF binary (packed on macOS?)",
                    "pack the env on Linux", e.path)


def pybind11_misfit(rel: Release, python: str) -> str | None:
    """The plan-time rule of pybind11 x Python, for a stub built with the release's pinned pybind11: a Python
    newer than any that pin is known to build for. (The matrix and the local builder both ask this.)"""
    known = rel.recipe.pybind11_pythons
    if python in known or version_key(python) < max(version_key(p) for p in known):
        return None
    verdict = ("does not build for Python {py} (the compiler stops at \"invalid use of incomplete type "
               "'PyFrameObject'\")" if rel.recipe.pybind11_version.startswith("2.6") else
               f"is not known to build for Python {{py}} (stubs of it exist for {known[0]}-{known[-1]})")
    return f"r{rel.release} pins pybind11 {rel.recipe.pybind11_version}, which {verdict.format(py=python)}"


def check(stub: Stub | None, env: Env | None, target: Target | None, model: str | None = None) -> list[Finding]:
    """Every rule on these facts (a rule whose facts are missing says nothing)."""
    found = (r.check(stub, env, target) for r in RULES)
    return [replace(f, model=model) for f in found if f is not None]


def require(stub: Stub | None, env: Env | None, target: Target | None) -> list[Finding]:
    """check(), raising CheckFailed on the first error (the others counted); returns the warnings."""
    found = check(stub, env, target)
    errors = [f for f in found if f.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more: {', '.join(f.rule for f in errors[1:])})" if len(errors) > 1 else ""
        raise CheckFailed(f"{errors[0].message}{more}", errors[0].fix)
    return [f for f in found if f.severity != "error"]
