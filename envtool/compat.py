"""One compatibility engine: every rule between a stub, an env and the place they will run, written once.

A rule reads facts (`Stub`, `Env`, `Target`) and returns a Finding or nothing. build's preflight, inject,
pack's validation, doctor and verify's explanations all call `check()`, so the same artifacts get the same
verdict everywhere. Severity is decided here, once: "fails in the target" is an error, "may fail" a warning.
Each rule's Triton message is the `example` of a cause in diagnoses.toml, so what a rule predicts is what
verify and doctor --log recognise in a real log (tests/test_compat.py keeps the two in step).
"""

from __future__ import annotations

import ctypes.util
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from envtool.catalog import Release
from envtool.containers.engine import runtime_versions
from envtool.diagnose import causes
from envtool.elf import read_elf, version_key
from envtool.env.launch import ACTIVATE, HOOKS, PARSED, activate_hooks
from envtool.env.prefix import elf_files
from envtool.errors import BadInput, CheckFailed
from envtool.findings import Finding

NUMPY2_PYBIND11 = (2, 12)  # pybind11 reads numpy 2 arrays from 2.12 on (python_backend PR #384)


def pybind11_reads_numpy2(tag: str | None) -> bool:
    """A pybind11 tag (v3.0.1) at or after the first that reads numpy 2 arrays."""
    return bool(tag) and version_key(str(tag).lstrip("v")) >= NUMPY2_PYBIND11


def reads_numpy2(manifest: dict) -> bool:
    """A stub store manifest whose stub was built with an overriding pybind11 >= 2.12."""
    p = manifest.get("pybind11") or {}
    return bool(p.get("override")) and pybind11_reads_numpy2(p.get("tag"))


@dataclass(frozen=True)
class Stub:
    python: str | None  # X.Y of the libpython it links
    glibc: str | None = None  # newest GLIBC_ / GLIBCXX_ it needs
    glibcxx: str | None = None
    release: str | None = None  # the release it was built for, where known (stub store, envtool.lock)
    path: str | None = None
    numpy2: bool = False  # reads numpy 2 arrays although its release's pybind11 does not (--pybind11 >= 2.12)

    @classmethod
    def from_elf(cls, path: Path, release: str | None = None) -> Stub:
        f = read_elf(path)
        return cls(f.libpython, f.versions.get("GLIBC"), f.versions.get("GLIBCXX"), release, str(path))

    @classmethod
    def from_manifest(cls, m: dict, path: Path | None = None) -> Stub:
        need = m.get("requires", {})
        return cls(m.get("python"), need.get("GLIBC"), need.get("GLIBCXX"), m.get("release"),
                   str(path) if path else None, numpy2=reads_numpy2(m))


@dataclass(frozen=True)
class Env:
    python: str | None  # X.Y
    numpy: str | None = None
    glibc: str | None = None  # the newest GLIBC any of its binaries needs
    libstdcxx: str | None = None  # the newest GLIBCXX its own lib/libstdc++.so.6 provides (None: it has none)
    path: str | None = None
    hooks: tuple[str, ...] = ()  # etc/conda/activate.d scripts (run only where bin/activate is sourced)
    refused: str | None = None  # libarchive's message where secure extraction refuses the tarball
    # Its layout, where it was read (from_view): what Triton's launcher and the stub need at the top.
    listed: bool = False  # the package list was read: numpy None means no numpy
    top_folder: str | None = None  # every member under one folder ("myenv/"): bin/activate is not at the top
    missing: tuple[str, ...] = ()  # of bin/activate, bin/python3, lib/libpythonX.Y.so.1.0
    activate_path: bool | None = None  # bin/activate puts the env's bin/ on PATH (None: not read)
    editable: tuple[str, ...] = ()  # editable installs: their code is outside the env
    machine: str | None = None  # ELF machine of bin/python3; "" where it is not an ELF binary

    @classmethod
    def from_manifest(cls, m: dict, path: Path | None = None) -> Env:
        python = ".".join(str(m.get("python") or "").split(".")[:2]) or None
        return cls(python, m.get("numpy"), m.get("glibc_required"), m.get("libstdcxx"),
                   str(path) if path else None, tuple(m.get("activate_hooks") or ()))

    @classmethod
    def from_view(cls, view) -> Env:
        """An env read without extracting it (envtool.env.view): bin/python3 and the top-level lib/ files."""
        glibc = max((f.versions["GLIBC"] for f in view.elves.values() if f.versions.get("GLIBC")),
                    key=version_key, default=None)
        std = next((view.elves[n] for n in sorted(view.elves) if n.startswith("lib/libstdc++.so")), None)
        need = ["bin/activate", "bin/python3"] + ([f"lib/libpython{view.python}.so.1.0"] if view.python else [])
        pythons = sorted(n for n in view.files if n in ("bin/python3", f"bin/python{view.python}"))
        machine = next((view.elves[n].machine for n in pythons if n in view.elves), "" if pythons else None)
        return cls(view.python, view.packages.get("numpy"), glibc, std.defines.get("GLIBCXX") if std else None,
                   str(view.path), tuple(activate_hooks(view.names)), listed=True, top_folder=view.top_folder,
                   missing=tuple(n for n in need if not view.has(n)) if not view.top_folder else (),
                   activate_path=("PATH" in view.activate) if view.activate is not None else None,
                   editable=tuple(view.editable), machine=machine)

    def pair(self) -> Env:
        """Only what relates the env to a stub and a place to run (inject's check; doctor judges the rest)."""
        return Env(self.python, self.numpy, self.glibc, self.libstdcxx, self.path)

    def with_tree(self, root: Path) -> Env:
        """These facts, with what only the extracted env shows: every ELF file's GLIBC, its libstdc++."""
        full = Env.from_tree(root, self.python, self.numpy)
        return replace(self, glibc=full.glibc, libstdcxx=full.libstdcxx, hooks=full.hooks or self.hooks)

    @classmethod
    def from_tree(cls, root: Path, python: str | None, numpy: str | None, path: Path | None = None) -> Env:
        """An extracted or unpacked env: every ELF file in it is read, and its layout."""
        names = [str(p.relative_to(root)) for p in (root / HOOKS).glob("*")] if (root / HOOKS).is_dir() else []
        need = ["bin/activate", "bin/python3"] + ([f"lib/libpython{python}.so.1.0"] if python else [])
        activate = root / "bin" / "activate"
        editable = sorted(p.name for p in root.glob("lib/python3*/site-packages/*")
                          if p.name.endswith(".egg-link") or (p.name.startswith("__editable__") and
                                                              p.name.endswith(".pth")))
        return cls(python, numpy, max_glibc(root), libstdcxx_of(root), str(path or root),
                   tuple(activate_hooks(names)), missing=tuple(n for n in need if not (root / n).exists()),
                   activate_path=("PATH" in activate.read_text(errors="replace")) if activate.is_file() else None,
                   editable=tuple(editable), machine=_machine(root / "bin" / "python3"))


