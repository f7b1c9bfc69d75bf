"""Everything that decides when the next request may go (issue 5): the endpoint's health,
how many may be in flight, and the request and token rates the provider allows.

    admit ─▶ circuit breaker ─▶ adaptive concurrency (AIMD) ─▶ RPM / TPM buckets ─▶ send
    settle ◀─ status, x-ratelimit-* headers, actual usage

Limits come from ``--rpm``/``--tpm`` and from the ``x-ratelimit-*`` headers of every response
(the lower wins, and learned limits follow the provider when it changes them). A request's
token cost is estimated before sending — its body's size / 4 plus its maximum output (or a
default), scaled by how much of their estimates recent requests really used, with a 25%
margin — and corrected to the actual ``usage`` afterwards, so a generous ``max_tokens`` does
not waste the budget. When the server says fewer tokens remain than the bucket believes, the
bucket believes the server. A 429 halves the in-flight limit and, when it says how long to
wait, holds all dispatch until then.

With no limits set, none learned and a healthy endpoint, `admit` does not wait at all.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from .aimd import AdaptiveConcurrency
from .breaker import CircuitBreaker
from .bucket import TokenBucket
from .ratelimit_headers import LimitState, parse_limits
from .retry import Sleep

DEFAULT_OUTPUT_TOKENS = 500  # assumed for a request that sets no maximum output
USAGE_MARGIN = 1.25  # reserve a quarter more than recent requests used of their estimates
USAGE_MEMORY = 0.99  # per answer: how slowly the used/estimated ratio forgets
BREAKER_STATUSES = frozenset({500, 502, 503, 504})
WINDOW_SECONDS = 60


@dataclass(slots=True)
class Permit:
    """One admitted attempt: its estimate, what it reserved, and its place in the dispatch order."""

    estimate: int
    cost: int
    seq: int
    probe: bool


class RateWindow:
    """Requests and tokens over the last minute, in one-second slots, for live display.

    On the wall clock (not the throttle's), so that it reads the same inside and outside the
    event loop.
    """

    def __init__(self) -> None:
        self._slots = [(0, 0, 0)] * WINDOW_SECONDS  # (second, requests, tokens)

    def add(self, tokens: int) -> None:
        second = int(time.monotonic())
        i = second % WINDOW_SECONDS
        at, requests, total = self._slots[i]
        self._slots[i] = (second, requests + 1, total + tokens) if at == second else (second, 1, tokens)

    def per_minute(self) -> tuple[int, int]:
        """Requests and tokens answered in the last 60 s."""
        floor = int(time.monotonic()) - WINDOW_SECONDS
        live = [(r, t) for at, r, t in self._slots if at > floor]
        return sum(r for r, _ in live), sum(t for _, t in live)


class Throttle:
    """:param rpm: / :param tpm: limits given by the user (``None``: learn them, if sent).
    :param clock: seconds, monotonic (injectable for tests); ``time.monotonic`` is a tenth of
        the cost of asking the event loop, and this runs twice per request.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        rpm: float | None = None,
        tpm: float | None = None,
        breaker: CircuitBreaker,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._given = {"requests": rpm, "tokens": tpm}
        self.concurrency = AdaptiveConcurrency(concurrency)
        self.breaker = breaker
        self.buckets: dict[str, TokenBucket] = {}
        self.learned: dict[str, float] = {}
        self.paused_until = 0.0
        self.window = RateWindow()
        self.rate_limited = 0
        self._estimated = 0.0  # decayed sums of estimated and used tokens, for `_cost`
        self._used = 0.0
        for kind, limit in self._given.items():
            if limit:
                self.buckets[kind] = TokenBucket(limit, clock())

    async def admit(self, estimate: int) -> Permit:
        """Wait until an attempt estimated to cost at most ``estimate`` tokens may be sent."""
        cost = self._cost(estimate)
        probe = await self.breaker.admit() if self.breaker.state != CircuitBreaker.CLOSED else False
        seq = self.concurrency.try_acquire()
        if seq is None:
            seq = await self.concurrency.acquire()
        try:
            if self.buckets or self.paused_until:
                await self._pace(cost)
        except BaseException:
            self.concurrency.release()
            if probe:
                self.breaker.cancelled_probe()
            raise
        return Permit(estimate, cost, seq, probe)

    async def _pace(self, cost: int) -> None:
        now = self._clock()
        delay = self.paused_until - now
        requests = self.buckets.get("requests")
        if requests is not None:
            delay = max(delay, requests.reserve(1, now))
        tokens = self.buckets.get("tokens")
        if tokens is not None:
            delay = max(delay, tokens.reserve(cost, now))
        if delay > 0:
            await self._sleep(delay)

    def settle(self, permit: Permit, status: int | None, headers: Mapping[str, str] | None,
               tokens_used: int | None, retry_after: float | None = None) -> None:
        """Account for an attempt's outcome (``status`` ``None``: no response arrived)."""
        self.concurrency.release()
        now = self._clock()
        if headers is not None:
            self._learn(headers, now)
        tokens = self.buckets.get("tokens")
        if tokens is not None and tokens_used is not None:
            tokens.adjust(permit.cost - tokens_used, now)
            self._estimated = self._estimated * USAGE_MEMORY + permit.estimate
            self._used = self._used * USAGE_MEMORY + tokens_used
        if status is None or status in BREAKER_STATUSES:
            self.breaker.failed(f"HTTP {status}" if status else "no response")
            return
        self.breaker.succeeded()
        if status == 429:
            self.rate_limited += 1
            if tokens is not None and tokens_used is None:
                tokens.adjust(permit.cost, now)  # a refused request used nothing
            self.concurrency.on_rate_limited(permit.seq)
            if retry_after:
                # Everyone waits out what the server asked, each with a little jitter so the pool
                # does not come back in one burst.
                self.paused_until = max(self.paused_until, now + retry_after + random.uniform(0, 0.1 * retry_after))
        else:
            self.concurrency.on_success()
            self.window.add(tokens_used or 0)

    def _cost(self, estimate: int) -> int:
        if self._estimated <= 0:
            return estimate
        return max(1, round(estimate * min(1.0, USAGE_MARGIN * self._used / self._estimated)))

    def cancelled(self, permit: Permit) -> None:
        """The attempt was cancelled before an answer: give its place back."""
        self.concurrency.release()
        if permit.probe:
            self.breaker.cancelled_probe()

    def _learn(self, headers: Mapping[str, str], now: float) -> None:
        limits = parse_limits(headers)
        if limits is None:
            return
        for kind, state in (("requests", limits.requests), ("tokens", limits.tokens)):
            if state is not None:
                self._follow(kind, state, now)

    def _follow(self, kind: str, state: LimitState, now: float) -> None:
        given = self._given[kind]
        limit = min(state.limit, given) if given else state.limit
        self.learned[kind] = state.limit
        bucket = self.buckets.get(kind)
        if bucket is None:
            bucket = self.buckets[kind] = TokenBucket(limit, now)
        elif bucket.per_minute != limit:
            bucket.set_rate(limit, now)
        if state.remaining is not None:
            bucket.cap(state.remaining, now)

    def limits(self) -> dict[str, float]:
        """The per-minute limits being paced to now."""
        return {kind: bucket.per_minute for kind, bucket in self.buckets.items()}


def estimate_cost(body: bytes, max_output: int | None) -> int:
    """Tokens a request may use, before it is sent: about 4 bytes of JSON per prompt token."""
    return len(body) // 4 + (max_output if max_output is not None else DEFAULT_OUTPUT_TOKENS)
