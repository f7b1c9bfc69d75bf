"""Requests and tokens answered over the last minute, on a wall clock the test moves."""

from __future__ import annotations

import time

import pytest

from batchrun.pacing.meter import RateWindow


class Monotonic:
    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    fake = Monotonic()
    monkeypatch.setattr(time, "monotonic", fake)  # the wall clock the meter reads
    return fake


def test_answers_of_the_last_minute_are_counted_and_older_ones_fall_out(clock: Monotonic) -> None:
    window = RateWindow()
    assert window.per_minute() == (0, 0)
    window.add(10)
    window.add(5)
    clock.t += 30.5
    window.add(100)
    assert window.per_minute() == (3, 115)
    clock.t += 30  # 60.5 s after the first two: their second is out of the window
    assert window.per_minute() == (1, 100)
    clock.t += 30
    assert window.per_minute() == (0, 0)


def test_a_slot_reused_a_minute_later_starts_over(clock: Monotonic) -> None:
    window = RateWindow()
    window.add(7)
    clock.t += 60  # the same slot, the next minute
    window.add(1)
    assert window.per_minute() == (1, 1)
