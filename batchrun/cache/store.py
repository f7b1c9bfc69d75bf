"""The response cache's database: one SQLite file (the standard library's), in WAL mode.

Several batchrun processes may use one cache at once (two runs, the shards of a ``--ray`` run on
one machine): in WAL mode readers never wait for a writer, and writers wait for each other up
to `BUSY_TIMEOUT_S`, in transactions kept short (one batch of answers, `_WRITE_BATCH` at most).

A run reads on the event loop (`get`: one indexed lookup, tens of microseconds) and never
writes there: `put` hands the answer to a thread of the store's own, which writes what has
queued up in one transaction. A database that cannot be read or written (not a database, a
newer schema, locked past the timeout, a full disk) makes `get` and `put` do nothing from then
on, after one warning: the run goes on without the cache (`CacheBroken`).

Entries are never written with anything that names the endpoint's credentials: the key is a
hash (`source.request_key`) and the answer has passed the run's scrubber.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("batchrun")

FILE_NAME = "responses.sqlite3"
SCHEMA_VERSION = 1
# How long a writer waits for another process's write transaction; a reader on the event loop
# waits only for what WAL mode still locks (a recovery after a crash), up to `READ_TIMEOUT_S`.
BUSY_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 2.0
_WRITE_BATCH = 1024  # answers per write transaction: some 30 ms, so other processes wait little
_CLOSE = None  # what tells the writer thread to finish
_CONNECTING = threading.Lock()


class CacheBroken(Exception):
    """The cache cannot be used; the message says why, for the one warning."""


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/batchrun``, or ``~/.cache/batchrun`` (the XDG base directory default)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "batchrun"


def cache_file(directory: Path) -> Path:
    return directory / FILE_NAME


@dataclass(frozen=True)
class Stats:
    """What a cache holds: entries, their bytes, and when the oldest and newest were stored."""

    path: Path
    entries: int
    answer_bytes: int
    file_bytes: int
    oldest: float | None
    newest: float | None


def connect(directory: Path, *, timeout: float, create: bool = True) -> sqlite3.Connection:
    """A connection to the cache in ``directory`` (made private, with its table, when ``create``).

    :raises CacheBroken: it cannot be opened, is not a cache, or is a newer batchrun's.
    """
    path = cache_file(directory)
    try:
        with _CONNECTING:  # no connection of this process opens while `_make_private` holds the file
            if create:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                _make_private(path)
            elif not path.exists():
                raise CacheBroken(f"{directory} holds no response cache")
            db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise CacheBroken(f"cannot open {path}: {exc}") from None
    try:
        _prepare(db)
    except sqlite3.Error as exc:
        db.close()
        raise CacheBroken(f"{path} is not a usable cache ({exc})") from None
    except CacheBroken:
        db.close()
        raise
    return db


def _make_private(path: Path) -> None:
    """Make the database file, private, unless it exists: SQLite gives its -wal and -shm files
    the database file's mode.

    Only a file that did not exist is opened here. Closing any descriptor of a database file
    drops every POSIX lock this process holds on it, those of its SQLite connections included,
    and another process could then write under them: a connection made in this process (the
    shards of a local run, say) waits for it (`_CONNECTING`).
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _prepare(db: sqlite3.Connection) -> None:
    # Before anything is written (it changes nothing in a database that has tables): prune and
    # clear give the space back.
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable at checkpoints, never corrupt
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == 0:  # not made by another process meanwhile
                # A rowid table: answers of a kilobyte and more made WITHOUT ROWID's b-tree 7 times
                # slower to write (20,000 answers of 1.2 KB: 220 against 30 us each).
                db.execute("CREATE TABLE IF NOT EXISTS answers (key BLOB PRIMARY KEY, answer BLOB NOT NULL, "
                           "stored_at REAL NOT NULL)")
                db.execute("CREATE INDEX IF NOT EXISTS answers_by_age ON answers (stored_at)")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    elif version != SCHEMA_VERSION:
        raise CacheBroken(f"its schema is version {version}, not {SCHEMA_VERSION} (another batchrun's)")
    db.execute("SELECT 1 FROM answers LIMIT 1").fetchall()  # reads a page: a damaged file says so here


