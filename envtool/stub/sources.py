"""`envtool stub --fetch-sources DIR --triton R`: the checkouts a local build needs, at the release's
branch (python_backend, common, core, backend) and the pins its CMakeLists names (pybind11, dlpack).

$ENVTOOL_GIT_URL overrides where they come from, e.g. `file:///mirrors/{owner}+{name}/repo`.
Without --sources, a source build takes them from the cache dir (`cached_sources`), fetching them there once.
"""

from __future__ import annotations

import os
from pathlib import Path

from envtool.atomic import publish_folder, staging_folder
from envtool.cache import cache_root, publish_dir
from envtool.catalog import Release
from envtool.errors import BadInput
from envtool.runner import run

GITHUB = "https://github.com/{owner}/{name}"


def plan(release: Release) -> list[tuple[str, str, str]]:
    """(folder, owner/name, ref) for each checkout."""
    triton = [(n, f"triton-inference-server/{n}", release.branch)
              for n in ("python_backend", "common", "core", "backend")]
    return triton + [("pybind11", "pybind/pybind11", release.recipe.pybind11),
                     ("dlpack", "dmlc/dlpack", release.recipe.dlpack)]


def fetch_sources(dest: Path, release: Release, log=lambda _m: None) -> Path:
    template = _template()
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _fetch_all(dest, release, template, log)
    except BaseException:
        if created and not any(dest.iterdir()):
            dest.rmdir()  # leave no trace of a fetch that got nothing
        raise
    return dest


def _template() -> str:
    return os.environ.get("ENVTOOL_GIT_URL") or GITHUB


def _fetch_all(dest: Path, release: Release, template: str, log) -> None:
    for folder, repo, ref in plan(release):
        if (dest / folder / "CMakeLists.txt").is_file():
            log(f"{folder}: already there")
            continue
        owner, name = repo.split("/")
        url = template.format(owner=owner, name=name)
        log(f"{folder}: {url} @ {ref}")
        with staging_folder(dest, f".{folder}.") as tmp:
            _git(["clone", "-q", "--no-checkout", url, str(tmp)], url)
            _git(["-C", str(tmp), "checkout", "-q", ref], url)
            publish_folder(tmp, dest / folder)


def _git(args: list[str], url: str) -> None:
    out = run(["git", *args], why="to fetch python_backend's sources", timeout=1800)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["(no output)"]
        last = next((ln for ln in lines if ln.startswith("fatal:")), lines[-1])
        raise BadInput(f"git could not get {url}: {last}",
                       "run where GitHub is reachable (or set ENVTOOL_GIT_URL to a mirror), or copy the "
                       "checkouts into the folder yourself")


def cached_sources(release: Release, log=lambda _m: None) -> Path:
    """The release's checkouts in the cache dir, fetched once per release (under a lock, published
    atomically): a source build needs no --sources where GitHub or $ENVTOOL_GIT_URL is reachable."""
    target = cache_root() / "sources" / f"r{release.release}"
    if target.exists():
        log(f"python_backend sources of r{release.release}: {target}")
        return target
    log(f"fetching the python_backend sources of r{release.release} into {target}")
    try:
        return publish_dir(target, lambda tmp: _fetch_all(tmp, release, _template(), log))
    except BadInput as e:
        raise BadInput(f"no python_backend sources for r{release.release}: {e.message}",
                       f"pass --sources DIR, or fetch them where GitHub (or $ENVTOOL_GIT_URL) is reachable: "
                       f"envtool stub --triton r{release.release} --fetch-sources DIR") from None


def clone_once(repo: str, ref: str, target: Path, log=lambda _m: None) -> Path:
    """One checkout of repo at ref in the cache dir, fetched once (published atomically)."""
    if target.exists():
        return target
    owner, name = repo.split("/")
    url = _template().format(owner=owner, name=name)
    log(f"{name}: {url} @ {ref}")

    def fetch(tmp: Path) -> None:
        _git(["clone", "-q", "--no-checkout", url, str(tmp / "checkout")], url)
        _git(["-C", str(tmp / "checkout"), "checkout", "-q", ref], url)
        for item in (tmp / "checkout").iterdir():
            item.rename(tmp / item.name)
        (tmp / "checkout").rmdir()
    return publish_dir(target, fetch)
