"""Adaptive concurrency: how many requests may be in flight, learned from 429s (AIMD).

Like TCP congestion control: each rate-limit response halves the limit, once per round of
requests (the 429s of requests sent before the cut are the same congestion event, not new
ones); each success adds ``1 / limit``, so the limit grows by about one per round of
successes. The limit never exceeds the configured concurrency nor falls below one.
"""

from __future__ import annotations

from collections import deque

import anyio

DECREASE_FACTOR = 0.5


class AdaptiveConcurrency:
    """A gate for requests in flight whose size follows the server's pushback."""

    def __init__(self, maximum: int, minimum: int = 1) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.limit = float(maximum)
        self.in_flight = 0
        self.dispatched = 0  # sequence number of the latest request let through
        self._recovery_until = 0  # 429s of requests up to this sequence number are already counted
        self._waiters: deque[anyio.Event] = deque()

    def try_acquire(self) -> int | None:
        """Let a request through now if there is room; return its sequence number."""
        if self.in_flight >= int(self.limit) or self._waiters:
            return None
        return self._admit()

    async def acquire(self) -> int:
        """Wait for room; return the request's sequence number."""
        seq = self.try_acquire()
        if seq is not None:
            return seq
        while True:
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            except BaseException:
                if event in self._waiters:
                    self._waiters.remove(event)
                else:
                    self._wake()  # pass on the turn this waiter was given
                raise
            if self.in_flight < int(self.limit):
                return self._admit()

    def _admit(self) -> int:
        self.in_flight += 1
        self.dispatched += 1
        return self.dispatched

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        if self._waiters and self.in_flight < int(self.limit):
            self._waiters.popleft().set()

    def on_success(self) -> None:
        if self.limit < self.maximum:
            before = int(self.limit)
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            if int(self.limit) > before:
                self._wake()

    def on_rate_limited(self, seq: int) -> bool:
        """A 429 for request ``seq``; return whether the limit was cut."""
        if seq <= self._recovery_until:
            return False
        self.limit = max(float(self.minimum), self.limit * DECREASE_FACTOR)
        self._recovery_until = self.dispatched
        return True
