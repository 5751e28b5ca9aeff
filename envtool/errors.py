"""The one exception hierarchy. Imports nothing from envtool so every module can use it."""

from __future__ import annotations

# Exit codes, everywhere: 0 ok, 1 a check or verification failed, 2 bad input or environment, 3 envtool
# crashed (a bug: never a verdict), 130/143 interrupted.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CRASH = 3


class EnvtoolError(Exception):
    """A failure the user can act on: what is wrong, where, and the fix."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, fix: str | None = None, *, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.where = where

    def one_line(self) -> str:
        head = f"{self.where}: {self.message}" if self.where else self.message
        return f"{head} (fix: {self.fix})" if self.fix else head

    def to_dict(self) -> dict:
        return {"error": self.message, "where": self.where, "fix": self.fix,
                "exit_code": self.exit_code}


class BadInput(EnvtoolError):
    """Bad arguments, files or environment: exit 2."""


class CheckFailed(EnvtoolError):
    """A check or verification ran and failed: exit 1."""

    exit_code = EXIT_CHECK_FAILED
