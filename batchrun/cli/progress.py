"""Progress display: a tqdm bar on a terminal, periodic one-line logs elsewhere (cron, CI)."""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

from tqdm import tqdm

from ..accounting.budget import projected_spend
from ..errors import RequestError
from ..money import usd
from ..records import Job, Result
from ..stats import RunStats
from .tables import duration

DEFAULT_LOG_INTERVAL = 30.0
log = logging.getLogger("batchrun")


class BarProgress:
    """A tqdm bar over lines written, with outcome counters beside it.

    The counters are read when the bar is drawn, from the same `RunStats` as its count, so the
    two never disagree; log lines go above the bar (`BarLogHandler`), not through it.

    :param min_interval: seconds between redraws.
    """

    def __init__(self, file: TextIO, min_interval: float = 0.1) -> None:
        self._file = file
        self._min_interval = min_interval
        self._bar: _Bar | None = None

    def started(self, stats: RunStats) -> None:
        # miniters=1: tqdm's monitor thread, which redraws a bar from another thread, leaves
        # such a bar alone; the counters are read on the event loop only.
        self._bar = _Bar(stats, total=stats.total_hint, initial=stats.written, unit="req", file=self._file,
                         dynamic_ncols=True, smoothing=0.05, mininterval=self._min_interval, miniters=1)

    def written(self, result: Result, stats: RunStats) -> None:
        self.moved(stats)

    def moved(self, stats: RunStats) -> None:
        """``stats`` changed (a sharded run's, added up: `scale.progress`)."""
        assert self._bar is not None
        self._bar.update(stats.written - self._bar.n)

    def retrying(self, job: Job, error: RequestError, wait: float) -> None:
        pass

    def close(self, stats: RunStats) -> None:
        if self._bar is not None:
            self._bar.update(stats.written - self._bar.n)
            self._bar.close()


class _Bar(tqdm):  # type: ignore[type-arg]
    """A bar whose postfix is the run's counters as of the moment it is drawn."""

    def __init__(self, stats: RunStats, **options: Any) -> None:
        self._stats = stats
        super().__init__(**options)

    @property
    def format_dict(self) -> MutableMapping[str, Any]:
        values = super().format_dict
        values["postfix"] = _counters(self._stats)
        return values


class BarLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records as lines above a progress bar drawn on the same terminal: `tqdm.write` clears
    the bar, writes the line and draws the bar again (no bar: it just writes)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging's own convention: report, never raise
            self.handleError(record)


class LogProgress:
    """One log line every ``interval`` seconds, for logs that are read later."""

    def __init__(self, interval: float = DEFAULT_LOG_INTERVAL) -> None:
        self._total: int | None = None
        self._interval = interval
        self._next = time.monotonic() + interval

    def started(self, stats: RunStats) -> None:
        self._total = stats.total_hint
        log.info("started: %s lines to %s", f"{stats.total_hint:,}" if stats.total_hint else "?", stats.output_path)

    def written(self, result: Result, stats: RunStats) -> None:
        self.moved(stats)

    def moved(self, stats: RunStats) -> None:
        """``stats`` changed (a sharded run's, added up: `scale.progress`)."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._interval
            log.info("%s", self._line(stats))

    def retrying(self, job: Job, error: RequestError, wait: float) -> None:
        pass

    def close(self, stats: RunStats) -> None:
        pass

    def _line(self, stats: RunStats) -> str:
        rate = stats.sent_this_start / stats.wall_s if stats.wall_s > 0 else 0.0
        done = f"{stats.written:,}"
        if self._total:
            done += f"/{self._total:,} lines ({100 * stats.written / self._total:.0f}%)"
            if rate > 0:
                done += f", ETA {duration(max(self._total - stats.written, 0) / rate)}"
        return f"progress: {done}, {rate:,.0f} req/s, {_counters(stats)}"


def _counters(stats: RunStats) -> str:
    text = f"ok={stats.succeeded:,} failed={stats.failed:,} retries={stats.retries:,} 429s={stats.rate_limited:,}"
    text += f" {_spend(stats)}"
    return f"{text} {_pacing(stats)}" if stats.pacer is not None else text


def _spend(stats: RunStats) -> str:
    """Tokens and dollars so far, against the cap when there is one, and projected to the end."""
    tokens = f"tokens={stats.report.usage().total:,}"
    total, priced = stats.report.cost()
    if stats.budget is not None:
        spent = f"spent={usd(stats.budget.spent)}/{usd(stats.budget.cap)}"
    else:
        spent = f"spent={usd(priced)}" + ("" if total is not None else "+unknown")
    projected = projected_spend(priced, stats.written, stats.total_hint or 0)
    if projected is not None and stats.written < (stats.total_hint or 0):
        spent += f" (projected {usd(projected)})"
    return f"{tokens} {spent}"


def _pacing(stats: RunStats) -> str:
    """Requests in flight, and the last minute's rates against the limits being paced to."""
    pacer = stats.pacer
    assert pacer is not None
    parts = [f"in-flight={pacer.slots.borrowed_tokens}/{pacer.concurrency}"]
    limits = pacer.limits()
    if limits:
        requests, tokens = pacer.meter.per_minute()
        if "requests" in limits:
            parts.append(f"rpm={requests:,}/{limits['requests']:,.0f}")
        if "tokens" in limits:
            parts.append(f"tpm={tokens:,}/{limits['tokens']:,.0f}")
    if pacer.breaker.state != "closed":
        parts.append(f"endpoint {pacer.breaker.state}")
    return " ".join(parts)
