"""`tiers.py`: which lines go on the flex tier, and how the tier is put in and taken back."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from batchrun.accounting.pricing import Price, PriceTable
from batchrun.records import Job
from batchrun.tiers import STANDARD, Tiering, with_tier

PRICES = PriceTable({"flexy": Price(1.0, 2.0, flex=True), "plain": Price(1.0, 2.0)})


def job(url: str, **body: Any) -> Job:
    return Job(0, 1, "c", url, orjson.dumps(body), body.get("model"))


@pytest.mark.parametrize(("url", "body", "tier"), [
    ("/v1/chat/completions", {"model": "flexy"}, "flex"),
    ("/v1/responses", {"model": "flexy"}, "flex"),
    ("/v1/chat/completions?api-version=1", {"model": "flexy"}, "flex"),
    ("/v1/chat/completions", {"model": "unknown-to-the-table"}, "flex"),  # the provider decides
    ("/v1/chat/completions", {"model": "plain"}, None),  # the table lists it without flex
    ("/v1/embeddings", {"model": "flexy"}, None),
    ("/v1/completions", {"model": "flexy"}, None),
    ("/v1/chat/completions", {"model": "flexy", "service_tier": "priority"}, None),  # its own
])
def test_which_lines_go_on_flex(url: str, body: dict[str, Any], tier: str | None) -> None:
    sent = Tiering("flex", PRICES).shape(job(url, **body))
    assert sent.tier == tier
    assert orjson.loads(sent.body).get("service_tier") == (tier or body.get("service_tier"))


def test_a_model_without_flex_is_counted_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="batchrun")
    tiering = Tiering("flex", PRICES)
    for _ in range(3):
        tiering.shape(job("/v1/chat/completions", model="plain"))
    assert tiering.without == {"plain": 3}
    assert sum("no flex tier for plain" in r.getMessage() for r in caplog.records) == 1


def test_falling_back_names_the_standard_tier() -> None:
    flex = Tiering("flex", PRICES).shape(job("/v1/chat/completions", model="flexy", max_tokens=5))
    standard = with_tier(flex, STANDARD)
    assert orjson.loads(standard.body) == {"model": "flexy", "max_tokens": 5, "service_tier": "default"}
    assert standard.tier == STANDARD and standard.index == flex.index
