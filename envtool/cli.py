"""Command line: parses arguments, calls envtool.api, renders rich output or --json. Nothing else."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from envtool import api, catalog, formats
from envtool.errors import EXIT_CHECK_FAILED, EXIT_CRASH, BadInput, EnvtoolError
from envtool.findings import has_errors

# Piped or captured output is for machines and logs: never wrapped at 80 columns (rich's default off a TTY).
out = Console(width=None if sys.stdout.isatty() else 100_000)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 100_000)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
FORMATS = ("text", "json", "sarif", "github")


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _target(_ctx, _param, value: str) -> str:
    if value in ("release", "host") or (value.startswith("image:") and len(value) > len("image:")):
        return value
    raise click.BadParameter(f"{value!r} is not release, host or image:NAME", param_hint="--target")


PORT = click.IntRange(1, 65535)


class _Seconds(click.ParamType):
    """A duration in seconds: a finite number above 0 (nan, inf, 0 and negatives are bad input)."""

    name = "seconds"

    def convert(self, value, param, ctx):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r} must be a finite number of seconds above 0", param, ctx)
        return seconds


SECONDS = _Seconds()


def _installer_option(f):
    return click.option("--installer", type=click.Choice(["auto", "uv", "pip"]), default="auto", show_default=True,
                        help="What installs --python envs' packages: uv (several times faster; reads pip's index "
                        "settings) where it can, else pip.")(f)


def _reverify_option(f):
    return click.option("--reverify", is_flag=True, help="Serve again even when envtool.lock records a "
                        "successful verify of exactly these inputs (files, envs, stubs, server, options).")(f)


def _target_option(f):
    return click.option("--target", default="release", show_default=True, callback=_target,
                        metavar="release|host|image:NAME",
                        help="Where stub and env will run, for the GLIBC/GLIBCXX rules: the release's image, "
                        "this host only (a server on this machine), or your own server image (say a newer "
                        "distro for a newer Python; read with docker, and --builder docker builds in it).")(f)


def _machine_format(argv: list[str]) -> str | None:
    """json or sarif where the command line asks for it (--json, --format json|sarif, --format=...)."""
    if "--json" in argv:
        return "json"
    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--format=") else argv[i + 1] if a == "--format" and \
            i + 1 < len(argv) else None
        if value in ("json", "sarif"):
            return value
    return None


_ARGV: list[str] = []  # the command line main() was given (sys.argv[1:] from the shell, args under tests)


def _emit_failure(error: dict) -> None:
    """Every exit prints a valid document in the machine format asked for, the error included."""
    fmt = _machine_format(_ARGV or sys.argv[1:])
    if fmt == "json":
        _emit_json(error)
    elif fmt == "sarif":
        fix = f" (fix: {error['fix']})" if error.get("fix") else ""
        _emit_json(formats.sarif_failure(f"{error['error']}{fix}"))


def _report(e: EnvtoolError) -> int:
    """One line on stderr (and the document a machine format asks for); the exit code."""
    _emit_failure(e.to_dict())
    err.print(f"[bold red]error:[/] {e.one_line()}", highlight=False, soft_wrap=True)
    return e.exit_code


# The machine's state, not a bug: a full or read-only disk, missing permissions, too many open files.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EMFILE}


class _Group(click.Group):
    """Turns every EnvtoolError, and click's usage errors, into one line and its exit code: never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _ARGV[:] = list(args) if args is not None else sys.argv[1:]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:  # click's own text is 4 lines: one line, naming the fix
            sys.exit(_report(BadInput(e.format_message(), f"{e.ctx.command_path if e.ctx else 'envtool'} --help")))
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        signal.signal(signal.SIGTERM, _terminated)  # stop servers and builds as on Ctrl-C
        try:
            return super().invoke(ctx)
        except EnvtoolError as e:
            ctx.exit(_report(e))
        except OSError as e:
            if e.errno not in ENVIRONMENT_ERRNOS:
                raise
            target = e.filename2 or e.filename  # a copy names its source first, the destination second
            where = f" {target}" if target else ""
            ctx.exit(_report(BadInput(f"cannot write{where}: {e.strerror}", "free space, or use a writable "
                                      "location (-o, --cache, ENVTOOL_CACHE_DIR); nothing half-written was left")))
        except KeyboardInterrupt as e:
            err.print("[bold red]interrupted[/]: nothing half-written and no process was left behind")
            ctx.exit(143 if isinstance(e, Terminated) else 130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise  # click's own exits and usage errors
        except Exception as e:  # a bug in envtool: exit 3, never the exit code of a verdict
            if ctx.meta.get("debug") or os.environ.get("ENVTOOL_DEBUG") == "1":
                err.print_exception()
            fix = "rerun with --debug for the traceback; please report it"
            _emit_failure({"error": f"envtool crashed: {type(e).__name__}: {e}", "where": None,
                           "exit_code": EXIT_CRASH, "fix": fix})
            err.print(f"[bold red]envtool crashed:[/] {type(e).__name__}: {e}; rerun with --debug for the "
                      "traceback; please report it", highlight=False, soft_wrap=True)
            ctx.exit(EXIT_CRASH)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C so every context manager cleans up."""


def _terminated(_sig, _frame) -> None:
    raise Terminated()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="envtool")
@click.option("--debug", is_flag=True, help="Show the traceback when envtool crashes (or ENVTOOL_DEBUG=1).")
@click.option("--verbose", is_flag=True, help="Print every command envtool runs (or ENVTOOL_VERBOSE=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Build, inject and verify custom Python environments and stubs for Triton's Python backend.

    Exit codes: 0 ok, 1 a check or verification failed, 2 bad input or environment, 3 envtool crashed
    (a bug), 130/143 interrupted.
    """
    ctx.meta["debug"] = debug
    if verbose:
        os.environ["ENVTOOL_VERBOSE"] = "1"  # envtool.runner reads it, in this process and its children


# --- releases ----------------------------------------------------------------------------------

@main.command()
@click.argument("release", required=False)
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
def releases(release: str | None, json_out: bool) -> None:
    """The release catalog: every release, or RELEASE (r22.11, 22.11 or 2.28.0) in detail."""
    if release:
        r = api.release(release)
        if json_out:
            return _emit_json(r.to_dict())
        t = Table(title=f"Triton {r.branch} (server {r.server})", show_header=False)
        for k, v in r.to_dict().items():
            if isinstance(v, dict):
                for sub, sv in v.items():
                    t.add_row(f"{k}.{sub}", _cell(sv))
            else:
                t.add_row(k, _cell(v))
        out.print(t)
        return None
    rows = api.releases()
    if json_out:
        return _emit_json(rows)
    t = Table(title="Triton releases (python backend)")
    for col in ("release", "server", "ubuntu", "glibc", "GLIBCXX", "python", "pybind11",
                "boost", "numpy2", "dir env", "launcher", "pytriton", "prebuilt stubs"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["release"], r["server"], r["ubuntu"], r["glibc"], r["max_glibcxx"],
                  r["python"], r["pybind11"], r["boost"] + (" (dead URL)" if r["boost_dead"] else ""),
                  _cell(r["numpy2"]), _cell(r["dir_env"]),
                  r["launcher"] + (" + secure extract" if r["secure_extract"] else ""), r["pytriton"] or "-",
                  _cell(r["prebuilt_pythons"]) or "-")
    out.print(t)
    return None


def _cell(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


# --- lint --------------------------------------------------------------------------------------

def _format_option(f):
    f = click.option("--json", "json_out", is_flag=True, help="Machine-readable output (= --format json).")(f)
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                        help="sarif: SARIF 2.1.0 for code scanning; github: workflow annotations.")(f)


def _emit_findings(fmt: str, findings: list, as_json: dict) -> bool:
    """Writes findings in a machine format; False for text (the caller renders it)."""
    if fmt == "json":
        _emit_json(as_json)
    elif fmt == "sarif":
        _emit_json(formats.to_sarif(findings))
    elif fmt == "github" and findings:
        click.echo(formats.to_github(findings))
    return fmt != "text"


def _print_finding(f) -> None:
    style = SEVERITY_STYLE[f.severity]
    out.print(f"[{style}]{f.severity}[/] [bold]{f.model or '-'}[/] {f.message}", highlight=False)
    if f.where:
        out.print(f"    at {f.where}", style="dim", highlight=False)
    if f.triton:
        out.print(f"    Triton says: {f.triton}", highlight=False)
    if f.fix:
        out.print(f"    fix: {f.fix}", style="green", highlight=False)


@main.command()
@click.argument("repo", type=click.Path(path_type=Path))
@click.option("--triton", "triton", metavar="RELEASE", help="Quote Triton's messages as this release prints "
              "them (default: the newest in the catalog).")
@click.option("--disable-auto-complete-config", "no_autocomplete", is_flag=True, help="Judge the configs as a "
              "server started with this flag does: complete as written, none completed from model.py.")
@_format_option
def lint(repo: Path, triton: str | None, no_autocomplete: bool, json_out: bool, fmt: str) -> None:
    """Check a model repository for what Triton would reject or warn about at load time."""
    findings = api.lint(repo, triton, autocomplete=not no_autocomplete)
    code = EXIT_CHECK_FAILED if has_errors(findings) else 0
    as_json = {"repository": str(repo), "findings": [f.to_dict() for f in findings], "ok": code == 0}
    if _emit_findings("json" if json_out else fmt, findings, as_json):
        sys.exit(code)
    for f in findings:
        _print_finding(f)
    n_err = sum(f.severity == "error" for f in findings)
    summary = f"{len(findings)} finding(s), {n_err} error(s)" if findings else "no findings"
    out.print(("[red]✗[/] " if n_err else "[green]✓[/] ") + summary)
    sys.exit(code)


# --- inject ------------------------------------------------------------------------------------

@main.command()
@click.argument("repo", type=click.Path(path_type=Path))
@click.option("--stub", type=click.Path(path_type=Path), required=True,
              help="triton_python_backend_stub to copy into each model folder.")
@click.option("--env", "env", type=click.Path(path_type=Path), required=True,
              help="Execution env: a conda-pack .tar.gz or an unpacked env directory.")
@click.option("--models", default="", help="Comma-separated python models (default: those the "
              "ensembles use, or all python models).")
@click.option("--gpu/--cpu", default=False, help="KIND_GPU + FORCE_CPU_ONLY_INPUT_TENSORS \"no\", "
              "or KIND_CPU + \"yes\" (default).")
@click.option("--deployment", type=click.Choice(["cpu", "gpu-models", "gpu-all"]), help="The article's "
              "three: all on CPU; the models on GPU, pre/post on CPU; all on GPU with pre/post taking GPU tensors "
              "(FORCE_CPU_ONLY_INPUT_TENSORS \"no\"). Overrides --gpu/--cpu.")
@click.option("--share/--no-share", default=True, help="Store the env once and symlink it from "
              "the other models (one extraction), or copy it into each model.")
@click.option("--dry-run", is_flag=True, help="Print the diff and the file operations; change nothing.")
@click.option("--force", is_flag=True, help="Inject a stub and env that do not match (to reproduce a failure).")
@click.option("--strict", is_flag=True, help="A model that cannot be injected stops the whole run, before any "
              "change (default: the other models are injected, and the exit status is 1).")
@_target_option
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
def inject(repo, stub, env, models, gpu, deployment, share, dry_run, force, strict, target, json_out) -> None:
    """Put STUB and ENV into python models and set EXECUTION_ENV_PATH in their configs."""
    names = tuple(n.strip() for n in models.split(",") if n.strip())
    result = api.inject(api.InjectOptions(repo=repo, stub=stub, env=env, models=names, gpu=gpu,
                                          deployment=deployment, share=share, dry_run=dry_run, force=force,
                                          target=target, strict=strict))
    code = EXIT_CHECK_FAILED if result.errors else 0
    if json_out:
        _emit_json(result.to_dict())
        sys.exit(code)
    for e in result.errors:
        where = f" (at {e.where})" if e.where else ""
        err.print(f"[red]error:[/] {e.message}{where}" + (f"; fix: {e.fix}" if e.fix else ""), highlight=False,
                  soft_wrap=True)
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    for p in result.files:
        out.print(("would " if dry_run else "") + p.describe(), highlight=False)
    for c in result.configs:
        if c.changed and dry_run:
            click.echo(c.diff(result.repo), nl=False)
        elif c.changed:
            out.print(f"edited {c.path}", highlight=False)
    state = "would change" if dry_run else "changed"
    out.print(f"[green]✓[/] {', '.join(result.models)}: "
              + (state if result.changed else "already up to date"))
    if result.errors:
        out.print(f"[red]✗[/] left out: {', '.join(e.model for e in result.errors)}")
    sys.exit(code)


# --- pack --------------------------------------------------------------------------------------

@main.command()
@click.option("--python", "python", help="No conda: a CPython X.Y with a shared libpython, found in "
              "pyenv, uv or the system (or --interpreter).")
@click.option("-r", "--requirements", "requirements", multiple=True, type=click.Path(path_type=Path),
              help="requirements.txt to pip-install (with --python; repeatable).")
@click.option("--pip", "pip", multiple=True, help="A requirement to pip-install (with --python; repeatable).")
@click.option("--interpreter", type=click.Path(path_type=Path), help="Use this python3.X binary.")
@click.option("--prefix", type=click.Path(path_type=Path), help="Pack an existing conda env.")
@click.option("--env-file", type=click.Path(path_type=Path), help="Create the env from a conda environment "
              "file first (micromamba, mamba or conda).")
@click.option("--solver", type=click.Choice(["micromamba", "mamba", "conda"]), help="Which tool creates "
              "--env-file envs (default: the first found, in that order).")
@click.option("--triton", help="Release the env is for: pins numpy<2 where its stub needs it and checks "
              "the env against it.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Default envs/custom_env.tar.gz "
              "(envs/custom_env with --unpacked).")
@click.option("--unpacked", is_flag=True, help="Write a directory instead of a tarball (loads much faster; "
              "r23.07 and later).")
@click.option("--trim/--no-trim", default=True, help="Leave out tests, static libs, include/, idlelib, "
              "tkinter, ensurepip and __pycache__ (default) or keep everything.")
@click.option("--bytecode/--no-bytecode", default=True, help="With --python: ship unchecked-hash .pyc files, so "
              "each model load imports warm from a freshly extracted env (default), or none (smaller).")
@click.option("--level", type=click.IntRange(0, 9), default=api.DEFAULT_LEVEL, show_default=True,
              help="gzip level.")
@click.option("--builder", "pack_builder", type=click.Choice(["host", "docker"]), default="host",
              show_default=True,
              help="docker: pack inside the release's image with Dockerfile.build (needs --triton).")
@click.option("--base-image", help="Image for --builder docker (default: the release's tritonserver image).")
@click.option("--rebuild", is_flag=True, help="Ignore the cache and build again.")
@click.option("--numpy2", is_flag=True, help="The stub reads numpy 2 although its release's pybind11 does not "
              "(a stub built with --pybind11 >= v2.12): no numpy<2 pin.")
@_installer_option
@_target_option
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
def pack(python, requirements, pip, interpreter, prefix, env_file, solver, triton, output, unpacked, trim,
         bytecode, level, pack_builder, base_image, rebuild, numpy2, installer, target, json_out) -> None:
    """Build a relocatable Python execution environment (conda-pack) and prove it starts as Triton
    starts it."""
    spec = api.PackSpec(python=python, requirements=tuple(requirements), pip=tuple(pip), interpreter=interpreter,
                        prefix=prefix, env_file=env_file, solver=solver, triton=triton, trim=trim,
                        bytecode=bytecode,
                        unpacked=unpacked, level=level, builder=pack_builder, base_image=base_image,
                        target=target, numpy2=numpy2, installer=installer)
    result = _with_progress("packing", lambda log: api.pack(spec, output, log, rebuild=rebuild))
    if json_out:
        return _emit_json(result.to_dict())
    m = result.manifest
    for w in m["warnings"]:
        err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    saved = f", trimmed {m['trimmed']['bytes'] / 2**20:.0f} MB" if m["trimmed"] else ""
    out.print(f"[green]✓[/] {result.output} ({m['size_bytes'] / 2**20:.1f} MB, {m['files']} files, Python "
              f"{m['python']}, numpy {m['numpy']}{saved}{', reused' if result.reused else ''})", highlight=False)
    out.print(f"  manifest: {result.manifest_path}", highlight=False)
    return None


def _with_progress(title: str, work):
    """Run work(log) under a rich spinner on stderr; each step is also printed as a line."""
    with err.status(title) as status:
        def log(msg: str) -> None:
            status.update(msg)
            err.print(f"  {msg}", highlight=False, style="dim")
        return work(log)


# --- stub --------------------------------------------------------------------------------------

@main.command()
@click.option("--triton", "release", required=True, help="Release: r24.10, 24.10 or 2.51.0.")
@click.option("--python", "python", help="Python X.Y the stub embeds (the env's Python); several as "
              "3.8,3.9,3.10 share one build tree.")
@click.option("--gpu", is_flag=True, help="A stub with GPU support (prebuilt stubs always have it).")
@click.option("--fetch-sources", type=click.Path(path_type=Path), help="Only clone the sources a local "
              "build of the release needs into this folder (then use --sources).")
@click.option("--builder", type=click.Choice(["auto", "prebuilt", "local", "docker"]), default="auto",
              show_default=True, help="auto: the store, then NVIDIA's prebuilt stub, then a local CMake build; "
              "docker: the local build inside the release's image (Dockerfile.build).")
@click.option("--base-image", help="Image for --builder docker (default: the release's tritonserver image).")
@click.option("--cache", "root", type=click.Path(path_type=Path, file_okay=False),
              help="Stub store (default stubs/).")
@click.option("--sources", type=click.Path(path_type=Path), help="Local python_backend sources (--builder local).")
@click.option("--rebuild", is_flag=True, help="Ignore the store.")
@click.option("--pybind11", "pybind11", metavar="TAG", help="Build with this pybind11 tag instead of the "
              "release's pin (e.g. v3.0.1 for Python 3.14; >= v2.12 lets the env have numpy 2). A source build.")
@_target_option
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
def stub(release, python, gpu, fetch_sources, builder, base_image, root, sources, rebuild, pybind11, target,
         json_out) -> None:
    """Produce triton_python_backend_stub for a release and Python, checked against the release."""
    if fetch_sources:
        done = _with_progress("fetching sources", lambda log: api.fetch_sources(fetch_sources, release, log))
        return _emit_json({"sources": str(done)}) if json_out else out.print(f"[green]✓[/] {done}")
    if not python:
        raise BadInput("--python is required", "e.g. --python 3.9 (the Python of the env), or 3.8,3.9,3.10")
    pythons = list(dict.fromkeys(p.strip() for p in python.split(",") if p.strip()))
    arts = _with_progress("stub", lambda log: api.stubs(release, pythons, gpu=gpu, builder=builder, root=root,
                                                        sources=sources, rebuild=rebuild, log=log,
                                                        base_image=base_image, pybind11=pybind11,
                                                        target=target))
    if json_out:
        return _emit_json(arts[0].to_dict() if len(arts) == 1 else [a.to_dict() for a in arts])
    for art in arts:
        m = art.manifest
        libs = f" + {', '.join(m['libs'])}" if m.get("libs") else ""
        out.print(f"[green]✓[/] {art.path}{libs}", highlight=False)
        out.print(f"  r{m['release']}, Python {m['python']}, {m['builder']}; links {m['needed_libpython']}; needs "
                  f"GLIBC {m['requires'].get('GLIBC')}, GLIBCXX {m['requires'].get('GLIBCXX')}", highlight=False)
        out.print(f"  chosen: {m['chosen']}{_phase_times(art)}", highlight=False)
    return None


# --- matrix ------------------------------------------------------------------------------------

@main.command()
@click.option("--triton", "releases_", required=True, help="Releases, comma-separated: r22.11,r24.10 (all: "
              "every release with a server here).")
@click.option("--python", "pythons", default=",".join(catalog.python_facts()["matrix"]), show_default=True,
              help="Pythons, comma-separated.")
@click.option("--repo", type=click.Path(path_type=Path), help="Model set to serve (default: one add_sub model).")
@click.option("--verify", is_flag=True, help="Serve the model set on each cell's release (embedded server).")
@click.option("--builder", type=click.Choice(["auto", "prebuilt", "local", "docker"]), default="auto",
              show_default=True, help="How stubs are made, as for `envtool stub`.")
@click.option("--sources", type=click.Path(path_type=Path), help="Local python_backend sources (local builds).")
@click.option("--cache", "root", type=click.Path(path_type=Path, file_okay=False),
              help="Stub store (default stubs/).")
@click.option("--bake", "bake_file", type=click.Path(path_type=Path), help="Write a docker-bake.hcl that "
              "builds every possible cell's stub and env with Dockerfile.build (docker buildx bake -f FILE); "
              "build nothing here.")
@click.option("--pybind11", "pybind11", metavar="TAG", help="Build every cell with this pybind11 tag instead of "
              "the release's pin (source builds; e.g. v3.0.1 for Python 3.14).")
@click.option("--base-image", help="With --bake: the build image of every release (default: each release's "
              "tritonserver image; BASE_<yy>_<mm> in the environment overrides one).")
@_target_option
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
def matrix(releases_, pythons, repo, verify, builder, sources, root, bake_file, pybind11, base_image, target,
           json_out) -> None:
    """Make and check every (release, Python) cell; say why a cell cannot exist."""
    from envtool import matrix as mx
    rels = ([r.release for r in catalog.releases() if r.embedded_available] if releases_.strip() == "all"
            else [catalog.normalize_release(r).release for r in releases_.split(",") if r.strip()])
    pys = mx.normalize_pythons(pythons)
    if repo is not None and not Path(repo).is_dir():
        raise BadInput(f"--repo {repo} is not a directory", "pass a model repository")
    if bake_file is not None:
        from envtool.bake import write_bake
        cells = mx.plan(rels, pys, pybind11)
        written = _with_progress("bake file", lambda log: write_bake(bake_file, cells, base_image=base_image,
                                                                      sources=sources, pybind11=pybind11,
                                                                      target=target, log=log))
        as_json = {"bake": str(bake_file), "targets": written, "cells": [c.to_dict() for c in cells]}
        return _emit_json(as_json) if json_out else out.print(
            f"[green]✓[/] {bake_file}: {len(written)} target(s); run `docker buildx bake -f {bake_file} "
            "--allow network.host`", highlight=False)
    cells = _with_progress("matrix", lambda log: api.matrix(rels, pys, repo=repo, verify=verify, builder=builder,
                                                            sources=sources, stubs_root=root, pybind11=pybind11,
                                                            target=target, log=log))
    if json_out:
        _emit_json({"cells": [c.to_dict() for c in cells], "summary": mx.summary(cells)})
    else:
        _render_matrix(cells)
        out.print(mx.summary(cells), highlight=False)
    sys.exit(EXIT_CHECK_FAILED if any(c.status in ("failed", "serve failed", "ELF misfit") for c in cells) else 0)


def _render_matrix(cells) -> None:
    t = Table(title="Triton release x Python")
    for col in ("cell", "status", "stub", "ELF fit", "served", "time", "why"):
        t.add_column(col, overflow="fold")
    for c in cells:
        t.add_row(f"r{c.release} x {c.python}", c.status, c.made or "-", c.elf, c.served,
                  f"{c.seconds:.1f} s" if c.seconds else "-", c.why or c.error or "")
    out.print(t)


def _phase_times(art) -> str:
    t = art.manifest.get("timings") or {}
    if not t or art.reused:
        return ""
    return f" ({_times(t)})"


def _times(timings: dict[str, float]) -> str:
    """{"start_to_ready_s": 3.4} -> "start to ready 3.4 s"."""
    return ", ".join(f"{(k[:-2] if k.endswith('_s') else k).replace('_', ' ')} {v:.1f} s"
                     for k, v in timings.items())


# --- verify / serve ------------------------------------------------------------------------------

def _server_options(f):
    f = _server_options_no_release(f)
    return click.option("--triton", "release", required=True, help="Release the server runs: r24.10, 24.10.")(f)


def _server_options_no_release(f):
    f = click.option("--server", "server", type=click.Choice(["embedded", "local", "docker"]),
                     default="embedded", show_default=True, help="embedded: tritonserver from the release's "
                     "nvidia-pytriton wheel; local: --server-bin, PATH or /opt/tritonserver; docker: the "
                     "release's tritonserver image (or --image).")(f)
    f = click.option("--image", help="Image for --server docker (default: the release's tritonserver image).")(f)
    f = click.option("--server-bin", type=click.Path(path_type=Path),
                     help="tritonserver binary (--server local).")(f)
    return f


@main.command()
@click.argument("repo", type=click.Path(path_type=Path))
@_server_options
@click.option("--inputs", type=click.Path(path_type=Path), help='JSON: {"model": {"INPUT": value}} or '
              '{"INPUT": value}; default: generated from the config.')
@click.option("--expect", type=click.Path(path_type=Path), help="JSON of expected output values (same forms).")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="Relative tolerance for --expect.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="Absolute tolerance for --expect.")
@click.option("--timeout", type=SECONDS, default=300, show_default=True, help="Seconds to wait for readiness.")
@click.option("--no-lock", is_flag=True, help="Do not write envtool.lock (and do not reuse it).")
@_reverify_option
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
def verify(repo, release, server, server_bin, image, inputs, expect, rtol, atol, timeout, no_lock, reverify,
           json_out) -> None:
    """Serve REPO with a real Triton, report each model's state and run an inference on each ensemble
    over HTTP and gRPC; stops at once on causes that make Triton hang."""
    opts = api.VerifyOptions(repo=repo, release=release, server=server, server_bin=server_bin, image=image,
                             inputs=inputs,
                             expect=expect, timeout=timeout, rtol=rtol, atol=atol, lock=not no_lock,
                             reverify=reverify)
    report = _with_progress("verifying", lambda log: api.verify(opts, log))
    _render_report(report, json_out)
    if not report.ok:
        sys.exit(EXIT_CHECK_FAILED)


def _render_report(report, json_out: bool) -> None:
    if json_out:
        return _emit_json(report.to_dict())
    t = Table(title=f"Triton r{report.release} ({report.server['kind']} {report.server.get('version', '')})")
    for col in ("model", "state", "checked", "inference", "outputs"):
        t.add_column(col)
    runs: dict[str, list] = {}
    for i in report.inferences:
        runs.setdefault(i.model, []).append(i)
    for name, st in sorted(report.models.items()):
        ready = st["state"] == "READY"
        state = f"[green]{st['state']}[/]" if ready else f"[red]{st['state'] or '-'}[/] {st['reason']}"
        inf = " ".join(f"{i.protocol} {'[green]ok[/]' if i.ok else '[red]failed[/]'}"
                       + ("" if i.responses is None else f" ({i.responses} response{'s' * (i.responses != 1)})")
                       for i in runs.get(name, []))
        outs = next((", ".join(f"{k} {v['datatype']}{v['shape']} {_fmt_sample(v['sample'])}"
                               for k, v in i.outputs.items())
                     for i in runs.get(name, []) if i.outputs), "")
        checked = st.get("checked", "")
        t.add_row(name, state, "[yellow]not exercised[/]" if checked.startswith("skipped") else checked, inf, outs)
    if report.models:
        out.print(t)
    for d in report.diagnoses:
        err.print(f"[bold red]cause:[/] {d.cause}\n  [bold]fix:[/] {d.fix}\n  [dim]log: {d.line}[/]",
                  highlight=False, soft_wrap=True)
    for w in report.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    for p in report.problems:
        err.print(f"[bold red]✗[/] {p}", highlight=False, soft_wrap=True)
    if not report.reused:
        out.print(f"server log: {report.server['log']} ({_times(report.timings)})", highlight=False)
    for sk in report.skipped:
        err.print(f"[yellow]not exercised:[/] {sk['model']}: {sk['reason']}", highlight=False, soft_wrap=True)
    if report.ok:
        exercised = sum(st.get("checked", "").startswith(("inference", "grpc", "via"))
                        for st in report.models.values())
        what = f"verified ({exercised} exercised, {len(report.skipped)} not exercised)"
        if report.reused:
            what = (f"verified earlier (lock unchanged: served {report.reused}, {exercised} exercised); "
                    "--reverify serves it again")
        out.print(f"[green]✓[/] {what}; lock: {report.lock}" if report.lock else f"[green]✓[/] {what}",
                  highlight=False)
    return None


def _fmt_sample(values: list) -> str:
    shown = [f"{v:.4g}" if isinstance(v, float) else str(v)[:24] for v in values]
    return "= [" + ", ".join(shown) + (", …]" if len(values) >= 4 else "]")


@main.command()
@click.argument("repo", type=click.Path(path_type=Path))
@_server_options
@click.option("--http-port", type=PORT, default=8000, show_default=True)
@click.option("--grpc-port", type=PORT, default=8001, show_default=True)
@click.option("--metrics-port", type=PORT, default=8002, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--allow-partial", is_flag=True, help="Serve the models that loaded even when others did not "
              "(/v2/health/ready then says ready); default: refuse, naming the models that are not READY.")
def serve(repo, release, server, server_bin, image, http_port, grpc_port, metrics_port, address,
          allow_partial) -> None:
    """Run Triton on REPO in the foreground for local development; Ctrl-C stops it cleanly."""
    if len({http_port, grpc_port, metrics_port}) < 3:
        raise BadInput(f"--http-port {http_port}, --grpc-port {grpc_port} and --metrics-port {metrics_port} must "
                       "differ", "give each endpoint its own port")
    api.serve(repo, release, server=server, server_bin=server_bin, image=image,
              ports=(http_port, grpc_port, metrics_port),
              address=address, allow_partial=allow_partial, on_ready=_print_endpoints)


def _print_endpoints(server) -> None:
    states = server.model_states()
    ready = sorted(n for n, s in states.items() if s["state"] == "READY")
    bad = {n: s for n, s in states.items() if s["state"] != "READY"}
    out.print(f"[green]serving[/] {server.repo} with Triton r{server.release.release} ({server.kind})",
              highlight=False)
    out.print(f"  HTTP    {server.url}\n  gRPC    {server.grpc_url}\n  metrics http://{server.grpc_url.split(':')[0]}:"
              f"{server.metrics_port}/metrics\n  log     {server.log_path}", highlight=False)
    out.print(f"  ready: {', '.join(ready) or 'none'}", highlight=False)
    for n, s in sorted(bad.items()):
        err.print(f"  [red]{n}[/] {s['state']}: {s['reason']}", highlight=False, soft_wrap=True)
    out.print("Ctrl-C to stop.")


# --- build -------------------------------------------------------------------------------------

@main.command()
@click.option("--python", "python", required=True, help="Python X.Y of the env and the stub.")
@click.option("--triton", "release", required=True, help="Release: r24.10, 24.10 or 2.51.0.")
@click.option("--repo", type=click.Path(path_type=Path), help="Model repository to inject into (and verify).")
@click.option("--models", multiple=True, help="Python models to inject (default: those an ensemble uses).")
@click.option("-r", "--requirements", multiple=True, type=click.Path(path_type=Path), help="As for pack.")
@click.option("--pip", multiple=True, help="A requirement to pip-install (repeatable).")
@click.option("--interpreter", type=click.Path(path_type=Path), help="Use this python3.X binary.")
@click.option("--prefix", type=click.Path(path_type=Path), help="Pack an existing conda env.")
@click.option("--env-file", type=click.Path(path_type=Path), help="Create the env from a conda env file.")
@click.option("--solver", type=click.Choice(["micromamba", "mamba", "conda"]))
@click.option("-o", "--env-output", type=click.Path(path_type=Path), help="Default envs/custom_env.tar.gz.")
@click.option("--unpacked", is_flag=True, help="The env as a directory (r23.07 and later).")
@click.option("--builder", type=click.Choice(["auto", "prebuilt", "local", "docker"]), default="auto",
              show_default=True, help="How the stub is made (as for stub).")
@click.option("--base-image", help="Image for --builder docker (default: the release's tritonserver image).")
@click.option("--sources", type=click.Path(path_type=Path), help="python_backend sources (--builder local).")
@click.option("--cache", "stubs_root", type=click.Path(path_type=Path, file_okay=False),
              help="Stub store (default stubs/).")
@click.option("--pybind11", "pybind11", metavar="TAG", help="Build with this pybind11 tag instead of the "
              "release's pin (e.g. v3.0.1 for Python 3.14; >= v2.12 lets the env have numpy 2). A source build.")
@click.option("--gpu", is_flag=True, help="GPU stub and KIND_GPU instances.")
@click.option("--deployment", type=click.Choice(["cpu", "gpu-models", "gpu-all"]),
              help="As for inject: the article's three deployments.")
@click.option("--verify", "do_verify", is_flag=True, help="Serve the repository and run inferences.")
@_server_options_no_release
@click.option("--inputs", type=click.Path(path_type=Path), help="As for verify.")
@click.option("--expect", type=click.Path(path_type=Path), help="As for verify.")
@click.option("--timeout", type=SECONDS, default=300, show_default=True, help="Seconds to wait for readiness.")
@_reverify_option
@click.option("--rebuild", is_flag=True, help="Make the stub and the env again, ignoring the store and cache.")
@_installer_option
@_target_option
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
def build(python, release, repo, models, requirements, pip, interpreter, prefix, env_file, solver, env_output,
          unpacked, builder, base_image, sources, stubs_root, gpu, deployment, do_verify, server, server_bin,
          image, inputs, expect, timeout, reverify, rebuild, installer, target, pybind11, json_out) -> None:
    """Stub + env + preflight + inject (+ verify) in one command; every artifact is cached."""
    env = api.PackSpec(python=None if prefix or env_file else python, requirements=tuple(requirements),
                       pip=tuple(pip), interpreter=interpreter, prefix=prefix, env_file=env_file, solver=solver,
                       unpacked=unpacked, builder="docker" if builder == "docker" else "host",
                       base_image=base_image, installer=installer)
    names = tuple(n for m in models for n in m.split(",") if n)
    spec = api.BuildSpec(python=python, triton=release, env=env, repo=repo, models=names, env_output=env_output,
                         builder=builder, base_image=base_image, sources=sources, stubs_root=stubs_root, gpu=gpu,
                         deployment=deployment, verify=do_verify, target=target, pybind11=pybind11,
                         rebuild=rebuild,
                         verify_options={"server": server, "server_bin": server_bin, "image": image, "gpu": gpu,
                                         "inputs": inputs, "expect": expect, "timeout": timeout,
                                         "reverify": reverify or rebuild})
    result = _with_progress("build", lambda log: api.build(spec, log))
    if json_out:
        _emit_json(result.to_dict())
    else:
        _render_build(result, spec)
    if not result.ok:
        sys.exit(EXIT_CHECK_FAILED)


def _render_build(result, spec) -> None:
    s, e = result.stub, result.env
    out.print(f"[green]✓[/] stub {s.path} ({s.manifest['builder']}{', reused' if s.reused else ''})",
              highlight=False)
    out.print(f"[green]✓[/] env  {e.output} (Python {e.manifest['python']}, numpy {e.manifest['numpy']}, "
              f"{e.manifest['size_bytes'] / 2**20:.1f} MB{', reused' if e.reused else ''})", highlight=False)
    for w in e.manifest["warnings"]:
        err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    if e.manifest.get("format") == "tar.gz" and catalog.normalize_release(spec.triton).dir_env:
        out.print("[dim]tip: this release also loads an env as a directory (--unpacked): no extraction at each "
                  "server start, for a repository on a local or mounted disk (README: directory envs)[/]",
                  highlight=False)
    if result.inject is not None:
        state = "changed" if result.inject.changed else "already up to date"
        out.print(f"[green]✓[/] injected into {', '.join(result.inject.models)} ({state})", highlight=False)
    else:
        out.print(f"next: envtool inject REPO --stub {s.path} --env {e.output}", highlight=False)
    if result.verify is not None:
        _render_report(result.verify, False)
    out.print(f"steps: {_times(result.timings)}", highlight=False)


# --- doctor ------------------------------------------------------------------------------------

@main.command()
@click.argument("repo", type=click.Path(path_type=Path), required=False)
@click.option("--triton", "release", help="The release the repository will be served by (enables the release "
              "checks: stub release, GLIBC/GLIBCXX of the image, numpy 2).")
@click.option("--image", help="Check against this image's glibc and libstdc++ (read with docker) instead of the "
              "release's image in the catalog.")
@click.option("--log", "log_file", type=click.Path(path_type=Path), help="Explain a Triton server log (- for "
              "stdin); with REPO too, the repository's configs confirm or overturn the log's cause.")
@click.option("--stub-timeout", type=SECONDS, default=30.0, show_default=True,
              help="The python backend's stub-timeout-seconds, for the import-time check.")
@click.option("--no-import-check", is_flag=True, help="Do not import each model.py inside its env.")
@click.option("--docker-shm", type=click.IntRange(min=1), help="MiB of /dev/shm in the container it will run "
              "in (docker's default is 64).")
@_target_option
@_format_option
def doctor(repo, release, image, log_file, stub_timeout, no_import_check, docker_shm, target, json_out,
           fmt) -> None:
    """Find every version mismatch before deploying (REPO), explain a failing server's log (--log), or both."""
    if log_file is None and repo is None:
        raise BadInput("give a repository, or --log FILE", "envtool doctor model_repository --triton r24.10")
    report = None
    if repo is not None:
        opts = api.DoctorOptions(repo=repo, release=release, image=image, stub_timeout=stub_timeout,
                                 import_check=not no_import_check, target=target,
                                 docker_shm_bytes=docker_shm * 2**20 if docker_shm else None)
        report = _with_progress("doctor", lambda log: api.doctor(opts, log))
    if log_file is not None:
        from_log = api.explain_log(log_file, release, repo)
        report = from_log if report is None else report.with_log(from_log)
    if not _emit_findings("json" if json_out else fmt, report.all_findings(), report.to_dict()):
        _render_doctor(report)
    sys.exit(0 if report.ok else EXIT_CHECK_FAILED)


def _render_doctor(report) -> None:
    for f in report.findings:
        _print_finding(f)
    for i, d in enumerate(report.diagnoses):
        head = "[bold red]cause[/]" if i == 0 else "[yellow]also[/]"
        hang = " [bold](Triton waits forever)[/]" if d.hang else ""
        out.print(f"{head} [dim]{d.id}[/]{hang} {d.cause}\n    fix: {d.fix}", highlight=False)
        for e in d.evidence:
            out.print(f"    [dim]{e}[/]", highlight=False)
    if report.log is not None:
        v = report.log
        out.print(f"[dim]log: {v.lines} lines, {v.release.text()} ({v.release.how})[/]", highlight=False)
        if not v.recognised:
            out.print("nothing recognised: no Triton log line and no known error in it", highlight=False)
    n_err = sum(f.severity == "error" for f in report.findings) + len(report.diagnoses)
    out.print(("[red]✗[/] " if n_err else "[green]✓[/] ") + (f"{n_err} problem(s)" if n_err else "no problems"))
