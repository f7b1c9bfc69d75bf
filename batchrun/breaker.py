"""The circuit breaker: when the endpoint is down, stop sending and probe instead.

A run of consecutive failures that say "the endpoint is not there" (connection errors,
timeouts, 500/502/503/504) opens the circuit: dispatch pauses, so lines are not burnt through
their attempts in seconds. While open, one probe request is let through at growing intervals
(doubling up to a ceiling); its success closes the circuit, its failure reopens it for longer.
Past ``give_up`` seconds of continuous outage the run stops (exit 4, resumable).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from .errors import FatalEndpointError

log = logging.getLogger("batchrun")

DEFAULT_FIRST_PROBE = 1.0
DEFAULT_MAX_PROBE = 60.0


class CircuitBreaker:
    """:param threshold: failures in a row that open the circuit; 0 never opens it.
    :param give_up: seconds of continuous outage after which `admit` raises.
    :param clock: seconds, monotonic (injectable for tests); only differences are used.
    """

    CLOSED, OPEN, PROBING = "closed", "open", "probing"

    def __init__(
        self,
        *,
        threshold: int,
        give_up: float,
        first_probe: float = DEFAULT_FIRST_PROBE,
        max_probe: float = DEFAULT_MAX_PROBE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = self.CLOSED
        self.failures = 0
        self._threshold = threshold
        self._first_probe = first_probe
        self._max_probe = max_probe
        self._give_up = give_up
        self._clock = clock
        self._interval = first_probe
        self._probe_at = 0.0
        self._opened_at = 0.0
        self._changed = anyio.Event()

    async def admit(self) -> bool:
        """Wait until a request may go; return whether it is the probe.

        :raises FatalEndpointError: the endpoint has been down longer than ``give_up``.
        """
        while self.state != self.CLOSED:
            now = self._clock()
            if now - self._opened_at > self._give_up:
                raise FatalEndpointError(f"the endpoint has been unavailable for {now - self._opened_at:.0f} s")
            if self.state == self.OPEN and now >= self._probe_at:
                self.state = self.PROBING
                return True
            changed = self._changed
            with anyio.move_on_after(max(self._probe_at - now, 0.05) if self.state == self.OPEN else None):
                await changed.wait()
        return False

    def succeeded(self) -> None:
        self.failures = 0
        if self.state != self.CLOSED:
            log.warning("the endpoint answers again after %.0f s; resuming", self._clock() - self._opened_at)
            self.state = self.CLOSED
            self._interval = self._first_probe
            self._notify()

    def failed(self, why: str) -> None:
        self.failures += 1
        now = self._clock()
        if self.state == self.PROBING:
            self._interval = min(self._interval * 2, self._max_probe)
            self._reopen(now)
            log.warning("probe failed (%s); next probe in %.0f s", why, self._interval)
        elif self.state == self.CLOSED and self._threshold and self.failures >= self._threshold:
            self._opened_at = now
            self._reopen(now)
            log.warning("the endpoint looks down (%d failures in a row, last: %s); pausing dispatch, "
                        "probing every %.0f s or more", self.failures, why, self._interval)

    def cancelled_probe(self) -> None:
        """The probe never got an answer (cancelled): let the next request probe instead."""
        if self.state == self.PROBING:
            self._reopen(self._clock() - self._interval)

    def _reopen(self, now: float) -> None:
        self.state = self.OPEN
        self._probe_at = now + self._interval
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
