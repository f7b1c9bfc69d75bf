"""What a provider says about its rate limits, read from the ``x-ratelimit-*`` response headers.

OpenAI (and compatible servers) send, per limit kind (``requests``, ``tokens``):
``x-ratelimit-limit-<kind>`` (per minute), ``x-ratelimit-remaining-<kind>`` and
``x-ratelimit-reset-<kind>`` — the time until the budget is full again, as a Go duration
(``6m0s``, ``1s``, ``20ms``, ``1m30.5s``) or plain seconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``1m30.5s``, ``20ms``) or a plain number; ``None`` if unreadable."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if value >= 0 else None
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit as the server reported it: per-minute limit, what is left, seconds to full."""

    limit: float
    remaining: float | None
    reset: float | None


@dataclass(frozen=True, slots=True)
class ServerLimits:
    requests: LimitState | None
    tokens: LimitState | None


def parse_limits(headers: Mapping[str, str]) -> ServerLimits | None:
    """The limits in a response's headers, or ``None`` when it has none."""
    requests = _state(headers, "requests")
    tokens = _state(headers, "tokens")
    if requests is None and tokens is None:
        return None
    return ServerLimits(requests, tokens)


def _state(headers: Mapping[str, str], kind: str) -> LimitState | None:
    limit_name, reset_name, remaining_name = _NAMES[kind]
    limit = _number(headers.get(limit_name))
    if limit is None or limit <= 0:
        return None
    reset_text = headers.get(reset_name)
    reset = parse_duration(reset_text) if reset_text is not None else None
    return LimitState(limit, _number(headers.get(remaining_name)), reset)


# The three headers of each limit kind, named once: every answer is read for them.
_NAMES = {kind: (f"x-ratelimit-limit-{kind}", f"x-ratelimit-reset-{kind}", f"x-ratelimit-remaining-{kind}")
          for kind in ("requests", "tokens")}


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None
