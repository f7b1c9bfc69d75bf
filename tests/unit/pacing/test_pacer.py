"""The composition: slots bound what is in flight, pacing sleeps hold none, nothing holds the pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import anyio
import pytest

from batchrun.pacing import CircuitBreaker, Pacer, estimate_cost
from batchrun.pacing.pacer import Permit

from ...helpers import FakeClock, HeldClock


def make_pacer(clock: FakeClock, concurrency: int = 64, **limits: float) -> Pacer:
    breaker = CircuitBreaker(threshold=10, give_up=100, clock=clock)
    return Pacer(concurrency=concurrency, breaker=breaker, clock=clock, **limits)


async def test_without_limits_it_never_waits() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    for _ in range(100):
        permit = await pacer.admit(100)
        pacer.settle(permit, 200, {}, 90)
    assert clock.waits == [] and pacer.limits() == {}


async def test_a_429_delays_no_one_else() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    for _ in range(5):  # shed at random, with a long Retry-After: only its own retry waits
        permit = await pacer.admit(10)
        pacer.settle(permit, 429, {"retry-after": "86400"})
    permit = await pacer.admit(10)
    assert clock.waits == [] and pacer.rate_limited == 5


async def test_requests_in_flight_never_exceed_the_slots() -> None:
    pacer = make_pacer(FakeClock(), concurrency=2)
    first, second = await pacer.admit(1), await pacer.admit(1)
    admitted = []

    async def third() -> None:
        admitted.append(await pacer.admit(1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(third)
        await anyio.wait_all_tasks_blocked()
        assert admitted == []  # two in flight: the third waits
        pacer.settle(first, 200, {})
        await anyio.wait_all_tasks_blocked()
        assert len(admitted) == 1
    pacer.settle(second, 200, {})
    pacer.settle(admitted[0], 200, {})
    assert pacer.slots.borrowed_tokens == 0


async def test_admit_now_gives_a_permit_only_when_nothing_could_make_it_wait() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, concurrency=2)
    first = pacer.admit_now(100)
    second = pacer.admit_now(100)
    assert first is not None and second is not None and (first.seq, second.seq) == (1, 2)
    assert first.tokens == 100 and pacer.slots.borrowed_tokens == 2
    assert pacer.admit_now(100) is None  # no slot free: `admit` waits for one
    pacer.settle(first, 200, {})
    assert pacer.admit_now(100) is not None
    for _ in range(10):
        pacer.breaker.failed("HTTP 503")
    assert pacer.breaker.state != CircuitBreaker.CLOSED and pacer.admit_now(1) is None
    assert make_pacer(clock, rpm=600).admit_now(1) is None  # a limit to pace to
    assert clock.waits == []


def send_burst(pacer: Pacer, clock: FakeClock, n: int, apart: float) -> list[Permit]:
    burst = []
    for _ in range(n):
        permit = pacer.admit_now(100)
        assert permit is not None
        burst.append(permit)
        clock.t += apart
    return burst


@dataclass
class Answered:
    """A pacer whose first burst has had its first answer, and the requests asked for after it."""

    pacer: Pacer
    burst: list[Permit]
    admitted: list[Permit] = field(default_factory=list)

    async def one_more(self) -> None:
        self.admitted.append(await self.pacer.admit(100))


def first_answered(clock: FakeClock, n: int) -> Answered:
    """``n`` requests sent 1 ms apart before any answer, then the first of them answered."""
    pacer = make_pacer(clock)
    burst = send_burst(pacer, clock, n, 0.001)
    pacer.settle(burst[0], 200, {})
    return Answered(pacer, burst)


async def test_the_first_answers_wait_at_most_twice_as_long_as_the_first_burst_took_to_send() -> None:
    # 64 requests leave 1 ms apart before any answer: after the first answer, what its slot would
    # send waits for the burst's last answers (they may show a quota's bucket ran dry), but no
    # longer than twice those 63 ms. Then nothing waits again.
    clock = FakeClock(start=0.0)
    pacer = make_pacer(clock)
    burst = send_burst(pacer, clock, 64, 0.001)
    clock.t = 0.1
    pacer.settle(burst[0], 200, {})
    assert pacer.admit_now(100) is None
    await pacer.admit(100)
    assert clock.t == pytest.approx(0.1 + 2 * 0.063)
    for permit in burst[1:]:
        pacer.settle(permit, 200, {})
    waited = len(clock.waits)
    for _ in range(10):
        permit = pacer.admit_now(100) or await pacer.admit(100)
        pacer.settle(permit, 200, {})
    assert len(clock.waits) == waited


async def test_the_wait_ends_as_soon_as_the_first_burst_is_answered() -> None:
    answered = first_answered(HeldClock(), 8)  # the wait's own timer never fires
    pacer, burst, admitted = answered.pacer, answered.burst, answered.admitted
    async with anyio.create_task_group() as tg:
        tg.start_soon(answered.one_more)
        await anyio.wait_all_tasks_blocked()
        assert admitted == []
        for permit in burst[1:-1]:
            pacer.settle(permit, 200, {})
        await anyio.wait_all_tasks_blocked()
        assert admitted == []  # one of the burst's is still out
        pacer.cancelled(burst[-1])  # a cancelled request of the burst is answered as far as the wait goes
        await anyio.wait_all_tasks_blocked()
        assert len(admitted) == 1


async def test_a_request_of_the_burst_cancelled_before_the_first_answer_is_not_waited_for() -> None:
    clock = HeldClock()  # the wait's own timer never fires
    pacer = make_pacer(clock)
    burst = send_burst(pacer, clock, 8, 0.001)
    pacer.cancelled(burst[-1], sent=False)  # withheld before any answer came back: none will come
    answered = Answered(pacer, burst)
    pacer.settle(burst[0], 200, {})
    async with anyio.create_task_group() as tg:
        tg.start_soon(answered.one_more)
        await anyio.wait_all_tasks_blocked()
        assert answered.admitted == []
        for permit in burst[1:-1]:
            pacer.settle(permit, 200, {})
        await anyio.wait_all_tasks_blocked()
        assert len(answered.admitted) == 1


async def test_the_wait_ends_once_the_first_burst_has_shown_it_emptied_no_bucket() -> None:
    # A 429 among the burst's first answers is shedding (or a bucket too small to tell), not the
    # refused tail of a full bucket: the rest of the burst has nothing to show, and is not waited for.
    answered = first_answered(HeldClock(), 30)
    pacer, burst, admitted = answered.pacer, answered.burst, answered.admitted
    async with anyio.create_task_group() as tg:
        tg.start_soon(answered.one_more)
        await anyio.wait_all_tasks_blocked()
        pacer.settle(burst[1], 200, {})
        await anyio.wait_all_tasks_blocked()
        assert admitted == []
        pacer.settle(burst[2], 429, {})
        await anyio.wait_all_tasks_blocked()
        assert len(admitted) == 1


async def test_one_timer_keeps_the_wait_for_all_and_its_end_lets_them_all_go() -> None:
    clock = HeldClock()
    answered = first_answered(clock, 8)
    admitted = answered.admitted
    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as keeping:
            keeping.start_soon(answered.one_more)
            await anyio.wait_all_tasks_blocked()  # the first to wait keeps the time
            for _ in range(3):
                tg.start_soon(answered.one_more)
            await anyio.wait_all_tasks_blocked()
            assert clock.sleepers == 1 and admitted == []  # not a timer each
            keeping.cancel_scope.cancel()  # its line is stopped: the others are let go, not left waiting
        await anyio.wait_all_tasks_blocked()
        assert len(admitted) == 3


async def test_a_request_asked_for_after_the_wait_would_have_ended_does_not_wait() -> None:
    clock = FakeClock(start=0.0)
    pacer = first_answered(clock, 8).pacer
    clock.t += 1.0  # past twice the 7 ms the burst took; nobody asked meanwhile
    await pacer.admit(100)
    assert clock.waits == []  # not even for a negative time, which anyio's sleep refuses


async def test_a_request_waiting_for_its_pace_holds_no_slot() -> None:
    clock = HeldClock()
    pacer = make_pacer(clock, concurrency=1, rpm=60)  # one per second, one slot
    first = await pacer.admit(1)
    pacer.settle(first, 200, {})
    admitted = []

    async def second() -> None:
        admitted.append(await pacer.admit(1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert clock.waits == [0.5] and pacer.slots.borrowed_tokens == 0  # it looks again every 0.5 s
        clock.release.set()
    assert len(admitted) == 1 and pacer.slots.borrowed_tokens == 1


async def test_a_cancelled_probe_lets_the_next_request_probe() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, concurrency=1)
    blocker = await pacer.admit(1)  # holds the only slot
    for _ in range(10):
        pacer.breaker.failed("connection refused")
    assert pacer.breaker.state == "open"
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pacer.admit, 1)  # the probe: admitted by the breaker, then waits for a slot
            await anyio.wait_all_tasks_blocked()
            assert pacer.breaker.state == "probing"
            scope.cancel()
    assert pacer.breaker.state == "open"  # not stuck probing with no probe on its way
    pacer.settle(blocker, 200, {})  # a late answer: the endpoint is up after all
    assert pacer.breaker.state == "closed"


async def test_a_quota_held_by_the_server_is_paced_at_its_refill_not_in_one_burst() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    permit = await pacer.admit(10)
    pacer.settle(permit, 429, {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0",
                               "retry-after": "1"})
    departures = []
    for _ in range(5):
        permit = await pacer.admit(10)
        departures.append(clock.now())
        pacer.settle(permit, 200, {})
    gaps = [b - a for a, b in pairwise(departures)]
    assert gaps == pytest.approx([0.1] * 4)  # 10 per second, each its own time


def test_estimate_cost() -> None:
    assert estimate_cost(b"x" * 400, 50) == 150
    assert estimate_cost(b"x" * 400, None) == 100 + 500


async def test_refusals_for_capacity_pace_nothing_and_trip_no_breaker() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    for _ in range(50):  # past the breaker's threshold, and all refused
        permit = await pacer.admit(10)
        pacer.settle(permit, 529, {}, shed=True)
        clock.t += 0.1
    assert pacer.capacity_refused == 50 and pacer.rate_limited == 0
    assert pacer.breaker.state == CircuitBreaker.CLOSED
    assert pacer.acceptance.pace is None and pacer.acceptance.state == "free"
    await pacer.admit(10)
    assert clock.waits == []


async def test_as_quota_429s_the_same_refusals_would_start_a_test() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    for _ in range(50):
        permit = await pacer.admit(10)
        pacer.settle(permit, 429, {})
        clock.t += 0.1
    assert pacer.acceptance.state != "free"


@pytest.mark.parametrize("sent", [True, False])
async def test_an_attempt_kept_off_the_wire_gives_its_charge_back_one_cancelled_in_flight_does_not(
        sent: bool) -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, rpm=60)  # a request a second, none in reserve
    pacer.cancelled(await pacer.admit(10), sent=sent)
    await pacer.admit(10)
    assert pacer.slots.borrowed_tokens == 1  # the first one's slot is back either way
    assert (clock.waits != []) is sent  # the server may have counted one that was sent
