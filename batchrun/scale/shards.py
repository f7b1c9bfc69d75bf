"""Splitting the input into contiguous shards at line boundaries, in one pass of constant memory.

Each shard knows the request index and the physical line number it starts at, so its lines get
the single run's indices, ids, line numbers and messages. A ``custom_id`` repeated across shards
is found in the same pass (each shard's reader sees only its own lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Span
from ..idset import IdSet
from ..reader import Position, jsonl_lines, open_input, request_id
from ..settings import Bounds

# A shard should be worth starting a process for: at about 300 bytes a line, 64 MiB is some
# 220,000 requests, half a minute of one process at full speed.
MIN_SHARD_BYTES = 64 * 2**20
SHARDS_RANGE = Bounds(1, 10_000, whole=True)
# A sharded run's input is planned as up to this many parts a shard, each a run of its own; a
# shard takes the next part when it finishes one, so one that runs slower takes fewer, and at the
# end a core idles for at most about one part's run (a quarter of a shard's), not the difference
# between two shards' runs. A part on a warm worker costs some 0.03 s besides its requests
# (measured: the task, the checkpoint, the publishing), but it also opens its own connections
# again, up to ``--concurrency`` of them (TLS handshakes, on a real endpoint): on 2 cores, eight a
# shard were no faster than four, side by side (docs/ray.md).
PARTS_PER_SHARD = 4
# Each part has at least this many times ``--concurrency`` request lines: a part's end, when
# fewer requests than the concurrency are left to send, waits about one request's latency with
# the pool part empty, whatever the latency, so a part of 20 such waves loses some 2.5% to it.
PART_WAVES = 20

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


def part_count(shards: int, lines: int, concurrency: int) -> int:
    """Parts for ``shards`` shards of an input of ``lines`` request lines run at ``concurrency``:
    `PARTS_PER_SHARD` each, but none of fewer than `PART_WAVES` times the concurrency in lines,
    and never fewer than the shards; one shard has nothing to balance, and runs its one part."""
    if shards == 1:
        return 1
    return max(shards, min(shards * PARTS_PER_SHARD, lines // max(1, PART_WAVES * concurrency)))


def split(path: Path, count: int, size: int) -> list[Shard]:
    """``path``'s first ``size`` bytes as at most ``count`` contiguous shards balanced by bytes,
    each with the indices of its lines whose ``custom_id`` an earlier shard used.

    A shard ends at the end of the first request line past its share; blank lines after it go to
    the next shard, and trailing ones to the last. No shard is without a request line, so a small
    input gives fewer shards; one with no request line at all is one shard (a run of nothing).

    One pass, holding the ids of the shards before the current one (16 bytes each, as a single
    run does) and those of the current one while a later shard may still come. A duplicate
    within a shard is its own reader's to find; so is a repeat of an earlier shard's id after
    its first in the shard.

    :raises InputFileError: the file cannot be opened or read.
    """
    cuts: list[tuple[int, int, int]] = [(0, 0, 0)]  # (start, first_index, first_line) of each shard
    found: list[set[int]] = [set()]
    earlier, here = IdSet(), IdSet()  # the ids of the shards before this one; of this one
    repeated: set[str] = set()  # earlier shards' ids this shard has used
    position = Position()
    index = end = lines = 0  # request lines so far; where the last one ended; physical lines to there
    with open_input(path) as f:
        for line_no, line in jsonl_lines(f, position, size):
            if index > cuts[-1][1] and len(cuts) < count and end * count >= size * len(cuts):
                cuts.append((end, index, lines))
                found.append(set())
                earlier.update(here)
                here, repeated = IdSet(), set()
            if isinstance(line, bytes):  # a line too long to read has no id to repeat
                custom_id = request_id(line, line_no)
                if len(cuts) == 1:  # nothing to repeat yet: the first shard's ids are the earlier ones
                    earlier.add(custom_id)
                else:
                    if custom_id not in repeated and custom_id in earlier:
                        repeated.add(custom_id)
                        found[-1].add(index)
                    if len(cuts) < count:  # a later shard may repeat it
                        here.add(custom_id)
            index += 1
            end, lines = position.offset, position.line_no
    bounds = [start for start, _, _ in cuts[1:]] + [size]
    return [Shard(number, len(cuts), start, stop, first_index, first_line, frozenset(indices))
            for number, ((start, first_index, first_line), stop, indices)
            in enumerate(zip(cuts, bounds, found, strict=True))]
