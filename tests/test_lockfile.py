"""envtool.lock's inputs digest (lockfile.Digests) on real trees: what changes it, and what must not hang it."""

from __future__ import annotations

import json
import os
import threading

from envtool.lockfile import Digests


def test_the_digest_sees_content_links_and_special_files_without_opening_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVTOOL_CACHE_DIR", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    (repo / "m" / "1" / "__pycache__").mkdir(parents=True)
    (repo / "m" / "1" / "model.py").write_text("x = 1\n")
    (repo / "m" / "1" / "__pycache__" / "model.cpython-39.pyc").write_bytes(b"written by the stub")
    (repo / "n").symlink_to("m")
    os.mkfifo(repo / "m" / "pipe")  # opening it would block until a writer comes
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(Digests(repo).tree(repo)), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the digest opened a FIFO"
    assert out == {"m/1/model.py": out["m/1/model.py"], "m/pipe": "special", "n": "-> m"}

    old = repo / "m" / "old.txt"
    old.write_text("kept")
    os.utime(old, (old.stat().st_atime - 60, old.stat().st_mtime - 60))
    d = Digests(repo)
    before = d.tree(repo)
    d.save()
    memo = json.loads(d.memo_path.read_text())
    # remembered: a file unchanged for a minute; not: one written just now (a second write in the same
    # timestamp tick would keep its size and mtime)
    assert str(old) in memo and str(repo / "m" / "1" / "model.py") not in memo
    (repo / "m" / "1" / "model.py").write_text("x = 2\n")  # same size: the mtime tells, and the content differs
    again = Digests(repo)
    assert again.tree(repo)["m/1/model.py"] != before["m/1/model.py"]
