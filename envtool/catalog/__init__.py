"""Typed access to releases.toml: the one place where facts about Triton releases live."""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from envtool.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib



@dataclass(frozen=True)
class Recipe:
    """How python_backend's CMake build of that branch must be driven."""

    boost: str
    boost_url: str
    boost_url_dead: bool
    boost_sha256: str
    pybind11: str
    pybind11_version: str
    pybind11_pythons: tuple[str, ...]
    dlpack: str
    cmake_min: str
    cmake_min_effective: str
    googletest: bool
    cxx_flags_new_gcc: tuple[str, ...]
    override_vars: tuple[str, ...]


@dataclass(frozen=True)
class Release:
    release: str  # "22.11"
    server: str  # "2.28.0"
    ubuntu: str
    glibc: str
    max_glibcxx: str
    default_python: str
    cuda: str
    numpy2: bool  # the release's stub works with numpy 2 in the env
    dir_env: bool  # an unpacked directory works as EXECUTION_ENV_PATH
    launcher: str  # how the stub is started: activate (source bin/activate) | parsed (r25.08+: not sourced)
    secure_extract: bool  # env tarballs extracted with libarchive's secure flags (r26.06+)
    pytriton: tuple[str, ...]  # nvidia-pytriton versions that bundle this server
    pytriton_stub_pythons: tuple[str, ...]  # Pythons of the prebuilt stubs in those wheels
    recipe: Recipe
    images: dict[str, str] = field(default_factory=dict, compare=False)
    runs_in: str = ""  # "image NAME" or "this host": the catalog's glibc/GLIBCXX replaced by its (running_in)

    @property
    def system(self) -> str:
        """What the server's container runs on, for messages."""
        return self.runs_in or f"Ubuntu {self.ubuntu}"

    def running_in(self, where: str, glibc: str | None, glibcxx: str | None) -> Release:
        """The release served from the user's own image (--target image:NAME, say a newer distro for a Python
        the release's image lacks) or this host: what a stub may need is then that glibc and libstdc++."""
        return replace(self, runs_in=where, glibc=glibc or self.glibc, max_glibcxx=glibcxx or self.max_glibcxx)

    @property
    def runs_stub_probe(self) -> bool:
        """Triton runs a model's own stub with no arguments and no env before each start, and chmods it to
        ---x------ unless that exits 1; it changed with the launcher (python_backend r25.08 src/stub_launcher.cc:
        IsExecutableFile, a mode check)."""
        return self.launcher == "activate"

    @property
    def branch(self) -> str:
        return f"r{self.release}"

    @property
    def embedded_available(self) -> bool:
        return bool(self.pytriton)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("recipe", "runs_in")}
        d["branch"] = self.branch
        d["recipe"] = dict(self.recipe.__dict__)
        return _jsonable(d)


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


@lru_cache(maxsize=None)
def _data() -> dict:
    text = (Path(__file__).parent / "releases.toml").read_text()
    return tomllib.loads(text)


@lru_cache(maxsize=None)
def python_facts() -> dict:
    """pythons.toml: the matrix's Pythons, pre-releases, and numpy 1.x's Pythons."""
    return tomllib.loads((Path(__file__).parent / "pythons.toml").read_text())


@lru_cache(maxsize=None)
def releases() -> tuple[Release, ...]:
    data = _data()
    out = []
    for entry in data["release"]:
        entry = dict(entry)
        recipe = Recipe(**_tuples(entry.pop("recipe")))
        images = {k: v.format(release=entry["release"]) for k, v in data["images"].items()}
        out.append(Release(recipe=recipe, images=images, **_tuples(entry)))
    return tuple(out)


def sources() -> dict[str, str]:
    return dict(_data()["sources"])


def _key(r: Release) -> tuple[int, int]:
    yy, mm = r.release.split(".")
    return int(yy), int(mm)


def _months(r: Release) -> int:
    yy, mm = _key(r)
    return yy * 12 + mm


def by_name(release: str) -> Release | None:
    """The release of a canonical "yy.mm" that envtool itself wrote (a manifest, a lock, a matrix cell): a
    lookup, not a parse of what a user typed. None for one this catalog does not know."""
    return next((r for r in releases() if r.release == release), None)


def normalize_release(text: str | Release) -> Release:
    """--triton, parsed here and nowhere else: r22.11, 22.11 or the server version 2.28.0 (a Release is
    already one); exit 2 naming the nearest known ones."""
    if isinstance(text, Release):
        return text
    t = text.strip().lower()
    by_release = {r.release: r for r in releases()}
    by_server = {r.server: r for r in releases()}
    m = re.fullmatch(r"r?(\d{2})\.(\d{1,2})", t)
    if m:
        key = f"{m.group(1)}.{int(m.group(2)):02d}"
        if key in by_release:
            return by_release[key]
    if t in by_server:
        return by_server[t]
    if m:  # a release-shaped name: nearest by date
        months = int(m.group(1)) * 12 + int(m.group(2))
        near = [r.branch for r in sorted(releases(), key=lambda r: abs(_months(r) - months))[:3]]
    else:
        known = list(by_release) + list(by_server)
        near = difflib.get_close_matches(t.lstrip("r"), known, n=3, cutoff=0.5)
    span = f"{releases()[0].branch}..{releases()[-1].branch}"
    hint = f"nearest known: {', '.join(near)}" if near else f"known releases: {span}"
    raise BadInput(f"unknown Triton release {text!r}", f"use one of the catalog ({hint}); "
                   "`envtool releases` lists them all")


def normalize_python(text: str, prerelease: bool = False) -> str:
    """--python, parsed here and nowhere else: 3.9, 3.9.18 or python3.9 -> "3.9" (a full version pins nothing
    more than X.Y here). prerelease: also the Pythons no release supports yet (the matrix's cells for them)."""
    m = re.fullmatch(r"\s*(?:python)?(3)\.(\d+)(?:\.\d+)?\s*", str(text))
    version = f"{m.group(1)}.{m.group(2)}" if m else None
    supported = python_facts()["matrix"] + (python_facts()["prerelease"] if prerelease else [])
    if version not in supported:
        raise BadInput(f"unsupported Python version {text!r}",
                       f"use one of {', '.join(supported)} (X.Y or X.Y.Z)")
    return version


def release_table() -> list[dict]:
    """One row per release, for `envtool releases`."""
    return [
        {
            "release": r.branch, "server": r.server, "ubuntu": r.ubuntu, "glibc": r.glibc,
            "max_glibcxx": r.max_glibcxx, "python": r.default_python,
            "pybind11": r.recipe.pybind11_version, "boost": r.recipe.boost,
            "boost_dead": r.recipe.boost_url_dead, "numpy2": r.numpy2, "dir_env": r.dir_env,
            "launcher": r.launcher, "secure_extract": r.secure_extract,
            "pytriton": r.pytriton[-1] if r.pytriton else None,
            "prebuilt_pythons": list(r.pytriton_stub_pythons),
        }
        for r in sorted(releases(), key=_key)
    ]
