"""The simulator as providers other than OpenAI's documentation behave: random shedding with a
whole-second Retry-After, quotas that publish no ``x-ratelimit-*`` headers, and the other rules
for charging tokens. Bucket arithmetic on a fake clock, then one loopback test per scenario."""

from __future__ import annotations

from typing import Any, get_args

import click
import orjson
import pytest
from click.testing import CliRunner

import batchrun.simulator
from batchrun.cli import main
from batchrun.simulator import (
    STATS_PATH,
    Faults,
    LimitChange,
    RateLimits,
    SimulatorConfig,
    TokenCharge,
    answer,
)
from batchrun.simulator.faults import rate_limit_reply
from batchrun.simulator.limits import Limiter, charge_of

from ...helpers import SimClock
from ...simlimits import CHAT, admit, chat, limited, ratelimit_headers, usage_of

LONG = "a question long enough that its prompt outweighs a small output cap " * 3


def expected_charge(rule: str, body: dict[str, Any], cap: int) -> int:
    prompt: int = usage_of(body)["prompt_tokens"]
    return {"usage": prompt + cap, "max": max(prompt, cap), "sum": prompt + cap}[rule]


# Charging rules


@pytest.mark.parametrize("rule", ["usage", "max", "sum"])
@pytest.mark.parametrize(("content", "cap"), [("Hi", 500), (LONG, 5)])
def test_charge_at_arrival_follows_the_rule(rule: TokenCharge, content: str, cap: int) -> None:
    body = chat(content, max_tokens=cap)
    raw = orjson.dumps(body)
    reply = answer("POST", CHAT, raw)
    tokens, total = charge_of(reply, raw, rule)
    assert (tokens, total) == (expected_charge(rule, body, cap), reply.payload["usage"]["total_tokens"])
    uncapped = orjson.dumps(chat(content))  # no cap: the answer's total tokens, whatever the rule
    assert charge_of(answer("POST", CHAT, uncapped), uncapped, rule)[0] == usage_of(chat(content))["total_tokens"]


def test_max_rule_is_the_larger_of_prompt_and_cap() -> None:
    small_cap = chat(LONG, max_tokens=5)
    assert usage_of(small_cap)["prompt_tokens"] > 5  # else the case below proves nothing
    assert expected_charge("max", small_cap, 5) == usage_of(small_cap)["prompt_tokens"]
    assert expected_charge("max", chat("Hi", max_tokens=500), 500) == 500


@pytest.mark.parametrize("rule", ["max", "sum"])
def test_non_refunding_rules_keep_the_charge_as_made(rule: TokenCharge) -> None:
    clock = SimClock()
    limiter = Limiter(RateLimits(tpm=10_000, token_charge=rule), clock)
    body = chat("Tell me a story", max_tokens=500)
    delivered = admit(limiter, body)
    assert delivered.tokens == expected_charge(rule, body, 500) != delivered.total  # a correction would show
    assert limiter.settle(delivered, delivered=True) == 0
    failed = admit(limiter, body)  # e.g. a 5xx: under "usage" its whole reservation would come back
    assert limiter.settle(failed, delivered=False) == 0
    assert limiter.tokens is not None and limiter.tokens.level == 10_000 - 2 * delivered.tokens
    lines = dict(line.split(": ") for line in limiter.header_block().decode().splitlines())
    assert lines["x-ratelimit-remaining-tokens"] == str(10_000 - 2 * delivered.tokens)


def test_the_provider_model_survives_limit_changes_and_is_validated() -> None:
    model = RateLimits(60, 1000, headers=False, token_charge="sum")
    assert LimitChange(0, rpm=5).apply(model) == RateLimits(5, 1000, headers=False, token_charge="sum")
    limiter = Limiter(model, SimClock())
    limiter.change(LimitChange(0, rpm=None, tpm=None))
    limiter.change(LimitChange(0, tpm=100))
    assert limiter.limits == RateLimits(None, 100, headers=False, token_charge="sum")
    assert not limiter.header_block()
    with pytest.raises(ValueError, match="token_charge"):
        RateLimits(token_charge="min")  # type: ignore[arg-type]


# Quotas without headers


def test_without_headers_a_refusal_says_whole_seconds_only() -> None:
    clock = SimClock()
    limiter = Limiter(RateLimits(rpm=24, tpm=1_000_000, headers=False), clock)  # a request every 2.5 s
    for _ in range(24):
        assert admit(limiter, chat()).refusal is None
    refusal = admit(limiter, chat()).refusal
    assert refusal is not None and refusal.status == 429
    assert refusal.headers == (("retry-after", "3"),)  # 2.5 s, rounded up; no retry-after-ms
    assert refusal.payload["error"]["message"].endswith("Please try again in 3s.")
    assert refusal.payload["error"]["code"] == "rate_limit_exceeded"
    clock.now += 2.4
    assert admit(limiter, chat()).refusal.headers == (("retry-after", "1"),)  # 100 ms, rounded up
    assert limiter.header_block() == b""

    fast = Limiter(RateLimits(tpm=6_000_000, headers=False), clock)  # 100,000 tokens per second
    assert fast.tokens is not None
    fast.tokens.level = admit(fast, chat()).tokens - 1e-6  # short by a whisker: a 0 ms wait
    assert admit(fast, chat()).refusal.headers == (("retry-after", "1"),)  # never "retry at once"


