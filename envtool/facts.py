"""What the compatibility rules judge, each read from its source: a stub (its ELF file or store manifest), an
env (a view of its tarball, its extracted tree or its manifest) and where they will run (the release's image
from the catalog, this host, or an image read with docker). compat.py holds the rules and reads nothing."""

from __future__ import annotations

import ctypes.util
import os
from dataclasses import dataclass, replace
from pathlib import Path

from envtool.catalog import Release
from envtool.containers.engine import runtime_versions
from envtool.elf import read_elf, version_key
from envtool.env.launch import activate_hooks
from envtool.env.prefix import elf_files
from envtool.errors import BadInput
from envtool.names import ACTIVATE, HOOKS

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



class Where(str):
    """--target, parsed here and nowhere else: "release" (the release's image, from the catalog) | "host"
    (this machine) | "image:NAME" (a server image of the user's own). A str, so that manifests, cache keys and
    JSON keep the text the user gave."""

    def __new__(cls, text: str = "release") -> Where:
        if isinstance(text, Where):
            return text
        if text not in ("release", "host") and not (text.startswith("image:") and len(text) > len("image:")):
            raise BadInput(f"--target {text!r} is not release, host or image:NAME",
                           "use release (the release's image), host (this machine) or image:NAME")
        return super().__new__(cls, text)

    @property
    def image(self) -> str | None:
        """The NAME of image:NAME, else None."""
        return self[len("image:"):] if self.startswith("image:") else None

    def target(self, rel: Release | None) -> Target | None:
        """What the rules judge against here; None where there is nothing to judge (no release, target
        release)."""
        if self == "host":
            return Target.host(rel)
        if self.image:
            return Target.of_image(self.image, rel)
        return Target.of_release(rel) if rel is not None else None


IN_RELEASE = Where("release")  # the default --target
