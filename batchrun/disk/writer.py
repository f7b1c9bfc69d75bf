"""Put results back in input order and hand each to the kernel as it arrives.

Results arrive in completion order. One that is next in input order goes to the ordered output
at once, with every later one it was holding up; one that is not must wait in the reorder
buffer, so it goes to the journal instead — the ordered output cannot recover it yet. Either way
the answer is in the kernel before `add` returns: a killed process loses none of it. A line in
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
        # Straight to the kernel through the raw file, one system call a line (a buffered write
        # and a flush took two calls and a copy); nothing else writes to these two files.
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

    def add(self, result: Result) -> list[Result]:
        """Accept one result and hand it to the kernel; return those written to the ordered output
        by this call, in order.

        :raises OSError: writing failed; the result may or may not be on disk.
        """
        line = result.encode(self.run_id)  # first: a body that cannot be stored turns the result into a failure
        if result.index != self.next_index:
            if not result.carried_over:  # a carried-over line is in the journal or previous.jsonl already
                _write_all(self._log_raw, journal.encode(result.index, result.ok, line))
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
            _write_all(self._out_raw, line)
            size = len(line)
        else:
            size = 0
            for data in _pieces([done.encode(self.run_id) for done in written]):
                _write_all(self._out_raw, data)
                size += len(data)
            self.buffered_bytes -= size - len(line)
        errors = 0
        for done in written:
            if done.error is not None:  # every failure, as in OpenAI's error file: with a response or not
                errors += self._err.write(done.encode(self.run_id))
        self.sizes = (self.sizes[0] + size, self.sizes[1] + errors)
        self.last_custom_id = written[-1].custom_id
        return written

    def flush(self) -> None:
        """Hand the errors file to the kernel too (the other files always are)."""
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
        first: OSError | None = None
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
