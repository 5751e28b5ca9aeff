"""Prove a packed env works the way Triton uses it (KNOWLEDGE.md section 3): extract it to a fresh
folder, `source bin/activate` under `env -i`, and ask the env's own python3 what it sees.

Every check that fails is reported in one CheckFailed line; the facts gathered (Python version,
packages, the newest GLIBC any binary needs) feed the manifest.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from envtool.compat import check
from envtool.env import deflate
from envtool.env.deflate import open_gzip
from envtool.env.launch import ACTIVATE, start
from envtool.env.sitezip import zip_broke
from envtool.env.view import EnvView, add_member, escapes, member_escapes
from envtool.errors import CheckFailed
from envtool.facts import Env

# Run inside the env: facts about the interpreter, its packages and the imports asked for.
_PROBE = r"""
import json, os, shutil, sys
from importlib import import_module, metadata
out = {"version": "%d.%d.%d" % sys.version_info[:3], "prefix": sys.prefix, "executable": sys.executable,
       "python3_on_path": shutil.which("python3"), "path0": os.environ.get("PATH", "").split(":")[0],
       "user_site": sys.flags.no_user_site == 0, "packages": {}, "editable": [], "imports": {}}
for d in metadata.distributions():
    name = d.metadata["Name"]
    out["packages"][name] = d.version
    try:
        if json.loads(d.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable"):
            out["editable"].append(name)
    except ValueError:
        pass
def modules(dist):
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None
    top = (d.read_text("top_level.txt") or "").split()
    if not top:
        top = sorted({f.parts[0].split(".")[0] for f in d.files or [] if f.parts and f.suffix in (".py", ".so", "")
                      and not f.parts[0].endswith((".dist-info", ".egg-info", ".data")) and f.parts[0] != ".."})
    want = dist.lower().replace("-", "_")
    top = [t for t in top if not t.startswith("_")] or top
    return sorted(top, key=lambda t: (t.lower() != want, t))[:1]
for dist in sys.argv[1:]:
    mods = [dist[len("module:"):]] if dist.startswith("module:") else modules(dist)
    if mods is None:
        out["imports"][dist] = "not installed"
        continue
    for m in mods:
        try:
            mod = import_module(m)
            out["imports"][dist] = None
            if m == "numpy":
                out["numpy"] = {"version": mod.__version__, "file": mod.__file__}
        except BaseException as e:
            out["imports"][dist] = "import %s: %s: %s" % (m, type(e).__name__, e)
print("ENVTOOL-PROBE" + json.dumps(out))
"""


@dataclass
class EnvFacts:
    python: str
    packages: dict[str, str]
    glibc_required: str | None
    numpy: str | None
    problems: list[str] = field(default_factory=list)
    libstdcxx: str | None = None  # GLIBCXX of the env's own lib/libstdc++, which comes first


def extract_checked(archive: Path, dest: Path, view: EnvView | None = None) -> Path:
    """Extract in one streaming pass, refusing gzip-less archives and members that would land or point outside
    the env (not extracted; listed in one CheckFailed at the end)."""
    with archive.open("rb") as f:
        if f.read(2) != b"\x1f\x8b":
            raise CheckFailed(f"{archive} is not gzip", "Triton's libarchive call reads .tar.gz only; repack")
    dest.mkdir(parents=True)
    bad = []
    try:
        with open_gzip(archive) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            for m in tar:
                if member_escapes(m):
                    bad.append(m.name + (f" -> {m.linkname}" if m.linkname else ""))
                    continue
                try:
                    tar.extract(m, dest, filter="tar")
                except TypeError:  # a Python without extraction filters
                    tar.extract(m, dest)
                if view is not None:  # the env's view (view.py) from the same pass: inject needs not read it
                    add_member(view, m, lambda m=m: (dest / m.name).read_bytes())
            while gz.read(1 << 20):  # to the end: the gzip trailer's CRC and size are checked there
                pass
    except (EOFError, tarfile.TarError, *deflate.ERRORS) as e:
        raise CheckFailed(f"{archive} is damaged: {e}", "pack again (and check the disk it was written to)") \
            from None
    if bad:
        raise CheckFailed(f"{archive}: {len(bad)} entries point outside the env, e.g. {bad[0]}",
                          "make those symlinks relative inside the prefix")
    return dest


def _fast_scratch(need: int) -> Path | None:
    """/dev/shm when it is an executable tmpfs with room: on a disk, creating the ~5k files of an env costs
    seconds in the kernel (6.5 s against 1.8 s in memory for the example env on this machine)."""
    shm = Path("/dev/shm")
    try:
        st = os.statvfs(shm)
    except OSError:
        return None
    if st.f_flag & getattr(os, "ST_NOEXEC", 8) or st.f_bavail * st.f_frsize < need:
        return None  # docker's /dev/shm is noexec (the env's python3 must run) and 64 MiB by default
    return shm


@contextlib.contextmanager
def checked_copy(archive: Path, fallback: Path, view: EnvView | None = None):
    """The archive extracted (extract_checked) to a fresh folder, in memory where there is room, else under
    fallback; removed on every exit path."""
    fast = _fast_scratch(8 * archive.stat().st_size + (256 << 20))  # gzip of an env: about 3x
    for base in ([fast] if fast else []) + [fallback]:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="envtool-check-", dir=base))
        try:
            try:
                root = extract_checked(archive, tmp / "env", view)
            except OSError as e:
                if e.errno == errno.ENOSPC and base == fast:
                    continue  # memory ran short after all: the disk
                raise
            yield root
            return
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def extract(archive: Path, dest: Path) -> Path:
    """A user's env (doctor) extracted with the same member checks as pack's own (nothing lands or points
    outside dest, on every Python: 3.8 has no extraction filters); CheckFailed naming a damaged archive or the
    escaping entries."""
    return extract_checked(archive, dest)


def check_tree(root: Path, xy: str, env: Env | None = None) -> list[str]:
    """compat's rules on the env's layout (what Triton's launcher and the stub need), the stdlib of X.Y, and
    links that escape (for an unpacked directory). env: Env.from_tree(root, xy, None), where already read."""
    env = env or Env.from_tree(root, xy, None)
    problems = [f.message for f in check(None, env, None) if f.severity == "error"]
    if not (root / "lib" / f"python{xy}").is_dir():
        problems.append(f"missing lib/python{xy}/ (is the env Python {xy}?)")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p.is_symlink():
                link = os.readlink(p)
                if os.path.isabs(link) or escapes(str(p.relative_to(root)), link):
                    problems.append(f"symlink {p.relative_to(root)} -> {link} escapes the env")
    return problems


def run_probe(root: Path, dists: list[str], launcher: str = ACTIVATE) -> dict:
    """Start python3 exactly as the release's launcher does (envtool.env.launch) and ask what it sees."""
    out = start(root, _PROBE, dists, timeout=600, launcher=launcher)
    for line in out.stdout.splitlines():
        if line.startswith("ENVTOOL-PROBE"):
            return json.loads(line[len("ENVTOOL-PROBE"):])
    tail = " | ".join((out.stderr or out.stdout).strip().splitlines()[-2:]) or f"exit {out.returncode}"
    raise CheckFailed(f"the packed env's python3 does not start after `source bin/activate`: {tail}",
                      "check that the env holds bin/python3 and lib/libpython3.X.so.1.0 for this platform")


def validate(root: Path, xy: str, dists: list[str], launcher: str = ACTIVATE, zipped=()) -> EnvFacts:
    """All checks on an extracted (or unpacked) env; raises CheckFailed listing every problem. zipped: the
    packages sitezip.py moved into a zip, imported too."""
    # The probe is another process: the ELF scan (every binary's GLIBC needs, ~0.8 s for the example env) runs
    # beside it instead of after it
    with ThreadPoolExecutor(1) as pool:
        asked = sorted(set(dists) | {"numpy"}) + [f"module:{m}" for m in zipped]
        probe = pool.submit(run_probe, root, asked, launcher)
        env = Env.from_tree(root, xy, None)  # every ELF file read once: ~1 s for 600 of them
        problems = check_tree(root, xy, env)
        glibc, libstdcxx = env.glibc, env.libstdcxx
        facts = probe.result()
    real = os.path.realpath(root)
    if not facts["version"].startswith(xy + "."):
        problems.append(f"python3 is {facts['version']}, not {xy}")
    if os.path.realpath(facts["prefix"]) != real:
        problems.append(f"python3 runs with sys.prefix {facts['prefix']}, not the env (is bin/python3 a copy?)")
    if os.path.realpath(facts["path0"]) != os.path.join(real, "bin"):
        problems.append("bin/activate does not put the env's bin first on PATH")
    problems += [f"editable install {n}" for n in facts["editable"]]
    numpy = facts.get("numpy")
    if numpy and not os.path.realpath(numpy["file"]).startswith(real + os.sep):
        problems.append(f"numpy comes from outside the env ({numpy['file']})")
    for dist, err in facts["imports"].items():
        if dist.startswith("module:"):
            problems += [f"{dist[len('module:'):]} does not import from a zip: {err}"] if zip_broke(err) else []
        elif err:
            problems.append(f"{dist}: {err}" if dist != "numpy" or err != "not installed"
                            else "numpy is not installed (the stub imports it: `No module named 'numpy'`)")
    # Where it will run (numpy 2 vs the release's stub, GLIBC vs the target) is compat's to judge: pack()
    return EnvFacts(facts["version"], facts["packages"], glibc, numpy["version"] if numpy else None,
                    problems, libstdcxx=libstdcxx)
