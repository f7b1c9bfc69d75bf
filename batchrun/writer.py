"""Put results back in input order and write them where a crash cannot lose them (SPEC §2, §3).

Results arrive in completion order. Each new one is appended to the journal at once; then it
waits in a reorder buffer until every earlier line is written, and goes to the ordered output
(and, if it failed, the errors file). The engine's window bounds how many can wait.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from . import journal
from .records import Result


class OrderedWriter:
    """Writes results in index order, starting at ``next_index``.

    :param out: the ordered output, open for appending.
    :param errors: the ordered errors file, open for appending.
    :param log: the journal, open for appending.
    """

    def __init__(self, out: BinaryIO, errors: BinaryIO, log: BinaryIO, next_index: int = 0) -> None:
        self.next_index = next_index
        self._pending: dict[int, Result] = {}
        self._out = out
        self._err = errors
        self._log = log
        self._files = (log, errors, out)  # flush order: the journal is the record of truth

    @property
    def buffered(self) -> int:
        """Results waiting for an earlier line."""
        return len(self._pending)

    def add(self, result: Result) -> list[Result]:
        """Accept one result; return those written to the ordered output by this call, in order."""
        line = result.encode()  # first: a body that cannot be stored turns the result into a failure
        if not result.carried_over:
            self._log.write(journal.encode(result.index, result.ok, line))
        if result.index != self.next_index:
            self._pending[result.index] = result
            return []
        written = [result]
        self._write(result)
        pending = self._pending
        while self.next_index in pending:
            nxt = pending.pop(self.next_index)
            self._write(nxt)
            written.append(nxt)
        return written

    def _write(self, result: Result) -> None:
        line = result.encode()
        self._out.write(line)
        if result.error is not None:
            self._err.write(line)
        self.next_index += 1

    def flush(self) -> None:
        """Hand everything to the kernel: from here a killed process loses none of it."""
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
