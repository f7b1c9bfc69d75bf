"""The simulator's OpenAI-style rate limits: bucket arithmetic on a fake clock, then over loopback."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import anyio
import httpx
import orjson
import pytest
from click.testing import CliRunner

import batchrun.simulator
from batchrun.cli import main
from batchrun.simulator import (
    KEEP,
    LIMITS_PATH,
    STATS_PATH,
    Faults,
    LimitChange,
    RateLimits,
    SimulatorConfig,
    answer,
    format_duration,
    parse_schedule,
    run_in_thread,
)
from batchrun.simulator.limits import Limiter, TokenBucket, charge_of

from ...helpers import SimClock
from ...simlimits import CHAT, admit, chat, limited, ratelimit_headers, usage_of

# Buckets


def test_bucket_starts_full_and_refills_continuously_up_to_capacity() -> None:
    bucket = TokenBucket(600, now=0.0)  # 10 per second
    assert bucket.level == 600
    bucket.take(600)
    assert bucket.refill(0.25) == pytest.approx(2.5)
    assert bucket.wait_s(5, 0.25) == pytest.approx(0.25)
    assert bucket.reset_s() == pytest.approx(59.75)
    bucket.give(10, 0.25)
    assert bucket.level == pytest.approx(12.5)
    assert bucket.remaining() == 12
    assert bucket.refill(3600.0) == 600  # never above capacity
    assert bucket.wait_s(601, 3600.0) == math.inf
    bucket.give(1, 3600.0)
    assert bucket.level == 600


def test_resize_refills_at_the_old_rate_up_to_the_change() -> None:
    bucket = TokenBucket(60, now=0.0)  # 1 per second
    bucket.take(60)
    bucket.resize(6000, 10.0)  # 10 s at the old rate, not at the new one
    assert (bucket.level, bucket.capacity, bucket.rate) == (10, 6000, 100)
    bucket.resize(5, 10.0)
    assert bucket.level == 5


def test_resize_clamps_the_level_and_a_new_limit_starts_full() -> None:
    clock = SimClock()
    limiter = Limiter(RateLimits(rpm=600), clock)
    for _ in range(100):
        admit(limiter, chat())
    assert limiter.requests is not None and limiter.requests.level == 500
    limiter.change(LimitChange(0, rpm=300, tpm=1000))
    assert (limiter.requests.capacity, limiter.requests.level, limiter.requests.rate) == (300, 300, 5)
    assert limiter.tokens is not None and limiter.tokens.level == 1000
    limiter.change(LimitChange(0, rpm=1200))  # raising keeps the level, refilled at the new rate
    clock.now += 1
    limiter.requests.refill(clock.now)
    assert (limiter.requests.level, limiter.limits) == (320, RateLimits(1200, 1000))
    limiter.change(LimitChange(0, rpm=None, tpm=None))
    assert (limiter.limits, limiter.enabled, limiter.header_block()) == (RateLimits(), False, b"")


def test_charge_is_prompt_plus_cap_and_the_unused_reservation_is_refunded() -> None:
    clock = SimClock()
    limiter = Limiter(RateLimits(tpm=10_000), clock)
    body = chat("Tell me a story", max_tokens=500)
    usage = usage_of(body)
    ticket = admit(limiter, body)
    assert ticket.tokens == usage["prompt_tokens"] + 500
    assert ticket.total == usage["total_tokens"] < ticket.tokens
    assert limiter.tokens is not None and limiter.tokens.level == 10_000 - ticket.tokens
    assert limiter.settle(ticket, delivered=True) == 500 - usage["completion_tokens"]
    assert limiter.tokens.level == 10_000 - usage["total_tokens"]

    failed = admit(limiter, body)  # e.g. a 500: the client reads no usage, so nothing stays charged
    assert limiter.settle(failed, delivered=False) == failed.tokens
    assert limiter.tokens.level == 10_000 - usage["total_tokens"]


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (CHAT, chat("Hi"), "total"),  # no cap: the completion it will actually get
        (CHAT, chat("Hi", max_completion_tokens=300, max_tokens=7), "prompt+300"),
        ("/v1/completions", {"model": "m", "prompt": "Hi", "max_tokens": 300}, "prompt+300"),
        ("/v1/responses", {"model": "m", "input": "Hi", "max_output_tokens": 300}, "prompt+300"),
        ("/v1/embeddings", {"model": "m", "input": "Hi", "max_tokens": 300}, "total"),
        (CHAT, {"model": "m"}, 0),  # a 400 has no usage
        ("/v1/nowhere", {}, 0),
    ],
)
def test_charge_of_each_route(path: str, body: dict[str, Any], expected: object) -> None:
    raw = orjson.dumps(body)
    reply = answer("POST", path, raw)
    tokens, total = charge_of(reply, raw)
    if expected == 0:
        assert (tokens, total) == (0, 0)
        return
    usage = reply.payload["usage"]
    assert total == usage["total_tokens"]
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    assert tokens == (total if expected == "total" else prompt + 300)


def test_refusal_when_requests_run_out_charges_nothing_and_says_exactly_when() -> None:
    clock = SimClock()
    limiter = Limiter(RateLimits(rpm=600, tpm=1_000_000), clock)  # a request every 100 ms
    tickets = [admit(limiter, chat()) for _ in range(600)]
    assert all(t.refusal is None for t in tickets)
    tokens_left = limiter.tokens.level if limiter.tokens else None

    ticket = admit(limiter, chat())
    assert ticket.refused == "requests" and ticket.refusal is not None
    refusal = ticket.refusal
    assert refusal.status == 429
    assert dict(refusal.headers) == {"retry-after": "1", "retry-after-ms": "100"}
    error = refusal.payload["error"]
    assert (error["type"], error["param"], error["code"]) == ("requests", None, "rate_limit_exceeded")
    assert "on requests per min (RPM): Limit 600, Used 600, Requested 1. Please try again in 100ms." in error["message"]
    assert limiter.tokens is not None and limiter.tokens.level == tokens_left  # nothing charged

    clock.now += 0.03
    assert dict(admit(limiter, chat()).refusal.headers)["retry-after-ms"] == "70"
    clock.now += 0.07
    assert admit(limiter, chat()).refusal is None


def test_refusal_when_tokens_run_out_waits_for_the_whole_charge() -> None:
    clock = SimClock()
    limiter = Limiter(RateLimits(rpm=1000, tpm=6000), clock)  # 100 tokens per second
    body = chat("x" * 400, max_tokens=2000)
    charge = usage_of(body)["prompt_tokens"] + 2000
    admit(limiter, body)
    admit(limiter, body)
    ticket = admit(limiter, body)
    assert ticket.refused == "tokens"
    assert limiter.tokens is not None
    wait_ms = math.ceil((charge - limiter.tokens.level) / 100 * 1000)
    retry_after = {"retry-after": str(math.ceil(wait_ms / 1000)), "retry-after-ms": str(wait_ms)}
    assert dict(ticket.refusal.headers) == retry_after
    assert f"(TPM): Limit 6000, Used {6000 - int(limiter.tokens.level)}, Requested {charge}." in (
        ticket.refusal.payload["error"]["message"]
    )
    clock.now += wait_ms / 1000
    assert admit(limiter, body).refusal is None


def test_the_longer_wait_names_the_refusal_and_too_large_never_fits() -> None:
    clock = SimClock()
    limiter = Limiter(RateLimits(rpm=60, tpm=600), clock)  # 1 request and 10 tokens per second
    limiter.requests.take(60)  # type: ignore[union-attr]
    limiter.tokens.take(600)  # type: ignore[union-attr]
    ticket = admit(limiter, chat("Hi"))  # needs 1 s for the request, longer for its tokens
    assert ticket.refused == "tokens" and ticket.tokens > 10
    assert int(dict(ticket.refusal.headers)["retry-after-ms"]) == ticket.tokens * 100

    huge = admit(Limiter(RateLimits(tpm=100), clock), chat("Hi", max_tokens=5000))
    assert huge.refused == "tokens" and huge.refusal.headers == ()  # waiting would not help
    assert huge.refusal.payload["error"]["message"].startswith("Request too large for gpt-4o-mini")


def test_header_block_reports_the_level_after_the_charge() -> None:
    clock = SimClock()
    limiter = Limiter(RateLimits(rpm=600, tpm=90_000), clock)
    assert limiter.header_block() == (
        b"x-ratelimit-limit-requests: 600\r\nx-ratelimit-remaining-requests: 600\r\nx-ratelimit-reset-requests: 0s\r\n"
        b"x-ratelimit-limit-tokens: 90000\r\nx-ratelimit-remaining-tokens: 90000\r\nx-ratelimit-reset-tokens: 0s\r\n"
    )
    limiter.tokens.take(45_000.5)  # type: ignore[union-attr]
    limiter.requests.take(1)  # type: ignore[union-attr]
    lines = dict(line.split(": ") for line in limiter.header_block().decode().splitlines())
    assert lines["x-ratelimit-remaining-tokens"] == "44999"  # rounded down
    assert lines["x-ratelimit-reset-tokens"] == "30.001s"  # rounded up
    assert lines["x-ratelimit-reset-requests"] == "100ms"
    assert Limiter(RateLimits(tpm=5), clock).header_block().startswith(b"x-ratelimit-limit-tokens: 5\r\n")
    assert Limiter(RateLimits(), clock).header_block() == b""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-1, "0s"),
        (0.0000001, "1ms"),
        (0.02, "20ms"),
        (0.1 + 0.2, "300ms"),  # 0.30000000000000004 must not round up to 301 ms
        (0.999, "999ms"),
        (0.9991, "1s"),
        (1, "1s"),
        (1.5, "1.5s"),
        (8.64, "8.64s"),
        (59.999, "59.999s"),
        (60, "1m0s"),
        (90.5, "1m30.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.004, "1h2m3.004s"),
        (90000, "25h0m0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_parse_schedule_and_validation() -> None:
    assert parse_schedule("20:rpm=300") == (LimitChange(20, rpm=300),)
    assert parse_schedule(" 45:tpm=none ; 2.5:rpm=10,tpm=400;") == (
        LimitChange(2.5, rpm=10, tpm=400),
        LimitChange(45, rpm=KEEP, tpm=None),
    )
    assert parse_schedule("") == ()
    for bad in ("rpm=300", "20:", "20:rps=3", "20:rpm=0", "20:rpm=1.5", "-1:rpm=3", "x:rpm=3", "1:rpm=2,rpm=3"):
        with pytest.raises(ValueError, match="cannot read limit change"):
            parse_schedule(bad)
    with pytest.raises(ValueError, match="positive integer"):
        RateLimits(rpm=0)
    with pytest.raises(ValueError, match="positive integer"):
        RateLimits(tpm=True)
    assert LimitChange(0, tpm=None).apply(RateLimits(5, 6)) == RateLimits(5, None)


# Over loopback


async def test_headers_on_200_and_429_over_http() -> None:
    clock = SimClock()
    body = chat("Hello there", max_tokens=100)
    usage = usage_of(body)
    async with limited(RateLimits(rpm=2, tpm=10_000), clock) as (sim, client):
        first = await client.post(CHAT, json=body)
        second = await client.post(CHAT, json=body)
        third = await client.post(CHAT, json=body)
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.content == second.content  # still deterministic
    assert ratelimit_headers(first) == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": str(10_000 - usage["total_tokens"]),  # corrected to usage
        "x-ratelimit-reset-tokens": format_duration(usage["total_tokens"] / (10_000 / 60)),
    }
    assert ratelimit_headers(second)["x-ratelimit-remaining-requests"] == "0"
    assert ratelimit_headers(second)["x-ratelimit-reset-requests"] == "1m0s"
    assert ratelimit_headers(third) == ratelimit_headers(second)  # a refusal charges nothing
    assert (third.headers["retry-after"], third.headers["retry-after-ms"]) == ("30", "30000")
    assert third.json()["error"]["type"] == "requests"
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert sim.stats.rate_limited == {"requests": 1, "tokens": 0}
    assert sim.stats.responses == {200: 2, 429: 1}


async def test_every_response_carries_the_headers_and_only_200s_keep_tokens() -> None:
    clock = SimClock()
    faults = Faults(rate_500=1.0, require_api_key="sk-right")
    key = {"Authorization": "Bearer sk-right"}
    async with limited(RateLimits(tpm=1000), clock, faults=faults) as (sim, client):
        wrong_key = await client.post(CHAT, json=chat())
        server_error = await client.post(CHAT, json=chat(), headers=key)
        assert sim.stats.charged_tokens == 0  # the 5xx returned its whole reservation
        stats = (await client.get(STATS_PATH)).json()
    assert wrong_key.status_code == 401 and server_error.status_code >= 500
    for response in (wrong_key, server_error):
        assert ratelimit_headers(response) == {
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "1000",
            "x-ratelimit-reset-tokens": "0s",
        }
    assert stats["charged_requests"] == 1  # the 401 is not charged
    async with limited(RateLimits(rpm=5), clock) as (_, client):
        not_found = await client.post("/v1/nowhere", json={})
        control = await client.get(STATS_PATH)
    assert ratelimit_headers(not_found)["x-ratelimit-remaining-requests"] == "4"
    assert ratelimit_headers(control) == {}


async def test_no_limits_no_headers() -> None:
    async with limited(faults=Faults(rate_429=0.5)) as (sim, client):
        responses = [await client.post(CHAT, json=chat(str(i))) for i in range(6)]
        responses.append(await client.post("/v1/nowhere", json={}))
    assert {r.status_code for r in responses} == {200, 429, 404}
    assert all(not ratelimit_headers(r) for r in responses)
    assert (sim.stats.rate_limited, sim.stats.charged_requests) == ({"requests": 0, "tokens": 0}, 0)


async def test_a_limit_429_is_not_a_fault_and_draws_none() -> None:
    """Every request takes its fault draw, so the n-th request's fate doesn't depend on the limits."""

    async def statuses(limits: RateLimits) -> list[int]:
        async with limited(limits, SimClock(), faults=Faults(rate_500=0.5), seed=3) as (_, client):
            return [(await client.post(CHAT, json=chat())).status_code for _ in range(12)]

    free = await statuses(RateLimits())
    throttled = await statuses(RateLimits(rpm=6))
    assert throttled[:6] == free[:6]
    assert throttled[6:] == [429] * 6  # not one 5xx among the refused


async def test_limits_endpoint_changes_limits_mid_run() -> None:
    clock = SimClock()
    async with limited(None, clock) as (sim, client):
        assert (await client.get(LIMITS_PATH)).json() == {"rpm": None, "tpm": None}
        assert not ratelimit_headers(await client.post(CHAT, json=chat()))

        changed = await client.post(LIMITS_PATH, json={"rpm": 2, "tpm": 40_000})
        assert changed.status_code == 200 and changed.json() == {"rpm": 2, "tpm": 40_000}
        assert ratelimit_headers(changed) == {}
        assert [(await client.post(CHAT, json=chat())).status_code for _ in range(3)] == [200, 200, 429]

        lowered = await client.post(LIMITS_PATH, json={"tpm": 10})  # rpm kept
        assert lowered.json() == {"rpm": 2, "tpm": 10}
        clock.now += 60
        response = await client.post(CHAT, json=chat("a much longer question than ten tokens allow, surely"))
        assert response.status_code == 429 and response.json()["error"]["type"] == "tokens"
        assert ratelimit_headers(response)["x-ratelimit-limit-tokens"] == "10"

        lifted = await client.post(LIMITS_PATH, json={"rpm": None, "tpm": None})
        assert lifted.json() == {"rpm": None, "tpm": None}
        assert not ratelimit_headers(await client.post(CHAT, json=chat()))

        for bad in (b"[]", b"{", b'{"rpm": 0}', b'{"rpm": "3"}', b'{"rps": 3}'):
            rejected = await client.post(LIMITS_PATH, content=bad)
            assert rejected.status_code == 400, bad
        assert (await client.put(LIMITS_PATH, json={})).status_code == 405
    assert sim.stats.requests == 6  # control requests are not counted


async def test_a_scheduled_change_applies_on_time() -> None:
    schedule = (LimitChange(0.3, rpm=1), LimitChange(3600, rpm=None))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with limited(RateLimits(rpm=100), SimClock(), limits_schedule=schedule) as (_, client):
        before = await client.post(CHAT, json=chat())
        with anyio.fail_after(3):
            while (await client.get(LIMITS_PATH)).json()["rpm"] != 1:
                await asyncio.sleep(0.02)
        assert loop.time() - started >= 0.3
        after = [await client.post(CHAT, json=chat()) for _ in range(2)]
    assert ratelimit_headers(before)["x-ratelimit-limit-requests"] == "100"
    assert [r.status_code for r in after] == [200, 429]  # 99 left, clamped to the new capacity of 1
    assert ratelimit_headers(after[0])["x-ratelimit-limit-requests"] == "1"
    assert ratelimit_headers(after[0])["x-ratelimit-reset-requests"] == "1m0s"


async def test_stats_count_refusals_and_net_tokens() -> None:
    clock = SimClock()
    bodies = [chat(f"question {i}", max_tokens=60) for i in range(4)]
    async with limited(RateLimits(rpm=3, tpm=100_000), clock) as (_, client):
        responses = [await client.post(CHAT, json=body) for body in bodies]
        await client.post(LIMITS_PATH, json={"rpm": 100, "tpm": 1})
        refused = await client.post(CHAT, json=bodies[0])
        stats = (await client.get(STATS_PATH)).json()
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert stats["rate_limited"] == {"requests": 1, "tokens": 1}
    assert stats["charged_requests"] == 3
    assert stats["charged_tokens"] == sum(r.json()["usage"]["total_tokens"] for r in responses[:3])
    assert stats["responses"] == {"200": 3, "429": 2}


async def test_a_client_that_leaves_gets_its_reservation_back() -> None:
    clock = SimClock()
    async with limited(RateLimits(tpm=1000), clock, latency_ms=5000) as (sim, _):
        _, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        body = orjson.dumps(chat(max_tokens=200))
        writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (CHAT.encode(), len(body), body))
        await writer.drain()
        while sim.stats.charged_tokens == 0:
            await asyncio.sleep(0.005)
        writer.close()
        await writer.wait_closed()
        while sim.stats.open_connections:
            await asyncio.sleep(0.005)
    assert sim.stats.charged_requests == 1 and sim.stats.charged_tokens == 0
    assert sim.stats.responses == {}


def test_waiting_retry_after_ms_is_enough_on_the_real_clock() -> None:
    """On the runners' loop (uvloop when installed) and its real clock, a client that waits exactly
    retry-after-ms gets in: the buckets must not lag behind time by the loop's clock resolution."""
    with run_in_thread() as sim, httpx.Client(base_url=f"http://127.0.0.1:{sim.port}", timeout=5) as client:
        client.post(LIMITS_PATH, json={"rpm": 1})
        assert client.post(CHAT, json=chat()).status_code == 200
        client.post(LIMITS_PATH, json={"rpm": 1200})  # the empty bucket refills at 20 per second
        refusals = 0
        while refusals < 10:
            refused = client.post(CHAT, json=chat())
            if refused.status_code == 200:
                continue  # this thread was descheduled long enough for the bucket to refill: spend it
            assert refused.status_code == 429
            refusals += 1
            time.sleep(int(refused.headers["retry-after-ms"]) / 1000)
            admitted = client.post(CHAT, json=chat())
            assert admitted.status_code == 200, admitted.headers


# The command line


def test_mock_server_options_build_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimulatorConfig] = []

    def fake_run_forever(config: SimulatorConfig, on_ready: Any = None) -> Any:
        seen.append(config)
        on_ready("http://127.0.0.1:1/v1")
        return batchrun.simulator.SimulatorStats(requests=10, rate_limited={"requests": 2, "tokens": 1})

    monkeypatch.setattr(batchrun.simulator, "run_forever", fake_run_forever)
    runner = CliRunner()
    result = runner.invoke(
        main, ["mock-server", "--rpm", "600", "--tpm", "90000", "--limits-schedule", "20:rpm=300",
               "--limits-schedule", "40:tpm=none"]
    )
    assert result.exit_code == 0, result.output
    assert seen[0].limits == RateLimits(600, 90_000)
    assert seen[0].limits_schedule == (LimitChange(20, rpm=300), LimitChange(40, tpm=None))
    assert "rpm 600, tpm 90,000" in result.output and "3 of them rate-limited" in result.output

    bad = runner.invoke(main, ["mock-server", "--limits-schedule", "soon:rpm=3"])
    assert bad.exit_code == 2 and "cannot read limit change" in bad.output
    assert runner.invoke(main, ["mock-server", "--rpm", "0"]).exit_code == 2
