"""The circuit breaker on a fake clock: down is nearly every answer failing, not a bad streak."""

from __future__ import annotations

import random

import pytest

from batchrun.errors import FatalEndpointError
from batchrun.pacing.breaker import CircuitBreaker

from ...helpers import FakeClock


async def test_opens_when_nearly_every_answer_fails_then_probes_and_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, give_up=100, first_probe=1, max_probe=4, clock=clock)
    assert await breaker.admit() is False
    breaker.failed("connection refused")
    breaker.failed("connection refused")
    assert breaker.state == "closed"
    breaker.failed("connection refused")
    assert breaker.state == "open"
    start = clock.now()
    assert await breaker.admit() is True and breaker.state == "probing"
    assert clock.now() - start == pytest.approx(1.0)  # the probe waited its interval
    breaker.failed("HTTP 503")  # the probe failed: wait twice as long
    start = clock.now()
    assert await breaker.admit() is True
    assert clock.now() - start == pytest.approx(2.0)
    breaker.succeeded()
    assert breaker.state == "closed" and await breaker.admit() is False


def test_an_endpoint_answering_forty_percent_is_up() -> None:
    breaker = CircuitBreaker(threshold=10, give_up=100, clock=FakeClock())
    rng = random.Random(1)
    for _ in range(20_000):
        if rng.random() < 0.6:
            breaker.failed("HTTP 500")
        else:
            breaker.succeeded()
        assert breaker.state == "closed"


def test_a_streak_amid_successes_does_not_open_it() -> None:
    breaker = CircuitBreaker(threshold=10, give_up=100, clock=FakeClock())
    for _ in range(40):
        breaker.succeeded()
    for _ in range(12):  # twelve in a row, but 12 of the last 50: most answers are fine
        breaker.failed("HTTP 502")
    assert breaker.state == "closed"
    for _ in range(40):
        breaker.failed("HTTP 502")  # now nearly all of them fail
    assert breaker.state == "open"


async def test_gives_up_after_a_long_outage() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, give_up=30, clock=clock)
    breaker.failed("connection refused")
    clock.t += 31
    with pytest.raises(FatalEndpointError, match="unavailable for 31 s"):
        await breaker.admit()


def test_threshold_zero_never_opens() -> None:
    breaker = CircuitBreaker(threshold=0, give_up=1, clock=FakeClock())
    for _ in range(100):
        breaker.failed("HTTP 500")
    assert breaker.state == "closed"


def test_the_failing_share_is_over_the_recent_answers() -> None:
    breaker = CircuitBreaker(threshold=10, give_up=100, clock=FakeClock())
    assert breaker.failing_share() is None  # no answer yet: nothing known
    breaker.failed("HTTP 500")
    assert breaker.failing_share() == 1.0
    for _ in range(3):
        breaker.succeeded()  # counted on the fast path, not yet in the window
    assert breaker.failing_share() == 0.25
    for _ in range(200):
        breaker.succeeded()
    assert breaker.failing_share() == 0.0  # the failure left the window of the last 50
    rng = random.Random(2)
    for _ in range(5000):
        if rng.random() < 0.3:
            breaker.failed("HTTP 503")
        else:
            breaker.succeeded()
    assert 0.1 <= (breaker.failing_share() or 0) <= 0.5
    for _ in range(50):
        breaker.failed("no response")
    assert breaker.failing_share() == 1.0 and breaker.state == "open"


def test_with_the_breaker_off_the_share_is_still_over_fifty_answers() -> None:
    breaker = CircuitBreaker(threshold=0, give_up=1, clock=FakeClock())
    for _ in range(30):
        breaker.succeeded()
    for _ in range(20):
        breaker.failed("HTTP 500")
    assert breaker.failing_share() == 0.4 and breaker.state == "closed"
