"""The provider's quotas on requests and tokens per minute, and where each one stands.

Limits come from ``--rpm``/``--tpm`` and from the ``x-ratelimit-limit-*`` headers (the lower
wins; an announced limit is followed when the provider changes it). The headers' word is the
truth: after every response the bucket holds what ``x-ratelimit-remaining-*`` says is left,
less what is promised to requests scheduled but not yet answered. So a quota that starts full
is used at once, up to what it holds and never beyond, and then at its refill rate; an
estimate's error never outlives the requests in flight.

A request is charged at admission what the provider charges then — its prompt estimate plus
its output cap, the upper bound of the usual rules (OpenAI's larger-of, some servers' sum) —
and nothing is refunded when the answer turns out shorter: a provider that refunds says so in
its next ``remaining`` header. The tokens the provider charged per request are measured from
the drops of ``remaining-tokens`` between answers (what the bucket lost, its refill added
back) over the requests it served meanwhile — the drop of ``remaining-requests`` when that
bucket is not full, else the requests sent from here, when no other process shares the quota.
Every later charge is scaled to that when it is more than the estimate (a large default output
cap, say): up at once, and back down gradually, never below the estimate. Never below it, though
a provider that counts the prompt's tokens rather than the JSON envelope's bytes charges less:
drops show what requests cost in the end, and a provider that reserves the output cap on arrival
and refunds it later holds more while they run. Charged what the drops showed, a token quota
learned from the headers met 2–3 % 429s (`scripts/bench_pacing.py --cases tpm-learned`), and
charged the estimate a prompt-counting provider's quota is still used to 99 % (`--cases
tpm-prompt-charge`): its `remaining` headers already keep the bucket full.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .bucket import TokenBucket
from .headers import LimitState, ServerLimits, parse_limits

REQUESTS, TOKENS = "requests", "tokens"
MAX_SCALE = 4.0
SCALE_MEMORY = 0.5  # per measurement (of a hundred requests): how slowly the charge scale comes down
ESTIMATE_MEMORY = 0.05  # per request: how fast the mean estimate follows
REQUESTS_MEASURED = 100.0  # drops are summed over this many requests: fewer are mostly noise


class Share(Protocol):
    """This process's slice of a quota other processes draw on too (`batchrun.scale.budget`)."""

    def due(self, tokens: float, now: float) -> float:
        """When the slice holds a request charged ``tokens``."""
        ...

    def take(self, tokens: float) -> None: ...

    def give(self, tokens: float) -> None:
        """A request taken was not charged by the server after all."""
        ...

    def answered(self, limits: ServerLimits | None, refused: bool, pending: tuple[float, float]) -> None:
        """What an answer's headers said, for the processes that share the quota; ``pending``:
        the requests and tokens charged here and not answered, after this one."""
        ...


