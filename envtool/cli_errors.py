"""How every command fails: one line on stderr naming the fix, the exit code of its kind (2 bad input or the
machine's state, 1 a failed check, 3 a bug, 130/143 interrupted), never a traceback, and, where --json or
--format json|sarif was asked for, a valid document holding the error."""

from __future__ import annotations

import errno
import os
import signal
import sys

import click

from envtool import formats
from envtool.errors import EXIT_CRASH, BadInput, EnvtoolError
from envtool.render import emit_json, err


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
        emit_json(error)
    elif fmt == "sarif":
        fix = f" (fix: {error['fix']})" if error.get("fix") else ""
        emit_json(formats.sarif_failure(f"{error['error']}{fix}"))


def _report(e: EnvtoolError) -> int:
    """One line on stderr (and the document a machine format asks for); the exit code."""
    _emit_failure(e.to_dict())
    err.print(f"[bold red]error:[/] {e.one_line()}", highlight=False, soft_wrap=True)
    return e.exit_code


# The machine's state, not a bug: a full or read-only disk, missing permissions, too many open files.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EMFILE}


class Group(click.Group):
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

