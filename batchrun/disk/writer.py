"""Put results back in input order and hand them to the kernel in one write per batch.

Results arrive in completion order. One that is next in input order goes to the ordered output,
with every later one it was holding up; one that is not must wait in the reorder buffer, so it
goes to the journal instead — the ordered output cannot recover it yet. `add` only queues the
bytes; `write_pending` hands everything queued to the kernel, one system call per file, so the
answers that arrive in one event-loop turn share a write. The engine calls it before any request
is sent (`engine.pool.Sink`): a killed process loses no answer whose slot was reused. A line in
order is written once, not also to the journal (at concurrency 1 the journal stays empty).
The errors file is derived from the ordered output (a resume rebuilds it), so it is buffered.
A waiting result keeps its encoded line, not its parsed body (`Result.shed_body`); the engine
bounds how many can wait (its window) and how many bytes they hold (`buffered_bytes`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import BinaryIO

from ..records import Result
from . import journal

_PIECE = 2**20


class OrderedWriter:
    """Writes results in index order, starting at ``next_index``.

    :param out: the ordered output, open for appending.
    :param errors: the ordered errors file, open for appending.
    :param log: the journal, open for appending.
    :param sizes: bytes already in ``out`` and ``errors``.
    :param last_custom_id: of the last line already in ``out``.
    :param run_id: what makes the lines' ids this run's (`Result.encode`).
    """

    def __init__(self, out: BinaryIO, errors: BinaryIO, log: BinaryIO, next_index: int = 0,
                 sizes: tuple[int, int] = (0, 0), last_custom_id: str | None = None, *, run_id: str) -> None:
        self.run_id = run_id
        self.next_index = next_index
        self.sizes = sizes  # bytes in the ordered output and errors file, flushed or not
        self.last_custom_id = last_custom_id
        self._pending: dict[int, Result] = {}
        self.buffered_bytes = 0  # of the encoded lines waiting in ``_pending``
        self._out = out
        # Straight to the kernel through the raw file, one system call a batch (a buffered write
        # and a flush took two calls and a copy); nothing else writes to these two files.
        self._out_queue: list[bytes] = []
        self._log_queue: list[bytes] = []
        self._broken: OSError | None = None  # a queued write that failed: the files may be torn
        out.flush()
        log.flush()
        self._out_raw, self._log_raw = _raw(out), _raw(log)
        self._err = errors
        self._log = log
        self._files = (log, errors, out)

    @property
    def buffered(self) -> int:
        """Results waiting for an earlier line."""
        return len(self._pending)

    @property
    def pending(self) -> bool:
        """Whether `add` queued bytes that `write_pending` has not handed to the kernel yet."""
        return bool(self._out_queue or self._log_queue)

    def add(self, result: Result) -> list[Result]:
        """Accept one result and queue its line; return those it puts into the ordered output,
        in order (each is in the kernel once `write_pending` returns).

        :raises OSError: writing the errors file failed.
        """
        line = result.encode(self.run_id)  # first: a body that cannot be stored turns the result into a failure
        if result.index != self.next_index:
            if not result.carried_over:  # a carried-over line is in the journal or previous.jsonl already
                self._log_queue.append(journal.encode(result.index, result.ok, line))
            result.shed_body()
            self._pending[result.index] = result
            self.buffered_bytes += len(line)
            return []
        written = [result]
        pending = self._pending
        while self.next_index + len(written) in pending:
            written.append(pending.pop(self.next_index + len(written)))
        self.next_index += len(written)
        if len(written) == 1:
            self._out_queue.append(line)
            size = len(line)
        else:
            lines = [done.encode(self.run_id) for done in written]
            self._out_queue += lines
            size = sum(map(len, lines))
            self.buffered_bytes -= size - len(line)
        errors = 0
        for done in written:
            if done.error is not None:  # every failure, as in OpenAI's error file: with a response or not
                errors += self._err.write(done.encode(self.run_id))
        self.sizes = (self.sizes[0] + size, self.sizes[1] + errors)
        self.last_custom_id = written[-1].custom_id
        return written

    def write_pending(self) -> None:
        """Hand what `add` queued to the kernel: the journal's lines, then the ordered output's.

        :raises OSError: writing failed; the lines may or may not be on disk, and `close` fails
            too (what a next start recovers is the checkpoint's, not these files as they are).
        """
        for raw, queue in ((self._log_raw, self._log_queue), (self._out_raw, self._out_queue)):
            if queue:
                lines = queue[:]
                queue.clear()
                try:
                    for data in _pieces(lines):
                        _write_all(raw, data)
                except OSError as exc:
                    self._broken = exc
                    raise

    def flush(self) -> None:
        """Hand everything to the kernel, the errors file too."""
        self.write_pending()
        for f in self._files:
            f.flush()

    def fsync_targets(self) -> list[int]:
        """File descriptors to fsync (in a worker thread) so a power loss loses none of it."""
        return [f.fileno() for f in self._files]

    def close(self, *, sync: bool) -> None:
        """Flush (and fsync) and close every file; the first failure is raised after all are closed.

        A file whose flush failed is closed all the same (closing drops what could not be
        written), so no buffered bytes are left to land in the file later.
        """
        first: OSError | None = self._broken
        try:
            self.write_pending()
        except OSError as exc:
            first = first or exc
        for f in self._files:
            if f.closed:
                continue
            try:
                f.flush()
                if sync:
                    os.fsync(f.fileno())
            except OSError as exc:
                first = first or exc
            finally:
                try:
                    f.close()
                except OSError as exc:
                    first = first or exc
        if first is not None:
            raise first


def _raw(f: BinaryIO) -> io.RawIOBase:
    raw = getattr(f, "raw", None)
    if not isinstance(raw, io.RawIOBase):
        raise TypeError(f"{f!r} is not a buffered file over a raw one")
    return raw


def _pieces(lines: list[bytes]) -> Iterator[bytes]:
    """``lines`` joined into pieces of about `_PIECE` bytes: a system call per piece, not per
    line, and never a copy of the whole run of lines (it can be the whole reorder buffer)."""
    start = held = 0
    for end, line in enumerate(lines, 1):
        held += len(line)
        if held >= _PIECE:
            yield b"".join(lines[start:end])
            start, held = end, 0
    if start < len(lines):
        yield b"".join(lines[start:])


def _write_all(raw: io.RawIOBase, data: bytes) -> None:
    """Write until all of ``data`` is written (a regular file takes it whole, nearly always)."""
    written = raw.write(data) or 0
    while written < len(data):
        written += raw.write(memoryview(data)[written:]) or 0
