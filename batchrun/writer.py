"""Put results back in input order and write them out (SPEC §2).

Results arrive in completion order. Each waits in a reorder buffer until every earlier line
is written; the engine's window (see `engine.py`) bounds how many can wait. Lines go to
``<output>.partial`` (and failures also to ``<errors>.partial``); `commit` moves both to their
final names atomically, so a half-written file never appears under the name a user reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from .errors import ConfigError
from .records import Result

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


class OrderedWriter:
    """Writes results in index order, starting at index 0.

    :raises ConfigError: when the output files cannot be created (missing directory,
        permissions) — checked before anything is sent.
    """

    def __init__(self, output_path: Path, errors_path: Path) -> None:
        self.output_path = output_path
        self.errors_path = errors_path
        self.next_index = 0
        self._pending: dict[int, Result] = {}
        self._out = _create(partial_path(output_path))
        try:
            self._err = _create(partial_path(errors_path))
        except ConfigError:
            self._out.close()
            raise

    @property
    def buffered(self) -> int:
        """Results waiting for an earlier line."""
        return len(self._pending)

    def add(self, result: Result) -> list[Result]:
        """Accept one result; return those written by this call, in order."""
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

    def commit(self) -> None:
        """Make both files durable and give them their final names."""
        for f, final in ((self._out, self.output_path), (self._err, self.errors_path)):
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(f.name, final)

    def close(self) -> None:
        """Flush what was written and leave it under the ``.partial`` names."""
        for f in (self._out, self._err):
            if not f.closed:
                f.close()


def _create(path: Path) -> BinaryIO:
    try:
        return path.open("wb")
    except FileNotFoundError:
        raise ConfigError(f"{path.parent}: output directory does not exist") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create: {exc.strerror}") from None
