"""Rate limits, adaptive concurrency and the circuit breaker, on a fake clock: nothing sleeps."""

from __future__ import annotations

import anyio
import pytest

from batchrun.aimd import AdaptiveConcurrency
from batchrun.breaker import CircuitBreaker
from batchrun.bucket import TokenBucket
from batchrun.errors import FatalEndpointError
from batchrun.ratelimit_headers import parse_duration, parse_limits
from batchrun.throttle import Throttle, estimate_cost


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """A sleep that records and advances the fake clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("1m30.5s", 90.5), ("0s", 0.0), ("2h1m", 7260.0),
    ("1.5s", 1.5), ("250us", 0.00025), ("7", 7.0), ("0.25", 0.25), (".5s", 0.5),
    ("soon", None), ("", None), ("5x", None), ("-3", None), ("1s2", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_limits() -> None:
    limits = parse_limits({
        "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": "2s",
    })
    assert limits is not None and limits.requests is not None and limits.tokens is not None
    assert (limits.requests.limit, limits.requests.remaining, limits.requests.reset) == (500, 499, pytest.approx(0.12))
    assert (limits.tokens.limit, limits.tokens.remaining, limits.tokens.reset) == (30000, 29000, 2.0)
    only_tokens = parse_limits({"x-ratelimit-limit-tokens": "100"})
    assert only_tokens is not None and only_tokens.requests is None and only_tokens.tokens.remaining is None
    assert parse_limits({}) is None
    assert parse_limits({"x-ratelimit-limit-requests": "many"}) is None


def test_bucket_paces_to_the_rate_whatever_the_costs() -> None:
    bucket = TokenBucket(per_minute=600, now=0.0)  # 10 per second, a burst of 10
    assert bucket.capacity == 10
    due = [bucket.reserve(1, now=0.0) for _ in range(40)]
    assert due[:10] == [0.0] * 10  # the burst
    assert due[10:] == pytest.approx([0.1 * k for k in range(1, 31)])  # then one every 100 ms
    big = TokenBucket(per_minute=60, now=0.0)  # 1 per second
    assert big.reserve(5, now=0.0) == pytest.approx(4.0)  # a cost above the burst waits its share
    assert big.reserve(1, now=0.0) == pytest.approx(5.0)  # ... and so does the one after it


def test_bucket_refills_up_to_capacity_and_is_corrected() -> None:
    bucket = TokenBucket(per_minute=60, now=0.0, burst_seconds=5)
    assert bucket.reserve(5, now=0.0) == 0.0
    assert bucket.level == 0
    bucket.adjust(+2, now=1.0)  # the request used 2 fewer than reserved
    assert bucket.level == pytest.approx(3.0)
    bucket.adjust(-1, now=1.0)
    assert bucket.level == pytest.approx(2.0)
    bucket.cap(0.5, now=1.0)  # the server says less is left
    assert bucket.level == 0.5
    bucket.cap(100, now=1.0)  # ... but never more than we know
    assert bucket.level == 0.5
    assert bucket.reserve(0, now=100.0) == 0.0 and bucket.level == 5  # refilled, clamped
    bucket.set_rate(6, now=100.0)
    assert bucket.capacity == 1.0 and bucket.level == 1.0


async def test_aimd_halves_once_per_round_and_grows_back() -> None:
    gate = AdaptiveConcurrency(maximum=16)
    seqs = [gate.try_acquire() for _ in range(16)]
    assert None not in seqs and gate.try_acquire() is None
    assert gate.on_rate_limited(seqs[3])  # type: ignore[arg-type]
    assert gate.limit == 8
    assert not gate.on_rate_limited(seqs[9])  # sent before the cut: same congestion event
    assert gate.limit == 8
    for _ in range(16):
        gate.release()
    new = gate.try_acquire()
    assert new is not None and gate.on_rate_limited(new) and gate.limit == 4
    gate.release()
    for _ in range(4):
        gate.on_success()
    assert gate.limit == pytest.approx(5.0, abs=0.2)  # about +1 per round of successes
    for _ in range(1000):
        gate.on_success()
    assert gate.limit == 16  # never above the configured concurrency
    low = AdaptiveConcurrency(maximum=2)
    for _ in range(5):
        low._recovery_until = 0
        low.on_rate_limited(1)
    assert low.limit == 1  # never below one


async def test_aimd_gate_waits_for_room() -> None:
    gate = AdaptiveConcurrency(maximum=2)
    gate.try_acquire()
    gate.try_acquire()
    admitted = []

    async def waiter(name: str) -> None:
        await gate.acquire()
        admitted.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a")
        tg.start_soon(waiter, "b")
        await anyio.wait_all_tasks_blocked()
        assert admitted == []
        gate.release()
        await anyio.wait_all_tasks_blocked()
        assert admitted == ["a"]
        gate.release()
    assert admitted == ["a", "b"] and gate.in_flight == 2


async def test_breaker_opens_probes_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, give_up=100, first_probe=1, max_probe=4, clock=clock)
    assert await breaker.admit() is False
    for _ in range(2):
        breaker.failed("connection refused")
    assert breaker.state == "closed"
    breaker.failed("connection refused")
    assert breaker.state == "open"
    with anyio.move_on_after(0.2):  # no probe before its time
        await breaker.admit()
        pytest.fail("admitted while open")
    clock.now += 1
    assert await breaker.admit() is True and breaker.state == "probing"
    breaker.failed("HTTP 503")  # the probe failed: wait twice as long
    assert breaker.state == "open"
    clock.now += 1.5
    with anyio.move_on_after(0.2):
        await breaker.admit()
        pytest.fail("admitted before the doubled interval")
    clock.now += 0.5
    assert await breaker.admit() is True
    breaker.succeeded()
    assert breaker.state == "closed" and await breaker.admit() is False


async def test_breaker_gives_up_after_a_long_outage() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, give_up=30, clock=clock)
    breaker.failed("connection refused")
    clock.now += 31
    with pytest.raises(FatalEndpointError, match="unavailable for 31 s"):
        await breaker.admit()


async def test_breaker_threshold_zero_never_opens() -> None:
    breaker = CircuitBreaker(threshold=0, give_up=1)
    for _ in range(100):
        breaker.failed("HTTP 500")
    assert breaker.state == "closed"


def make_throttle(clock: Clock, **limits: float) -> tuple[Throttle, Sleeps]:
    sleeps = Sleeps(clock)
    breaker = CircuitBreaker(threshold=10, give_up=100, clock=clock)
    return Throttle(concurrency=64, breaker=breaker, clock=clock, sleep=sleeps, **limits), sleeps


async def test_throttle_without_limits_never_waits() -> None:
    throttle, sleeps = make_throttle(Clock())
    for _ in range(100):
        permit = await throttle.admit(100)
        throttle.settle(permit, 200, {}, 90)
    assert sleeps.waits == [] and throttle.buckets == {}


async def test_throttle_paces_to_given_limits() -> None:
    clock = Clock()
    throttle, sleeps = make_throttle(clock, rpm=120, tpm=6000)  # 2 req/s, 100 tokens/s
    for _ in range(20):
        permit = await throttle.admit(50)
        throttle.settle(permit, 200, {}, 50)
    elapsed = clock.now - 1000.0
    assert 20 / 2 - 2 <= elapsed <= 20 / 2  # the request limit binds: 2 per second after the burst


async def test_throttle_corrects_token_estimates_with_actual_usage() -> None:
    clock = Clock()
    throttle, _ = make_throttle(clock, tpm=6000)  # 100 tokens/s
    for _ in range(50):
        permit = await throttle.admit(1000)  # pessimistic: max_tokens is large ...
        throttle.settle(permit, 200, {}, 100)  # ... the answers are short
    assert permit.cost == 125  # what they use, with a margin
    # Paced by what was used (plus the margin), not by the estimates: 50 × 10 s at 1000 each.
    assert clock.now - 1000.0 <= 10 + 49 * 1.25


async def test_throttle_learns_and_follows_server_limits() -> None:
    clock = Clock()
    throttle, _ = make_throttle(clock)
    permit = await throttle.admit(10)
    throttle.settle(permit, 200, {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "590",
                                  "x-ratelimit-limit-tokens": "60000"}, 10)
    assert throttle.limits() == {"requests": 600, "tokens": 60000}
    permit = await throttle.admit(10)
    throttle.settle(permit, 200, {"x-ratelimit-limit-requests": "300", "x-ratelimit-remaining-requests": "0"}, 10)
    assert throttle.limits()["requests"] == 300  # the provider lowered it: follow at once
    start = clock.now
    permit = await throttle.admit(10)  # nothing remains at the server: wait for it to refill
    assert clock.now - start == pytest.approx(0.2)
    throttle.settle(permit, 200, {}, 10)


async def test_given_limits_cap_learned_ones() -> None:
    throttle, _ = make_throttle(Clock(), rpm=100)
    permit = await throttle.admit(10)
    throttle.settle(permit, 200, {"x-ratelimit-limit-requests": "600"}, 10)
    assert throttle.limits()["requests"] == 100 and throttle.learned["requests"] == 600


async def test_a_429_halves_concurrency_and_holds_dispatch_for_retry_after() -> None:
    clock = Clock()
    throttle, sleeps = make_throttle(clock)
    permit = await throttle.admit(10)
    throttle.settle(permit, 429, {}, None, retry_after=2.0)
    assert throttle.concurrency.limit == 32 and throttle.rate_limited == 1
    await throttle.admit(10)
    assert 2.0 <= sleeps.waits[-1] <= 2.2


async def test_failures_open_the_breaker_through_the_throttle() -> None:
    clock = Clock()
    throttle, _ = make_throttle(clock)
    for _ in range(10):
        permit = await throttle.admit(10)
        throttle.settle(permit, None, None, None)
    assert throttle.breaker.state == "open"
    clock.now += 1
    permit = await throttle.admit(10)
    assert permit.probe
    throttle.settle(permit, 404, {}, None)  # any answer but a 5xx: the endpoint is up
    assert throttle.breaker.state == "closed"


def test_estimate_cost() -> None:
    assert estimate_cost(b"x" * 400, 50) == 150
    assert estimate_cost(b"x" * 400, None) == 100 + 500


def test_rate_window_counts_the_last_minute() -> None:
    from batchrun.throttle import RateWindow

    window = RateWindow()
    for tokens in (10, 20, 30):
        window.add(tokens)
    assert window.per_minute() == (3, 60)
