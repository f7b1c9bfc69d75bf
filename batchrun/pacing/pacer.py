"""One composition of the pacing policies: what an attempt passes before it is sent.

    admit ─▶ breaker ─▶ quota buckets + discovered pace ─▶ an in-flight slot ─▶ send
    settle ◀─ status, x-ratelimit-* headers

The breaker holds everything while the endpoint is down. The buckets (`quota.Quota`: limits
given or announced, the ``remaining`` headers as truth) and the pace the server's 429s call for
(`acceptance.Acceptance`) must all have room; while one does not, attempts wait in line holding
no slot, and the first is charged to every bucket at the moment it leaves, so no limit's
budget is spent in the past. Only then does it take one of the ``concurrency`` slots, so the requests
actually in flight never exceed it while a line waiting out its pace or its backoff keeps no
other line from being sent. A 429's ``Retry-After`` delays that request alone (its retry
waits it out); nothing holds the whole pool.

With no limits set or announced and the server accepting, `admit` does not wait at all — but
once, at the start: after the first answer, requests wait until the run's first burst (the
requests sent before any answer came back) has been answered, or for twice as long as it took
to send, if sooner — or until its answers have shown whether it emptied a quota's bucket
(a 429 among its first answers says it did not). If its last answers were 429s after a run of admissions, a quota's full
bucket ran dry (`first_burst`) and a pace holds what follows: without the wait, each of the
first answers would have sent another request into the empty bucket before its 429s could be
read. A healthy endpoint loses that moment once per run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from ..retry import server_error
from ..tokens import EXPECTED_OUTPUT_TOKENS
from .acceptance import Acceptance
from .breaker import CircuitBreaker
from .bucket import TokenBucket
from .burst_wait import BurstWait
from .clock import SYSTEM_CLOCK, Clock
from .meter import RateWindow
from .quota import Quota, Share

RESCHEDULE = 0.5  # seconds: the longest the first request in line goes without looking again


@dataclass(slots=True, eq=False)
class Permit:
    """One admitted attempt: the tokens it was charged, and its place in the dispatch order."""

    tokens: float
    seq: int
    probe: bool
    sent: float  # when it left the line


class Pacer:
    """:param concurrency: requests in flight at most.
    :param rpm: / :param tpm: limits given by the user (``None``: only what the server announces).
    :param share: this process's slice of limits shared with other processes.
    """

    def __init__(self, *, concurrency: int, rpm: float | None = None, tpm: float | None = None,
                 breaker: CircuitBreaker, clock: Clock = SYSTEM_CLOCK, share: Share | None = None) -> None:
        now = clock.now()
        self.clock = clock
        self.breaker = breaker
        self.quota = Quota(rpm, tpm, now, share)
        self.acceptance = Acceptance(now)
        self.concurrency = concurrency
        self.slots = anyio.CapacityLimiter(concurrency)
        self.meter = RateWindow()
        self.rate_limited = 0
        self.capacity_refused = 0
        self._seq = 0
        self._line = anyio.Lock()
        self.burst = BurstWait()

    def admit_now(self, estimate: int) -> Permit | None:
        """`admit` when nothing can make the attempt wait (the breaker closed, no limit to pace to,
        a free slot): the permit at once, without a coroutine; ``None`` otherwise (then `admit`)."""
        if self.breaker.state != CircuitBreaker.CLOSED or not self._paces_nothing():
            return None
        quota = self.quota
        tokens = quota.charge(estimate)
        permit = Permit(tokens, self._seq + 1, False, self.clock.now())
        try:
            self.slots.acquire_on_behalf_of_nowait(permit)
        except anyio.WouldBlock:
            return None
        self._seq += 1
        quota.take(tokens, 0.0)
        if not self.burst.answered:
            self.burst.sent(permit.sent)
        return permit

    async def admit(self, estimate: int) -> Permit:
        """Wait until an attempt estimated to cost at most ``estimate`` tokens may be sent."""
        probe = await self.breaker.admit() if self.breaker.state != CircuitBreaker.CLOSED else False
        tokens = self.quota.charge(estimate)
        pace = None
        try:
            if self.burst.until:
                await self.burst.wait(self.clock)
            if self._paces_nothing():  # no coroutine, no clock
                self.quota.take(tokens, 0.0)
            else:
                pace = await self._wait_turn(tokens)
        except BaseException:
            if probe:
                self.breaker.cancelled_probe()
            raise
        self._seq += 1
        permit = Permit(tokens, self._seq, probe, self.clock.now())
        if not self.burst.answered:
            self.burst.sent(permit.sent)
        try:
            self.slots.acquire_on_behalf_of_nowait(permit)
        except anyio.WouldBlock:
            try:
                await self.slots.acquire_on_behalf_of(permit)
            except BaseException:
                self.quota.cancel(tokens, reached_server=False, pace=pace)
                if probe:
                    self.breaker.cancelled_probe()
                raise
        return permit

    def _paces_nothing(self) -> bool:
        """No limit to keep to: no quota's bucket, no share of one, no pace of the client's own, no
        wait for the first burst's answers."""
        return not self.quota.buckets and self.quota.share is None and self.acceptance.pace is None \
            and not self.burst.until

    async def _wait_turn(self, tokens: float) -> TokenBucket | None:
        """Wait until the request fits every limit, then charge it; return the pace it was charged to.

        Requests wait in line (a FIFO lock) and the first one is charged only when it leaves, so
        each leaves at its own time whatever changes meanwhile: it looks again at least every
        `RESCHEDULE` seconds, and a new ``remaining`` or a pace cut or lifted applies at once.
        """
        pace = self.acceptance.pace
        if not self._line.locked():
            now = self.clock.now()
            if self.quota.due(tokens, now, pace) <= now:
                self.quota.take(tokens, now, pace)
                return pace
        async with self._line:
            while True:
                now = self.clock.now()
                pace = self.acceptance.pace
                at = self.quota.due(tokens, now, pace)
                if at <= now:
                    self.quota.take(tokens, now, pace)
                    return pace
                await self.clock.sleep(min(at - now, RESCHEDULE))

    def settle(self, permit: Permit, status: int | None, headers: Mapping[str, str] | None,
               tokens_used: int | None = None, *, shed: bool = False) -> None:
        """Account for an attempt's outcome (``status`` ``None``: no response arrived).

        :param shed: the answer refused the request for want of capacity (`retry.capacity_refused`):
            nothing was charged, and it is neither a quota's 429 nor the endpoint failing, so it
            paces nothing and trips no breaker; the line's own backoff is its only wait.
        """
        self.slots.release_on_behalf_of(permit)
        now = self.clock.now()
        burst = self.burst
        if burst.watching:
            burst.answer(permit.seq, now, self._seq)
        refused = status == 429 or shed
        exhausted = self.quota.settle(permit.seq, permit.tokens, headers, refused=refused, now=now)
        if shed:
            self.capacity_refused += 1
            self.breaker.succeeded()
            return
        if status is None:
            self.breaker.failed("no response")
            return
        if server_error(status):
            self.breaker.failed(f"HTTP {status}")
        else:
            self.breaker.succeeded()
        if refused:
            self.rate_limited += 1
            if exhausted:
                return  # the quota's own bucket paces it; not the shedding test's business
        elif 200 <= status < 300 and self.quota.buckets:  # shown beside the limits, when there are some
            self.meter.add(tokens_used or 0)
        self.acceptance.record(refused, permit.sent, now)
        if burst.watching and not self.acceptance.watching_burst:
            burst.over()  # the burst has told what it could: the rest of it need not be waited for

    def cancelled(self, permit: Permit, *, sent: bool = True) -> None:
        """The attempt was cancelled in flight (``sent``), or before it went on the wire: give its
        slot back, and its charge too if it was never sent."""
        self.slots.release_on_behalf_of(permit)
        if self.burst.watching:
            self.burst.cancel(permit.seq)
        self.quota.cancel(permit.tokens, reached_server=sent)
        if permit.probe:
            self.breaker.cancelled_probe()

    def limits(self) -> dict[str, float]:
        """The per-minute request and token limits being paced to now, the discovered pace included."""
        limits = self.quota.limits()
        rate = self.acceptance.rate
        if rate is not None:
            limits["requests"] = min(limits.get("requests", rate * 60), rate * 60)
        return limits


def estimate_cost(body: bytes, max_output: int | None) -> int:
    """Tokens a request may be charged, before it is sent: about 4 bytes of JSON per prompt token.

    Not `tokens.request_tokens`, which parses the body: this runs for every attempt, and the
    quota corrects its charges from the provider's ``remaining`` headers.
    """
    return len(body) // 4 + (max_output if max_output is not None else EXPECTED_OUTPUT_TOKENS)
