"""Which requests the simulator mistreats, and how: seeded fault injection.

:class:`Faults` holds the rates a user asks for; :class:`FaultPlan` turns them, with a seed,
into one reproducible decision per arriving request (a fault, if any, and the delay before
answering). The replies of the HTTP-level faults (401, 429, 5xx) are built here too, so that
``server.py`` only has to carry decisions out. For a given seed and order of arrival, a run
sees the same faults every time.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, fields
from typing import Any

from .answers import Reply, error_payload

__all__ = [
    "MALFORMED_BODY",
    "Fault",
    "FaultPlan",
    "Faults",
    "rate_limit_reply",
    "server_error_reply",
    "unauthorized_reply",
]

MALFORMED_BODY = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{'
"""What a ``malformed`` fault sends with status 200: the start of a JSON document, cut short."""

_SERVER_ERRORS = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    504: "Gateway timeout. The server did not respond in time.",
}


class Fault(enum.Enum):
    """What happens to one request instead of (or on top of) a normal answer."""

    NONE = enum.auto()
    RATE_LIMIT = enum.auto()  # 429 with Retry-After
    SERVER_ERROR = enum.auto()  # 500, 502, 503 or 504
    HANG = enum.auto()  # no answer for `hang_s`, then the connection is closed
    DROP = enum.auto()  # the connection is closed without a response
    TRUNCATE = enum.auto()  # full Content-Length, part of the body, then close
    MALFORMED = enum.auto()  # 200 with a body that is not JSON


@dataclass(frozen=True)
class Faults:
    """Fault rates, each the probability in [0, 1] that an arriving request gets that fault.

    A request gets at most one fault, so the rates must add up to at most 1. ``rate_429`` sheds
    requests at random, whatever the load, as an overloaded provider does; ``/_simulator/stats``
    counts those 429s as ``shed``, apart from the refusals of the rate limits.

    :param retry_after_s: the wait a 429 asks for, sent as ``Retry-After`` (whole seconds,
        rounded up) and ``retry-after-ms``; ``None`` sends neither header.
    :param retry_after_ms: ``False`` leaves ``retry-after-ms`` out, as overloaded gateways and
        most non-OpenAI servers do: a client then only learns the wait to the whole second, and a
        pacing that needs the precise value shows it.
    :param hang_s: how long a ``timeout`` fault holds a request before closing the connection.
    :param require_api_key: when set, any request not sent with ``Authorization: Bearer <key>``
        gets 401 ``invalid_api_key``, whatever the rates say.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    rate_truncate: float = 0.0
    rate_malformed: float = 0.0
    retry_after_s: float | None = 1.0
    retry_after_ms: bool = True
    hang_s: float = 3600.0
    require_api_key: str | None = None

    def __post_init__(self) -> None:
        rates = [getattr(self, f.name) for f in fields(self) if f.name.startswith("rate_")]
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError(f"fault rates must be between 0 and 1, got {rates}")
        if sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must add up to at most 1, got {sum(rates):g}")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")
        if self.hang_s < 0:
            raise ValueError("hang_s must be >= 0")


class FaultPlan:
    """Draws a fault, a 5xx status and a delay for each arriving request from one seeded RNG."""

    def __init__(self, faults: Faults, seed: int, latency_ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        self.faults = faults
        self._rng = random.Random(seed)
        self._latency_s = latency_ms / 1000
        self._jitter_s = jitter_ms / 1000
        # Consecutive slices of [0, 1): one uniform draw picks at most one fault.
        self._slices: list[tuple[float, Fault]] = []
        upper = 0.0
        for rate, fault in (
            (faults.rate_429, Fault.RATE_LIMIT),
            (faults.rate_500, Fault.SERVER_ERROR),
            (faults.rate_timeout, Fault.HANG),
            (faults.rate_drop, Fault.DROP),
            (faults.rate_truncate, Fault.TRUNCATE),
            (faults.rate_malformed, Fault.MALFORMED),
        ):
            if rate > 0:
                upper += rate
                self._slices.append((upper, fault))

    def decide(self) -> tuple[Fault, int, float]:
        """The next request's fate: (fault, 5xx status or 0, seconds to wait before acting)."""
        fault, status = Fault.NONE, 0
        if self._slices:  # with no faults configured, the hot path draws nothing
            draw = self._rng.random()
            for upper, candidate in self._slices:
                if draw < upper:
                    fault = candidate
                    break
            if fault is Fault.SERVER_ERROR:
                status = self._rng.choice(tuple(_SERVER_ERRORS))
        delay = self._latency_s
        if self._jitter_s:
            delay += self._rng.uniform(0.0, self._jitter_s)
        return fault, status, delay


def rate_limit_reply(retry_after_s: float | None, retry_after_ms: bool = True) -> Reply:
    """429 as OpenAI sends it, with its two Retry-After headers unless ``retry_after_s`` is None.

    The body is the one of a quota refusal (``rate_limit_exceeded``, type ``requests``), so a client
    cannot tell shedding from a quota by its shape. With ``retry_after_ms`` false only the whole
    seconds go out, in the header and in the message alike.
    """
    if retry_after_s is None:
        return Reply(429, _shed_payload(""))
    # HTTP's Retry-After takes whole seconds; OpenAI's retry-after-ms carries the precise value.
    seconds = math.ceil(retry_after_s)
    if not retry_after_ms:
        return Reply(429, _shed_payload(f" Please try again in {seconds}s."), (("retry-after", str(seconds)),))
    headers = (("retry-after", str(seconds)), ("retry-after-ms", str(round(retry_after_s * 1000))))
    return Reply(429, _shed_payload(f" Please try again in {retry_after_s:g}s."), headers)


def _shed_payload(wait: str) -> dict[str, Any]:
    return error_payload(f"Rate limit reached for requests (simulated).{wait}", "requests", None, "rate_limit_exceeded")


def server_error_reply(status: int) -> Reply:
    """A 5xx with OpenAI's ``server_error`` body."""
    return Reply(status, error_payload(_SERVER_ERRORS[status], "server_error"))


def unauthorized_reply() -> Reply:
    """401 ``invalid_api_key``. Unlike OpenAI it never quotes the key it received, even masked."""
    message = "Incorrect API key provided. The batchrun simulator expects the key it was started with."
    return Reply(401, error_payload(message, "invalid_request_error", None, "invalid_api_key"))
