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
           "explain_log", "fetch_sources", "inject", "InjectOptions",
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


def matrix(releases: list[str], pythons: list[str], **kw):
    """(release x Python) cells: see envtool.matrix.run."""
    from envtool.matrix import run
    return run(releases, pythons, **kw)
