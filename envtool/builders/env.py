"""`envtool pack`: inputs -> prefix -> conda-pack -> validation -> cache -> output + manifest.

Identical inputs (content hash) reuse the cached result; the cache entry is built in a temp folder
and renamed into place under a file lock (cache.publish_dir), so concurrent runs are safe and an
interrupted run leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from importlib.metadata import version as dist_version
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from envtool import catalog, compat, facts
from envtool.atomic import copy_into_place
from envtool.builders.docker import env_from_docker, env_key
from envtool.builders.validate import checked_copy, validate
from envtool.cache import cache_root, file_sha256, publish_dir
from envtool.env import conda
from envtool.env import prefix as prefixes
from envtool.env.condapack import DEFAULT_LEVEL, TRIM, gzip_writer, load_env, pack_env
from envtool.env.debuginfo import strip_debug
from envtool.env.install import disk_full, installer_of
from envtool.env.interpreters import Interpreter, find_interpreter
from envtool.env.launch import ACTIVATE, HOOKS, activate_hooks, secure_extract_error
from envtool.env.sitezip import zip_packages
from envtool.env.sourceless import make_sourceless, site_packages
from envtool.env.trim import needed_anyway
from envtool.env.view import EnvView, finish_view, remember_view
from envtool.errors import BadInput, CheckFailed

ENV_NAME = "custom_env"
# 2: stripped interpreter, uv, no conda-pack staging file; 3: zipped stdlib, ISA-L; 4: typing stubs trimmed;
# 5: packages as bytecode alone (sourceless); 6: libdeflate, debug info stripped from every ELF (debuginfo.py);
# 7: pure-Python packages zipped (sitezip.py), installers' bookkeeping trimmed; 8: the stdlib packages' test suites
MANIFEST_VERSION = 8


@dataclass(frozen=True)
class PackSpec:
    """One of: python (+ requirements/pip/interpreter), prefix, env_file."""

    python: str | None = None
    requirements: tuple[Path, ...] = ()
    pip: tuple[str, ...] = ()
    interpreter: Path | None = None
    prefix: Path | None = None
    env_file: Path | None = None
    solver: str | None = None
    triton: catalog.Release | None = None  # a name (r22.11) is resolved on construction
    trim: bool = True
    bytecode: bool = True  # --python envs: unchecked-hash .pyc, so a fresh extraction imports warm
    unpacked: bool = False
    level: int = DEFAULT_LEVEL
    builder: str = "host"  # host | docker (Dockerfile.build in the release's image)
    base_image: str | None = None
    target: facts.Where = facts.IN_RELEASE  # where it will run: release (the release's image) | host | image:NAME
    numpy2: bool = False  # the stub reads numpy 2 although its release's pin does not (a newer --pybind11)
    installer: str = "auto"  # auto (uv where it can, else pip) | uv | pip
    keep_sources: bool = False  # trimmed --python envs: packages as bytecode alone unless this (sourceless.py)

    def __post_init__(self):
        """The request resolved once: below this, nothing parses --python, --triton or --target again."""
        if self.python is not None:
            object.__setattr__(self, "python", catalog.normalize_python(self.python))
        if self.triton is not None:
            object.__setattr__(self, "triton", catalog.normalize_release(self.triton))
        object.__setattr__(self, "target", facts.Where(self.target))

    @property
    def kind(self) -> str:
        return "prefix" if self.prefix else "env_file" if self.env_file else "python"


@dataclass
class PackResult:
    output: Path
    manifest_path: Path
    manifest: dict
    reused: bool

    def to_dict(self) -> dict:
        return {"output": str(self.output), "manifest_path": str(self.manifest_path), "reused": self.reused,
                **self.manifest}


@dataclass
class _Plan:
    spec: PackSpec
    release: catalog.Release | None
    interpreter: Interpreter | None
    pip_args: list[str]
    dists: list[str]  # distributions whose top-level import must work
    inputs: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True).encode()).hexdigest()[:24]


def default_output(unpacked: bool) -> Path:
    return Path("envs") / (ENV_NAME if unpacked else ENV_NAME + ".tar.gz")


def manifest_path_for(output: Path) -> Path:
    stem = output.name[:-len(".tar.gz")] if output.name.endswith(".tar.gz") else output.name
    return output.with_name(stem + ".manifest.json")


def pack(spec: PackSpec, output: Path | None = None, log=lambda _m: None, rebuild: bool = False) -> PackResult:
    output = Path(output or default_output(spec.unpacked)).absolute()
    release = _check_spec(spec, output)
    if spec.builder == "docker":
        key, fill = env_key(spec, release), lambda tmp: env_from_docker(spec, release, tmp, log)
    else:
        plan = _plan(spec, release, log)
        key, fill = plan.key, lambda tmp: _build(plan, tmp, log)
    entry = cache_root() / "envs" / key
    built = []
    try:
        if entry.exists() and not rebuild:
            log(f"reusing {entry} (same inputs)")
        publish_dir(entry, lambda tmp: built.append(fill(tmp)), replace=rebuild)
        manifest = json.loads((entry / "manifest.json").read_text())
        # Judged where it will run, also when reused: the same env may suit this host and not the release's image
        target = target_of(spec, release)
        refused = _refused(entry / _artifact_name(spec.unpacked), target)
        env = replace(facts.Env.from_manifest(manifest, output), refused=refused)
        # --numpy2: it goes with a stub whose pybind11 (>= 2.12, not the release's pin) reads numpy 2 arrays
        stub = facts.Stub(None, numpy2=True) if spec.numpy2 else None
        manifest["warnings"] = [f.message for f in compat.require(stub, env, target)]
        copy_into_place(entry / _artifact_name(spec.unpacked), output)
        mpath = manifest_path_for(output)
        copy_into_place(entry / "manifest.json", mpath)
    except OSError as e:  # shutil.Error (copytree) is an OSError without errno: look at its text too
        if e.errno == errno.ENOSPC or "No space left on device" in str(e):
            raise disk_full(e.filename or cache_root()) from None
        raise
    return PackResult(output, mpath, manifest, reused=not built)


def _refused(artifact: Path, target: facts.Target | None) -> str | None:
    """What secure extraction says of the tarball, where the target release extracts that way (r26.06+)."""
    if target is None or not target.secure_extract or not artifact.is_file():
        return None
    with tempfile.TemporaryDirectory(prefix="envtool-secure-") as tmp:
        return secure_extract_error(artifact, Path(tmp))


def target_of(spec: PackSpec, release: catalog.Release | None) -> facts.Target | None:
    """The release's image (--triton), this host or an image (--target); None: nothing to judge."""
    return spec.target.target(release)


