"""`cache.store`: the SQLite file several processes share, bounded by prune and clear, and
bypassed with one warning when it cannot be used."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from batchrun.cache import store
from batchrun.cache.store import CacheBroken, Store, cache_file, clear, default_dir, prune, stats

WRITER = """
import sys
from pathlib import Path
from batchrun.cache.store import Store
directory, name, count = Path(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
cache = Store(directory)
print("open", flush=True)
sys.stdin.readline()
for i in range(count):
    cache.put(name + str(i).encode(), b"[200,null,{}]")
print("queued", flush=True)
cache.close()
print("broken" if cache.broken else "ok", flush=True)
"""


def test_an_answer_put_is_found_after_close_and_the_file_is_private(tmp_path: Path) -> None:
    cache = Store(tmp_path / "c")
    assert cache.get(b"k") is None
    cache.put(b"k", b"answer")
    cache.close()
    again = Store(tmp_path / "c")
    assert again.get(b"k") == b"answer"
    again.close()
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    assert cache_file(tmp_path / "c").stat().st_mode & 0o777 == 0o600
    db = sqlite3.connect(cache_file(tmp_path / "c"))
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_default_location_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "batchrun"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the spec says to ignore a relative one
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_dir() == tmp_path / "home" / ".cache" / "batchrun"


def test_two_processes_write_at_once_and_every_answer_is_kept(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(directory), name, "5000"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "open\n"
    # A third writer holds the write lock while both queue their answers: their writers wait
    # for it, then for each other.
    holder = sqlite3.connect(cache_file(directory), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    for proc in procs:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "queued\n"
    holder.execute("ROLLBACK")
    holder.close()
    outcomes = [proc.communicate() for proc in procs]
    assert [out for out, _ in outcomes] == ["ok\n", "ok\n"], outcomes
    assert stats(directory).entries == 10000
    assert sqlite3.connect(cache_file(directory)).execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_file_that_is_not_a_database_is_refused_as_broken(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    directory.mkdir()
    cache_file(directory).write_bytes(b"this is not an SQLite database, just text " * 100)
    with pytest.raises(CacheBroken, match=r"not a usable cache|cannot open"):
        Store(directory)


def test_a_cache_locked_past_the_timeout_is_bypassed_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.01)
    directory = tmp_path / "c"
    cache = Store(directory)
    holder = sqlite3.connect(cache_file(directory), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, and not letting go
    with caplog.at_level(logging.WARNING, logger="batchrun"):
        for i in range(3):
            cache.put(b"k%d" % i, b"answer")
        cache.close()
    holder.execute("ROLLBACK")
    assert cache.broken is not None and "locked" in cache.broken
    assert [r.message for r in caplog.records if "bypassed" in r.message] == [
        f"response cache bypassed for the rest of this run: {cache.broken}"]
    assert cache.get(b"k0") is None  # bypassed: asks nothing more


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "c").close()
    db = sqlite3.connect(cache_file(tmp_path / "c"))
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(CacheBroken, match="version 99"):
        Store(tmp_path / "c")


def test_prune_removes_what_is_older_and_clear_everything_giving_the_space_back(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    cache = Store(directory)
    for i in range(2000):
        cache.put(b"k%d" % i, b"x" * 500)
    cache.close()
    db = sqlite3.connect(cache_file(directory), isolation_level=None)
    db.execute("UPDATE answers SET stored_at = stored_at - 40 * 86400 WHERE key < ?", (b"k5",))  # k0…, k1… k4…
    old = db.execute("SELECT count(*) FROM answers WHERE key < ?", (b"k5",)).fetchone()[0]
    db.close()
    assert prune(directory, 30 * 86400) == old
    assert stats(directory).entries == 2000 - old
    full = stats(directory).file_bytes
    assert clear(directory) == 2000 - old
    after = stats(directory)
    assert after.entries == 0 and after.oldest is None
    assert after.file_bytes < full / 10


def test_stats_of_a_folder_without_a_cache_says_so(tmp_path: Path) -> None:
    with pytest.raises(CacheBroken, match="holds no response cache"):
        stats(tmp_path)
    assert not cache_file(tmp_path).exists()  # looking made nothing
