"""Hostile and careless input (issue 27): every case is one line on stderr, exit 2, and the repository's
bytes unchanged. Real tarballs of our own making (truncated, not tar, a failed gzip CRC) into real code."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.conftest import python_model, run_cli, tree_snapshot, write_repo


def _env_tarball(path: Path) -> Path:
    """A small real env-shaped tarball (bin/activate, lib/python3.10/)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("bin/activate", b"export PATH=$PWD/bin:$PATH\n"), ("lib/python3.10/os.py", b"x" * 50_000),
                           ("bin/python3", os.urandom(50_000))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return path


@pytest.fixture
def damaged(tmp_path) -> dict[str, Path]:
    good = _env_tarball(tmp_path / "good.tar.gz").read_bytes()
    out = {}
    out["truncated"] = tmp_path / "truncated.tar.gz"
    out["truncated"].write_bytes(good[: len(good) // 2])
    out["not tar"] = tmp_path / "nottar.tar.gz"
    out["not tar"].write_bytes(gzip.compress(b"this is not a tar archive\n" * 100))
    crc = bytearray(good)
    crc[-6] ^= 0xFF  # the gzip trailer's CRC32
    out["crc"] = tmp_path / "crc.tar.gz"
    out["crc"].write_bytes(bytes(crc))
    return out


def _repo(tmp_path: Path) -> Path:
    return write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [-1])],
                                                            [("OUT", "TYPE_FP32", [-1])])})


@pytest.mark.parametrize("kind", ["truncated", "not tar", "crc"])
def test_lint_names_a_damaged_env_in_a_model(tmp_path, damaged, kind):
    repo = _repo(tmp_path)
    shutil.copy(damaged[kind], repo / "m" / "custom_env.tar.gz")
    config = repo / "m" / "config.pbtxt"
    config.write_text(config.read_text() + 'parameters { key: "EXECUTION_ENV_PATH" value: { string_value: '
                      '"$$TRITON_MODEL_DIRECTORY/custom_env.tar.gz" } }\n')
    out = run_cli("lint", repo, "--json")
    found = [f for f in json.loads(out.stdout)["findings"] if f["rule"] == "env-damaged"]
    assert out.returncode == 1 and [f["model"] for f in found] == ["m"], out.stdout[-2000:]


@pytest.mark.parametrize("kind,words", [("truncated", "EOFError"), ("not tar", "ReadError"),
                                        ("crc", "CRC check failed")])
def test_inject_refuses_a_damaged_env_and_changes_nothing(tmp_path, damaged, kind, words, host_stub):
    repo = _repo(tmp_path)
    before = tree_snapshot(repo)
    out = run_cli("inject", repo, "--stub", host_stub, "--env", damaged[kind])
    assert out.returncode == 2 and "is damaged" in out.stderr and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert tree_snapshot(repo) == before


def test_lint_and_doctor_name_a_damaged_env_in_the_repository(tmp_path, damaged):
    repo = _repo(tmp_path)
    (repo / "m" / "env.tar.gz").write_bytes(damaged["crc"].read_bytes())
    cfg = repo / "m" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + 'parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: '
                   '"$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }\n')
    for args in (("lint", repo), ("doctor", repo, "--no-import-check")):
        out = run_cli(*args)
        assert out.returncode == 1 and "is damaged (BadGzipFile: CRC check failed" in out.stdout, out.stdout


def test_a_stub_that_is_a_folder_says_so(tmp_path, damaged):
    repo = _repo(tmp_path)
    out = run_cli("inject", repo, "--stub", tmp_path, "--env", damaged["crc"])
    assert out.returncode == 2 and "is a folder" in out.stderr and "triton_python_backend_stub" in out.stderr


def test_a_space_in_the_path_is_refused_before_a_server_waits_forever(tmp_path):
    repo = write_repo(tmp_path / "my models" / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [-1])],
                                                                          [("OUT", "TYPE_FP32", [-1])])})
    out = run_cli("lint", repo, "--json")
    f = [f for f in json.loads(out.stdout)["findings"] if f["rule"] == "path-space"]
    assert out.returncode == 1 and f and "bash -c" in f[0]["message"]
    for cmd in (("verify", repo, "--triton", "r24.10"), ("serve", repo, "--triton", "r24.10")):
        out = run_cli(*cmd)
        assert out.returncode == 2 and "has a space" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_dangling_symlinks_and_loops_are_named_not_a_500(tmp_path):
    repo = _repo(tmp_path)
    (repo / "ghost").symlink_to(tmp_path / "nowhere")
    (repo / "m" / "loop").symlink_to("loop")
    out = run_cli("lint", repo, "--json")
    broken = [f["message"] for f in json.loads(out.stdout)["findings"] if f["rule"] == "broken-symlink"]
    assert out.returncode == 1 and len(broken) == 2
    out = run_cli("verify", repo, "--triton", "r24.10")
    assert out.returncode == 2 and "does not exist (or loops)" in out.stderr and "Traceback" not in out.stderr


