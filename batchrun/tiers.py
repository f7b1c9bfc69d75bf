"""The service tier a line is sent at online (``--tier flex``), and the fall back to the standard
tier (``--tier-fallback``).

OpenAI's flex tier answers Chat Completions and Responses requests that say
``"service_tier": "flex"`` at the Batch API's prices, more slowly, and with ``429 Resource
Unavailable`` when it lacks capacity; it is not offered for embeddings, completions or
moderations, nor for every model. So a line gets the tier only when it goes to one of
`TIER_PATHS`, does not name a tier itself, and its model is not one the price table knows
without flex (a model the table does not know is sent as asked: the provider decides). Lines
of a model without flex are sent at the standard tier, with one warning per model, rather than
refused: the rest of the file still gets flex.

Only the online route shapes lines (`engine.pool`): a Batch API upload never carries a tier.
"""

from __future__ import annotations

import dataclasses
import logging

import orjson

from .accounting.pricing import FLEX, PriceTable
from .records import Job

STANDARD = "default"  # what OpenAI calls its standard tier, in requests and in the answers' echo
TIERS = (FLEX,)
__all__ = ["FALLBACK_REFUSALS", "FLEX", "FLEX_TIMEOUT", "STANDARD", "TIERS", "Tiering", "tiered_path", "with_tier"]
TIER_PATHS = ("/chat/completions", "/responses")
# OpenAI's advice for flex, whose answers are slower: a 15-minute timeout (the SDK's is 10).
FLEX_TIMEOUT = 900.0
# Refusals for capacity after which a line is sent at the standard tier (with --tier-fallback):
# at a random 30% refusal rate three in a row happen to one line in 37, so a flex tier that is
# merely busy keeps nearly every line, while one out of capacity for minutes moves them on
# after three backoffs (about 7 s with the default 1 s base) instead of the fallback's deadline.
FALLBACK_REFUSALS = 3

log = logging.getLogger("batchrun")


class Tiering:
    """Puts lines on ``tier`` as the module docstring says; warns once per model that has none."""

    def __init__(self, tier: str, prices: PriceTable) -> None:
        self.tier = tier
        self._prices = prices
        self.without: dict[str, int] = {}  # lines sent at the standard tier, by model without the tier

    def shape(self, job: Job) -> Job:
        """``job`` as it is sent: with the tier, or as it was."""
        if not tiered_path(job.url) or _names_tier(job.body):
            return job
        if self._prices.offers_flex(job.model) is False:
            model = str(job.model)
            if model not in self.without:
                log.warning("--tier %s: the price table lists no %s tier for %s; its lines are sent at the "
                            "standard tier", self.tier, self.tier, model)
            self.without[model] = self.without.get(model, 0) + 1
            return job
        return with_tier(job, self.tier)


def tiered_path(url: str) -> bool:
    """Whether an endpoint path takes a service tier (chat completions and Responses)."""
    return url.partition("?")[0].endswith(TIER_PATHS)


def with_tier(job: Job, tier: str) -> Job:
    """``job`` with ``service_tier`` set to ``tier`` (its `Job.tier` too)."""
    body = orjson.loads(job.body)
    body["service_tier"] = tier
    return dataclasses.replace(job, body=orjson.dumps(body), tier=tier)


def _names_tier(body: bytes) -> bool:
    """Whether the line sets ``service_tier`` itself (it is then sent as it is)."""
    if b'"service_tier"' not in body:
        return False
    parsed = orjson.loads(body)
    return isinstance(parsed, dict) and "service_tier" in parsed
