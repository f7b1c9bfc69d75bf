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

from ..accounting.pricing import PriceTable, load_prices
from ..accounting.report import Report
from ..config import RunConfig
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


class Watch:
    """The driver's side of the progress: the parts' posts added up into one `RunStats` (the one
    object the display reads) and shown.

    :param lines: the request lines of the whole input.
    :param earlier: the reports of the parts an earlier start finished (which post nothing), by number.
    """

    def __init__(self, config: RunConfig, lines: int, display: Display | None,
                 earlier: dict[int, dict[str, Any]]) -> None:
        self._prices = load_prices(config.prices_path, batch_discount=config.batch_discount)
        self.stats = RunStats(config.out, config.errors_path, Report(self._prices, source=str(config.out)),
                              total_hint=lines, simulated=config.mock)
        self._display = display
        self._earlier = {number: _finished_post(report, self._prices) for number, report in earlier.items()}
        if display is not None:
            add_up(self.stats, self._earlier, self._prices)
            display.started(self.stats)

    def look(self, read: Callable[[], dict[int, Post]]) -> None:
        """Show the posts ``read`` gives, with the earlier parts'."""
        if self._display is not None:
            add_up(self.stats, {**self._earlier, **read()}, self._prices)
            self._display.moved(self.stats)

    def close(self) -> None:
        if self._display is not None:
            self._display.close(self.stats)


def _finished_post(report: dict[str, Any], prices: PriceTable) -> Post:
    """A finished part's counters, as a post of it: every line carried over."""
    counted = Report(prices)
    counted.restore(report["counters"])
    return Post(counted.lines, counted.lines, 0, report["counters"])
