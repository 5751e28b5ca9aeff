"""Command line: parses arguments, calls envtool.api, hands the result to envtool.render (or --json), and
turns every error into one line and its exit code. Options are declared once, in cli_options."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import click

from envtool import catalog, render
from envtool import cli_options as o
from envtool.cli_errors import Group
from envtool.env import DEFAULT_LEVEL
from envtool.errors import EXIT_CHECK_FAILED, BadInput
from envtool.findings import has_errors
from envtool.render import emit_json, out, with_progress


def lazy_module(name: str):
    """The module, executed on its first attribute access (importlib's documented lazy-import recipe)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


# The library (tritonclient, grpc, numpy, docker: about 0.3 s) is imported when a command first uses it, not
# for --help, --version or a usage error.
api = lazy_module("envtool.api")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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



def _finish(title: str, work, json_out: bool, show) -> None:
    """Run work (given a progress log) with progress on stderr, print its result as JSON or with show, and exit 1
    when it is not ok."""
    result = with_progress(title, work)
    emit_json(result.to_dict()) if json_out else show(result)
    if not result.ok:
        sys.exit(EXIT_CHECK_FAILED)


@main.command()
@click.argument("release", required=False)
@o.json_option
def releases(release: str | None, json_out: bool) -> None:
    """The release catalog: every release, or RELEASE (r22.11, 22.11 or 2.28.0) in detail."""
    if release:
        r = api.release(release)
        return emit_json(r.to_dict()) if json_out else render.release(r)
    rows = api.releases()
    return emit_json(rows) if json_out else render.releases(rows)


@main.command()
@click.argument("repo", type=o.PATH)
@click.option("--triton", "triton", metavar="RELEASE", help="Quote Triton's messages as this release prints "
              "them (default: the newest in the catalog).")
@click.option("--disable-auto-complete-config", "no_autocomplete", is_flag=True, help="Judge the configs as a "
              "server started with this flag does: complete as written, none completed from model.py.")
@o.format_options
def lint(repo: Path, triton: str | None, no_autocomplete: bool, json_out: bool, fmt: str) -> None:
    """Check a model repository for what Triton would reject or warn about at load time."""
    findings = api.lint(repo, triton, autocomplete=not no_autocomplete)
    code = EXIT_CHECK_FAILED if has_errors(findings) else 0
    as_json = {"repository": str(repo), "findings": [f.to_dict() for f in findings], "ok": code == 0}
    if not render.machine_findings("json" if json_out else fmt, findings, as_json):
        render.lint(findings)
    sys.exit(code)


@main.command()
@click.argument("repo", type=o.PATH)
@click.option("--stub", type=o.PATH, required=True, help="triton_python_backend_stub to copy into each model "
              "folder.")
@click.option("--env", "env", type=o.PATH, required=True,
              help="Execution env: a conda-pack .tar.gz or an unpacked env directory.")
@o.models_option
@click.option("--gpu/--cpu", default=False, help="KIND_GPU + FORCE_CPU_ONLY_INPUT_TENSORS \"no\", "
              "or KIND_CPU + \"yes\" (default).")
@o.deployment_option
@click.option("--share/--no-share", default=True, help="Store the env once and symlink it from "
              "the other models (one extraction), or copy it into each model.")
@click.option("--dry-run", is_flag=True, help="Print the diff and the file operations; change nothing.")
@click.option("--force", is_flag=True, help="Inject a stub and env that do not match (to reproduce a failure).")
@click.option("--strict", is_flag=True, help="A model that cannot be injected stops the whole run, before any "
              "change (default: the other models are injected, and the exit status is 1).")
@click.option("--launcher/--no-launcher", default=True, help="Put the stub behind a launcher that answers "
              "Triton's no-argument probe (default), or copy the bare stub (a non-root Triton serving a "
              "repository from object storage can run a stub, but not read a script, at the ---x------ Triton "
              "leaves).")
@o.target_option
@o.json_option
def inject(repo, stub, env, models, gpu, deployment, share, dry_run, force, strict, launcher, target,
           json_out) -> None:
    """Put STUB and ENV into python models and set EXECUTION_ENV_PATH in their configs."""
    result = api.inject(api.InjectOptions(repo=repo, stub=stub, env=env, models=models, gpu=gpu,
                                          deployment=deployment, share=share, dry_run=dry_run, force=force,
                                          target=target, strict=strict, launcher=launcher))
    emit_json(result.to_dict()) if json_out else render.inject(result, dry_run)
    sys.exit(EXIT_CHECK_FAILED if result.errors else 0)


@main.command()
@click.option("--python", "python", help="No conda: a CPython X.Y with a shared libpython, found in "
              "pyenv, uv, PATH or the system (or --interpreter).")
@o.env_options
@click.option("--triton", help="Release the env is for: pins numpy<2 where its stub needs it and checks "
              "the env against it.")
@click.option("-o", "--output", type=o.PATH, help="Default envs/custom_env.tar.gz (envs/custom_env with "
              "--unpacked).")
@click.option("--trim/--no-trim", default=True, help="Leave out tests, static libs, include/, idlelib, "
              "tkinter, ensurepip and __pycache__ (default) or keep everything.")
@click.option("--bytecode/--no-bytecode", default=True, help="With --python: ship unchecked-hash .pyc files, so "
              "each model load imports warm from a freshly extracted env (default), or none (smaller).")
@click.option("--level", type=click.IntRange(0, 9), default=DEFAULT_LEVEL, show_default=True,
              help="gzip level.")
@click.option("--builder", "pack_builder", type=click.Choice(["host", "docker"]), default="host",
              show_default=True, help="docker: pack inside the release's image with Dockerfile.build (needs "
              "--triton).")
@o.base_image_option
@o.rebuild_option
@click.option("--numpy2", is_flag=True, help="The stub reads numpy 2 although its release's pybind11 does not "
              "(a stub built with --pybind11 >= v2.12): no numpy<2 pin.")
@o.target_option
@o.json_option
def pack(python, requirements, pip, interpreter, prefix, env_file, solver, unpacked, installer, keep_sources,
         triton, output,
         trim, bytecode, level, pack_builder, base_image, rebuild, numpy2, target, json_out) -> None:
    """Build a relocatable Python execution environment (conda-pack) and prove it starts as Triton
    starts it."""
    spec = api.PackSpec(python=python, requirements=tuple(requirements), pip=tuple(pip), interpreter=interpreter,
                        prefix=prefix, env_file=env_file, solver=solver, triton=triton, trim=trim,
                        bytecode=bytecode, unpacked=unpacked, level=level, builder=pack_builder,
                        base_image=base_image, target=target, numpy2=numpy2, installer=installer,
                        keep_sources=keep_sources)
    result = with_progress("packing", lambda log: api.pack(spec, output, log, rebuild=rebuild))
    emit_json(result.to_dict()) if json_out else render.pack(result)


@main.command()
@click.option("--triton", "release", required=True, help="Release: r24.10, 24.10 or 2.51.0.")
@click.option("--python", "python", help="Python X.Y the stub embeds (the env's Python); several as "
              "3.8,3.9,3.10 share one build tree.")
@click.option("--gpu", is_flag=True, help="A stub with GPU support (prebuilt stubs always have it).")
@click.option("--fetch-sources", type=o.PATH, help="Only clone the sources a local build of the release needs "
              "into this folder (then use --sources).")
@o.stub_build_options
@o.rebuild_option
@o.target_option
@o.json_option
def stub(release, python, gpu, fetch_sources, builder, base_image, sources, root, pybind11, rebuild, target,
         json_out) -> None:
    """Produce triton_python_backend_stub for a release and Python, checked against the release."""
    if fetch_sources:
        done = with_progress("fetching sources", lambda log: api.fetch_sources(fetch_sources, release, log))
        return emit_json({"sources": str(done)}) if json_out else out.print(f"[green]✓[/] {done}")
    if not python:
        raise BadInput("--python is required", "e.g. --python 3.9 (the Python of the env), or 3.8,3.9,3.10")
    pythons = list(dict.fromkeys(p.strip() for p in python.split(",") if p.strip()))
    arts = with_progress("stub", lambda log: api.stubs(release, pythons, gpu=gpu, builder=builder, root=root,
                                                       sources=sources, rebuild=rebuild, log=log,
                                                       base_image=base_image, pybind11=pybind11, target=target))
    if json_out:
        return emit_json(arts[0].to_dict() if len(arts) == 1 else [a.to_dict() for a in arts])
    return render.stubs(arts)


@main.command()
@click.option("--triton", "releases_", required=True, help="Releases, comma-separated: r22.11,r24.10 (all: "
              "every release with a server here).")
@click.option("--python", "pythons", default=",".join(catalog.python_facts()["matrix"]), show_default=True,
              help="Pythons, comma-separated.")
@click.option("--repo", type=o.PATH, help="Model set to serve (default: one add_sub model).")
@click.option("--verify", is_flag=True, help="Serve the model set on each cell's release (embedded server).")
@o.stub_build_options
@click.option("--bake", "bake_file", type=o.PATH, help="Write a docker-bake.hcl that builds every possible "
              "cell's stub and env with Dockerfile.build (docker buildx bake -f FILE); build nothing here. "
              "--base-image is then the build image of every release (BASE_<yy>_<mm> overrides one).")
@o.target_option
@o.json_option
def matrix(releases_, pythons, repo, verify, builder, base_image, sources, root, pybind11, bake_file, target,
           json_out) -> None:
    """Make and check every (release, Python) cell; say why a cell cannot exist."""
    from envtool import matrix as mx
    if bake_file is not None:
        written, cells = with_progress("bake file", lambda log: api.bake(
            bake_file, releases_, pythons, base_image=base_image, sources=sources, pybind11=pybind11,
            target=target, log=log))
        as_json = {"bake": str(bake_file), "targets": written, "cells": [c.to_dict() for c in cells]}
        return emit_json(as_json) if json_out else out.print(
            f"[green]✓[/] {bake_file}: {len(written)} target(s); run `docker buildx bake -f {bake_file} "
            "--allow network.host`", highlight=False)
    cells = with_progress("matrix", lambda log: api.matrix(releases_, pythons, repo=repo, verify=verify,
                                                           builder=builder, sources=sources, stubs_root=root,
                                                           pybind11=pybind11, target=target, log=log))
    if json_out:
        emit_json({"cells": [c.to_dict() for c in cells], "summary": mx.summary(cells)})
    else:
        render.matrix(cells, mx.summary(cells))
    sys.exit(EXIT_CHECK_FAILED if any(c.status in ("failed", "serve failed", "ELF misfit") for c in cells) else 0)


@main.command()
@click.argument("repo", type=o.PATH)
@o.server_options
@click.option("--inputs", type=o.PATH, help='JSON: {"model": {"INPUT": value}} or {"INPUT": value}; default: '
              "generated from the config.")
@click.option("--expect", type=o.PATH, help="JSON of expected output values (same forms).")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="Relative tolerance for --expect.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="Absolute tolerance for --expect.")
@o.timeout_option
@click.option("--no-lock", is_flag=True, help="Do not write envtool.lock (and do not reuse it).")
@o.reverify_option
@o.json_option
def verify(repo, release, server, image, server_bin, inputs, expect, rtol, atol, timeout, no_lock, reverify,
           json_out) -> None:
    """Serve REPO with a real Triton, report each model's state and run an inference on each ensemble
    over HTTP and gRPC; stops at once on causes that make Triton hang."""
    opts = api.VerifyOptions(repo=repo, release=release, server=server, server_bin=server_bin, image=image,
                             inputs=inputs, expect=expect, timeout=timeout, rtol=rtol, atol=atol, lock=not no_lock,
                             reverify=reverify)
    _finish("verifying", lambda log: api.verify(opts, log), json_out, render.verify)


@main.command()
@click.argument("repo", type=o.PATH)
@click.option("--triton", "release", required=True, help="Release the image serves: r24.10, 24.10.")
@click.option("-t", "--tag", required=True, help="Name of the image to build: NAME[:TAG].")
@click.option("--base-image", help="Server image to build FROM (default: the release's tritonserver image, or "
              "NAME of --target image:NAME).")
@o.target_option
@click.option("--dockerfile-only", type=o.PATH, metavar="DIR", help="Write the build context (Dockerfile, "
              "docker-bake.hcl, the layers) to DIR and stop: for BuildKit pipelines and remote builders.")
@click.option("--push", metavar="REF", help="After it verifies, push the image as REF "
              "(registry/name:tag).")
@click.option("--verify/--no-verify", "do_verify", default=True, help="Serve the built image itself and "
              "exercise every model (default).")
@click.option("--inputs", type=o.PATH, help="As for verify.")
@click.option("--expect", type=o.PATH, help="As for verify.")
@o.timeout_option
@o.json_option
def image(repo, release, tag, base_image, target, dockerfile_only, push, do_verify, inputs, expect, timeout,
          json_out) -> None:
    """The serving image of an injected REPO: FROM the release's tritonserver image, the repository at
    /models (envs, stubs, large files, configs and code: four layers), labels, a health check; verified as
    shipped."""
    spec = api.ImageSpec(repo=repo, triton=release, tag=tag, base_image=base_image, target=target,
                         dockerfile_only=dockerfile_only, push=push, verify=do_verify, inputs=inputs,
                         expect=expect, timeout=timeout)
    _finish("image", lambda log: api.image(spec, log), json_out, render.image)


@main.command()
@click.argument("repo", type=o.PATH)
@o.server_options
@click.option("--http-port", type=o.PORT, default=8000, show_default=True)
@click.option("--grpc-port", type=o.PORT, default=8001, show_default=True)
@click.option("--metrics-port", type=o.PORT, default=8002, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--allow-partial", is_flag=True, help="Serve the models that loaded even when others did not "
              "(/v2/health/ready then says ready); default: refuse, naming the models that are not READY.")
def serve(repo, release, server, image, server_bin, http_port, grpc_port, metrics_port, address,
          allow_partial) -> None:
    """Run Triton on REPO in the foreground for local development; Ctrl-C stops it cleanly."""
    api.serve(repo, release, server=server, server_bin=server_bin, image=image,
              ports=(http_port, grpc_port, metrics_port), address=address, allow_partial=allow_partial,
              on_ready=render.endpoints)


@main.command()
@click.option("--python", "python", required=True, help="Python X.Y of the env and the stub.")
@click.option("--triton", "release", required=True, help="Release: r24.10, 24.10 or 2.51.0.")
@click.option("--repo", type=o.PATH, help="Model repository to inject into (and verify).")
@o.models_option
@o.env_options
@click.option("-o", "--env-output", type=o.PATH, help="Default envs/custom_env.tar.gz.")
@o.stub_build_options
@click.option("--gpu", is_flag=True, help="GPU stub and KIND_GPU instances.")
@o.deployment_option
@click.option("--verify", "do_verify", is_flag=True, help="Serve the repository and run inferences.")
@o.build_server_options
@click.option("--inputs", type=o.PATH, help="As for verify.")
@click.option("--expect", type=o.PATH, help="As for verify.")
@o.timeout_option
@o.reverify_option
@o.rebuild_option
@o.target_option
@o.json_option
def build(python, release, repo, models, requirements, pip, interpreter, prefix, env_file, solver, unpacked,
          installer, keep_sources, env_output, builder, base_image, sources, root, pybind11, gpu, deployment,
          do_verify, server, image, server_bin, inputs, expect, timeout, reverify, rebuild, target,
          json_out) -> None:
    """Stub + env + preflight + inject (+ verify) in one command; every artifact is cached."""
    env = api.PackSpec(python=None if prefix or env_file else python, requirements=tuple(requirements),
                       pip=tuple(pip), interpreter=interpreter, prefix=prefix, env_file=env_file, solver=solver,
                       unpacked=unpacked, builder="docker" if builder == "docker" else "host",
                       base_image=base_image, installer=installer, keep_sources=keep_sources)
    verify_with = api.VerifyOptions(repo=repo, release=release, server=server, server_bin=server_bin, image=image,
                                    gpu=gpu, inputs=inputs, expect=expect, timeout=timeout,
                                    reverify=reverify or rebuild)
    spec = api.BuildSpec(python=python, triton=release, env=env, repo=repo, models=models, env_output=env_output,
                         builder=builder, base_image=base_image, sources=sources, stubs_root=root, gpu=gpu,
                         deployment=deployment, verify=do_verify, target=target, pybind11=pybind11,
                         rebuild=rebuild, verify_options=verify_with)
    _finish("build", lambda log: api.build(spec, log), json_out, render.build)


@main.command()
@click.argument("repo", type=o.PATH, required=False)
@click.option("--triton", "release", help="The release the repository will be served by (enables the release "
              "checks: stub release, GLIBC/GLIBCXX of the image, numpy 2).")
@click.option("--image", help="Check against this image's glibc and libstdc++ (read with docker) instead of the "
              "release's image in the catalog.")
@click.option("--log", "log_file", type=o.PATH, help="Explain a Triton server log (- for stdin); with REPO too, "
              "the repository's configs confirm or overturn the log's cause.")
@click.option("--stub-timeout", type=o.SECONDS, default=30.0, show_default=True,
              help="The python backend's stub-timeout-seconds, for the import-time check.")
@click.option("--import-timeout", type=o.SECONDS, help="Seconds the import check waits for a model.py's imports "
              "(default: twice --stub-timeout plus 30).")
@click.option("--no-import-check", is_flag=True, help="Do not import each model.py inside its env.")
@click.option("--docker-shm", type=click.IntRange(min=1), help="MiB of /dev/shm in the container it will run "
              "in (docker's default is 64).")
@o.target_option
@o.format_options
def doctor(repo, release, image, log_file, stub_timeout, import_timeout, no_import_check, docker_shm, target,
           json_out, fmt) -> None:
    """Find every version mismatch before deploying (REPO), explain a failing server's log (--log), or both."""
    opts = api.DoctorOptions(repo=repo, release=release, image=image, stub_timeout=stub_timeout,
                             import_timeout=import_timeout,
                             import_check=not no_import_check, target=target, log=log_file,
                             docker_shm_bytes=docker_shm * 2**20 if docker_shm else None)
    report = with_progress("doctor", lambda log: api.doctor(opts, log))
    if not render.machine_findings("json" if json_out else fmt, report.all_findings(), report.to_dict()):
        render.doctor(report)
    sys.exit(0 if report.ok else EXIT_CHECK_FAILED)