def _artifact_name(unpacked: bool) -> str:
    return ENV_NAME if unpacked else ENV_NAME + ".tar.gz"


def _require_writable_folder(folder: Path, option: str) -> None:
    """Where the output goes can take a file: probed by writing one (access() says yes to root anywhere)."""
    target = folder if folder.exists() else next((p for p in folder.parents if p.exists()), Path("."))
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as e:
        raise BadInput(f"{option} {folder}: cannot write there ({e.strerror})",
                       "pass a path in a writable folder") from None


def _require_text(path: Path) -> None:
    """A requirements file pip can read: UTF-8 text (a binary file passed to -r is one line, not a crash)."""
    try:
        data = path.read_bytes()
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"-r {path} is not a text requirements file ({e.reason} at byte {e.start})",
                       "pass a pip requirements file: one requirement per line") from None
    except OSError as e:
        raise BadInput(f"-r {path}: {e.strerror}", "pass a readable requirements file") from None


def _check_spec(spec: PackSpec, output: Path) -> catalog.Release | None:
    """Refuse bad combinations before any work; returns the --triton release, if any."""
    conda_inputs = [n for n, v in (("--prefix", spec.prefix), ("--env-file", spec.env_file)) if v]
    if len(conda_inputs) > 1 or not (conda_inputs or spec.python):
        raise BadInput(f"give exactly one input, not {' and '.join(conda_inputs) or 'none'}",
                       "--python 3.X [-r requirements.txt], --prefix CONDA_ENV, or --env-file env.yml")
    if spec.kind != "python" and (spec.requirements or spec.pip or spec.interpreter):
        raise BadInput("-r/--pip/--interpreter go with --python only",
                       f"add the packages to the conda env ({spec.kind.replace('_', '-')}) instead")
    for p in (*spec.requirements, spec.env_file):
        if p is not None and not p.is_file():
            raise BadInput(f"{p} does not exist", "check the path", where=str(p))
    for p in spec.requirements:
        _require_text(p)
    if spec.prefix is not None and not spec.prefix.is_dir():
        raise BadInput(f"--prefix {spec.prefix} is not a directory", "pass the path of a conda env")
    _require_writable_folder(output.parent, "--output")
    if not spec.unpacked and not output.name.endswith(".tar.gz"):
        raise BadInput(f"--output {output.name} must end in .tar.gz",
                       "Triton extracts only .tar.gz envs; use --unpacked for a directory")
    release = spec.triton
    if spec.unpacked and release is not None and not release.dir_env:
        raise BadInput(f"r{release.release} cannot use a directory as EXECUTION_ENV_PATH (first in r23.07)",
                       "drop --unpacked for this release")
    if not 0 <= spec.level <= 9:
        raise BadInput(f"--level {spec.level} is not a gzip level", "use 0-9")
    if spec.builder == "docker" and (release is None or spec.prefix or spec.unpacked or spec.interpreter):
        raise BadInput("--builder docker packs --python or --env-file envs, as a tarball, for a --triton release",
                       "add --triton R; drop --prefix/--interpreter/--unpacked (they name host paths)")
    return release


