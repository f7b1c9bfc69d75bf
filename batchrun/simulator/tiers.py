"""The simulator's service tiers: a request that asks for ``"service_tier": "flex"`` is answered
more slowly, or refused with ``429 Resource Unavailable`` as OpenAI's flex tier does when it
lacks capacity; every answer to a request that names a tier says which tier processed it
(``service_tier``, as OpenAI echoes it: ``"flex"``, else ``"default"``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from .answers import Reply, error_payload

FLEX = "flex"
STANDARD = "default"
_SALT = 0x5E7  # the refusals' draws are their own: a flex share leaves the faults' sequence as it was


@dataclass(frozen=True)
class FlexTier:
    """How the flex tier behaves.

    :param unavailable: the share of flex requests refused for capacity (429 Resource Unavailable).
    :param latency_ms: added to the latency of every flex request.
    :param retry_after_s: the wait a refusal asks for (``retry-after``); ``None``: none, as OpenAI's.
    """

    unavailable: float = 0.0
    latency_ms: float = 0.0
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.unavailable <= 1.0:
            raise ValueError(f"the flex unavailable share must be in [0, 1], got {self.unavailable}")
        if self.latency_ms < 0:
            raise ValueError("the flex latency must be >= 0")


class FlexPlan:
    """Which flex requests are refused: seeded, one draw per flex request in order of arrival."""

    def __init__(self, tier: FlexTier, seed: int) -> None:
        self.tier = tier
        self._rng = random.Random(seed ^ _SALT)

    def refuse(self) -> bool:
        return self.tier.unavailable > 0 and self._rng.random() < self.tier.unavailable


def requested_tier(body: bytes) -> str | None:
    """The ``service_tier`` a request body names, or ``None`` (read only when the bytes say it may)."""
    if b'"service_tier"' not in body:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    tier = parsed.get("service_tier") if isinstance(parsed, dict) else None
    return tier if isinstance(tier, str) else None


def unavailable_reply(retry_after_s: float | None) -> Reply:
    """OpenAI flex's refusal for capacity: 429 ``Resource Unavailable``."""
    headers = () if retry_after_s is None else (("retry-after", f"{retry_after_s:g}"),)
    return Reply(429, error_payload("Resource Unavailable (simulated): the flex tier has no capacity now.",
                                    "resource_unavailable", None, "resource_unavailable"), headers)


def echoed(payload: dict[str, Any], tier: str) -> dict[str, Any]:
    """An answer's payload saying which tier processed it."""
    return {**payload, "service_tier": FLEX if tier == FLEX else STANDARD}