class Quota:
    """:param rpm: / :param tpm: limits the user gave (``None``: only what the server announces).
    :param share: a slice of the quota shared with other processes, which every request needs too.
    """

    def __init__(self, rpm: float | None, tpm: float | None, now: float, share: Share | None = None) -> None:
        self.share = share
        self._given = {REQUESTS: rpm, TOKENS: tpm}
        self.buckets: dict[str, TokenBucket] = {}
        self.announced: dict[str, float] = {}
        self.scale = 1.0  # the provider's charge per request over our estimate, never below 1
        self._pending_requests = self._pending_tokens = 0.0  # charged here, not yet answered
        self._sent = 0.0  # requests sent from here and not refused, ever
        self._truth_seq = 0
        # (time, requests left, tokens left, requests sent from here) at the last fresh answer
        self._last: tuple[float, float | None, float, float] | None = None
        self._served = self._charged = 0.0  # since the last measurement of the charge per request
        self._mean_estimate = 0.0  # of recent requests, what a measured charge per request is compared with
        for kind, limit in self._given.items():
            if limit:
                self.buckets[kind] = TokenBucket(limit, now)

    def charge(self, estimate: int) -> float:
        """The tokens a request estimated at ``estimate`` is charged at admission."""
        return estimate * self.scale

    def due(self, tokens: float, now: float, pace: TokenBucket | None = None) -> float:
        """When a request charged ``tokens`` fits in every bucket (and ``pace``, a request rate
        of the client's own)."""
        at = now
        for kind, bucket in self.buckets.items():
            at = max(at, bucket.due(1.0 if kind == REQUESTS else tokens, now))
        if self.share is not None:
            at = max(at, self.share.due(tokens, now))
        return max(at, pace.due(1.0, now)) if pace is not None else at

    def take(self, tokens: float, now: float, pace: TokenBucket | None = None) -> None:
        """Charge a departing request to every bucket: it is pending until `settle` or `cancel`."""
        for kind, bucket in self.buckets.items():
            bucket.take(1.0 if kind == REQUESTS else tokens, now)
        if pace is not None:
            pace.take(1.0, now)
        if self.share is not None:
            self.share.take(tokens)
        self._pending_requests += 1.0
        self._pending_tokens += tokens
        self._sent += 1.0
        self._mean_estimate += (ESTIMATE_MEMORY if self._mean_estimate else 1.0) * (tokens / self.scale
                                                                                  - self._mean_estimate)

    def cancel(self, tokens: float, *, reached_server: bool, pace: TokenBucket | None = None) -> None:
        """A request taken will not be answered; give its charge back if it was never sent."""
        self._release(tokens)
        if not reached_server:
            self._give(tokens)
            self._sent -= 1.0
            if pace is not None:
                pace.give(1.0)

    def settle(self, seq: int, tokens: float, headers: Mapping[str, str] | None, *, refused: bool,
               now: float) -> bool:
        """Account for an answer; return whether the server says a quota is exhausted.

        :param seq: the request's place in the dispatch order (an older answer's ``remaining``
            is stale by the time a newer one's has been read).
        :param refused: a 429: the provider charged nothing.
        """
        self._release(tokens)
        if refused:
            self._give(tokens)
            self._sent -= 1.0
        limits = parse_limits(headers) if headers is not None else None
        if self.share is not None:
            self.share.answered(limits, refused, (self._pending_requests, self._pending_tokens))
        if limits is None:
            return False
        exhausted = False
        fresh = seq > self._truth_seq
        for kind, state, cost in ((REQUESTS, limits.requests, 1.0), (TOKENS, limits.tokens, tokens)):
            if state is not None:
                self._follow(kind, state, now, fresh)
                short = state.remaining is not None and state.remaining < cost
                exhausted |= short
        if fresh:
            self._truth_seq = seq
            self._calibrate(limits.requests, limits.tokens, now)
        return exhausted

    def _follow(self, kind: str, state: LimitState, now: float, fresh: bool) -> None:
        self.announced[kind] = state.limit
        bucket = follow_limit(self.buckets, kind, self._given[kind], state.limit, now)
        if fresh and state.remaining is not None:
            pending = self._pending_requests if kind == REQUESTS else self._pending_tokens
            bucket.set_level(state.remaining - pending, now)

    def _calibrate(self, requests: LimitState | None, tokens: LimitState | None, now: float) -> None:
        """Tokens the provider charged per request between two answers, against our estimates."""
        if tokens is None or tokens.remaining is None:
            return
        left = requests.remaining if requests is not None else None
        last, self._last = self._last, (now, left, tokens.remaining, self._sent)
        if last is None or self._mean_estimate <= 0:
            return
        elapsed = now - last[0]
        # Away from full, each bucket's level drops by what it charged less what it refilled.
        if max(last[2], tokens.remaining) >= tokens.limit:
            self._served = self._charged = 0.0
            return
        if requests is not None and left is not None and last[1] is not None \
                and max(last[1], left) < requests.limit:
            self._served += last[1] + elapsed * requests.limit / 60 - left
        elif self.share is None:  # the requests bucket tells nothing (full, or absent): count ours
            self._served += self._sent - last[3]
        else:
            self._served = self._charged = 0.0
            return
        self._charged += last[2] + elapsed * tokens.limit / 60 - tokens.remaining
        if self._served < REQUESTS_MEASURED:
            return
        if self._charged > 0:
            measured = (self._charged / self._served) / self._mean_estimate
            # Up at once; down gradually, never below the estimate (module docstring).
            smoothed = SCALE_MEMORY * self.scale + (1 - SCALE_MEMORY) * measured
            self.scale = min(MAX_SCALE, max(1.0, measured, smoothed))
        self._served = self._charged = 0.0

    def _release(self, tokens: float) -> None:
        self._pending_requests -= 1.0
        self._pending_tokens -= tokens

    def _give(self, tokens: float) -> None:
        for kind, bucket in self.buckets.items():
            bucket.give(1.0 if kind == REQUESTS else tokens)
        if self.share is not None:
            self.share.give(tokens)

    def limits(self) -> dict[str, float]:
        """The per-minute limits being paced to now."""
        return {kind: bucket.per_minute for kind, bucket in self.buckets.items()}


def follow_limit(buckets: dict[str, TokenBucket], kind: str, given: float | None, announced: float,
                 now: float) -> TokenBucket:
    """The bucket of ``kind`` once the server announced its limit: the lower of that and the
    user's wins; the server's bucket holds a minute, the user's pace a second."""
    announced_wins = given is None or announced <= given
    limit = announced if announced_wins or given is None else given
    capacity = announced if announced_wins else None
    bucket = buckets.get(kind)
    if bucket is None:
        bucket = buckets[kind] = TokenBucket(limit, now, capacity=capacity)
    elif bucket.per_minute != limit:
        bucket.set_rate(limit, now, capacity)
    return bucket
