"""One rate budget and one spending cap for every shard of a run, with no request waiting on a call.

`BudgetServer` holds the run's buckets of requests and tokens per minute (``--rpm``/``--tpm`` and
the limits the shards read from ``x-ratelimit-*`` headers, the lower winning, as `Quota` does for
one process) and the ``--max-cost`` cap. Its methods are plain synchronous calls with picklable
arguments, cheap enough to run one at a time in one place (an actor) for every shard.

A shard (`ShardBudget`) never asks it on a request's way out. It holds a slice — about
`SLICE_SECONDS` of its fair share of each limit, and some USD under the cap — and its pacer takes
each request from the slice. A task of its own refills the slice through a `BudgetClient` (the
transport: an in-process server here, an actor handle on a cluster) while half of it is still
there, reports what the endpoint announced, and beats so the server knows it is alive.

Every call carries the shard's whole `Holding` (what it holds unused, USD reserved or unspent,
USD spent), which the server records as it is rather than adding up deltas: a repeated or lost
call changes nothing for good, and a shard restarted from its checkpoint starts afresh. A shard
not heard from for `LEASE_TTL` seconds is gone: what it held returns to the run, its spend stays.
A part's spend is known before it runs (what an earlier start of it spent, read from its report or
checkpoint): it counts under the cap from the run's start, and a part that runs again replaces
it with its own word once that is larger — its own carries the same spend and then more.

The quotas start full, as a provider's do: the first slices are taken from a full bucket at once.
Until a limit is known the slices are unlimited. The ``remaining`` a shard reports is the
provider's word, less what the shards hold unused: a bucket is lowered to it at once, but raised
to it only past what may have been sent unseen since that answer was written (the reporting
shard's requests in flight, and a slice and the requests in flight of every other shard), since
each shard's ``remaining`` is a little stale and none knows what the others sent meanwhile. So an
estimate above what the provider charges (tokens, mostly) is corrected as for one process, and
a stale answer does not let the shards together past the limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio

from ..accounting.budget import Verdict
from ..pacing.bucket import TokenBucket
from ..pacing.clock import SYSTEM_CLOCK, Clock
from ..pacing.headers import LimitState, ServerLimits
from ..pacing.quota import REQUESTS, TOKENS, follow_limit

log = logging.getLogger("batchrun")

SLICE_SECONDS = 1.0  # a shard holds about this long of its fair share of a limit
LEASE_TTL = 10.0  # seconds: a shard silent this long is gone, and what it held returns
BEAT = 1.0  # seconds: a shard calls at least this often (keeps its lease, learns new limits)
POLL = 0.02  # seconds: how often a shard looks whether its slice needs refilling
NANO = 1_000_000_000  # money crosses in integer nano-dollars, as `Budget` keeps it


@dataclass(frozen=True, slots=True)
class Holding:
    """What a shard holds as it calls: requests and tokens leased and not used, nano-USD leased
    and not spent (reserved for requests in flight or free), nano-USD its part has spent."""

    requests: float = 0.0
    tokens: float = 0.0
    dollars: int = 0
    spent: int = 0


@dataclass(frozen=True, slots=True)
class Want:
    """The USD a shard asks for, in nano-USD: ``need`` is the reservation waiting for it (0:
    none), which is granted whole or not at all."""

    dollars: int = 0
    need: int = 0


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease: ``math.inf`` where no limit is known. ``stop``: ``Want.need`` can never fit under
    the cap, whatever is returned. ``spent``: nano-USD the whole run has spent. ``slice``: the
    shard's fair slice of requests and tokens now, what it tops up to."""

    requests: float
    tokens: float
    dollars: int
    spent: int
    retry_in: float  # seconds until asking again may bring more, when this was short
    stop: bool = False
    slice: tuple[float, float] = (math.inf, math.inf)


@dataclass(frozen=True, slots=True)
class News:
    """What a shard's freshest answer announced, and the 429s it got since its last report."""

    requests: LimitState | None
    tokens: LimitState | None
    refused: int = 0
    in_flight: tuple[float, float] = (0.0, 0.0)


