"""The circuit breaker: when the endpoint is down, stop sending and probe instead.

The endpoint counts as down when failures that say "nobody is there" (no response, a 5xx that
`retry.server_error` names) are nearly all of the recent answers: at least ``threshold`` of them, and `DOWN_SHARE` of
the last ``WINDOW_PER_THRESHOLD × threshold``. A run of failures is not enough — at 60% 5xx
and 64 requests in flight, ten in a row happen by chance every few seconds, and an endpoint
that answers 40% of requests is up. While open, dispatch pauses and one probe goes out at
growing intervals (doubling up to a ceiling); its success closes the circuit, its failure
reopens it for longer. Past ``give_up`` seconds of continuous outage the run stops (exit 4,
resumable).

The same window tells a line's retry whether its failure is the endpoint's (`failing_share`,
read by `retry.next_wait`): an endpoint that answers most requests gets its random failures
retried soon, one failing generally gets them backed off.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final

import anyio

from ..errors import FatalEndpointError
from .clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("batchrun")

DEFAULT_FIRST_PROBE = 1.0
DEFAULT_MAX_PROBE = 60.0
DOWN_SHARE = 0.9
WINDOW_PER_THRESHOLD = 5
# The window of a breaker that never opens (threshold 0), which only `failing_share` reads: the
# default threshold's.
WINDOW_WHEN_OFF = 50
RECHECK = 1.0  # seconds: how often a paused request looks again (a late answer may close it)


class CircuitBreaker:
    """:param threshold: failures that open the circuit when nearly all recent answers fail;
        0 never opens it.
    :param give_up: seconds of continuous outage after which `admit` raises.
    """

    # Final: constants of the class, which a compiled build (setup.py) reads as such.
    CLOSED: Final = "closed"
    OPEN: Final = "open"
    PROBING: Final = "probing"

    def __init__(
        self,
        *,
        threshold: int,
        give_up: float,
        first_probe: float = DEFAULT_FIRST_PROBE,
        max_probe: float = DEFAULT_MAX_PROBE,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.state = self.CLOSED
        self._threshold = threshold
        self._recent: deque[bool] = deque(maxlen=threshold * WINDOW_PER_THRESHOLD or WINDOW_WHEN_OFF)
        self.failures = 0  # in the window
        self._clean = 0  # successes since the window last held a failure, not yet put in it
        self._first_probe = first_probe
        self._max_probe = max_probe
        self._give_up = give_up
        self._clock = clock
        self._interval = first_probe
        self._probe_at = 0.0
        self._opened_at = 0.0
        self._probe_done = anyio.Event()

    async def admit(self) -> bool:
        """Wait until a request may go; return whether it is the probe.

        :raises FatalEndpointError: the endpoint has been down longer than ``give_up``.
        """
        while self.state != self.CLOSED:
            now = self._clock.now()
            if now - self._opened_at > self._give_up:
                raise FatalEndpointError(f"the endpoint has been unavailable for {now - self._opened_at:.0f} s")
            if self.state == self.OPEN:
                if now >= self._probe_at:
                    self.state = self.PROBING
                    self._probe_done = anyio.Event()
                    return True
                await self._clock.sleep(min(self._probe_at - now, RECHECK))
            else:
                await self._probe_done.wait()
        return False

    def succeeded(self) -> None:
        if not self.failures and self.state == self.CLOSED:
            self._clean += 1  # the per-answer path: counted, put in the window when it matters
            return
        self._count(False)
        if self.state != self.CLOSED:
            log.warning("the endpoint answers again after %.0f s; resuming", self._clock.now() - self._opened_at)
            self.state = self.CLOSED
            self._interval = self._first_probe
            self._recent.clear()
            self.failures = 0
            self._probe_done.set()

    def failed(self, why: str) -> None:
        self._put_clean()
        self._count(True)
        now = self._clock.now()
        if self.state == self.PROBING:
            self._interval = min(self._interval * 2, self._max_probe)
            self._reopen(now)
            log.warning("probe failed (%s); next probe in %.0f s", why, self._interval)
        elif self.state == self.CLOSED and self._threshold and self.failures >= self._threshold \
                and self.failures >= DOWN_SHARE * len(self._recent):
            self._opened_at = now
            self._reopen(now)
            log.warning("the endpoint looks down (%d of the last %d answers failed, last: %s); pausing "
                        "dispatch, probing every %.0f s or more", self.failures, len(self._recent), why,
                        self._interval)

    def cancelled_probe(self) -> None:
        """The probe never got an answer (cancelled): let the next request probe instead."""
        if self.state == self.PROBING:
            self._reopen(self._clock.now() - self._interval)

    def failing_share(self) -> float | None:
        """The share of the recent answers that said "nobody is there", or ``None`` before any."""
        self._put_clean()
        return self.failures / len(self._recent) if self._recent else None

    def _put_clean(self) -> None:
        """Put the successes counted since the window last held a failure in it."""
        for _ in range(min(self._clean, self._recent.maxlen or 0)):
            self._count(False)
        self._clean = 0

    def _count(self, failed: bool) -> None:
        if len(self._recent) == self._recent.maxlen:
            self.failures -= self._recent[0]
        self._recent.append(failed)
        self.failures += failed

    def _reopen(self, now: float) -> None:
        self.state = self.OPEN
        self._probe_at = now + self._interval
        self._probe_done.set()