def test_a_model_folder_given_as_the_repository_is_bad_input(tmp_path):
    repo = _repo(tmp_path)
    for cmd in (("lint", repo / "m"), ("doctor", repo / "m"), ("verify", repo / "m", "--triton", "r24.10")):
        out = run_cli(*cmd)
        assert out.returncode == 2 and "is a model folder" in out.stderr and str(repo) in out.stderr, cmd


@pytest.mark.server
def test_a_passing_verify_whose_lock_cannot_be_written_still_passes(tmp_path, thin_env_tarball, host_stub):
    """A read-only parent folder (common in containers) is stood in for by an envtool.lock that is a folder:
    the same OSError on the same write, whoever runs the test."""
    repo = _repo(tmp_path)
    inject = run_cli("inject", repo, "--stub", host_stub, "--env", thin_env_tarball)
    assert inject.returncode == 0, inject.stderr
    (tmp_path / "envtool.lock").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    out = run_cli("verify", repo, "--triton", "r24.10", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"] and report["lock"] is None, out.stderr
    assert any("envtool.lock not written" in w for w in report["warnings"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file left beside it


def test_a_binary_requirements_file_is_one_line(tmp_path):
    binary = tmp_path / "requirements.txt"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + os.urandom(64))
    out = run_cli("pack", "--python", "3.9", "-r", binary, "-o", tmp_path / "env.tar.gz")
    assert out.returncode == 2 and "is not a text requirements file" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "env.tar.gz").exists()


def test_a_port_in_use_is_bad_input_naming_it(tmp_path):
    import socket

    from envtool.servers.base import free_ports
    repo = _repo(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        grpc, metrics = free_ports(2)
        out = run_cli("serve", repo, "--triton", "r24.10", "--http-port", port, "--grpc-port", grpc,
                      "--metrics-port", metrics)
    assert out.returncode == 2 and f"--http-port {port} cannot be used" in out.stderr, out.stderr


def test_a_signal_during_stop_is_held_until_the_clean_up_is_done():
    """Ctrl-C sent from another thread while stop() runs (the OS may deliver it to any thread; Python runs the
    handler in the main one): stop() finishes, then KeyboardInterrupt comes."""
    import signal
    import threading
    import time

    from envtool.servers.base import deferred_signals
    done = []

    def stop():
        threading.Thread(target=lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        time.sleep(0.5)  # the handler would have run here
        done.append("stopped")

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a shell, even under nohup
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_signals():
                stop()
            done.append("after")  # not reached: the held Ctrl-C comes right after the block
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done == ["stopped"]


@pytest.fixture
def read_only_mount(tmp_path):
    """A read-only bind mount of a folder (as docker -v repo:/models:ro gives a server); root only."""
    src, mnt = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True).returncode:
        pytest.skip("needs root and mount --bind")
    try:
        yield src, mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_read_only_repository_whose_stub_fails_tritons_probe_is_refused(read_only_mount, host_stub):
    src, mnt = read_only_mount
    repo = _repo(src)
    stub = repo / "m" / "triton_python_backend_stub"
    stub.write_bytes(host_stub.read_bytes())
    stub.chmod(0o755)
    out = run_cli("lint", repo, "--json")  # writable: Triton may chmod the stub, and envtool gives it back
    assert "stub-probe-read-only" not in {f["rule"] for f in json.loads(out.stdout)["findings"]}
    subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
    ro_repo = mnt / "repo"
    out = run_cli("lint", ro_repo, "--json")
    probe = [f for f in json.loads(out.stdout)["findings"] if f["rule"] == "stub-probe-read-only"]
    assert out.returncode == 1 and probe and "exit 127" in probe[0]["message"]
    out = run_cli("verify", ro_repo, "--triton", "r24.10")
    assert out.returncode == 2 and "Failed to give execute permission" in out.stderr, out.stderr


@pytest.mark.server
def test_a_read_only_repository_that_envtool_injected_is_served(read_only_mount, host_stub, tmp_path):
    """The same stub put in by inject sits behind the launcher, which answers Triton's probe: the real r24.10
    server serves the read-only repository, and no file's mode changes (Triton had no reason to chmod)."""
    from tests.conftest import make_thin_env
    src, mnt = read_only_mount
    repo = _repo(src)
    env = make_thin_env(tmp_path / "thin_env")
    tarball = tmp_path / "custom_env.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(env), "."], check=True)
    assert run_cli("inject", repo, "--stub", host_stub, "--env", tarball).returncode == 0
    modes = {p.name: p.stat().st_mode for p in (repo / "m").iterdir()}
    subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
    out = run_cli("verify", mnt / "repo", "--triton", "r24.10", "--no-lock")
    assert out.returncode == 0, out.stderr[-3000:]
    assert {p.name: p.stat().st_mode for p in (repo / "m").iterdir()} == modes


def test_a_stub_triton_left_unreadable_is_read_again_by_its_owner():
    """As an ordinary user (root ignores modes, so the test drops to nobody for the reads): a stub at ---x------
    after Triton's probe is given back 0755 by the first read that needs it, and read."""
    import shutil
    import tempfile

    from envtool.cache import file_sha256
    from envtool.elf import read_elf
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        folder.chmod(0o755)
        stubs = []
        for name in ("a", "b"):
            stub = folder / name
            stub.write_bytes(Path(sys.executable).resolve().read_bytes())
            os.chown(stub, 65534, 65534)
            stub.chmod(0o100)  # what Triton's probe leaves
            stubs.append(stub)
        os.seteuid(65534)
        try:
            digest = file_sha256(stubs[0])
            facts = read_elf(stubs[1])
        finally:
            os.seteuid(0)
        assert len(digest) == 64 and facts is not None
        assert all(s.stat().st_mode & 0o777 == 0o755 for s in stubs)
    finally:
        shutil.rmtree(folder)


# --- inject is a transaction: interrupted anywhere, the repository is the old one or the new one -----------

INTERRUPTS = int(os.environ.get("ENVTOOL_TEST_INTERRUPTS", "24"))  # issue 27 asks for 150: set it to run them


def _forty(root: Path) -> Path:
    configs = {f"m{i:02d}": python_model(f"m{i:02d}", [("IN", "TYPE_FP32", [-1])], [("OUT", "TYPE_FP32", [-1])])
               for i in range(40)}
    return write_repo(root, configs)


@pytest.mark.slow
def test_inject_killed_at_random_leaves_the_old_or_the_new_repository(tmp_path, host_stub):
    """SIGKILL or SIGINT at a random moment of an inject into 40 models: after the next load (which recovers),
    the repository is byte for byte the one before or the one after, with no staging folder and no journal."""
    import random
    import shutil
    import signal
    import sys
    import time

    from envtool.repo.model_repo import load_repository
    from tests.conftest import spawn
    env = _env_tarball(tmp_path / "custom_env.tar.gz")
    pristine = _forty(tmp_path / "pristine")
    before = tree_snapshot(pristine)
    done = tmp_path / "done"
    shutil.copytree(pristine, done, symlinks=True)
    t0 = time.monotonic()
    assert run_cli("inject", done, "--stub", host_stub, "--env", env, "--force").returncode == 0
    whole = time.monotonic() - t0
    after = tree_snapshot(done)
    rng = random.Random(27)
    outcomes = {"old": 0, "new": 0}
    for i in range(INTERRUPTS):
        repo = tmp_path / f"r{i}"
        shutil.copytree(pristine, repo, symlinks=True)
        proc = spawn([sys.executable, "-m", "envtool", "inject", repo, "--stub", host_stub, "--env", env, "--force"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.0) * whole)  # start-up takes most of it: the kill lands in the inject
        proc.send_signal(rng.choice([signal.SIGKILL, signal.SIGINT, signal.SIGTERM]))
        proc.wait(timeout=60)
        load_repository(repo)  # what every envtool command does first
        snap = tree_snapshot(repo)
        assert snap in (before, after), (i, sorted(set(snap) ^ set(before if len(snap) < len(after) else after)))
        outcomes["old" if snap == before else "new"] += 1
        shutil.rmtree(repo)
    print(f"{INTERRUPTS} interrupts: {outcomes}")


def test_a_journal_half_written_when_the_run_was_killed_is_removed_on_the_next_load(tmp_path):
    """SIGKILL inside write_atomic leaves its temp file (`..envtool-inject.journal.XXXX`) beside the journal;
    the next load removes it with the staging folders (a CI run once caught a kill at that moment)."""
    from envtool.repo.model_repo import load_repository
    from envtool.transaction import JOURNAL, recover
    repo = _forty(tmp_path / "repo")
    before = tree_snapshot(repo)
    (repo / f".{JOURNAL}.gctszrxo").write_text('{"committed": false, "moves": [')
    assert recover(repo) == "removed an interrupted inject's half-written journal"
    (repo / f".{JOURNAL}.abcdefgh").write_text("")
    load_repository(repo)
    assert tree_snapshot(repo) == before


def test_a_symlinked_config_stays_a_symlink_and_its_target_is_edited(tmp_path, host_stub):
    repo = _repo(tmp_path)
    shared = tmp_path / "configs" / "m.pbtxt"
    shared.parent.mkdir()
    (repo / "m" / "config.pbtxt").rename(shared)
    (repo / "m" / "config.pbtxt").symlink_to(shared)
    out = run_cli("inject", repo, "--stub", host_stub, "--env", _env_tarball(tmp_path / "custom_env.tar.gz"),
                  "--force")
    assert out.returncode == 0, out.stderr
    assert (repo / "m" / "config.pbtxt").is_symlink() and "EXECUTION_ENV_PATH" in shared.read_text()
    assert not list(shared.parent.glob(".envtool-stage.*")) and not (repo / ".envtool-inject.journal").exists()


@pytest.mark.server
def test_serve_names_a_model_whose_stub_dies_at_import(tmp_path):
    """os._exit() in model.py: with auto-complete on, Triton waits on that stub forever; serve turns it off
    where no model needs it (as verify does), so the model fails at once and serve names it."""
    from envtool.servers.base import free_ports
    repo = write_repo(tmp_path / "repo", {"m": python_model("m", [("IN", "TYPE_FP32", [-1])],
                                                            [("OUT", "TYPE_FP32", [-1])])},
                      "import os\nos._exit(3)\nclass TritonPythonModel:\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "envtool", "serve", str(repo), "--triton", "r24.10",
                          *[x for o, p in zip(("--http-port", "--grpc-port", "--metrics-port"), free_ports(3))
                            for x in (o, str(p))]], capture_output=True, text=True, timeout=240)
    assert out.returncode == 1 and "not READY: m" in out.stderr and "not healthy" in out.stderr, out.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MiB tmpfs (ENOSPC for anything bigger); root only."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("needs root and mount -t tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _big_env(path: Path) -> Path:
    """A real env tarball of about 8 MB (incompressible), more than the small disk holds."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("bin/activate", b"true\n"), ("lib/python3.10/big.bin", os.urandom(8 * 2**20))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def test_inject_onto_a_full_disk_is_one_line_and_changes_nothing(small_disk, tmp_path, host_stub):
    repo = _repo(small_disk)
    before = tree_snapshot(repo)
    out = run_cli("inject", repo, "--stub", host_stub, "--env", _big_env(tmp_path / "custom_env.tar.gz"), "--force")
    assert out.returncode == 2 and "No space left on device" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and tree_snapshot(repo) == before


def test_inject_into_a_read_only_repository_is_one_line(read_only_mount, tmp_path, host_stub):
    src, mnt = read_only_mount
    _repo(src)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
    before = tree_snapshot(mnt)
    out = run_cli("inject", mnt / "repo", "--stub", host_stub, "--env", _env_tarball(tmp_path / "custom_env.tar.gz"),
                  "--force")
    assert out.returncode == 2 and "Read-only file system" in out.stderr and "Traceback" not in out.stderr
    assert tree_snapshot(mnt) == before


def test_pack_and_stub_refuse_outputs_they_cannot_write(tmp_path):
    out = run_cli("pack", "--python", "3.9", "-o", "/proc/envtool-test/env.tar.gz")
    assert out.returncode == 2 and "cannot write there" in out.stderr and "Traceback" not in out.stderr
    a_file = tmp_path / "store"
    a_file.write_text("")
    out = run_cli("stub", "--triton", "r24.10", "--python", "3.10", "--cache", a_file)
    assert out.returncode == 2 and "is a file" in out.stderr


def _with_members(path: Path, extra: list[tarfile.TarInfo]) -> Path:
    good = _env_tarball(path.with_name("base.tar.gz"))
    with tarfile.open(good) as src, tarfile.open(path, "w:gz", compresslevel=1) as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m))
        for info in extra:
            dst.addfile(info)
    return path


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
    return info


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)  # empty


@pytest.mark.parametrize("member", [_file("../../outside"), _file("/tmp/envtool-abs-member"),
                                    _link("lib/hard", "../outside", hard=True)], ids=["dotdot", "absolute", "hard"])
def test_an_env_whose_members_land_outside_is_refused_by_inject_and_named_by_lint(tmp_path, member, host_stub):
    env = _with_members(tmp_path / "custom_env.tar.gz", [member])
    repo = _repo(tmp_path)
    before = tree_snapshot(repo)
    out = run_cli("inject", repo, "--stub", host_stub, "--env", env, "--force")
    assert out.returncode == 2 and "outside the env" in out.stderr and tree_snapshot(repo) == before, out.stderr
    (repo / "m" / "custom_env.tar.gz").write_bytes(env.read_bytes())
    cfg = repo / "m" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + 'parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: '
                   '"$$TRITON_MODEL_DIRECTORY/custom_env.tar.gz" } }\n')
    out = run_cli("doctor", repo, "--json")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "env-escapes" in {f["rule"] for f in json.loads(out.stdout)["findings"]}
    assert not (tmp_path / "outside").exists() and not Path("/tmp/envtool-abs-member").exists()


def test_an_env_whose_symlinks_point_outside_is_a_warning(tmp_path):
    env = _with_members(tmp_path / "custom_env.tar.gz", [_link("lib/evil", "/etc/passwd")])
    repo = _repo(tmp_path)
    (repo / "m" / "custom_env.tar.gz").write_bytes(env.read_bytes())
    cfg = repo / "m" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + 'parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: '
                   '"$$TRITON_MODEL_DIRECTORY/custom_env.tar.gz" } }\n')
    found = {f["rule"]: f for f in json.loads(run_cli("lint", repo, "--json").stdout)["findings"]}
    assert found["env-links-out"]["severity"] == "warning" and "/etc/passwd" in found["env-links-out"]["message"]


def test_clean_up_beside_another_tritonserver_keeps_only_what_it_may_be_using(tmp_path):
    """Another process named tritonserver runs (a real process, sleeping): an old env folder nobody uses is
    removed; one it runs in (its cwd, as Triton's extraction chdir()s) and a brand-new one are kept."""
    import shutil
    import time

    from envtool.servers.base import _claimed_elsewhere, removable
    other = tmp_path / "tritonserver"
    shutil.copy2(shutil.which("sleep"), other)
    folders = {name: Path(tempfile.mkdtemp(prefix="python_env_", dir="/tmp")) for name in ("old", "cwd", "new")}
    try:
        os.utime(folders["cwd"], (time.time() - 60, time.time() - 60))
        proc = subprocess.Popen([str(other), "30"], cwd=folders["cwd"])
        try:
            time.sleep(0.2)
            used, triton = _claimed_elsewhere()
            assert triton and str(folders["cwd"]) in used
            # Aged only now: a server of a test running beside this one would rightly clean an old unused folder
            os.utime(folders["old"], (time.time() - 60, time.time() - 60))
            verdict = {n: removable(str(p), set(), used, triton) for n, p in folders.items()}
            assert verdict == {"old": True, "cwd": False, "new": False}
        finally:
            proc.kill()
            proc.wait()
    finally:
        for p in folders.values():
            shutil.rmtree(p, ignore_errors=True)


def test_a_failing_install_names_the_network_error_pip_printed_early():
    from envtool.runner import tail
    out = "\n".join(["Collecting git+https://github.com/x/y", "  Running command git clone -q https://github.com/x/y",
                     "  fatal: unable to access 'https://github.com/x/y/': Could not resolve host: github.com",
                     "  error: subprocess-exited-with-error", "", "× git clone did not run successfully.",
                     "│ exit code: 128", "note: This error originates from a subprocess"])
    text = tail(out, 3)
    assert text.startswith("fatal: unable to access") and "Could not resolve host: github.com" in text
    assert text.endswith("note: This error originates from a subprocess")


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_an_install_leaves_nothing_in_tmp(tmp_path, installer):
    """pip run from its bundled wheel extracts certifi's cacert.pem into TMPDIR and never removes it; uv leaves
    a uv-<hash>.lock there for every prefix it installs into that is not a venv (one per env built)."""
    from envtool.env.install import uv_bin
    from envtool.env.interpreters import candidates
    if not any(s == "pyenv" for _, s in candidates("3.9")):
        pytest.skip("needs pyenv 3.9")
    if installer == "uv" and not uv_bin():
        pytest.skip("uv is not installed")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = subprocess.run([sys.executable, "-m", "envtool", "pack", "--python", "3.9", "--pip", "six",
                          "--installer", installer, "-o", tmp_path / "e.tar.gz"], capture_output=True, text=True,
                         env={**os.environ, "TMPDIR": str(tmp), "ENVTOOL_CACHE_DIR": str(tmp_path / "c")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert not list(tmp.iterdir()), sorted(p.name for p in tmp.iterdir())
