"""Splitting the input into contiguous shards at line boundaries, in one pass of constant memory.

Each shard knows the request index and the physical line number it starts at, so its lines get
the single run's indices, ids, line numbers and messages. A ``custom_id`` repeated across shards
is found by a second pass (`duplicates`): each shard's reader sees only its own lines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config import Span
from ..idset import IdSet
from ..reader import Position, jsonl_lines, open_input, request_id
from ..settings import Bounds

# A shard should be worth starting a process for: at about 300 bytes a line, 64 MiB is some
# 220,000 requests, half a minute of one process at full speed.
MIN_SHARD_BYTES = 64 * 2**20
SHARDS_RANGE = Bounds(1, 10_000, whole=True)


@dataclass(frozen=True)
class Shard:
    """One contiguous part of the input, run as a run of its own (`span`) whose lines keep the
    numbers, ids and messages the whole run gives them (`split`).

    :param number: 0-based. :param count: shards in the run.
    :param start: / :param end: / :param first_index: / :param first_line: / :param duplicates:
        as `Span` has them.
    """

    number: int
    count: int
    start: int
    end: int
    first_index: int
    first_line: int
    duplicates: frozenset[int] = frozenset()

    @property
    def span(self) -> Span:
        """The part of the input its run reads."""
        return Span(self.start, self.end, self.first_index, self.first_line, self.duplicates)


def default_count(cpus: int, size: int) -> int:
    """Shards for an input of ``size`` bytes on ``cpus`` CPUs: one per CPU, but none smaller than
    `MIN_SHARD_BYTES` (a small input runs as one shard)."""
    return max(1, min(cpus, size // MIN_SHARD_BYTES + 1))


def split(path: Path, count: int, size: int) -> list[Shard]:
    """``path``'s first ``size`` bytes as at most ``count`` contiguous shards balanced by bytes.

    A shard ends at the end of the first request line past its share; blank lines after it go to
    the next shard, and trailing ones to the last. No shard is without a request line, so a small
    input gives fewer shards; one with no request line at all is one shard (a run of nothing).

    :raises InputFileError: the file cannot be opened or read.
    """
    cuts: list[tuple[int, int, int]] = [(0, 0, 0)]  # (start, first_index, first_line) of each shard
    position = Position()
    index = end = lines = 0  # request lines so far; where the last one ended; physical lines to there
    with open_input(path) as f:
        for _line_no, _line in jsonl_lines(f, position, size):
            if index > cuts[-1][1] and len(cuts) < count and end * count >= size * len(cuts):
                cuts.append((end, index, lines))
            index += 1
            end, lines = position.offset, position.line_no
    bounds = [start for start, _, _ in cuts[1:]] + [size]
    return [Shard(number, len(cuts), start, stop, first_index, first_line)
            for number, ((start, first_index, first_line), stop) in enumerate(zip(cuts, bounds, strict=True))]


def duplicates(path: Path, shards: list[Shard], size: int) -> list[Shard]:
    """``shards`` with the indices of their lines whose ``custom_id`` an earlier shard used.

    One pass over the whole input, holding every id seen (16 bytes each, as a single run does)
    and those of the current shard; duplicates within a shard are its own reader's to find.

    :raises InputFileError: the file cannot be opened or read.
    """
    seen = IdSet()
    found: list[set[int]] = [set() for _ in shards]
    shard, here = 0, IdSet()
    index = 0
    with open_input(path) as f:
        for line_no, line in jsonl_lines(f, Position(), size):
            while shard + 1 < len(shards) and index >= shards[shard + 1].first_index:
                shard, here = shard + 1, IdSet()
            if isinstance(line, bytes):  # a line too long to read has no id to repeat
                custom_id = request_id(line, line_no)
                new, new_here = seen.add(custom_id), here.add(custom_id)
                if not new and new_here:
                    found[shard].add(index)
            index += 1
    return [replace(s, duplicates=frozenset(indices)) for s, indices in zip(shards, found, strict=True)]
