"""Seeded fault injection alone: the rates checked, one reproducible fate per request in the
proportions asked, and the replies of the HTTP-level faults."""

from __future__ import annotations

from collections import Counter

import pytest

from batchrun.simulator.faults import Fault, FaultPlan, Faults, rate_limit_reply, server_error_reply, unauthorized_reply


@pytest.mark.parametrize(("options", "message"), [
    ({"rate_429": 1.5}, "between 0 and 1"),
    ({"rate_500": -0.1}, "between 0 and 1"),
    ({"rate_429": 0.6, "rate_drop": 0.5}, "add up to at most 1"),
    ({"retry_after_s": -1.0}, "retry_after_s"),
    ({"hang_s": -1.0}, "hang_s"),
])
def test_impossible_rates_and_waits_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults(**options)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_fates_and_another_seed_others() -> None:
    faults = Faults(rate_429=0.2, rate_500=0.2, rate_drop=0.1)
    first = FaultPlan(faults, seed=7, jitter_ms=10)
    again = FaultPlan(faults, seed=7, jitter_ms=10)
    other = FaultPlan(faults, seed=8, jitter_ms=10)
    a = [first.decide() for _ in range(200)]
    assert a == [again.decide() for _ in range(200)]
    assert a != [other.decide() for _ in range(200)]


def test_each_fault_comes_in_about_its_proportion_and_at_most_one_per_request() -> None:
    plan = FaultPlan(Faults(rate_429=0.1, rate_500=0.2, rate_timeout=0.05, rate_drop=0.05, rate_truncate=0.1,
                            rate_malformed=0.1), seed=1)
    counts = Counter(plan.decide()[0] for _ in range(20_000))
    expected = {Fault.RATE_LIMIT: 0.1, Fault.SERVER_ERROR: 0.2, Fault.HANG: 0.05, Fault.DROP: 0.05,
                Fault.TRUNCATE: 0.1, Fault.MALFORMED: 0.1, Fault.NONE: 0.4}
    assert {fault: round(counts[fault] / 20_000, 2) for fault in expected} == pytest.approx(expected, abs=0.015)


def test_a_server_error_has_a_5xx_status_and_other_fates_none() -> None:
    plan = FaultPlan(Faults(rate_500=0.5), seed=3)
    fates = [plan.decide() for _ in range(400)]
    assert {status for fault, status, _ in fates if fault is Fault.SERVER_ERROR} == {500, 502, 503, 504}
    assert {status for fault, status, _ in fates if fault is Fault.NONE} == {0}


def test_the_delay_is_the_latency_and_a_jitter_within_its_bound() -> None:
    assert FaultPlan(Faults(), seed=0, latency_ms=20).decide() == (Fault.NONE, 0, 0.02)
    delays = [FaultPlan(Faults(), seed=s, latency_ms=20, jitter_ms=10).decide()[2] for s in range(50)]
    assert all(0.02 <= delay <= 0.03 for delay in delays) and len(set(delays)) > 1


def test_a_429_asks_for_its_wait_in_whole_seconds_and_in_milliseconds_or_neither() -> None:
    precise = rate_limit_reply(1.2)
    assert (precise.status, dict(precise.headers)) == (429, {"retry-after": "2", "retry-after-ms": "1200"})
    assert "Please try again in 1.2s." in precise.payload["error"]["message"]
    assert precise.payload["error"]["code"] == "rate_limit_exceeded"
    whole = rate_limit_reply(1.2, retry_after_ms=False)
    assert dict(whole.headers) == {"retry-after": "2"} and "Please try again in 2s." in whole.payload["error"]["message"]
    silent = rate_limit_reply(None)
    assert dict(silent.headers) == {} and "try again" not in silent.payload["error"]["message"]


def test_a_5xx_and_a_401_carry_openais_bodies_and_never_a_key() -> None:
    assert (server_error_reply(503).status, server_error_reply(503).payload["error"]["type"]) == (503, "server_error")
    refused = unauthorized_reply()
    assert (refused.status, refused.payload["error"]["code"]) == (401, "invalid_api_key")
    assert "sk-" not in refused.payload["error"]["message"]
