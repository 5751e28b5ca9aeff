"""The rules on an env file itself (the EXECUTION_ENV_PATH target, or inject's --env): it exists, is a file or
a folder, is a conda-pack'ed layout Triton can extract, and keeps its entries inside itself. lint judges a
model's env with them and inject the env it is given, so both say the same thing of the same file."""

from __future__ import annotations

from pathlib import Path

from envtool.env.view import is_gzip, view_env
from envtool.findings import Finding
from envtool.repo.messages import NEWEST, Messages

REPACK = "pack it again with `envtool pack`"


def env_file_findings(path: Path, t: Messages = NEWEST) -> list[Finding]:
    """At most one finding: the first thing that stops Triton from using this env (the model and the config
    file are the caller's to add). A FIFO, device or socket is never opened (it could block)."""
    if not path.exists():
        return [Finding("env-missing", "error", None, f"env {path} does not exist",
                        t("env-canonical-path", path=path), "pack one with `envtool pack` and inject it")]
    if not (path.is_file() or path.is_dir()):
        return [Finding("env-special-file", "error", None, f"env {path} is neither a file nor a folder (a FIFO, "
                        "device or socket)", t("env-archive"), "point it at the env's .tar.gz or its folder")]
    if path.is_dir():
        if (path / "bin" / "activate").is_file():
            return []
        return [Finding("env-no-activate", "error", None, f"env directory {path} has no bin/activate",
                        t("env-no-activate", path=path), f"{REPACK} (conda-pack layout), or pass its .tar.gz")]
    if not is_gzip(path):
        return [Finding("env-not-gzip", "error", None, f"env {path} is neither a gzip tarball nor an env "
                        "directory: Triton extracts only .tar.gz", t("env-archive"), f"{REPACK} (.tar.gz)")]
    view = view_env(path)
    if view.kind == "damaged":
        return [Finding("env-damaged", "error", None, f"env {path} is damaged ({view.damage}): Triton could not "
                        "extract it", t("env-archive"), f"{REPACK} and copy it whole")]
    if view.escaping:
        return [Finding("env-escapes", "error", None, f"env {path} has entries that land outside the env, e.g. "
                        f"{view.escaping[0]}", None, f"{REPACK} (conda-pack writes none)")]
    if view.links_out:
        return [Finding("env-links-out", "warning", None, f"env {path} has symlinks that point outside the env, "
                        f"e.g. {view.links_out[0]}: they work only where that path exists (this host), and "
                        "r26.06+ refuses the tarball", None, f"{REPACK} (conda-pack makes links relative)")]
    return []