def _machine(python3: Path) -> str | None:
    if not python3.is_file():
        return None
    try:
        return read_elf(python3).machine
    except BadInput:
        return ""  # not an ELF binary


def max_glibc(root: Path) -> str | None:
    """The newest GLIBC any ELF file under root needs."""
    best: str | None = None
    for path in elf_files(root):
        try:
            v = read_elf(path).versions.get("GLIBC")
        except BadInput:
            continue
        if v and (best is None or version_key(v) > version_key(best)):
            best = v
    return best


def libstdcxx_of(root: Path) -> str | None:
    """The newest GLIBCXX version the env's own lib/libstdc++.so* defines: first on LD_LIBRARY_PATH."""
    for p in sorted((root / "lib").glob("libstdc++.so*")):
        if p.is_file():
            try:
                return read_elf(p).defines.get("GLIBCXX")
            except BadInput:
                continue
    return None


@dataclass(frozen=True)
class Target:
    """Where stub and env will run: the release's container (catalog facts), an image (read from it) or
    this host."""

    name: str
    glibc: str | None
    glibcxx: str | None
    release: Release | None = None

    @property
    def launcher(self) -> str:
        return self.release.launcher if self.release else ACTIVATE

    @property
    def secure_extract(self) -> bool:
        return bool(self.release and self.release.secure_extract)

    @classmethod
    def of_release(cls, rel: Release) -> Target:
        return cls(f"r{rel.release}'s image", rel.glibc, rel.max_glibcxx, rel)

    @classmethod
    def host(cls, rel: Release | None = None) -> Target:
        glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[-1] if hasattr(os, "confstr") else None
        lib = ctypes.util.find_library("stdc++")
        dirs = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
        found = next((Path(d, lib) for d in dirs if lib and Path(d, lib).is_file()), None)
        return cls("this host", glibc, read_elf(found).defines.get("GLIBCXX") if found else None, rel)

    @classmethod
    def of_image(cls, image: str, rel: Release | None = None) -> Target:
        """A server image of the user's own (say, the release's server rebuilt on a newer distro for a newer
        Python): its glibc and libstdc++ read with docker."""
        glibc, glibcxx = runtime_versions(image)
        return cls(f"image {image}", glibc, glibcxx, rel)

    @classmethod
    def named(cls, where: str, rel: Release | None) -> Target | None:
        """--target: release (its image, from the catalog) | host (this machine) | image:NAME (read from it).
        None where there is nothing to judge against (no release, target release)."""
        if where == "host":
            return cls.host(rel)
        if image := image_of(where):
            return cls.of_image(image, rel)
        return cls.of_release(rel) if rel is not None else None


def image_of(where: str) -> str | None:
    """The NAME of an image:NAME target, else None."""
    return where[len("image:"):] if where.startswith("image:") else None


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
