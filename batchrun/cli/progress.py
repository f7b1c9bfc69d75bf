"""Progress display: two lines redrawn in place on a terminal, periodic one-line logs elsewhere
(cron, CI).

On a terminal the first line is the bar, the count, the rate and the time left; the second the
counters, most telling first — failed lines, spend against the cap, requests in flight, then
429s, retries, the paced rates, the projected spend and tokens — as many whole ones as the
terminal's width holds. Both lines are `progress_lines`, a function of the counters and the
width alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from ..accounting.budget import projected_spend
from ..errors import RequestError
from ..money import usd
from ..records import Job, Result
from ..stats import RunStats
from .tables import duration

DEFAULT_LOG_INTERVAL = 30.0
DEFAULT_WIDTH = 80  # when the stream does not say (not a terminal)
RATE_WINDOW_S = 30.0  # the rate, and so the time left, is of the lines written in this last span
_MIN_BAR = 10  # narrower than this, the bar is left out rather than drawn useless
_MAX_BAR = 40  # wider says no more, and pushes the figures away from the eye
_SEP = " · "
_INDENT = "  "  # the counters, under the bar they belong to
log = logging.getLogger("batchrun")

# The bar drawn on a stream now, for `BarLogHandler` to write its lines above.
_shown: dict[int, BarProgress] = {}


def progress_lines(done: int, total: int | None, rate: float | None, counters: list[str], width: int) -> list[str]:
    """The two lines of the display, each shorter than ``width`` (the last column is left
    free: a terminal that wraps there would break the redraw).

    :param rate: lines per second; ``None`` while unknown.
    :param counters: whole fields in order of importance; those past the width are dropped.
    """
    room = width - 1
    fields = [f"{done:,}/{total:,}" if total else f"{done:,} lines",
              _rate_text(rate)]
    if total and rate and done < total:
        left = max(total - done, 0) / rate
        fields.append(f"ETA {left:.0f} s" if left < 120 else f"ETA {duration(left)}")
    if total:
        share = min(done / total, 1.0)
        head = f"{share:4.0%}"
        bar_width = min(_MAX_BAR, room - len(head) - len(" ".join(fields)) - 3)  # "|", "|", " "
        fields.insert(0, f"{head}|{_bar(share, bar_width)}|" if bar_width >= _MIN_BAR else head)
    return [_fit(fields, room, " "), _INDENT + _fit(counters, room - len(_INDENT), _SEP)]


def _rate_text(rate: float | None) -> str:
    if not rate:
        return "-- lines/s"
    return f"{rate:,.1f} lines/s" if rate < 100 else f"{rate:,.0f} lines/s"


def _bar(share: float, width: int) -> str:
    """``width`` cells filled to ``share``, to an eighth of a cell."""
    eighths = int(share * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if full < width else ""
    return ("█" * full + partial).ljust(width)


def _fit(fields: list[str], room: int, sep: str) -> str:
    """``fields`` joined by ``sep`` up to the first that would pass ``room``: never a field cut."""
    text = ""
    for field in fields:
        joined = f"{text}{sep}{field}" if text else field
        if len(joined) > room:
            break
        text = joined
    return text


def counters(stats: RunStats) -> list[str]:
    """The run's counters as fields, most telling first (see the module docstring)."""
    fields = []
    pacer = stats.pacer
    if pacer is not None and pacer.breaker.state != "closed":
        fields.append(f"endpoint {pacer.breaker.state}")
    fields.append(f"failed {stats.failed:,}")
    total, priced = stats.report.cost()
    if stats.budget is not None:
        fields.append(f"spent {usd(stats.budget.spent)} of {usd(stats.budget.cap)}")
    else:
        fields.append(f"spent {usd(priced)}" + ("" if total is not None else "+unknown"))
    if pacer is not None:
        fields.append(f"in flight {pacer.slots.borrowed_tokens}/{pacer.concurrency}")
    fields += [f"429s {stats.rate_limited:,}", f"retries {stats.retries:,}"]
    limits = pacer.limits() if pacer is not None else {}
    if pacer is not None and limits:
        requests, tokens = pacer.meter.per_minute()
        if "requests" in limits:
            fields.append(f"rpm {requests:,}/{limits['requests']:,.0f}")
        if "tokens" in limits:
            fields.append(f"tpm {tokens:,}/{limits['tokens']:,.0f}")
    projected = projected_spend(priced, stats.written, stats.total_hint or 0)
    if projected is not None and stats.written < (stats.total_hint or 0):
        fields.append(f"projected {usd(projected)}")
    fields.append(f"{stats.report.usage().total:,} tokens")
    return fields


