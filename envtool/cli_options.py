"""The command line's options, each declared once: the same name means the same thing in every command that
takes it (--target, --builder/--base-image/--sources/--cache/--pybind11, the env options of pack and build,
the server options of verify, serve and build, --json, --format, --models)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from envtool.errors import BadInput

FORMATS = ("text", "json", "sarif", "github")
PORT = click.IntRange(1, 65535)
PATH = click.Path(path_type=Path)
STUB_BUILDERS = click.Choice(["auto", "prebuilt", "local", "docker"])
SOLVERS = click.Choice(["micromamba", "mamba", "conda"])
DEPLOYMENTS = click.Choice(["cpu", "gpu-models", "gpu-all"])


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


def _target(_ctx, _param, value: str):
    from envtool.facts import Where  # when a command runs: facts reads ELF files and images
    try:
        return Where(value)
    except BadInput:
        raise click.BadParameter(f"{value!r} is not release, host or image:NAME", param_hint="--target") from None


def _models(_ctx, _param, value: tuple[str, ...]) -> tuple[str, ...]:
    """--models a,b --models c -> (a, b, c): repeatable and comma-separated alike."""
    return tuple(n.strip() for v in value for n in v.split(",") if n.strip())


def apply(*options):
    """Stack click options onto a command, first listed first in --help."""
    def decorate(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return decorate


json_option = click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
target_option = click.option(
    "--target", default="release", show_default=True, callback=_target, metavar="release|host|image:NAME",
    help="Where stub and env will run, for the GLIBC/GLIBCXX rules: the release's image, this host only (a "
    "server on this machine), or your own server image (say a newer distro for a newer Python; read with "
    "docker, and --builder docker builds in it).")
installer_option = click.option(
    "--installer", type=click.Choice(["auto", "uv", "pip"]), default="auto", show_default=True,
    help="What installs --python envs' packages: uv (several times faster; reads pip's index settings) where "
    "it can, else pip.")
reverify_option = click.option(
    "--reverify", is_flag=True, help="Serve again even when envtool.lock records a successful verify of exactly "
    "these inputs (files, envs, stubs, server, options).")
models_option = click.option(
    "--models", multiple=True, callback=_models, help="Python models, comma-separated or repeated (default: "
    "those the ensembles use, or all python models).")
deployment_option = click.option(
    "--deployment", type=DEPLOYMENTS, help="The article's three: all on CPU; the models on GPU, pre/post on "
    "CPU; all on GPU with pre/post taking GPU tensors (FORCE_CPU_ONLY_INPUT_TENSORS \"no\"). Overrides --gpu.")
base_image_option = click.option("--base-image", help="Image for --builder docker (default: the release's "
                                 "tritonserver image).")
rebuild_option = click.option("--rebuild", is_flag=True, help="Ignore the store and cache; make it again.")
timeout_option = click.option("--timeout", type=SECONDS, default=300, show_default=True,
                              help="Seconds to wait for readiness.")


def format_options(f):
    """--format text|json|sarif|github, and --json for --format json."""
    return apply(click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                              help="sarif: SARIF 2.1.0 for code scanning; github: workflow annotations."),
                 click.option("--json", "json_out", is_flag=True, help="Machine-readable output (= --format "
                              "json)."))(f)


def stub_build_options(f):
    """How a stub is made: stub, matrix and build."""
    return apply(
        click.option("--builder", type=STUB_BUILDERS, default="auto", show_default=True,
                     help="auto: the store, then NVIDIA's prebuilt stub, then a local CMake build; docker: the "
                     "local build inside the release's image (Dockerfile.build)."),
        base_image_option,
        click.option("--sources", type=PATH, help="Local python_backend sources (local builds)."),
        click.option("--cache", "root", type=click.Path(path_type=Path, file_okay=False),
                     help="Stub store (default stubs/)."),
        click.option("--pybind11", "pybind11", metavar="TAG", help="Build with this pybind11 tag instead of the "
                     "release's pin (e.g. v3.0.1 for Python 3.14; >= v2.12 lets the env have numpy 2). A source "
                     "build."))(f)


def env_options(f):
    """What goes into an env: pack and build (--python is each command's own)."""
    return apply(
        click.option("-r", "--requirements", "requirements", multiple=True, type=PATH,
                     help="requirements.txt to pip-install (with --python; repeatable)."),
        click.option("--pip", "pip", multiple=True, help="A requirement to pip-install (with --python; "
                     "repeatable)."),
        click.option("--interpreter", type=PATH, help="Use this python3.X binary."),
        click.option("--prefix", type=PATH, help="Pack an existing conda env."),
        click.option("--env-file", type=PATH, help="Create the env from a conda environment file first "
                     "(micromamba, mamba or conda)."),
        click.option("--solver", type=SOLVERS, help="Which tool creates --env-file envs (default: the first "
                     "found, in that order)."),
        click.option("--unpacked", is_flag=True, help="Write a directory instead of a tarball (loads much "
                     "faster; r23.07 and later)."),
        installer_option,
        click.option("--keep-sources", is_flag=True, help="With --python: keep packages' .py files next to their "
                     "bytecode (tracebacks with source lines, inspect.getsource); by default a package ships as "
                     ".pyc alone unless it reads its own sources."))(f)


def server_options(f):
    """The server verify and serve start."""
    return apply(click.option("--triton", "release", required=True, help="Release the server runs: r24.10, "
                              "24.10."), build_server_options)(f)


def build_server_options(f):
    """The server build starts with --verify (its release is build's own --triton)."""
    return apply(
        click.option("--server", "server", type=click.Choice(["embedded", "local", "docker"]), default="embedded",
                     show_default=True, help="embedded: tritonserver from the release's nvidia-pytriton wheel; "
                     "local: --server-bin, PATH or /opt/tritonserver; docker: the release's tritonserver image "
                     "(or --image)."),
        click.option("--image", help="Image for --server docker (default: the release's tritonserver image)."),
        click.option("--server-bin", type=PATH, help="tritonserver binary (--server local)."))(f)
