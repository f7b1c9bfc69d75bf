"""The system clock: monotonic time, and sleeping on the event loop's timer."""

from __future__ import annotations

import time

import anyio

from batchrun.pacing.clock import SYSTEM_CLOCK, Clock


async def test_the_system_clock_reads_time_monotonic_and_sleeps_on_the_event_loop() -> None:
    clock: Clock = SYSTEM_CLOCK
    assert clock.now is time.monotonic or clock.now == time.monotonic
    before = clock.now()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.sleep(3600)  # a sleep is a checkpoint of the event loop: cancelled, not slept
    assert scope.cancelled_caught
    assert before <= clock.now()
