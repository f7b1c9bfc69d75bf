"""OpenAI-style rate limits: two token buckets, ``x-ratelimit-*`` headers, and 429s past them.

Off unless :class:`RateLimits` sets ``rpm`` and/or ``tpm``, at start or later (``POST
/_simulator/limits``, or a :class:`LimitChange` schedule). ``server.py`` asks the
:class:`Limiter` about each arriving request *before* the fault draw, so a 429 from a limit is
not a fault; latency still applies to it, as to every answer.

**Buckets.** One per configured limit: *requests* (capacity ``rpm``) and *tokens* (capacity
``tpm``). Each starts full and refills continuously at limit/60 per second, never above its
capacity, as OpenAI's do. ``RateLimits.bucket_s`` shrinks both capacities to that many seconds
of their rate (a 50-per-second quota with a burst of 50: ``rpm=3000, bucket_s=1``), as providers
that enforce a per-second quota do; the headers still give the per-minute limit. Time is the
server loop's clock, CLOCK_MONOTONIC, read with ``time.monotonic()`` for its full resolution
(uvloop's ``loop.time()`` keeps only milliseconds); tests inject a fake. A new limit applies at
once: capacity and refill rate change, and the level is kept but clamped to the new capacity
(so a raised limit refills at its new rate, a lowered one starts full at most); a limit that
did not exist starts full; ``None`` removes a limit.

**Accounting** (batchrun's client mirrors the default, so change both together). Providers
charge tokens differently, and a client's pacing must cope with each; ``RateLimits.token_charge``
picks the rule:

1. *At arrival* a request with the right API key is charged 1 request and T tokens. With P the
   prompt tokens of its answer (usage.prompt_tokens; input_tokens on /v1/responses) and C its
   output cap when it sets one (chat: max_completion_tokens, else max_tokens; completions:
   max_tokens; responses: max_output_tokens)::

       "usage" (the default)   T = P + C
       "max"                   T = max(P, C)     OpenAI's documented rule
       "sum"                   T = P + C

   and in every mode, without a cap, T = P + the completion tokens its answer has
   (completion_tokens / output_tokens), i.e. its total tokens.

   An answer without usage (400, 404, ``GET /v1/models``) is charged 0 tokens; embeddings are
   charged their prompt tokens. A request with a wrong API key gets its 401 and is not charged.
2. If a bucket holds less than the charge, the request is *refused*: 429, nothing charged. A
   token charge above ``tpm`` can never fit: that 429 says "Request too large" and carries no
   Retry-After, as OpenAI's does.
3. *When the answer is sent* (after the latency), under ``"usage"`` only, the token charge is
   corrected to the tokens the client can read from it, and the difference refunded (up to
   capacity): ``usage.total_tokens`` of a 200 with its JSON body intact; 0 for anything else (an
   injected 429 or 5xx, a dropped, hung, truncated or malformed answer, a client gone before its
   answer, a 400/404). So a capped request returns ``cap - completion_tokens`` of its
   reservation. Under ``"max"`` and ``"sum"`` the charge stands as made, whatever becomes of the
   answer: nothing is corrected or refunded. The request charge always stays.

**Headers.** Every response but the ``/_simulator/*`` ones carries, for each configured limit
only, ``x-ratelimit-limit-{requests,tokens}`` (the per-minute limit),
``x-ratelimit-remaining-{requests,tokens}`` (the bucket level as the response is written, this
request's charge and correction included, rounded down) and ``x-ratelimit-reset-{requests,tokens}``
(the time until that bucket is full again, in :func:`format_duration`'s format). A refusal also
carries ``retry-after`` (whole seconds, rounded up, at least 1) and ``retry-after-ms`` (the time
until every bucket holds the charge, in whole milliseconds rounded up), both measured at arrival,
when the decision is made. With ``RateLimits.headers`` false, as from the many providers that
publish nothing of their quotas, no ``x-ratelimit-*`` header goes out and a refusal carries
``retry-after`` alone: a client must pace itself from the 429s and whole seconds.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import orjson

from ..json_numbers import is_int
from .answers import Reply, error_payload

__all__ = [
    "KEEP",
    "LIMITS_PATH",
    "Keep",
    "LimitChange",
    "Limiter",
    "RateLimits",
    "Ticket",
    "TokenBucket",
    "TokenCharge",
    "format_duration",
    "parse_schedule",
]

LIMITS_PATH = "/_simulator/limits"
"""``GET`` it for the current limits as JSON; ``POST`` ``{"rpm": 300, "tpm": null}`` to change
them (a key left out is kept, ``null`` removes that limit). Not limited, delayed or counted."""

_EPSILON = 1e-9  # float dust from refills must not refuse a charge that fits
_ORG = "org-batchrun-simulator"
_HEADER_LINES = b"x-ratelimit-limit-%s: %d\r\nx-ratelimit-remaining-%s: %%d\r\nx-ratelimit-reset-%s: %%s\r\n"
# Output-cap fields by the `object` of the answer, in answers.py's order of precedence.
_CAPS = {
    "chat.completion": ("max_completion_tokens", "max_tokens"),
    "text_completion": ("max_tokens",),
    "response": ("max_output_tokens",),
}


TokenCharge = Literal["usage", "max", "sum"]
"""How the token bucket charges a request (see the module docstring)."""


class Keep(enum.Enum):
    """The type of :data:`KEEP`."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP
