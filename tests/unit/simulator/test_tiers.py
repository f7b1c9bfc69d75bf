"""The simulator's service tiers over loopback: flex refusals for capacity at their share, flex
latency, and the tier echoed in answers."""

from __future__ import annotations

import time

import httpx
import pytest

from batchrun.simulator import FlexTier, SimulatorConfig, serve

CHAT = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "Hello"}]}
RESPONSES = {"model": "gpt-5-mini", "input": "Hello"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # serve() runs on the asyncio loop it is started in


async def test_flex_requests_are_refused_for_capacity_at_their_share() -> None:
    async with serve(SimulatorConfig(flex=FlexTier(unavailable=0.3), seed=7)) as sim, \
            httpx.AsyncClient(base_url=sim.base_url) as client:
        answers = [await client.post("/chat/completions", json={**CHAT, "service_tier": "flex"}) for _ in range(400)]
        standard = [await client.post("/chat/completions", json=CHAT) for _ in range(50)]
    refused = [a for a in answers if a.status_code == 429]
    assert 0.22 < len(refused) / 400 < 0.38
    assert refused[0].json()["error"]["message"].startswith("Resource Unavailable")
    assert refused[0].json()["error"]["code"] == "resource_unavailable"
    assert all(a.json()["service_tier"] == "flex" for a in answers if a.status_code == 200)
    assert all(a.status_code == 200 for a in standard)
    assert sim.stats.flex_requests == 400 and sim.stats.flex_unavailable == len(refused)
    assert sim.stats.responses[429] == len(refused)


async def test_the_refusals_are_the_same_for_the_same_seed() -> None:
    async def refused(config: SimulatorConfig) -> list[int]:
        async with serve(config) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
            return [(await client.post("/chat/completions", json={**CHAT, "service_tier": "flex"})).status_code
                    for _ in range(40)]

    flex = FlexTier(unavailable=0.5)
    assert await refused(SimulatorConfig(flex=flex, seed=3)) == await refused(SimulatorConfig(flex=flex, seed=3))


async def test_a_request_naming_a_tier_gets_it_echoed_and_flex_is_slower() -> None:
    async with serve(SimulatorConfig(flex=FlexTier(latency_ms=200))) as sim, \
            httpx.AsyncClient(base_url=sim.base_url) as client:
        began = time.monotonic()
        flex = await client.post("/responses", json={**RESPONSES, "service_tier": "flex"})
        slow = time.monotonic() - began
        auto = await client.post("/responses", json={**RESPONSES, "service_tier": "auto"})
        plain = await client.post("/responses", json=RESPONSES)
    assert flex.json()["service_tier"] == "flex" and slow >= 0.19  # a floor: the answer waits its latency
    assert auto.json()["service_tier"] == "default"
    assert "service_tier" not in plain.json()


def test_the_flex_share_must_be_a_share() -> None:
    with pytest.raises(ValueError, match="flex unavailable share"):
        FlexTier(unavailable=1.5)
