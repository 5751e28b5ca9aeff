"""Create a prefix from a conda environment file with micromamba, mamba or conda.

No conda exists on our build machine; the command lines follow each tool's documented CLI
(`conda env create --file F --prefix P`, `micromamba create --yes --file F --prefix P`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from envtool.env.install import Log, isolated_env
from envtool.errors import BadInput
from envtool.runner import run, tail

SOLVERS = ("micromamba", "mamba", "conda")  # fastest first


def find_solver(preferred: str | None = None) -> tuple[str, str]:
    """(name, path) of the solver to use; a clear error when none is on PATH."""
    names = (preferred,) if preferred else SOLVERS
    for name in names:
        path = shutil.which(name)
        if path:
            return name, path
    wanted = preferred or " / ".join(SOLVERS)
    raise BadInput(f"--env-file needs {wanted}, and none is on PATH",
                   "install micromamba (https://mamba.readthedocs.io), or build without conda: "
                   "--python 3.X -r requirements.txt")


def create_command(solver: str, exe: str, env_file: Path, prefix: Path) -> list[str]:
    if solver == "micromamba":
        return [exe, "create", "--yes", "--file", str(env_file), "--prefix", str(prefix)]
    # conda and mamba share `env create`, which reads the file's channels and its pip: section.
    return [exe, "env", "create", "--file", str(env_file), "--prefix", str(prefix)]


def create_from_file(env_file: Path, prefix: Path, solver: str | None, log: Log) -> str:
    name, exe = find_solver(solver)
    log(f"{name}: creating the env from {env_file}")
    # PYTHONNOUSERSITE: the file's pip: section must not see packages in ~/.local (failure mode 9).
    out = run(create_command(name, exe, env_file, prefix), env=isolated_env())
    if out.returncode != 0:
        raise BadInput(f"{name} could not create the env from {env_file}: {tail(out.stderr or out.stdout, 3)}",
                       f"fix {env_file} (see {name}'s message) and run again", where=str(env_file))
    return name
