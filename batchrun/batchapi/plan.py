"""Split the request lines into as few batches as the provider's limits allow (`BatchLimits`).

One pass over the input, one file per batch being filled (one per endpoint, and per model with
``one_model``): constant memory whatever the input's size. A batch's request file holds its
lines in input order, each with the line's index as its ``custom_id``: the provider's output
names each answer by it, and a user's own ids need not be unique to the provider's taste.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from ..disk.publish import private_file
from ..errors import ConfigError
from ..records import Job
from .ledger import Part
from .options import BatchLimits
from .queue import enqueued_tokens


def request_line(job: Job) -> bytes:
    """The line of a batch's request file that asks for ``job``."""
    return b'{"custom_id":"%d","method":"POST","url":%s,"body":%s}\n' % (job.index, orjson.dumps(job.url), job.body)


def part_file(directory: Path, number: int) -> Path:
    return directory / f"part-{number:04d}.jsonl"


@dataclass
class _Filling:
    part: Part
    file: BinaryIO


@dataclass(frozen=True)
class CapSplit:
    """Where ``--max-cost`` splits the plan: the lines whose worst cases add up to ``room`` go in
    batches of their own, and from the first line that does not fit on, the rest go in others,
    which a start submits only once they fit under its cap.

    :param worst: a line's worst case at the Batch API's price, in USD.
    """

    room: float
    worst: Callable[[Job], float]


def plan(jobs: Iterable[Job], limits: BatchLimits, directory: Path, source: Path,
         cap: CapSplit | None = None) -> list[Part]:
    """Write the request file of every batch into ``directory``, fsynced; their `Part`\\ s.

    :param source: the input's path, for messages.
    :param cap: split where ``--max-cost`` is reached, and give every batch its worst case.
    :raises ConfigError: a line alone is larger than a batch may be, or enqueues more tokens than
        the queue limit (nothing was sent).
    """
    parts: list[Part] = []
    filling: dict[tuple[str, str | None, bool], _Filling] = {}
    used, over = 0.0, False
    try:
        for job in jobs:
            line = request_line(job)
            if len(line) > limits.max_bytes:
                raise ConfigError(f"{source}:{job.line_no}: the request is {len(line):,} bytes, more than one batch "
                                  f"may hold (--batch-max-bytes {limits.max_bytes:,}); shorten it or run it online")
            tokens = enqueued_tokens(job)
            if limits.queue_tokens is not None and tokens > limits.queue_tokens:
                raise ConfigError(f"{source}:{job.line_no}: the request enqueues {tokens:,} tokens (its prompt and "
                                  f"output cap), more than --batch-queue-tokens {limits.queue_tokens:,}")
            worst = 0.0
            if cap is not None:
                worst = cap.worst(job)
                used += worst
                over = over or used > cap.room
            key = (job.url, job.model if limits.one_model else None, over)
            current = filling.get(key)
            if current is None or full(current.part, len(line), tokens, limits):
                if current is not None:
                    _close(current.file)
                part = Part(number=len(parts), url=job.url, model=key[1], first_line=job.line_no, first_index=job.index,
                            worst_usd=0.0 if cap is not None else None)
                path = part_file(directory, part.number)
                path.unlink(missing_ok=True)  # one a crashed plan left
                current = filling[key] = _Filling(part, open(path, "wb", opener=private_file))  # noqa: SIM115 -- closed below
                parts.append(part)
            current.file.write(line)
            current.part.lines += 1
            current.part.size += len(line)
            current.part.tokens += tokens
            if current.part.worst_usd is not None:
                current.part.worst_usd += worst
    finally:
        for left in filling.values():
            if not left.file.closed:
                _close(left.file)
    return parts


def full(part: Part, size: int, tokens: int, limits: BatchLimits) -> bool:
    """Whether ``part`` cannot take one more line of ``size`` bytes that enqueues ``tokens``."""
    return (part.lines >= limits.max_requests or part.size + size > limits.max_bytes
            or (limits.queue_tokens is not None and part.tokens + tokens > limits.queue_tokens))


class QueueNeed:
    """What a file asks of the Batch API, without writing anything (``batchrun estimate``): the
    batches `plan` would make of it, and the tokens each model's batches enqueue in all."""

    def __init__(self, limits: BatchLimits | None = None) -> None:
        self._limits = limits or BatchLimits()
        self._filling: dict[tuple[str, str | None], Part] = {}
        self.batches = 0
        self.tokens: dict[str, int] = {}

    def add(self, job: Job) -> None:
        size, tokens = len(request_line(job)), enqueued_tokens(job)
        key = (job.url, job.model if self._limits.one_model else None)
        part = self._filling.get(key)
        if part is None or full(part, size, tokens, self._limits):
            part = self._filling[key] = Part(self.batches, job.url, key[1], job.line_no)
            self.batches += 1
        part.lines, part.size, part.tokens = part.lines + 1, part.size + size, part.tokens + tokens
        model = job.model or ""
        self.tokens[model] = self.tokens.get(model, 0) + tokens


def _close(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
