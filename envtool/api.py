"""The library surface that the CLI and the tests call."""

from __future__ import annotations

from pathlib import Path

from envtool import catalog
from envtool.build import BuildResult, BuildSpec, build
from envtool.builders.env import PackResult, PackSpec, pack
from envtool.builders.stub import produce, produce_many
from envtool.doctor import DoctorOptions, DoctorReport, doctor
from envtool.doctor import explain_log as _explain
from envtool.env.condapack import DEFAULT_LEVEL
from envtool.facts import Where
from envtool.findings import Finding
from envtool.image import ImageResult, ImageSpec, image
from envtool.inject import InjectOptions, InjectResult, inject
from envtool.repo.lint import LintOptions, lint_repository
from envtool.repo.model_repo import load_repository
from envtool.serve import serve as _serve
from envtool.stub.store import StubArtifact
from envtool.verify import VerifyOptions, VerifyReport, verify

__all__ = ["build", "BuildResult", "BuildSpec", "DEFAULT_LEVEL", "doctor", "DoctorOptions", "DoctorReport",
           "image", "ImageResult", "ImageSpec",
           "bake", "explain_log", "fetch_sources", "matrix", "inject", "InjectOptions",
           "InjectResult", "lint", "pack", "PackResult", "PackSpec", "release", "releases", "serve", "stub",
           "StubArtifact", "stubs", "verify", "VerifyOptions", "VerifyReport"]


def lint(repo: str | Path, triton: str | None = None, autocomplete: bool = True) -> list[Finding]:
    """lint's findings; triton: the release whose message texts to give (default: the newest);
    autocomplete=False judges configs as a server started with --disable-auto-complete-config does."""
    release = catalog.normalize_release(triton) if triton else None
    return lint_repository(load_repository(repo), LintOptions(release, autocomplete))


def stub(release: str | catalog.Release, python: str, *, target: str = "release", **kw) -> StubArtifact:
    """The stub for (release, Python X.Y[.Z]), from the store or made: see builders.stub.produce."""
    return produce(catalog.normalize_release(release), catalog.normalize_python(python), target=Where(target),
                   **kw)


def stubs(release: str | catalog.Release, pythons: list[str], *, target: str = "release",
          **kw) -> list[StubArtifact]:
    """One stub per Python, local builds sharing one build tree: see builders.stub.produce_many."""
    return produce_many(catalog.normalize_release(release), [catalog.normalize_python(p) for p in pythons],
                        target=Where(target), **kw)


def serve(repo: str | Path, release: str | catalog.Release, **kw) -> int:
    """Serve a repository on the release's server until interrupted: see envtool.serve.serve."""
    return _serve(Path(repo), catalog.normalize_release(release), **kw)


def releases() -> list[dict]:
    return catalog.release_table()


def fetch_sources(dest: str | Path, release_name: str, log=lambda _m: None) -> Path:
    from envtool.stub.sources import fetch_sources as fetch
    return fetch(Path(dest), catalog.normalize_release(release_name), log)


def release(name: str) -> catalog.Release:
    return catalog.normalize_release(name)


def explain_log(path: str | Path, release: str | None = None, repo: str | Path | None = None) -> DoctorReport:
    """doctor --log: the causes and fixes in a Triton server log (the repository's configs, where given)."""
    return _explain(Path(path), catalog.normalize_release(release) if release else None,
                    Path(repo) if repo is not None else None)


def matrix(releases: str | list[str], pythons: str | list[str], *, target: str = "release", **kw):
    """(release x Python) cells: see envtool.matrix.run (releases: names, comma-separated or "all")."""
    from envtool.matrix import run
    return run(_releases(releases), _pythons(pythons), target=Where(target), **kw)


def bake(path: str | Path, releases: str | list[str], pythons: str | list[str], *, pybind11: str | None = None,
         target: str = "release", **kw) -> tuple[list[str], list]:
    """matrix --bake: the possible cells written as a docker-bake.hcl; (its target names, the cells)."""
    from envtool.bake import write_bake
    from envtool.matrix import plan
    cells = plan(_releases(releases), _pythons(pythons), pybind11)
    return write_bake(Path(path), cells, pybind11=pybind11, target=Where(target), **kw), cells


def _items(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """--triton / --python values: a comma-separated string (the CLI) or a list (the library)."""
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    return [p.strip() for p in parts if p.strip()]


def _releases(value: str | list[str]) -> list[catalog.Release]:
    """Each release named (r22.11, 22.11, 2.28.0); "all": every release with a server here."""
    names = _items(value)
    if names == ["all"]:
        return [r for r in catalog.releases() if r.embedded_available]
    return [catalog.normalize_release(n) for n in names]


def _pythons(value: str | list[str]) -> list[str]:
    """X.Y,... among the matrix's Pythons and pre-releases (pythons.toml)."""
    return [catalog.normalize_python(p, prerelease=True) for p in _items(value)]
