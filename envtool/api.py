"""The library surface that the CLI and the tests call."""

from __future__ import annotations

from pathlib import Path

from envtool import catalog
from envtool.build import BuildResult, BuildSpec, build
from envtool.builders.env import PackResult, PackSpec, pack
from envtool.builders.stub import produce as stub
from envtool.builders.stub import produce_many as stubs
from envtool.doctor import DoctorOptions, DoctorReport, doctor
from envtool.doctor import explain_log as _explain
from envtool.env.condapack import DEFAULT_LEVEL
from envtool.findings import Finding
from envtool.inject import InjectOptions, InjectResult, inject
from envtool.repo.lint import LintOptions, lint_repository
from envtool.repo.model_repo import load_repository
from envtool.serve import serve
from envtool.stub.store import StubArtifact
from envtool.verify import VerifyOptions, VerifyReport, verify

__all__ = ["build", "BuildResult", "BuildSpec", "DEFAULT_LEVEL", "doctor", "DoctorOptions", "DoctorReport",
           "bake", "explain_log", "fetch_sources", "matrix", "inject", "InjectOptions",
           "InjectResult", "lint", "pack", "PackResult", "PackSpec", "release", "releases", "serve", "stub",
           "StubArtifact", "stubs", "verify", "VerifyOptions", "VerifyReport"]


def lint(repo: str | Path, triton: str | None = None, autocomplete: bool = True) -> list[Finding]:
    """lint's findings; triton: the release whose message texts to give (default: the newest);
    autocomplete=False judges configs as a server started with --disable-auto-complete-config does."""
    release = catalog.normalize_release(triton) if triton else None
    return lint_repository(load_repository(repo), LintOptions(release, autocomplete))


def releases() -> list[dict]:
    return catalog.release_table()


def fetch_sources(dest: str | Path, release_name: str, log=lambda _m: None) -> Path:
    from envtool.stub.sources import fetch_sources as fetch
    return fetch(Path(dest), catalog.normalize_release(release_name), log)


def release(name: str) -> catalog.Release:
    return catalog.normalize_release(name)


def explain_log(path: str | Path, release: str | None = None, repo: str | Path | None = None) -> DoctorReport:
    """doctor --log: the causes and fixes in a Triton server log (the repository's configs, where given)."""
    return _explain(Path(path), release, Path(repo) if repo is not None else None)


def matrix(releases: str | list[str], pythons: str | list[str], **kw):
    """(release x Python) cells: see envtool.matrix.run (releases: names, comma-separated or "all")."""
    from envtool.matrix import run
    return run(releases, pythons, **kw)


def bake(path: str | Path, releases: str | list[str], pythons: str | list[str], *, pybind11: str | None = None,
         **kw) -> tuple[list[str], list]:
    """matrix --bake: the possible cells written as a docker-bake.hcl; (its target names, the cells)."""
    from envtool.bake import write_bake
    from envtool.matrix import normalize_pythons, normalize_releases, plan
    cells = plan(normalize_releases(releases), normalize_pythons(pythons), pybind11)
    return write_bake(Path(path), cells, pybind11=pybind11, **kw), cells