# Shedding


def test_shedding_can_send_whole_seconds_only_in_the_same_body() -> None:
    precise, whole = rate_limit_reply(1.5), rate_limit_reply(1.5, retry_after_ms=False)
    assert precise.headers == (("retry-after", "2"), ("retry-after-ms", "1500"))
    assert whole.headers == (("retry-after", "2"),)
    assert whole.payload["error"]["message"].endswith("Please try again in 2s.")
    assert {k: v for k, v in whole.payload["error"].items() if k != "message"} == {
        "type": "requests", "param": None, "code": "rate_limit_exceeded"
    }
    assert rate_limit_reply(None, retry_after_ms=False).headers == ()


# Over loopback


async def test_shed_429s_over_http_are_counted_apart_from_quota_refusals() -> None:
    faults = Faults(rate_429=1.0, retry_after_s=1.5, retry_after_ms=False)
    async with limited(RateLimits(rpm=3), SimClock(), faults=faults) as (sim, client):
        responses = [await client.post(CHAT, json=chat()) for _ in range(4)]
        stats = (await client.get(STATS_PATH)).json()
    assert [r.status_code for r in responses] == [429] * 4
    shed, refused = responses[0], responses[3]
    assert (shed.headers["retry-after"], "retry-after-ms" in shed.headers) == ("2", False)
    assert refused.headers["retry-after-ms"] == "20000"  # the quota's refusal keeps its precision
    assert {k: v for k, v in shed.json()["error"].items() if k != "message"} == {
        k: v for k, v in refused.json()["error"].items() if k != "message"
    }
    assert stats["shed"] == 3  # each shed request was still charged its request
    assert stats["rate_limited"] == {"requests": 1, "tokens": 0}
    assert stats["responses"] == {"429": 4}
    assert sim.stats.shed == 3


async def test_quota_without_headers_over_http() -> None:
    async with limited(RateLimits(rpm=3, tpm=10_000, headers=False), SimClock()) as (sim, client):
        responses = [await client.post("/v1/nowhere", json={})]
        responses += [await client.post(CHAT, json=chat()) for _ in range(3)]
    assert [r.status_code for r in responses] == [404, 200, 200, 429]
    assert all(not ratelimit_headers(r) for r in responses)
    refused = responses[3]
    assert (refused.headers["retry-after"], "retry-after-ms" in refused.headers) == ("20", False)
    assert refused.json()["error"]["type"] == "requests"
    assert sim.stats.rate_limited == {"requests": 1, "tokens": 0} and sim.stats.shed == 0


@pytest.mark.parametrize("rule", ["usage", "max", "sum"])
async def test_charge_rule_shows_in_remaining_tokens_over_http(rule: TokenCharge) -> None:
    body = chat("Tell me a story", max_tokens=500)
    kept = usage_of(body)["total_tokens"] if rule == "usage" else expected_charge(rule, body, 500)
    async with limited(RateLimits(tpm=10_000, token_charge=rule), SimClock()) as (sim, client):
        response = await client.post(CHAT, json=body)
    assert response.status_code == 200
    assert ratelimit_headers(response)["x-ratelimit-remaining-tokens"] == str(10_000 - kept)
    assert sim.stats.charged_tokens == kept


# The command line


def test_mock_server_options_model_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimulatorConfig] = []

    def fake_run_forever(config: SimulatorConfig, on_ready: Any = None) -> Any:
        seen.append(config)
        on_ready("http://127.0.0.1:1/v1")
        return batchrun.simulator.SimulatorStats(requests=10, rate_limited={"requests": 2, "tokens": 0}, shed=4)

    monkeypatch.setattr(batchrun.simulator, "run_forever", fake_run_forever)
    runner = CliRunner()
    result = runner.invoke(main, ["mock-server", "--rpm", "600", "--token-charge", "max", "--no-limit-headers",
                                  "--rate-429", "0.1", "--no-retry-after-ms"])
    assert result.exit_code == 0, result.output
    assert seen[0].limits == RateLimits(600, None, headers=False, token_charge="max")
    assert seen[0].faults.retry_after_ms is False and seen[0].faults.retry_after_s == 1.0
    assert "token charge max" in result.output and "no x-ratelimit-* headers" in result.output
    assert "without retry-after-ms" in result.output
    assert "(2 of them rate-limited, 4 shed)" in result.output

    default = runner.invoke(main, ["mock-server"])
    assert seen[1].limits == RateLimits() and seen[1].faults.retry_after_ms is True
    assert "token charge" not in default.output and "x-ratelimit" not in default.output

    assert runner.invoke(main, ["mock-server", "--token-charge", "min"]).exit_code == 2
    help_text = runner.invoke(main, ["mock-server", "--help"]).output
    for flag in ("--no-retry-after-ms", "--no-limit-headers", "--token-charge"):
        assert flag in help_text
    option = next(p for p in main.commands["mock-server"].params if p.name == "token_charge")
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == get_args(TokenCharge)

