"""What an error status means, when to try a request again, and how long to wait first (the
table: ``docs/retries.md``).

`status_error` is the one classifier of error statuses, for online lines (`Client`) and the Batch
API's calls (`batchapi.api`) alike: which are worth another attempt (`worth_retrying`, as the
openai SDK decides it, less the 5xx that name what a server cannot do), which stop every request
(``insufficient_quota``), which are final. `next_wait` is the one retry policy, a pure function
of what a request's failures have spent so far (`Spent`) and of how the endpoint answers other
requests (its failing share, when known); `Retries` holds that state for one request
(`Client.finish` asks it per line, `batchapi.api` through tenacity):

- retry only `RetryableError`;
- wait with exponential backoff and full jitter, capped at 8 s as the openai SDK caps it (an
  endpoint down for longer is the circuit breaker's, see `pacing.breaker`) — unless the server
  said how long (``retry-after-ms`` / ``Retry-After``), which is honoured, plus a little jitter
  so that the requests that were told the same wait do not all come back in the same millisecond;
- but a failure that is not a 429 (a 5xx, a lost connection) while the endpoint is answering
  most requests (``failing_share``, the breaker's window across lines, under `FAILING_SHARE`) is
  that line's bad luck, not an outage: it is tried again after a short wait, full jitter below
  `QUICK_RETRY` × ``backoff_base``, however often the line failed before. Backing off exponentially
  would protect nothing — at most ``concurrency`` requests are in flight either way, and a line
  waiting gives its slot to another — and only stretches the run's tail;
- stop after ``max_attempts`` failures that are not 429; 429s (the server did no work) are
  bounded by time instead, ``rate_limit_patience``, so a rate-limit storm slows the run down
  rather than failing lines;
- a refusal for capacity (`capacity_refused`: flex's ``429 Resource Unavailable``, Groq's 498,
  a 529) is shedding, not a quota: it backs off on its own count and is bounded by a time
  budget of its own, as long as ``rate_limit_patience`` but never drawn from the quota 429s'
  (a line that waited out a quota may still wait for capacity, and the other way round).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from .config import RetryPolicy
from .errors import CapacityRefused, FatalEndpointError, HTTPStatusError, RateLimited, RetryableError, ServerError

# Spread of the extra wait added to a server-given Retry-After, as a share of it.
RETRY_AFTER_JITTER = 0.1
# The share of the endpoint's recent answers, across lines, that failed as an outage fails (no
# response, a 5xx) from which a line's failure is taken as the endpoint's and backed off
# exponentially; below it the endpoint answers most requests, and the line retries soon.
FAILING_SHARE = 0.5
# The short wait's cap, as a share of ``backoff_base`` (0.5 s by default): enough jitter that the
# lines that failed together do not come back together, short against the run's tail.
QUICK_RETRY = 0.5
# 5xx that name something the server cannot do, not a state it is in: another attempt gets the
# same answer (Not Implemented, HTTP Version Not Supported, a negotiation or loop in its setup,
# a captive portal's login).
FINAL_SERVER_STATUSES = frozenset({501, 505, 506, 508, 510, 511})
# Statuses that mean "no capacity now" whatever the body: Groq's flex tier (498
# capacity_exceeded) and Anthropic's overloaded (529 overloaded_error).
CAPACITY_STATUSES = frozenset({498, 529})
# Error codes and types that say so in a 429's body: OpenAI's flex tier answers 429 "Resource
# Unavailable" when it has no capacity (its docs' wording; no code is documented), Groq and
# Anthropic name theirs.
CAPACITY_CODES = frozenset({"resource_unavailable", "capacity_exceeded", "overloaded_error", "overloaded"})


def capacity_refused(status: int, code: str, message: str) -> bool:
    """Whether an error answer says the provider lacks capacity (shedding), not that a quota
    is spent: a `CAPACITY_STATUSES` status, or a 429 whose code, type or message says so."""
    if status in CAPACITY_STATUSES:
        return True
    return status == 429 and (code.lower() in CAPACITY_CODES or message.lower().startswith("resource unavailable"))


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
            value = -1.0
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


def status_error(status: int, headers: Mapping[str, str], code: str, message: str, *,
                 location: str | None = None, **kw: Any) -> HTTPStatusError | RetryableError | FatalEndpointError:
    """What an error status (not 2xx) means, whoever asked: a stop for every request (a 429
    ``insufficient_quota``), a failure worth another attempt (`RateLimited`, `ServerError`, with
    the wait the server asked for), or a final one (`HTTPStatusError`). 401/403 and a 404 for the
    path itself depend on what the caller saw before: it decides them first.

    :param code: / :param message: the error's, from its body (scrubbed).
    :param location: a redirect's target (scrubbed), named in its message.
    :param kw: ``status_code``, ``request_id``, ``body`` of the error.
    """
    if status == 429 and code == "insufficient_quota":  # waiting frees no quota: every line would wait, then fail
        return FatalEndpointError("the account is out of quota (insufficient_quota): add credits or raise the "
                                  "limit; the run is resumable", "add credits or raise the limit, then run the command again")
    if 300 <= status < 400:
        return HTTPStatusError(code, f"HTTP {status}: redirected to {location or 'elsewhere'}, not followed (the "
                               "API key goes only to --base-url; point it at the final address)", **kw)
    if capacity_refused(status, code, message) and headers.get("x-should-retry", "").strip().lower() != "false":
        return CapacityRefused(code, message, retry_after=parse_retry_after(headers), **kw)
    if worth_retrying(status, headers):
        kind = RateLimited if status == 429 else ServerError
        return kind(code, message, retry_after=parse_retry_after(headers), **kw)
    return HTTPStatusError(code, message, **kw)


class Spent(NamedTuple):
    """What one request's failures have used up so far: all that a retry decision reads. (A
    tuple: one is made per retried attempt, and a frozen dataclass costs several times more.)"""

    failures: int = 0  # retryable failures other than 429 and capacity refusals
    rate_limited: int = 0  # quota 429s
    rate_limited_wait: float = 0.0  # seconds waited after them
    refused: int = 0  # refusals for capacity (`CapacityRefused`)
    refused_wait: float = 0.0  # seconds waited after them

    def after(self, failure: RetryableError, wait: float) -> Spent:
        """What is spent once ``failure`` is counted and ``wait`` waited."""
        if isinstance(failure, RateLimited):
            return self._replace(rate_limited=self.rate_limited + 1, rate_limited_wait=self.rate_limited_wait + wait)
        if isinstance(failure, CapacityRefused):
            return self._replace(refused=self.refused + 1, refused_wait=self.refused_wait + wait)
        return self._replace(failures=self.failures + 1)


def next_wait(policy: RetryPolicy, spent: Spent, failure: RetryableError,
              uniform: Callable[[float, float], float] = random.uniform,
              failing_share: float | None = None) -> float | None:
    """Seconds to wait after ``failure`` before the next attempt, or ``None`` when the request has
    failed for good; a pure function of its arguments (``uniform(a, b)`` draws the jitter).

    A 429 gives up when its wait would take the 429s' waits to ``rate_limit_patience``, a refusal
    for capacity when its wait would take theirs there; any other failure when it is the
    ``max_attempts``-th.

    :param failing_share: the share of the endpoint's recent answers, across lines, that were
        failures of the kind an outage gives (`pacing.CircuitBreaker.failing_share`); ``None``:
        not known (a lone call, as the Batch API's), which backs off as an outage would.
    """
    if failure.retry_after is not None:
        told = min(failure.retry_after, policy.retry_after_max)
        wait = told + uniform(0, told * RETRY_AFTER_JITTER)
    elif failing_share is not None and failing_share < FAILING_SHARE \
            and not isinstance(failure, (RateLimited, CapacityRefused)):
        wait = uniform(0, policy.backoff_base * QUICK_RETRY)
    else:
        # Each kind of failure backs off on its own count: 429s answered after a server error say
        # nothing about how long that error lasts, nor the other way round.
        exponent = (spent.rate_limited if isinstance(failure, RateLimited)
                    else spent.refused if isinstance(failure, CapacityRefused) else spent.failures)
        wait = uniform(0, min(policy.backoff_max, policy.backoff_base * 2**exponent))
    if isinstance(failure, RateLimited):
        return None if spent.rate_limited_wait + wait >= policy.rate_limit_patience else wait
    if isinstance(failure, CapacityRefused):
        return None if spent.refused_wait + wait >= policy.rate_limit_patience else wait
    return None if spent.failures + 1 >= policy.max_attempts else wait


class Retries:
    """The retries of one request: ask `next_wait` once after each failure."""

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.spent = Spent()
        self._uniform = rng.uniform if rng is not None else random.uniform

    def next_wait(self, failure: RetryableError, failing_share: float | None = None) -> float | None:
        """`next_wait` of what this request has spent; the failure and its wait are counted."""
        wait = next_wait(self.policy, self.spent, failure, self._uniform, failing_share)
        if wait is not None:
            self.spent = self.spent.after(failure, wait)
        return wait