def _plan(spec: PackSpec, release: catalog.Release | None, log) -> _Plan:
    common = {"kind": spec.kind, "trim": spec.trim, "unpacked": spec.unpacked, "level": spec.level,
              "deflate": gzip_writer(spec.level),
              "release": release.release if release else None, "envtool": dist_version("envtool"),
              "conda_pack": dist_version("conda-pack"), "manifest": MANIFEST_VERSION,
              "strip_debug": spec.trim and shutil.which("strip") is not None}
    if spec.kind == "python":
        it = find_interpreter(spec.python, spec.interpreter)
        log(f"Python {it.version} ({it.source}: {it.executable})")
        dists = _requirement_names(spec)
        pip_args = [a for r in spec.requirements for a in ("-r", str(r.absolute()))] + list(spec.pip)
        pin = release is not None and not release.numpy2 and not spec.numpy2
        if pin:  # binary only: a numpy<2 source build for a too-new Python runs for minutes, then fails
            pip_args += ["numpy<2", "--only-binary", "numpy"]
        elif "numpy" not in dists:
            pip_args.append("numpy")  # the stub imports it (failure mode 11)
        lib = it.libpython.stat()
        inputs = {**common, "python": it.version, "interpreter": str(it.executable.resolve()),
                  "libpython": [lib.st_size, lib.st_mtime_ns], "pip": pip_args,
                  "installer": installer_of(it, spec.installer),
                  "requirements": {str(r): file_sha256(r) for r in spec.requirements},
                  **({"bytecode": "unchecked-hash", "sourceless": _sourceless(spec)} if spec.bytecode else {})}
        return _Plan(spec, release, it, pip_args, dists, inputs)
    if spec.kind == "env_file":
        inputs = {**common, "env_file": file_sha256(spec.env_file), "solver": spec.solver}
        return _Plan(spec, release, None, [], [], inputs)
    inputs = {**common, "prefix": str(spec.prefix.resolve()), "state": _prefix_state(spec.prefix)}
    return _Plan(spec, release, None, [], [], inputs)