class BarProgress:
    """The two lines, redrawn in place at most every ``min_interval`` seconds; log lines go
    above them (`BarLogHandler`), never through them.

    The counters are read when the lines are drawn, from the same `RunStats` as the count, so
    the two never disagree.

    :param width: the terminal's columns; by default asked of ``file`` at each draw, so a
        resized terminal is followed.
    """

    def __init__(self, file: TextIO, min_interval: float = 0.1, *, width: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._file = file
        self._min_interval = min_interval
        self._width = width
        self._clock = clock
        self._lock = threading.Lock()
        self._stats: RunStats | None = None
        self._drawn = False
        self._next = 0.0
        self._samples: deque[tuple[float, int]] = deque()

    def started(self, stats: RunStats) -> None:
        self._stats = stats
        _shown[id(self._file)] = self
        self._draw(force=True)

    def written(self, result: Result, stats: RunStats) -> None:
        self.moved(stats)

    def moved(self, stats: RunStats) -> None:
        """``stats`` changed (a sharded run's, added up: `scale.progress`)."""
        self._draw()

    def retrying(self, job: Job, error: RequestError, wait: float) -> None:
        pass

    def close(self, stats: RunStats) -> None:
        if _shown.get(id(self._file)) is not self:
            return
        self._stats = stats
        self._draw(force=True)
        with self._lock:
            del _shown[id(self._file)]
            if self._drawn:
                # Left on screen as the run's last word on its progress; a start that did no line
                # has none worth keeping above why it stopped: the lines are cleared.
                self._file.write("\n" if stats.written else f"{self._home()}\x1b[K\n\x1b[K\r\x1b[1A")
                self._file.flush()
                self._drawn = False

    def write_above(self, line: str) -> None:
        """``line`` on a row of its own, the two lines drawn again below it."""
        with self._lock:
            self._file.write(f"{self._home()}{line}\x1b[K\n")
            self._drawn = False
            self._paint()

    def _draw(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now < self._next:
            return
        self._next = now + self._min_interval
        with self._lock:
            self._paint()

    def _home(self) -> str:
        """Back to the start of the first line drawn, from the end of the second. Each row is
        overwritten and cleared to its end (ESC[K), never the screen below (ESC[J): a terminal
        may keep a cleared screen in its scrollback, a copy of the lines each time."""
        return "\r\x1b[1A" if self._drawn else ""

    def _paint(self) -> None:
        stats = self._stats
        if stats is None:
            return
        lines = progress_lines(stats.written, stats.total_hint, self._rate(stats), counters(stats), self._columns())
        self._file.write(self._home() + "\x1b[K\n".join(lines) + "\x1b[K")
        self._file.flush()
        self._drawn = True

    def _rate(self, stats: RunStats) -> float | None:
        """Lines per second this start sent, over the last `RATE_WINDOW_S` seconds."""
        now, sent = self._clock(), stats.sent_this_start
        samples = self._samples
        samples.append((now, sent))
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW_S:
            samples.popleft()
        then, before = samples[0]
        return (sent - before) / (now - then) if now > then and sent > before else None

    def _columns(self) -> int:
        if self._width is not None:
            return self._width
        try:
            return os.get_terminal_size(self._file.fileno()).columns or DEFAULT_WIDTH
        except (OSError, ValueError, AttributeError):  # not a terminal, or a stream with no file
            return DEFAULT_WIDTH


class BarLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records as lines above the progress lines drawn on the same stream (none drawn: it
    just writes)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            shown = _shown.get(id(self.stream))
            if shown is not None:
                shown.write_above(text)
            else:
                self.stream.write(text + "\n")
                self.flush()
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
        return f"progress: {done}, {rate:,.0f} req/s, {', '.join(counters(stats))}"