@dataclass(slots=True)
class _Shard:
    holding: Holding
    seen: float
    in_flight: tuple[float, float] = (0.0, 0.0)  # as of its last report
    slice: tuple[float, float] = (0.0, 0.0)  # its fair slice at its last lease


class BudgetServer:
    """The run's buckets and cap.

    :param rpm: / :param tpm: the user's limits (``None``: only what the shards report).
    :param max_cost: the run's cap in USD (``None``: no cap).
    :param spent: USD each part spent before this start, by part number: a part that waits for
        its turn still counts what it spent.
    :param now: the server's clock (seconds).
    """

    def __init__(self, *, rpm: float | None = None, tpm: float | None = None, max_cost: float | None = None,
                 spent: Mapping[int, float] | None = None, now: Callable[[], float] = time.monotonic,
                 lease_ttl: float = LEASE_TTL) -> None:
        self._now = now
        self._given = {REQUESTS: rpm, TOKENS: tpm}
        self.buckets: dict[str, TokenBucket] = {}
        start = now()
        for kind, limit in self._given.items():
            if limit:
                self.buckets[kind] = TokenBucket(limit, start)
        self.cap = None if max_cost is None else math.floor(max_cost * NANO)
        self.lease_ttl = lease_ttl
        self.shards: dict[int, _Shard] = {}
        # Nano-USD of each part not running now: done before, waiting for its turn, or gone.
        self.parked = {number: math.floor(usd * NANO) for number, usd in (spent or {}).items()}
        self.refused = 0

    def lease(self, shard: int, holding: Holding, want: Want) -> Grant:
        """Grant ``shard`` up to its fair slice of each limit and what it wants of the cap."""
        now = self._now()
        self._seen(shard, holding, now)
        active = len(self.shards)
        got: dict[str, float] = {}
        targets: dict[str, float] = {}
        retry_in = BEAT
        for kind in (REQUESTS, TOKENS):
            bucket = self.buckets.get(kind)
            if bucket is None:
                got[kind] = targets[kind] = math.inf
                continue
            target = targets[kind] = bucket.per_minute / 60 * SLICE_SECONDS / active
            held = holding.requests if kind == REQUESTS else holding.tokens
            grant = max(0.0, min(target - held, bucket.level_at(now)))
            bucket.take(grant, now)
            got[kind] = grant
            if held + grant < target / 2:
                retry_in = min(retry_in, (target / 2 - held - grant) * 60 / bucket.per_minute)
        dollars, stop = self._dollars(shard, want, active)
        record = self.shards[shard]
        record.holding = Holding(holding.requests + got[REQUESTS], holding.tokens + got[TOKENS],
                                 holding.dollars + dollars, holding.spent)
        record.slice = (targets[REQUESTS], targets[TOKENS])
        return Grant(got[REQUESTS], got[TOKENS], dollars, self.spent(), max(retry_in, POLL), stop,
                     (targets[REQUESTS], targets[TOKENS]))

    def give_back(self, shard: int, holding: Holding) -> None:
        """``shard`` is done: what it holds unused returns to the buckets, and it leaves."""
        for kind, held in ((REQUESTS, holding.requests), (TOKENS, holding.tokens)):
            bucket = self.buckets.get(kind)
            if bucket is not None and math.isfinite(held) and held > 0:
                bucket.give(held)
        self.shards.pop(shard, None)
        self._park(shard, holding.spent)

    def report(self, shard: int, holding: Holding, news: News) -> None:
        """Follow the limits and ``remaining`` an answer of ``shard``'s announced."""
        now = self._now()
        self._seen(shard, holding, now)
        self.shards[shard].in_flight = news.in_flight
        self.refused += news.refused
        for index, (kind, state) in enumerate(((REQUESTS, news.requests), (TOKENS, news.tokens))):
            if state is None:
                continue
            before = self.buckets.get(kind)
            shape = None if before is None else (before.per_minute, before.capacity)
            bucket = follow_limit(self.buckets, kind, self._given[kind], state.limit, now)
            if state.remaining is not None:
                unused = sum(_finite(s.holding.requests if kind == REQUESTS else s.holding.tokens)
                             for s in self.shards.values())
                truth = state.remaining - unused
                level = bucket.level_at(now)
                # A bucket just announced (or resized) is as the provider says, full or not.
                if truth < level or shape != (bucket.per_minute, bucket.capacity):
                    bucket.set_level(truth, now)
                    continue
                # Above it: only past whatever may have been sent unseen since (in flight, and a
                # slice of every other shard), so an estimate above the provider's charge is not
                # paid for ever.
                unseen = sum(s.in_flight[index] + (0.0 if number == shard else _finite(s.slice[index]))
                             for number, s in self.shards.items())
                if truth - unseen > level:
                    bucket.set_level(truth - unseen, now)

    def spent(self) -> int:
        """Nano-USD the run has spent, as the shards last said, and the parts not running before."""
        running = sum(max(s.holding.spent, self.parked.get(number, 0)) for number, s in self.shards.items())
        return running + sum(usd for number, usd in self.parked.items() if number not in self.shards)

    def limits(self) -> dict[str, float]:
        """The per-minute limits being shared now."""
        return {kind: bucket.per_minute for kind, bucket in self.buckets.items()}

    def _dollars(self, shard: int, want: Want, active: int) -> tuple[int, bool]:
        if self.cap is None:
            return 0, False
        spent = self.spent()
        if want.need and spent + want.need > self.cap:
            return 0, True
        out = sum(s.holding.dollars for s in self.shards.values())
        free = self.cap - spent - out
        if want.need and free < want.need:
            return 0, False
        return max(want.need, min(want.dollars, free // active)), False

    def _seen(self, shard: int, holding: Holding, now: float) -> None:
        for number, other in list(self.shards.items()):
            if now - other.seen > self.lease_ttl:  # gone without a word: its spend stays, the rest returns
                del self.shards[number]
                self._park(number, other.holding.spent)
        self.shards[shard] = _Shard(holding, now)

    def _park(self, shard: int, spent: int) -> None:
        # The larger of the two: a part started again says it spent 0 until its first request,
        # then what its checkpoint carries, which misses what a killed worker had settled unwritten.
        self.parked[shard] = max(spent, self.parked.get(shard, 0))


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


class BudgetClient(Protocol):
    """How a shard reaches the `BudgetServer`: in process (`LocalBudgetClient`), or an actor."""

    async def lease(self, shard: int, holding: Holding, want: Want) -> Grant: ...

    async def give_back(self, shard: int, holding: Holding) -> None: ...

    async def report(self, shard: int, holding: Holding, news: News) -> None: ...


class LocalBudgetClient:
    """A `BudgetServer` in the same process (tests, and shards run in one process)."""

    def __init__(self, server: BudgetServer) -> None:
        self.server = server

    async def lease(self, shard: int, holding: Holding, want: Want) -> Grant:
        return self.server.lease(shard, holding, want)

    async def give_back(self, shard: int, holding: Holding) -> None:
        self.server.give_back(shard, holding)

    async def report(self, shard: int, holding: Holding, news: News) -> None:
        self.server.report(shard, holding, news)


@dataclass(slots=True)
class _Slice:
    requests: float = 0.0
    tokens: float = 0.0
    target_requests: float = math.inf  # the fair slice: what "half left" is measured on, and the
    target_tokens: float = math.inf  # most a request needs of it (one costing more goes into debt)


class ShardBudget:
    """One shard's side: a `pacing.quota.Share` for its pacer and a `accounting.budget.Pool`
    for its spending cap, refilled by `running` in the background.

    :param client: the transport to the server.
    :param shard: this shard's number.
    :param clock: what the refills wait with (the run's clock).
    """

    def __init__(self, client: BudgetClient, shard: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.client = client
        self.shard = shard
        self.clock = clock
        self.wake: Callable[[], None] | None = None
        self._slice = _Slice()
        self._free = 0  # nano-USD leased and not reserved
        self._reserved = 0
        self._spent = 0
        self._wanted = 0  # nano-USD reserved since the last lease: the pace of spending
        self._need = 0  # the reservation waiting for more USD
        self._stopped = 0  # a need the server said can never fit: that size and larger stop
        self._run_spent = 0
        self._news: News | None = None
        self._refused = 0
        self._due = -math.inf  # when the next lease is due anyway
        self.calls = 0

    # -- the pacer's share ---------------------------------------------------------------------

    def due(self, tokens: float, now: float) -> float:
        s = self._slice
        if s.requests >= min(1.0, s.target_requests) and s.tokens >= min(tokens, s.target_tokens):
            return now
        return now + POLL

    def take(self, tokens: float) -> None:
        self._slice.requests -= 1.0
        self._slice.tokens -= tokens

    def give(self, tokens: float) -> None:
        self._slice.requests += 1.0
        self._slice.tokens += tokens

    def answered(self, limits: ServerLimits | None, refused: bool, pending: tuple[float, float]) -> None:
        self._refused += refused
        if limits is None:
            return
        self._news = News(limits.requests, limits.tokens, in_flight=pending)
        s = self._slice
        # Unlimited until now: from this answer on, only what the server grants.
        if limits.requests is not None and math.isinf(s.requests):
            s.requests = 0.0
            self._due = -math.inf
        if limits.tokens is not None and math.isinf(s.tokens):
            s.tokens = 0.0
            self._due = -math.inf

    # -- the spending cap's pool ---------------------------------------------------------------

    def admit(self, need: int, spent: int) -> Verdict:
        self._spent = spent
        if self._stopped and need >= self._stopped:
            return Verdict.STOP
        if self._free >= need:
            self._free -= need
            self._reserved += need
            self._wanted += need
            return Verdict.GO
        self._need = need
        self._due = -math.inf
        return Verdict.WAIT

    def settled(self, need: int, cost: int, spent: int) -> None:
        self._reserved -= need
        self._free += max(0, need - cost)
        self._spent = spent

    def released(self, need: int) -> None:
        self._reserved -= need
        self._free += need

    def run_spent(self, spent: int) -> int:
        return max(self._run_spent, spent)

    # -- the refills ---------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ShardBudget]:
        """Lease the first slice, keep the slice filled while inside, give back what is left."""
        await self._lease()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._refill)
                try:
                    yield self
                finally:
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                self._free = 0
                try:
                    await self.client.give_back(self.shard, self._holding())
                except Exception as exc:  # the server is gone: the lease expires there anyway
                    log.warning("could not give the shared budget back: %s", exc)

    async def _refill(self) -> None:
        while True:
            if self.clock.now() >= self._due or self._low():
                await self._lease()
            await self.clock.sleep(POLL)

    def _low(self) -> bool:
        s = self._slice
        return s.requests < s.target_requests / 2 or s.tokens < s.target_tokens / 2 or (
            self._free < self._wanted)

    async def _lease(self) -> None:
        self.calls += 1
        news, self._news = self._news, None
        if news is not None or self._refused:
            refused, self._refused = self._refused, 0
            await self.client.report(self.shard, self._holding(), News(
                news.requests if news else None, news.tokens if news else None, refused,
                news.in_flight if news else (0.0, 0.0)))
        need = self._need
        if need:  # what it holds is not enough for the one waiting: all of it goes back
            self._free = 0
        want = Want(max(need, 2 * self._wanted), need)
        self._wanted = 0
        grant = await self.client.lease(self.shard, self._holding(), want)
        s = self._slice
        s.requests += grant.requests
        s.tokens += grant.tokens
        s.target_requests, s.target_tokens = grant.slice
        self._free += grant.dollars
        self._run_spent = grant.spent
        if grant.stop:
            self._stopped = need
        if need and (grant.dollars or grant.stop):
            self._need = 0
        self._due = self.clock.now() + (grant.retry_in if self._need or grant.retry_in < BEAT else BEAT)
        if self.wake is not None and (grant.dollars or grant.stop):
            self.wake()

    def _holding(self) -> Holding:
        s = self._slice
        return Holding(s.requests, s.tokens, self._free + self._reserved, self._spent)