class Store:
    """The cache of one run: `get` on the event loop, `put` queued to the writer thread.

    :param directory: the cache's folder (made, private, if missing and ``create``).
    :raises CacheBroken: as `connect`.
    """

    def __init__(self, directory: Path, *, create: bool = True) -> None:
        self.path = cache_file(directory)
        self._reader = connect(directory, timeout=READ_TIMEOUT_S, create=create)
        self._read_lock = threading.Lock()  # the plan of a --via batch run reads from a worker thread
        self._queue: queue.SimpleQueue[tuple[bytes, bytes] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._directory = directory
        self.broken: str | None = None  # why the cache is bypassed, once it is

    def get(self, key: bytes) -> bytes | None:
        """The answer stored under ``key``; ``None`` when there is none, or the cache is bypassed."""
        if self.broken is not None:
            return None
        try:
            with self._read_lock:
                row = self._reader.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._break(f"cannot read {self.path}: {exc}")
            return None
        return row[0] if row is not None else None

    def put(self, key: bytes, answer: bytes) -> None:
        """Store ``answer`` under ``key``, soon (the writer thread's next transaction)."""
        if self.broken is not None:
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name="batchrun-cache", daemon=True)
            self._writer.start()
        self._queue.put((key, answer))

    def close(self) -> None:
        """Write what is queued, then close: the next run finds every answer this one stored."""
        if self._writer is not None:
            self._queue.put(_CLOSE)
            self._writer.join()
        self._reader.close()

    def _break(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
            log.warning("response cache bypassed for the rest of this run: %s", why)

    def _write(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = connect(self._directory, timeout=BUSY_TIMEOUT_S, create=False)
            closing = False
            while not closing:
                batch = [self._queue.get()]
                while len(batch) < _WRITE_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                closing = _CLOSE in batch
                rows = [(key, answer, time.time()) for key, answer in (entry for entry in batch if entry is not None)]
                if rows and self.broken is None:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", rows)
                        db.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                        raise
        except (CacheBroken, sqlite3.Error) as exc:
            self._break(f"cannot write {self.path}: {exc}")
            while self._queue.get() is not _CLOSE:  # what is queued is dropped, and `close` returns
                pass
        finally:
            if db is not None:
                db.close()


def stats(directory: Path) -> Stats:
    """:raises CacheBroken: no cache there, or not a usable one."""
    db = connect(directory, timeout=BUSY_TIMEOUT_S, create=False)
    try:
        entries, size, oldest, newest = db.execute(
            "SELECT count(*), coalesce(sum(length(answer)), 0), min(stored_at), max(stored_at) FROM answers").fetchone()
    finally:
        db.close()
    path = cache_file(directory)
    on_disk = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    return Stats(path, entries, size, on_disk, oldest, newest)


def prune(directory: Path, older_than: float, *, now: float | None = None) -> int:
    """Remove the answers stored more than ``older_than`` seconds ago; how many went.

    :raises CacheBroken: as `stats`, or the database stayed locked.
    """
    cutoff = (time.time() if now is None else now) - older_than
    return _delete(directory, "DELETE FROM answers WHERE stored_at < ?", (cutoff,))


def clear(directory: Path) -> int:
    """Remove every answer; how many went. :raises CacheBroken: as `prune`."""
    return _delete(directory, "DELETE FROM answers", ())


def _delete(directory: Path, sql: str, args: tuple[float, ...]) -> int:
    db = connect(directory, timeout=BUSY_TIMEOUT_S, create=False)
    try:
        db.execute("BEGIN IMMEDIATE")
        removed = db.execute(sql, args).rowcount
        # The freed pages back to the file system. The sqlite3 module steps a statement that
        # returns no rows once, and each step of this one frees one page.
        for _ in range(db.execute("PRAGMA freelist_count").fetchone()[0]):
            db.execute("PRAGMA incremental_vacuum(1)")
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise CacheBroken(f"cannot change {cache_file(directory)}: {exc}") from None
    finally:
        db.close()
    return int(removed)
