"""How a release's python backend extracts an env and starts a stub's Python in it, emulated on this
machine (the release's `launcher` and `secure_extract` in the catalog):

- up to r25.07: `source <env>/bin/activate && exec env LD_LIBRARY_PATH=<env>/lib:... <stub>`: the activate
  script runs, conda's etc/conda/activate.d hooks with it;
- from r25.08 (ParseActivationScript, src/pb_utils.cc): bin/activate must exist but is not run; the stub gets
  VIRTUAL_ENV, PATH=<env>/bin:..., LD_LIBRARY_PATH=<env>/lib:... and no PYTHONHOME;
- from r26.06 (src/pb_env.cc): tarballs are extracted by libarchive with ARCHIVE_EXTRACT_SECURE_NODOTDOT |
  SECURE_NOABSOLUTEPATHS | SECURE_SYMLINKS; before, without them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from envtool.errors import BadInput
from envtool.names import ACTIVATE, HOOKS, PARSED  # noqa: F401 (re-exported)
from envtool.runner import run

# libarchive (the libarchive-c binding over the system's libarchive.so.13) with Triton's own flags, in a child
# process: extraction writes relative to the working directory.
_SECURE = """
import sys, libarchive, libarchive.extract as x
flags = x.EXTRACT_TIME | x.EXTRACT_SECURE_NODOTDOT | x.EXTRACT_SECURE_NOABSOLUTEPATHS | x.EXTRACT_SECURE_SYMLINKS
try:
    libarchive.extract_file(sys.argv[1], flags)
except libarchive.ArchiveError as e:
    print(f"{e.msg}" if getattr(e, "msg", None) else str(e))
    sys.exit(3)
"""


def start(root: Path, code: str, args: list[str], timeout: float, launcher: str = ACTIVATE
          ) -> subprocess.CompletedProcess:
    """python3 -c code in the env at root, started as the release's launcher starts a stub: a clean
    environment; -s keeps the user site out, -B writes nothing into the env."""
    base = {"PATH": "/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8"}
    if launcher == PARSED:
        env = {**base, "VIRTUAL_ENV": str(root), "VIRTUAL_ENV_PROMPT": f"({root})",
               "PATH": f"{root}/bin:{base['PATH']}", "LD_LIBRARY_PATH": f"{root}/lib"}
        return run(["env", "-i", *[f"{k}={v}" for k, v in env.items()], "python3", "-s", "-B", "-c", code,
                    *args], why="to start the env as Triton does", timeout=timeout)
    script = 'source "$1/bin/activate" && exec env LD_LIBRARY_PATH="$1/lib" python3 -s -B -c "$2" "${@:3}"'
    return run(["env", "-i", *[f"{k}={v}" for k, v in base.items()], "bash", "-c", script, "_", str(root), code,
                *args], why="to start the env as Triton does", timeout=timeout)


def secure_extract_error(archive: Path, scratch: Path) -> str | None:
    """libarchive's own message where r26.06+'s secure extraction refuses the tarball, else None."""
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        import libarchive  # noqa: F401  (the binding, and the system library under it)
    except (ImportError, OSError) as e:
        raise BadInput(f"libarchive is needed to check r26.06's secure extraction ({e})",
                       "pip install libarchive-c, and apt-get install libarchive13") from None
    out = run([sys.executable, "-c", _SECURE, str(archive.resolve())], cwd=scratch, timeout=1800)
    if out.returncode == 0:
        return None
    return out.stdout.strip() or out.stderr.strip()[-300:] or f"exit {out.returncode}"


def activate_hooks(names: list[str] | set[str]) -> list[str]:
    """The conda activate.d scripts an env carries: run by `source bin/activate`, not from r25.08."""
    return sorted(n for n in names if n.startswith(HOOKS) and n.endswith((".sh", ".bash")))
