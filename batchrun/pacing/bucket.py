"""A token bucket that paces a flow to a per-minute rate.

`due` says when a cost fits, `take` charges it. Used as `pacer.Pacer` does — requests in line,
the first charged when it leaves — the flow keeps to the rate whatever the costs; `take` may also
charge a moment ahead, which schedules a series without waiting (the tests do).

A bucket the server announced has a minute's capacity, as providers' buckets do; one built from
a limit the user gave keeps a second's, so a start never floods a server whose own window is
shorter than a minute.
"""

from __future__ import annotations

DEFAULT_BURST_SECONDS = 1.0


class TokenBucket:
    """:param per_minute: the rate; :param now: the clock reading at creation.
    :param capacity: the most it holds (default: a second of the rate, at least 1).
    :param level: what it holds at ``now`` (default: full).
    """

    def __init__(self, per_minute: float, now: float, *, capacity: float | None = None,
                 level: float | None = None) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(self._rate * DEFAULT_BURST_SECONDS, 1.0)
        self.level = self.capacity if level is None else min(level, self.capacity)
        self._at = now  # the moment `level` refers to; later than the clock after a `take` ahead

    def level_at(self, t: float) -> float:
        if t <= self._at:
            return self.level
        return min(self.capacity, self.level + (t - self._at) * self._rate)

    def due(self, cost: float, now: float) -> float:
        """The earliest moment, ``now`` or later, at which ``cost`` fits.

        A cost above the capacity can never fit: it is due once the bucket is full.
        """
        t = max(now, self._at)
        level = self.level_at(t)
        need = min(cost, self.capacity)
        return t if level >= need else t + (need - level) / self._rate

    def take(self, cost: float, at: float) -> None:
        """Charge ``cost`` at moment ``at`` (one `due` returned, or later)."""
        if at > self._at:
            self.level = self.level_at(at)
            self._at = at
        self.level -= cost

    def give(self, amount: float) -> None:
        """Return a charge the server never made (a refused or cancelled request)."""
        self.level = min(self.capacity, self.level + amount)

    def set_level(self, level: float, now: float) -> None:
        """What the server says is left now, less what is promised to requests not yet answered."""
        self.level = min(level, self.capacity)
        self._at = now

    def set_rate(self, per_minute: float, now: float, capacity: float | None = None) -> None:
        self.level = self.level_at(now)
        self._at = max(self._at, now)
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(self._rate * DEFAULT_BURST_SECONDS, 1.0)
        self.level = min(self.level, self.capacity)