"""A :class:`LimitChange` field left as it is (``None`` removes the limit instead)."""


@dataclass(frozen=True)
class RateLimits:
    """Requests and tokens per minute; ``None`` leaves that dimension unlimited (the default).

    :param headers: ``False`` sends no ``x-ratelimit-*`` header, and 429s with ``retry-after``
        alone (no ``retry-after-ms``), as providers that publish nothing of their quotas do.
    :param token_charge: how tokens are charged: ``"usage"`` (reserve at arrival, refund to the
        usage sent), ``"max"`` (OpenAI's documented rule) or ``"sum"``; the module docstring
        has the formulas. Kept by :class:`LimitChange` and ``POST /_simulator/limits``.
    :param bucket_s: each bucket holds this many seconds of its rate (at least one request or
        token); 60, a minute's worth, as OpenAI's. Kept by :class:`LimitChange` too.
    """

    rpm: int | None = None
    tpm: int | None = None
    headers: bool = True
    token_charge: TokenCharge = "usage"
    bucket_s: float = 60.0

    def __post_init__(self) -> None:
        for name, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.token_charge not in get_args(TokenCharge):
            raise ValueError(f"token_charge must be one of {get_args(TokenCharge)}, got {self.token_charge!r}")
        if not 0 < self.bucket_s <= 60:
            raise ValueError(f"bucket_s must be above 0 and at most 60 seconds, got {self.bucket_s!r}")

    @property
    def enabled(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def to_dict(self) -> dict[str, int | None]:
        return {"rpm": self.rpm, "tpm": self.tpm}


@dataclass(frozen=True)
class LimitChange:
    """At ``at_s`` seconds after the simulator starts, set ``rpm`` and/or ``tpm``.

    :param rpm: the new limit, ``None`` to remove it, or :data:`KEEP` (the default) to leave it.
    :param tpm: likewise.
    """

    at_s: float
    rpm: int | Keep | None = KEEP
    tpm: int | Keep | None = KEEP

    def __post_init__(self) -> None:
        if not 0 <= self.at_s < math.inf:
            raise ValueError(f"a limit change needs a time >= 0 s, got {self.at_s!r}")
        self.apply(RateLimits())  # validates the values

    def apply(self, limits: RateLimits) -> RateLimits:
        """``limits`` with this change made (its ``headers``, ``token_charge`` and ``bucket_s`` kept)."""
        rpm = limits.rpm if isinstance(self.rpm, Keep) else self.rpm
        tpm = limits.tpm if isinstance(self.tpm, Keep) else self.tpm
        return dataclasses.replace(limits, rpm=rpm, tpm=tpm)


def parse_schedule(text: str) -> tuple[LimitChange, ...]:
    """Parse ``"20:rpm=300"``, ``"20:rpm=300,tpm=40000; 45:tpm=none"``: changes sorted by time.

    Each ``;``-separated entry is ``SECONDS:KEY=VALUE[,KEY=VALUE]``, KEY ``rpm`` or ``tpm``,
    VALUE a positive integer or ``none``/``off`` (remove the limit).

    :raises ValueError: naming the entry that cannot be read.
    """
    changes = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        when, colon, settings = entry.partition(":")
        values: dict[str, int | None] = {}
        try:
            at_s = float(when)
            for item in settings.split(","):
                key, equals, value = (s.strip() for s in item.partition("="))
                if key not in ("rpm", "tpm") or not equals or key in values:
                    raise ValueError
                values[key] = None if value.lower() in ("none", "off", "null") else int(value)
            if not colon:
                raise ValueError
            changes.append(LimitChange(at_s, values.get("rpm", KEEP), values.get("tpm", KEEP)))
        except ValueError:
            raise ValueError(
                f"cannot read limit change {entry!r}: expected SECONDS:rpm=N,tpm=N (N a positive integer or none)"
            ) from None
    return tuple(sorted(changes, key=lambda change: change.at_s))


def format_duration(seconds: float) -> str:
    """A wait as OpenAI's ``x-ratelimit-reset-*`` headers write it: Go's ``Duration.String()``.

    Resolution is the millisecond, rounded up (so a client waiting that long is never early):
    ``0s``; ``20ms`` under a second; else ``[<h>h][<m>m]<s>[.<fraction>]s`` with the fraction's
    trailing zeros dropped and minutes written once hours are: ``1s``, ``1.5s``, ``6m0s``,
    ``1m30.5s``, ``2h0m0s``, ``1h2m3.004s``.
    """
    ms = _ceil_ms(seconds)
    if ms < 1000:
        return f"{ms}ms" if ms > 0 else "0s"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    whole, fraction = divmod(ms, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0") + "s" if fraction else f"{whole}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _ceil_ms(seconds: float) -> int:
    # The nanosecond of slack keeps float dust (0.1000000001 s) from adding a millisecond.
    return math.ceil(seconds * 1000 - 1e-6)


class TokenBucket:
    """A limit of ``limit`` units per minute: refilled continuously at ``limit / 60`` per second,
    holding at most ``capacity`` (``bucket_s`` seconds of the rate: by default the whole
    minute's ``limit``); starts full.

    :param name: ``b"requests"`` or ``b"tokens"``, for its header lines.
    """

    __slots__ = ("_full", "_lines", "_name", "_seconds", "_stamp", "capacity", "level", "limit", "rate")

    def __init__(self, limit: int, now: float, name: bytes = b"requests", bucket_s: float = 60.0) -> None:
        self._name = name
        self._seconds = bucket_s
        self._stamp = now
        self._set_capacity(limit)
        self.level = self._full

    def refill(self, now: float) -> float:
        """Bring the level up to ``now``; returns it."""
        elapsed = now - self._stamp
        if elapsed > 0:  # a clock that goes back (a test's) refills nothing
            level = self.level + elapsed * self.rate
            self.level = level if level < self._full else self._full
            self._stamp = now
        return self.level

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds from ``now`` until the bucket holds ``amount``: 0 if it does, ``inf`` if it never can."""
        short = amount - self.refill(now)
        if short <= _EPSILON:
            return 0.0
        return math.inf if amount > self._full else short / self.rate

    def take(self, amount: float) -> None:
        """Charge ``amount`` (after :meth:`refill`)."""
        self.level = max(0.0, self.level - amount)

    def give(self, amount: float, now: float) -> None:
        """Refund ``amount``, never above capacity."""
        level = self.refill(now) + amount
        self.level = level if level < self._full else self._full

    def remaining(self) -> int:
        """The level rounded down (after :meth:`refill`), as forgiving of float dust as admission is."""
        return int(self.level + _EPSILON)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again (after :meth:`refill`)."""
        return (self._full - self.level) / self.rate

    def header_lines(self, now: float) -> bytes:
        """``x-ratelimit-{limit,remaining,reset}-<name>`` at ``now``, each line ending in CRLF."""
        level = self.refill(now)
        reset = format_duration((self._full - level) / self.rate).encode()
        return self._lines % (int(level + _EPSILON), reset)

    def resize(self, limit: int, now: float, bucket_s: float = 60.0) -> None:
        """A new limit, at once: the level is kept, clamped to the new capacity."""
        level = self.refill(now)  # at the old rate, up to now
        self._seconds = bucket_s
        self._set_capacity(limit)
        self.level = min(level, self._full)

    def _set_capacity(self, limit: int) -> None:
        self.limit = limit
        self.rate = limit / 60
        # Compared with float levels: an int would cost a conversion each time.
        self._full = float(limit) if self._seconds >= 60 else max(1.0, self.rate * self._seconds)
        self.capacity = math.floor(self._full)
        self._lines = _HEADER_LINES % (self._name, limit, self._name, self._name)


@dataclass(slots=True)  # built per request
class Ticket:
    """The limiter's decision on one arriving request."""

    tokens: int  # the token charge (made if admitted, asked for if refused)
    total: int  # the answer's usage.total_tokens: what the charge becomes if it is delivered
    refused: str | None = None  # "requests" or "tokens": the bucket that was short
    refusal: Reply | None = None  # the 429 to send instead of the answer
    refunds: bool = True  # False: the charge stands as made (token_charge "max" or "sum")


class Limiter:
    """The buckets of one server, with the accounting of the module docstring.

    :param limits: the limits at start; ``RateLimits()`` leaves everything unlimited.
    :param clock: seconds, monotonic: the server passes ``time.monotonic``, tests a fake.
    """

    def __init__(self, limits: RateLimits, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.limits = RateLimits()
        self.requests: TokenBucket | None = None
        self.tokens: TokenBucket | None = None
        self.enabled = False  # read on the hot path: a plain attribute, not a property
        self._headers = True
        self._charge: TokenCharge = "usage"
        self._refunds = True
        self.set(limits)

    def set(self, limits: RateLimits) -> RateLimits:
        """Apply new limits now (see the module docstring); returns them."""
        now = self._clock()
        self.requests = _resized(self.requests, limits.rpm, now, b"requests", limits.bucket_s)
        self.tokens = _resized(self.tokens, limits.tpm, now, b"tokens", limits.bucket_s)
        self.limits = limits
        self.enabled = limits.enabled
        self._headers = limits.headers
        self._charge = limits.token_charge
        self._refunds = limits.token_charge == "usage"
        return limits

    def change(self, change: LimitChange) -> RateLimits:
        return self.set(change.apply(self.limits))

    def admit(self, reply: Reply, body: bytes) -> Ticket:
        """Charge an arriving request whose answer will be ``reply``, or refuse it.

        :param body: the raw request body, for its output cap.
        """
        tokens, total = charge_of(reply, body, self._charge)
        now = self._clock()
        requests, bucket = self.requests, self.tokens
        if (requests is None or requests.refill(now) + _EPSILON >= 1) and (
            bucket is None or bucket.refill(now) + _EPSILON >= tokens
        ):
            if requests is not None:
                requests.take(1)
            if bucket is not None:
                bucket.take(tokens)
            return Ticket(tokens, total) if self._refunds else Ticket(tokens, total, refunds=False)
        wait_requests = 0.0 if requests is None else requests.wait_s(1, now)
        wait_tokens = 0.0 if bucket is None else bucket.wait_s(tokens, now)
        refused = "tokens" if wait_tokens > wait_requests else "requests"
        wait = max(wait_requests, wait_tokens)
        refusal = self._refusal(refused, tokens if refused == "tokens" else 1, wait, reply.payload.get("model"))
        return Ticket(tokens, total, refused, refusal)

    def settle(self, ticket: Ticket, delivered: bool) -> int:
        """Correct an admitted request's token charge as its answer goes out (or never will).

        :param delivered: a 200 whose JSON body (and usage) reaches the client whole.
        :returns: the tokens refunded: always 0 unless the charge was made under ``"usage"``.
        """
        if not ticket.refunds:
            return 0
        refund = ticket.tokens - ticket.total if delivered else ticket.tokens
        bucket = self.tokens
        if refund and bucket is not None:
            bucket.give(refund, self._clock())
        return refund

    def header_block(self) -> bytes:
        """The ``x-ratelimit-*`` header lines of a response written now, each ending in CRLF."""
        if not self._headers:
            return b""
        now = self._clock()
        requests, tokens = self.requests, self.tokens
        if tokens is None:
            return b"" if requests is None else requests.header_lines(now)
        lines = tokens.header_lines(now)
        return lines if requests is None else requests.header_lines(now) + lines

    def handle(self, method: str, body: bytes) -> Reply:
        """The :data:`LIMITS_PATH` endpoint: ``GET`` reads the limits, ``POST`` changes them."""
        if method == "POST":
            try:
                self.change(_change_of(body))
            except ValueError as exc:
                return Reply(400, error_payload(str(exc), "invalid_request_error"))
        elif method != "GET":
            return Reply(405, error_payload(f"{method} is not allowed on {LIMITS_PATH}", "invalid_request_error"))
        return Reply(200, self.limits.to_dict())

    def _refusal(self, kind: str, requested: int, wait: float, model: Any) -> Reply:
        bucket = self.requests if kind == "requests" else self.tokens
        assert bucket is not None
        unit = "RPM" if kind == "requests" else "TPM"
        who = f"{model if isinstance(model, str) else 'default'} in organization {_ORG} on {kind} per min ({unit})"
        if wait == math.inf:
            message = (
                f"Request too large for {who}: Limit {bucket.limit}, Requested {requested}. "
                "The input or output tokens must be reduced in order to run successfully."
            )
            return Reply(429, error_payload(message, kind, None, "rate_limit_exceeded"))
        used = bucket.capacity - bucket.remaining()
        ms = _ceil_ms(wait)
        seconds = max(1, math.ceil(ms / 1000))
        # Without headers the message, too, gives the wait in whole seconds only.
        message = (
            f"Rate limit reached for {who}: Limit {bucket.limit}, Used {used}, Requested {requested}. "
            f"Please try again in {format_duration(wait) if self._headers else f'{seconds}s'}."
        )
        headers: tuple[tuple[str, str], ...] = (("retry-after", str(seconds)),)
        if self._headers:
            headers += (("retry-after-ms", str(ms)),)
        return Reply(429, error_payload(message, kind, None, "rate_limit_exceeded"), headers)


def charge_of(reply: Reply, body: bytes, rule: TokenCharge = "usage") -> tuple[int, int]:
    """(token charge at arrival under ``rule``, the answer's total tokens) of a request answered by ``reply``."""
    usage = reply.payload.get("usage") if reply.status == 200 else None
    if not isinstance(usage, dict):
        return 0, 0
    total: int = usage["total_tokens"]
    caps = _CAPS.get(reply.payload.get("object", ""))
    if caps is None or b"max_" not in body:  # spares the bodies without a cap a second parse
        return total, total
    request = orjson.loads(body)  # answers.py parsed and validated it already
    for name in caps:
        cap = request.get(name)
        if cap is not None:
            prompt: int = usage["prompt_tokens"] if "prompt_tokens" in usage else usage["input_tokens"]
            return (max(prompt, cap) if rule == "max" else prompt + cap), total
    return total, total


def _resized(bucket: TokenBucket | None, limit: int | None, now: float, name: bytes,
             bucket_s: float) -> TokenBucket | None:
    if limit is None:
        return None
    if bucket is None:
        return TokenBucket(limit, now, name, bucket_s)
    bucket.resize(limit, now, bucket_s)
    return bucket


def _change_of(body: bytes) -> LimitChange:
    try:
        values = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the body must be a JSON object such as {\"rpm\": 300, \"tpm\": null}") from None
    if not isinstance(values, dict) or not set(values) <= {"rpm", "tpm"}:
        raise ValueError("the body must be a JSON object with keys among \"rpm\" and \"tpm\"")
    return LimitChange(0.0, values.get("rpm", KEEP), values.get("tpm", KEEP))
