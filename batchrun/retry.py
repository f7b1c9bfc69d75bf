"""When to try a request again, and how long to wait first (the table: ``docs/retries.md``).

Which statuses are worth another attempt is decided here (`worth_retrying`, as the openai SDK
decides it, less the 5xx that name what a server cannot do); `Client._status_error` turns them
into `errors.py`'s classes. `RetryBudget` is the policy one request's retries follow
(`Client.finish` is the loop that asks it):

- retry only `RetryableError`;
- wait with exponential backoff and full jitter, capped at 8 s as the openai SDK caps it (an
  endpoint down for longer is the circuit breaker's, see `pacing.breaker`) — unless the server
  said how long (``retry-after-ms`` / ``Retry-After``), which is honoured, plus a little jitter
  so that the requests that were told the same wait do not all come back in the same millisecond;
- stop after ``max_attempts`` failures that are not 429; 429s (the server did no work) are
  bounded by time instead, ``rate_limit_patience``, so a rate-limit storm slows the run down
  rather than failing lines.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from .config import RetryPolicy
from .errors import RateLimited, RetryableError

# Spread of the extra wait added to a server-given Retry-After, as a share of it.
RETRY_AFTER_JITTER = 0.1
# 5xx that name something the server cannot do, not a state it is in: another attempt gets the
# same answer (Not Implemented, HTTP Version Not Supported, a negotiation or loop in its setup,
# a captive portal's login).
FINAL_SERVER_STATUSES = frozenset({501, 505, 506, 508, 510, 511})


def server_error(status: int) -> bool:
    """A 5xx that says the server is in trouble now (down, overloaded, its upstream unreachable)."""
    return 500 <= status <= 599 and status not in FINAL_SERVER_STATUSES


def worth_retrying(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an error status may be answered differently next time: as the server says in
    ``x-should-retry`` when it says, else 408, 409, 429 and `server_error` statuses."""
    said = headers.get("x-should-retry")
    if said is not None and said.strip().lower() in ("true", "false"):
        return said.strip().lower() == "true"
    return status in (408, 409, 429) or server_error(status)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be delta-seconds or an HTTP-date (RFC 9110 §10.2.3). A value that cannot
    be read, or is negative, is ignored.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = -1
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        seconds = max(seconds, 0.0)
    return seconds if seconds >= 0 else None


class RetryBudget:
    """The retries of one request: what it has spent so far, and what is left. After each
    failure ask `wait` (which counts what it returns), then `stop`."""

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.failures = 0  # retryable failures other than 429
        self.rate_limited = 0
        self.rate_limited_wait = 0.0
        self._rng = rng or random

    def stop(self, exc: RetryableError) -> bool:
        """Whether the request has failed for good with ``exc``."""
        if isinstance(exc, RateLimited):
            return self.rate_limited_wait >= self.policy.rate_limit_patience
        self.failures += 1
        return self.failures >= self.policy.max_attempts

    def wait(self, exc: RetryableError) -> float:
        """Seconds to wait after ``exc`` before trying again."""
        if exc.retry_after is not None:
            told = min(exc.retry_after, self.policy.retry_after_max)
            delay = told + self._rng.uniform(0, told * RETRY_AFTER_JITTER)
        else:
            # Each kind of failure backs off on its own count: 429s answered after a server
            # error say nothing about how long that error lasts, nor the other way round. (`stop`,
            # asked after, counts this failure.)
            exponent = self.rate_limited if isinstance(exc, RateLimited) else self.failures
            cap = min(self.policy.backoff_max, self.policy.backoff_base * 2**exponent)
            delay = self._rng.uniform(0, cap)
        if isinstance(exc, RateLimited):
            self.rate_limited += 1
            self.rate_limited_wait += delay
        return delay
