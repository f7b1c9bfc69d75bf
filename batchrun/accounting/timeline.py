"""A run over time, in memory that does not grow with its lines: what `Report` keeps for plots.

`Timeline` counts each line in the bucket of time its answer came in (``finished_at``). Bucket
``k`` holds the lines finished in ``[k * width, (k + 1) * width)`` epoch seconds; widths are
powers of two seconds, so buckets of one width split exactly into those of half of it. When
the lines span more than `MAX_BUCKETS` buckets, the width doubles and neighbours merge in
pairs — the totals stay exact and the memory bounded however long the run, and lines may come
in any order (a file is in input order, not finishing order). Two timelines merge at the wider
width of the two.

Each line's time on the wire, ``[started_at, finished_at]``, is split exactly over the buckets
it overlaps (``busy_s``: the bucket's average requests in flight times its width), so the
buckets span the run from its first request sent; the width is widened to fit the line before
it is split, so a line costs at most `MAX_BUCKETS` steps however long it took.

Latencies are kept per bucket in a coarse `LogHistogram` (percentiles within 5%): its memory
is bounded by the range of the latencies, not their number — a bucket's latencies from 1 ms to
an hour occupy at most about 160 counters.

`FailureExamples` keeps the first few failed lines of each error code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .histogram import LogHistogram

MAX_BUCKETS = 240
MIN_WIDTH = 0.125  # seconds; a power of two, as every width then is
LATENCY_RELATIVE_ERROR = 0.05
EXAMPLES_PER_CODE = 5
MESSAGE_CHARS = 300


def _histogram() -> LogHistogram:
    return LogHistogram(LATENCY_RELATIVE_ERROR)


@dataclass(slots=True)
class Bucket:
    """What the lines finished in one stretch of time add up to."""

    lines: int = 0
    tokens: int = 0
    failed: int = 0
    rate_limited: int = 0  # 429 answers, final or retried
    retries: int = 0
    cost_usd: float = 0.0  # of the lines that have a price
    busy_s: float = 0.0  # seconds of requests in flight within the bucket, summed over lines
    waited_s: float = 0.0  # waiting to be sent (pacing, breaker, backoff) of the lines finished in it
    latency: LogHistogram = field(default_factory=_histogram)

    def merge(self, other: Bucket) -> None:
        self.lines += other.lines
        self.tokens += other.tokens
        self.failed += other.failed
        self.rate_limited += other.rate_limited
        self.retries += other.retries
        self.cost_usd += other.cost_usd
        self.busy_s += other.busy_s
        self.waited_s += other.waited_s
        self.latency.merge(other.latency)

    def state(self) -> list[Any]:
        return [self.lines, self.tokens, self.failed, self.rate_limited, self.retries, self.cost_usd,
                self.latency.state(), self.busy_s, self.waited_s]

    @classmethod
    def restore(cls, state: list[Any]) -> Bucket:
        # A state saved before busy_s and waited_s were kept has 7 items: those were not recorded.
        lines, tokens, failed, rate_limited, retries, cost, latency, *times = state
        busy, waited = times or (0.0, 0.0)
        return cls(int(lines), int(tokens), int(failed), int(rate_limited), int(retries), float(cost),
                   busy_s=float(busy), waited_s=float(waited), latency=LogHistogram.restore(latency))


class Timeline:
    """Lines counted by when they finished (module docstring)."""

    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        self.max_buckets = max_buckets
        self.width = MIN_WIDTH
        self.start: float | None = None  # the earliest attempt's start
        self.end: float | None = None  # the latest answer
        self._buckets: dict[int, Bucket] = {}
        self._first = self._last = 0  # the bucket numbers of the earliest and latest lines

    def add(self, started: float | None, finished: float, *, failed: bool, rate_limited: int, retries: int,
            tokens: int, cost_usd: float, latency_ms: float | None, waited_ms: float | None = None) -> None:
        """Count one line that was answered (or failed) at ``finished``, sent at ``started``, after
        waiting ``waited_ms`` to be sent."""
        key = math.floor(finished / self.width)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket()
            if len(self._buckets) == 1:
                self._first = self._last = key
            else:
                self._first, self._last = min(self._first, key), max(self._last, key)
        bucket.lines += 1
        bucket.tokens += tokens
        bucket.failed += failed
        bucket.rate_limited += rate_limited
        bucket.retries += retries
        bucket.cost_usd += cost_usd
        if latency_ms is not None:
            bucket.latency.add(latency_ms)
        if waited_ms is not None:
            bucket.waited_s += waited_ms / 1000
        began = finished if started is None else min(started, finished)
        if self.start is None or began < self.start:
            self.start = began
        if self.end is None or finished > self.end:
            self.end = finished
        low = math.floor(began / self.width)
        if low < self._first:
            self._first = low
        if self._last - self._first >= self.max_buckets:
            self._fit()
            self._in_flight(began, finished)
        elif low == key:  # the usual case: sent and answered within one bucket
            bucket.busy_s += finished - began
        else:
            self._in_flight(began, finished)

    def _in_flight(self, began: float, finished: float) -> None:
        """Split ``[began, finished]`` over the buckets it overlaps (within `_first` and `_last`)."""
        width = self.width
        last = math.floor(finished / width)
        key = math.floor(began / width)
        if key >= last:
            self._buckets[last].busy_s += finished - began
            return
        while key < last:
            edge = (key + 1) * width
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = Bucket()
            bucket.busy_s += edge - began
            key, began = key + 1, edge
        self._buckets[last].busy_s += finished - began

    def _fit(self) -> None:
        """Double the width until the lines span at most `max_buckets` buckets."""
        while self._last - self._first >= self.max_buckets:
            self._rebucket(self.width * 2)

    def _rebucket(self, width: float) -> None:
        """Merge the buckets into ones ``width`` wide (a power-of-two multiple of the width)."""
        factor = round(width / self.width)
        merged: dict[int, Bucket] = {}
        for key, bucket in self._buckets.items():
            into = merged.get(key // factor)
            if into is None:
                merged[key // factor] = bucket
            else:
                into.merge(bucket)
        self._buckets, self.width = merged, width
        self._first, self._last = self._first // factor, self._last // factor

    @property
    def buckets(self) -> int:
        """Buckets held: the memory this timeline holds."""
        return len(self._buckets)

    def merge(self, other: Timeline) -> None:
        """Add ``other``'s lines, at the wider of the two widths."""
        if not other._buckets:
            return
        was_empty = not self._buckets
        width = max(self.width, other.width)
        if width > self.width:
            self._rebucket(width)
        factor = round(width / other.width)
        for key, theirs in other._buckets.items():
            into = self._buckets.get(key // factor)
            if into is None:
                into = self._buckets[key // factor] = Bucket()
            into.merge(theirs)
        first, last = other._first // factor, other._last // factor
        if was_empty:
            self._first, self._last = first, last
        else:
            self._first, self._last = min(self._first, first), max(self._last, last)
        assert other.start is not None and other.end is not None
        self.start = other.start if self.start is None else min(self.start, other.start)
        self.end = other.end if self.end is None else max(self.end, other.end)
        self._fit()

    def state(self) -> dict[str, Any] | None:
        """Everything it holds, JSON-ready (`restore`); ``None`` when no line was counted."""
        if not self._buckets:
            return None
        return {"width": self.width, "start": self.start, "end": self.end,
                "buckets": [[key, *bucket.state()] for key, bucket in self._buckets.items()]}

    @classmethod
    def restore(cls, state: dict[str, Any] | None) -> Timeline:
        """:raises (KeyError, TypeError, ValueError): not a `state` of a timeline."""
        timeline = cls()
        if state is None:
            return timeline
        width = float(state["width"])
        if not width >= MIN_WIDTH or math.log2(width / MIN_WIDTH) % 1:
            raise ValueError(f"not a timeline's width: {width}")
        buckets = {int(key): Bucket.restore(rest) for key, *rest in state["buckets"]}
        if not buckets:
            raise ValueError("a timeline's state with no buckets")
        timeline.width, timeline._buckets = width, buckets
        timeline.start, timeline.end = float(state["start"]), float(state["end"])
        timeline._first, timeline._last = min(buckets), max(buckets)
        timeline._fit()
        return timeline

    def to_dict(self) -> dict[str, Any] | None:
        """The report's ``timeline``: every bucket from the first to the last, empty ones too."""
        if self.start is None or self.end is None:
            return None
        start, width, empty = self.start, self.width, Bucket()
        rows = []
        for key in range(self._first, self._last + 1):
            bucket = self._buckets.get(key, empty)
            rows.append({"t": round(key * width - start, 3), "lines": bucket.lines, "tokens": bucket.tokens,
                         "failed": bucket.failed, "rate_limited": bucket.rate_limited, "retries": bucket.retries,
                         "cost_usd": bucket.cost_usd, "in_flight": round(bucket.busy_s / width, 2),
                         "waited_s": round(bucket.waited_s, 3),
                         "latency_ms": {"p50": bucket.latency.quantile(0.50), "p95": bucket.latency.quantile(0.95)}})
        return {"start": start, "end": self.end, "bucket_s": width, "buckets": rows}


class FailureExamples:
    """The first `EXAMPLES_PER_CODE` failed lines of each error code: ``(custom_id, message)``."""

    def __init__(self) -> None:
        self.by_code: dict[str, list[tuple[str, str]]] = {}

    def add(self, code: str, custom_id: str, message: str) -> None:
        examples = self.by_code.setdefault(code, [])
        if len(examples) < EXAMPLES_PER_CODE:
            examples.append((custom_id, message[:MESSAGE_CHARS]))

    def merge(self, other: FailureExamples) -> None:
        for code, examples in other.by_code.items():
            for custom_id, message in examples:
                self.add(code, custom_id, message)

    def state(self) -> dict[str, list[list[str]]]:
        return {code: [[custom_id, message] for custom_id, message in examples]
                for code, examples in self.by_code.items()}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> FailureExamples:
        """:raises (TypeError, ValueError): not a `state` of examples."""
        examples = cls()
        for code, pairs in state.items():
            for custom_id, message in pairs:
                examples.add(str(code), str(custom_id), str(message))
        return examples