def _requirement_names(spec: PackSpec) -> list[str]:
    lines = [ln for r in spec.requirements for ln in r.read_text().splitlines()] + list(spec.pip)
    names = []
    for line in lines:
        line = line.split(" #")[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            names.append(Requirement(line).name)
        except InvalidRequirement:
            continue  # a path or URL: pip knows; its import name cannot be guessed here
    return sorted(set(names))


def _prefix_state(prefix: Path) -> list:
    """What changes when packages are added or removed: conda records and installed distributions."""
    meta = sorted((p.name, p.stat().st_mtime_ns) for p in (prefix / "conda-meta").glob("*") if p.is_file()) \
        if (prefix / "conda-meta").is_dir() else []
    dists = sorted(p.name for p in prefix.glob("lib/python3*/site-packages/*.dist-info"))
    return [meta, dists]


def _detect_xy(prefix: Path) -> str:
    found = sorted(p.parent.name[len("python"):] for p in prefix.glob("lib/python3.*/os.py"))
    if len(found) != 1:
        raise BadInput(f"{prefix}: cannot tell its Python (lib/python3.X/os.py found: {found or 'none'})",
                       "pass a conda env with exactly one Python installed")
    return found[0]


def _build(plan: _Plan, tmp: Path, log) -> None:
    spec = plan.spec
    skipped = (0, 0)  # trimmed before packing: never copied into the prefix
    if spec.kind == "prefix":
        prefix = spec.prefix.resolve()
    else:
        prefix = tmp / "prefix"
        if spec.kind == "python":
            skipped = _build_python_prefix(plan, prefix, log)
        else:
            conda.create_from_file(spec.env_file.absolute(), prefix, spec.solver, log)
    xy = plan.interpreter.xy if plan.interpreter else _detect_xy(prefix)
    if spec.python and spec.python != xy:
        raise BadInput(f"{prefix} has Python {xy}, not {spec.python}", f"ask for --python {xy}")
    # What trim would drop and a package uses all the same: read before the sources become bytecode
    keep = needed_anyway(site_packages(prefix, xy), prefix) if spec.trim else {}
    if keep:
        log(f"kept despite trim: {len(keep)} files packages use ({', '.join(sorted(keep)[:2])}"
            + (", ...)" if len(keep) > 2 else ")"))
    # Only a prefix envtool made gets bytecode: a user's conda prefix is never written to
    bytecode = spec.kind == "python" and spec.bytecode
    if bytecode:
        prefixes.compile_bytecode(prefix, xy, log, spec.trim)  # build_prefix compiled the stdlib's
    # The standard library as one zip: a trimmed env of envtool's own making (--no-trim keeps every file)
    zipped = prefixes.zip_stdlib(prefix, xy, log) if bytecode and spec.trim else 0
    sourceless = make_sourceless(prefix, xy, log) if bytecode and _sourceless(spec) else None
    sitezip = zip_packages(prefix, xy, TRIM, log, keep=keep) if sourceless else None
    t0 = time.monotonic()
    env = load_env(prefix, spec.trim, keep_bytecode=bytecode, keep=keep)
    stripped = None
    if spec.trim:  # on copies in tmp: a user's prefix is never written
        env, stripped = strip_debug(env, tmp / "stripped", log)
    log("packing with conda-pack" + (" (trimmed)" if spec.trim else ""))
    stats = pack_env(env, tmp / _artifact_name(spec.unpacked), spec.unpacked, spec.level)
    pack_s = time.monotonic() - t0
    stats.trimmed_files += skipped[0]
    stats.trimmed_bytes += skipped[1] + (stripped.bytes if stripped else 0)
    shutil.rmtree(tmp / "stripped", ignore_errors=True)
    if spec.kind != "prefix":
        shutil.rmtree(prefix)  # free the disk before extracting the check copy
    log("validating: extract, source bin/activate, import under env -i")
    view = None if spec.unpacked else EnvView(stats.output, "tarball")  # filled by the extraction pass
    with nullcontext(stats.output) if spec.unpacked else checked_copy(stats.output, tmp, view) as root:
        probe = validate(root, xy, plan.dists, plan.release.launcher if plan.release else ACTIVATE,
                         zipped=sitezip.packages if sitezip else ())
        if probe.problems:
            raise CheckFailed(f"the packed env fails {len(probe.problems)} check(s): " + "; ".join(probe.problems),
                              _fix_for(probe.problems))
        pycs = [p.stat().st_size for p in root.rglob("*.pyc")] if bytecode else []  # what shipped, after trim
        shipped = {"mode": "unchecked-hash", "files": len(pycs), "bytes": sum(pycs)} if bytecode else None
        manifest = {**_manifest(plan, stats, probe, root, pack_s), "bytecode": shipped,
                    "stdlib": {"zip": prefixes.stdlib_zip(xy), "files": zipped} if zipped else None,
                    "sourceless": sourceless.manifest() if sourceless else None,
                    "zipped_packages": sitezip.manifest() if sitezip else None,
                    "kept_despite_trim": keep or None,
                    "debug_stripped": stripped.manifest() if stripped else None}
    if view is not None:
        remember_view(finish_view(view), manifest["sha256"])
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _sourceless(spec: PackSpec) -> bool:
    """Packages ship as bytecode alone: trimmed --python envs with bytecode, unless --keep-sources."""
    return spec.kind == "python" and spec.bytecode and spec.trim and not spec.keep_sources


def _build_python_prefix(plan: _Plan, prefix: Path, log) -> tuple[int, int]:
    try:
        return prefixes.build_prefix(plan.interpreter, prefix, plan.pip_args, log, cwd=Path.cwd(),
                                     trim=plan.spec.trim, installer=plan.spec.installer,
                                     bytecode=plan.spec.bytecode)
    except BadInput as e:
        if "numpy<2" in plan.pip_args and "numpy" in e.message:
            rel = plan.release.release
            raise BadInput(e.message, f"r{rel}'s stub needs numpy<2, which may have no wheel for Python "
                           f"{plan.interpreter.xy}: use an older --python, or a release with numpy 2 support "
                           "(see `envtool releases`)") from None
        raise


def _fix_for(problems: list[str]) -> str:
    text = " ".join(problems)
    if "editable" in text:
        return "reinstall those packages without -e"
    if "not installed" in text:
        return "add the missing packages to the env"
    if "does not import from a zip" in text:
        return "pack with --keep-sources: every package stays files (envtool zips packages of bytecode alone)"
    return ("see the checks above; `--keep-sources` if a package reads its own .py files (packages ship as "
            "bytecode alone), `--no-trim` if it needs a file trim left out")


def _manifest(plan: _Plan, stats, probe, root: Path, pack_s: float) -> dict:
    art = stats.output
    files = [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]
    unpacked_bytes = sum(p.lstat().st_size for p in files)
    return {
        "envtool_manifest": MANIFEST_VERSION,
        "python": probe.python,
        "platform": f"{sys.platform}-{platform.machine()}",
        "glibc_required": probe.glibc_required,
        "libstdcxx": probe.libstdcxx,
        "activate_hooks": activate_hooks(str(p.relative_to(root)) for p in (root / HOOKS).glob("*")),
        "numpy": probe.numpy,
        "format": "directory" if plan.spec.unpacked else "tar.gz",
        "deflate": None if plan.spec.unpacked else gzip_writer(plan.spec.level),
        "size_bytes": art.stat().st_size if art.is_file() else unpacked_bytes,
        "unpacked_bytes": unpacked_bytes,
        "files": len(files),
        "sha256": file_sha256(art) if art.is_file() else _tree_sha256(root, files),
        "trimmed": {"files": stats.trimmed_files, "bytes": stats.trimmed_bytes} if plan.spec.trim else None,
        "pack_seconds": round(pack_s, 2),
        "packages": dict(sorted(probe.packages.items(), key=lambda kv: kv[0].lower())),
        "builder": {"envtool": plan.inputs["envtool"], "conda_pack": plan.inputs["conda_pack"],
                    "host_python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                       time.gmtime())},
        "inputs": {k: v for k, v in plan.inputs.items() if k not in ("envtool", "conda_pack", "manifest")},
        "key": plan.key,
    }


def _tree_sha256(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(os.readlink(p).encode() if p.is_symlink() else file_sha256(p).encode())
    return h.hexdigest()
