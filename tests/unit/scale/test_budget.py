"""The shared budget: the server's leases, expiry and cap, and a shard admitting from its slice."""

from __future__ import annotations

import math

import anyio

from batchrun.accounting.budget import Verdict
from batchrun.pacing import CircuitBreaker, Pacer
from batchrun.pacing.headers import LimitState
from batchrun.scale.budget import (
    LEASE_TTL,
    NANO,
    BudgetServer,
    Grant,
    Holding,
    LocalBudgetClient,
    News,
    ShardBudget,
    Want,
)

from ...helpers import FakeClock, VirtualClock

NOTHING = Holding()


def test_the_quota_starts_full_and_is_shared_fairly() -> None:
    clock = FakeClock()
    server = BudgetServer(rpm=600, now=clock.now)  # a second's bucket: 10 requests
    first = server.lease(0, NOTHING, Want())
    assert first.requests == 10 and math.isinf(first.tokens)  # alone: the whole full bucket at once
    second = server.lease(1, NOTHING, Want())
    assert second.requests == 0 and second.retry_in > 0
    clock.t += 1.0  # 10 more; each shard's fair slice is now half a second's
    assert server.lease(1, NOTHING, Want()).requests == 5
    assert server.lease(0, Holding(requests=4), Want()).requests == 1  # tops up to its slice


def test_an_announced_limit_below_the_given_one_wins_and_its_remaining_is_followed() -> None:
    clock = FakeClock()
    server = BudgetServer(rpm=6000, now=clock.now)
    bucket = server.buckets["requests"]
    server.report(0, Holding(requests=20), News(LimitState(1200, 500, None), None))
    assert server.limits() == {"requests": 1200}
    assert bucket.level_at(clock.t) == 480  # what is left, less what shards hold
    server.report(0, Holding(requests=20), News(LimitState(1200, 400, None), None))
    assert bucket.level_at(clock.t) == 380  # less: at once
    assert server.lease(1, NOTHING, Want()).requests == 10  # half of a second's 20: its fair slice
    server.report(0, Holding(requests=20), News(LimitState(1200, 900, None), None, in_flight=(16, 0)))
    # More: only past what may have gone out unseen since — shard 0's 16 in flight, and a slice
    # of shard 1 — besides what the two hold (20 and 10).
    assert bucket.level_at(clock.t) == 900 - 20 - 10 - 16 - 10


def test_what_a_shard_gives_back_is_there_for_the_others() -> None:
    clock = FakeClock()
    server = BudgetServer(rpm=600, now=clock.now)
    server.lease(0, NOTHING, Want())
    server.give_back(0, Holding(requests=7))
    assert server.lease(1, NOTHING, Want()).requests == 7


