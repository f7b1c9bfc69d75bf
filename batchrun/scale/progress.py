"""A sharded run's progress as one run's: each shard posts its counters now and then to one
`ProgressBoard` (an actor on a cluster), and the driver adds them up into one `RunStats` that
its progress display (`Display`: the bar, or the log lines) reads as a single run's.

A post is the shard's whole count so far (`Report.state`, bounded in size), never a delta: a
lost or repeated post changes nothing for good, and a shard resumed after its worker died
posts afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..accounting.pricing import PriceTable
from ..accounting.report import Report
from ..errors import RequestError
from ..records import Job, Result
from ..stats import RunStats

POST_EVERY = 0.5  # seconds between a shard's posts while it writes lines


@dataclass(frozen=True, slots=True)
class Post:
    """A shard's counters as of now: lines written (carried over from earlier starts among
    them), tokens it sent this start, and its report's `Report.state`."""

    written: int
    carried_over: int
    tokens_this_start: int
    report: dict[str, Any]

    @classmethod
    def of(cls, stats: RunStats) -> Post:
        return cls(stats.written, stats.carried_over, stats.tokens_this_start, stats.report.state())


class ProgressBoard:
    """Each shard's latest post."""

    def __init__(self) -> None:
        self._posts: dict[int, Post] = {}

    def post(self, shard: int, post: Post) -> None:
        self._posts[shard] = post

    def read(self) -> dict[int, Post]:
        return dict(self._posts)


class ShardPoster:
    """A shard's `engine.Observer`: posts its counters when it starts and, while it writes lines,
    at most every `POST_EVERY` seconds; ``send`` must not wait for the board (the observer is
    called on the event loop).

    :param send: delivers a post for this shard.
    :param now: the clock the interval is measured on.
    """

    def __init__(self, send: Callable[[Post], None], now: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self._now = now
        self._next = 0.0

    def started(self, stats: RunStats) -> None:
        self._send(Post.of(stats))
        self._next = self._now() + POST_EVERY

    def written(self, result: Result, stats: RunStats) -> None:
        if self._now() >= self._next:
            self.started(stats)

    def retrying(self, job: Job, error: RequestError, wait: float) -> None:
        pass


class Display(Protocol):
    """What shows a run's progress (the CLI's bar, or its log lines), as the stats move."""

    def started(self, stats: RunStats) -> None: ...

    def moved(self, stats: RunStats) -> None: ...

    def close(self, stats: RunStats) -> None: ...


def add_up(stats: RunStats, posts: dict[int, Post], prices: PriceTable) -> None:
    """Make ``stats`` (the same object, which a display holds) the sum of ``posts``."""
    report = Report(prices, source=stats.report.source)
    written = carried = tokens = 0
    for post in posts.values():
        counted = Report(prices)
        counted.restore(post.report)
        report.merge(counted)
        written, carried, tokens = written + post.written, carried + post.carried_over, tokens + post.tokens_this_start
    stats.report, stats.written, stats.carried_over, stats.tokens_this_start = report, written, carried, tokens
