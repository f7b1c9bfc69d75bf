"""``--limit N``: a smoke run, sending only the first N lines of the input to check a prompt
before the whole file is run.

The limit is not part of what makes two starts the same run (`disk.identity.identity`): a
smoke run leaves its answers in the checkpoint, unpublished, and the run without ``--limit``
(or with a higher one) goes on from them, sending none of them again. What the engine reads
through here: the lines it may feed (`first_lines`), and, once they are all written, how the
start ends (`stop`) instead of publishing.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Generator
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")


class Ending(Protocol):
    """How a start ends (`RunStats`)."""

    stop_reason: str | None
    stop_code: int
    next_step: str | None

    @property
    def exit_code(self) -> int: ...


def first_lines(items: Generator[T, None, None], limit: int | None, done: int) -> Generator[T, None, None]:
    """``items`` (the input's lines after the ``done`` an earlier start finished in order), up to
    the ``limit``-th line of the input."""
    if limit is None:
        return items
    return _first(items, max(0, limit - done))


def _first(items: Generator[T, None, None], count: int) -> Generator[T, None, None]:
    with contextlib.closing(items):
        yield from itertools.islice(items, count)


def cut_at(limit: int | None, lines: int) -> int | None:
    """``limit``, when it leaves lines of an input of ``lines`` request lines unsent."""
    return limit if limit is not None and limit < lines else None


def stop(stats: Ending, limit: int, lines: int, answers: Path) -> None:
    """End a start whose ``limit`` lines are all written, and nothing else stopped: kept in the
    checkpoint (``answers``, its ordered output), not published. The exit code is theirs (0 when
    every one succeeded, else 1), as if they were the whole run."""
    stats.stop_reason = None  # a stop that came after the last line changes nothing, as for a whole run
    stats.stop_code = stats.exit_code
    stats.stop_reason = (f"--limit {limit:,}: the first {limit:,} of {lines:,} lines are done (their answers: "
                         f"{answers}); the run without --limit sends only the other {lines - limit:,}")
    stats.next_step = "run the command again without --limit (or with a higher one)"