def test_the_cap_is_leased_out_once_and_a_need_that_cannot_fit_stops() -> None:
    clock = FakeClock()
    server = BudgetServer(max_cost=1.0, now=clock.now)
    assert server.lease(0, NOTHING, Want(dollars=NANO)).dollars == NANO  # alone: all of it
    assert server.lease(1, NOTHING, Want(need=NANO // 10)) == Grant(math.inf, math.inf, 0, 0, server.lease(
        1, NOTHING, Want()).retry_in)  # nothing left, but it may come back: wait
    server.lease(0, Holding(dollars=NANO // 2, spent=NANO // 2), Want())  # half spent, half kept
    stop = server.lease(1, NOTHING, Want(need=NANO // 2 + 1))
    assert stop.stop and stop.spent == NANO // 2  # more than the cap less what was spent: never fits


def test_a_shard_that_dies_holding_dollars_gives_them_back_when_its_lease_expires() -> None:
    clock = FakeClock()
    server = BudgetServer(max_cost=1.0, now=clock.now)
    server.lease(0, Holding(spent=NANO // 4), Want(dollars=NANO))  # takes all that is left, then dies
    assert server.lease(1, NOTHING, Want(need=NANO // 2)).dollars == 0
    clock.t += LEASE_TTL + 1
    grant = server.lease(1, NOTHING, Want(need=NANO // 2))
    assert grant.dollars >= NANO // 2 and grant.spent == NANO // 4  # what it spent stays spent


def test_a_part_s_earlier_spend_counts_before_it_runs_and_once_when_it_does() -> None:
    clock = FakeClock()
    server = BudgetServer(max_cost=1.0, spent={0: 0.25, 2: 0.5}, now=clock.now)  # 2 waits for its turn
    assert server.lease(1, NOTHING, Want(need=NANO // 4 + 1)).stop  # 0.75 already spent
    assert server.lease(2, NOTHING, Want()).spent == 3 * NANO // 4  # running, not yet said: still counted
    server.lease(2, Holding(spent=NANO // 2 + 100), Want())  # its own word carries the same, and more
    assert server.spent() == 3 * NANO // 4 + 100
    clock.t += LEASE_TTL + 1
    assert server.lease(1, NOTHING, Want()).spent == 3 * NANO // 4 + 100  # gone: its spend stays, once
    server.lease(2, NOTHING, Want())  # its task run again (a worker died): from its checkpoint
    server.lease(2, Holding(spent=NANO // 2 + 100), Want())
    assert server.spent() == 3 * NANO // 4 + 100  # not twice


def test_a_shard_that_dies_no_longer_takes_a_share_of_the_rate() -> None:
    clock = FakeClock()
    server = BudgetServer(rpm=600, now=clock.now)
    server.lease(0, NOTHING, Want())
    server.lease(1, NOTHING, Want())
    clock.t += LEASE_TTL + 1  # shard 0 is gone; shard 1 alone gets a whole second's slice
    assert server.lease(1, NOTHING, Want()).requests == 10


class Held:
    """A transport whose leases after the first wait until ``release`` is set."""

    def __init__(self, server: BudgetServer) -> None:
        self.local = LocalBudgetClient(server)
        self.release = anyio.Event()
        self.leases = 0

    async def lease(self, shard: int, holding: Holding, want: Want) -> Grant:
        self.leases += 1
        if self.leases > 1:
            await self.release.wait()
        return await self.local.lease(shard, holding, want)

    async def give_back(self, shard: int, holding: Holding) -> None:
        await self.local.give_back(shard, holding)

    async def report(self, shard: int, holding: Holding, news: News) -> None:
        await self.local.report(shard, holding, news)


async def test_requests_are_admitted_from_the_slice_while_its_refill_is_on_the_way() -> None:
    clock = VirtualClock()
    server = BudgetServer(rpm=600, now=clock)
    transport = Held(server)
    share = ShardBudget(transport, 0, clock=clock)
    pacer = Pacer(concurrency=64, breaker=CircuitBreaker(threshold=10, give_up=100, clock=clock), clock=clock,
                  share=share)
    admitted = 0

    async def admit_all() -> None:
        nonlocal admitted
        for _ in range(15):
            pacer.settle(await pacer.admit(10), 200, {})
            admitted += 1

    async with share.running(), anyio.create_task_group() as group:
        group.start_soon(admit_all)
        await anyio.wait_all_tasks_blocked()
        assert admitted == 10 and transport.leases == 1  # the first slice, a second's 10, at once
        async with anyio.create_task_group() as driver:
            driver.start_soon(clock.drive, lambda: transport.leases == 2 or clock.t > 1010)
        # The refill is on its way, and nothing waited for it while the slice lasted; the 11th
        # waits for the slice, not for a call of its own.
        assert admitted == 10 and transport.leases == 2
        transport.release.set()
        group.start_soon(clock.drive, lambda: admitted == 15)
    assert server.shards == {}  # it left when done


async def test_a_spending_pool_reserves_from_what_it_leased_and_waits_for_more() -> None:
    clock = VirtualClock()
    server = BudgetServer(max_cost=1.0, now=clock)
    share = ShardBudget(LocalBudgetClient(server), 0, clock=clock)
    woken = []
    share.wake = lambda: woken.append(True)
    async with share.running():
        assert share.admit(NANO // 10, 0) is Verdict.WAIT  # nothing leased yet: no round trip here
        async with anyio.create_task_group() as group:
            group.start_soon(clock.drive, lambda: bool(woken) or clock.t > 1010)
        assert woken and share.admit(NANO // 10, 0) is Verdict.GO  # the refill leased it, and said so
        share.settled(NANO // 10, NANO // 20, NANO // 20)
    assert server.spent() == NANO // 20


async def test_a_server_gone_at_the_end_fails_nothing() -> None:
    class Gone(Held):
        async def give_back(self, shard: int, holding: Holding) -> None:
            raise ConnectionError("the budget server died")

    transport = Gone(BudgetServer(rpm=600))
    async with ShardBudget(transport, 0).running():
        pass
    assert transport.leases == 1  # its lease there expires
