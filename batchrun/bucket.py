"""A token bucket that paces a flow to a per-minute rate, by virtual scheduling.

`reserve` takes a request's cost at once and tells the caller how long to wait: the level may
go below zero, and a request is due when the level would have grown to its cost. Callers that
reserve together are spread out in time without a lock or a queue, and the long-run rate is
exactly ``per_minute`` whatever the costs. The burst is kept small (a second of the rate) so a
start never floods a server whose own window is shorter than a minute.
"""

from __future__ import annotations

DEFAULT_BURST_SECONDS = 1.0


class TokenBucket:
    """:param per_minute: the rate; :param now: the clock reading at creation."""

    def __init__(self, per_minute: float, now: float, burst_seconds: float = DEFAULT_BURST_SECONDS) -> None:
        self._burst_seconds = burst_seconds
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self.capacity = max(self._rate * burst_seconds, 1.0)
        self.level = self.capacity
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self.level = min(self.capacity, self.level + (now - self._updated) * self._rate)
            self._updated = now

    def reserve(self, cost: float, now: float) -> float:
        """Take ``cost``; return the seconds to wait before acting on it."""
        self._refill(now)
        delay = max(0.0, (cost - self.level) / self._rate)
        self.level -= cost
        return delay

    def adjust(self, amount: float, now: float) -> None:
        """Give back (``amount`` > 0) or take more (< 0) once the real cost is known."""
        self._refill(now)
        self.level = min(self.capacity, self.level + amount)

    def cap(self, remaining: float, now: float) -> None:
        """The server says only ``remaining`` is left: never believe there is more."""
        self._refill(now)
        self.level = min(self.level, remaining)

    def set_rate(self, per_minute: float, now: float) -> None:
        self._refill(now)
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self.capacity = max(self._rate * self._burst_seconds, 1.0)
        self.level = min(self.level, self.capacity)
