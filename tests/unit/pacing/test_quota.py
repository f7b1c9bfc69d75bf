"""Quotas given and announced: burst to what the server says is left, then its refill."""

from __future__ import annotations

from itertools import pairwise

import pytest

from batchrun.pacing.quota import Quota


def depart(quota: Quota, estimate: int, now: float) -> tuple[float, float]:
    """Charge a request as the pacer does when it leaves: at the moment it fits."""
    tokens = quota.charge(estimate)
    at = quota.due(tokens, now)
    quota.take(tokens, at)
    return at, tokens


def announced(rpm: int | None = None, left_requests: float | None = None, tpm: int | None = None,
              left_tokens: float | None = None) -> dict[str, str]:
    headers = {}
    if rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(rpm)
        if left_requests is not None:
            headers["x-ratelimit-remaining-requests"] = str(left_requests)
    if tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(tpm)
        if left_tokens is not None:
            headers["x-ratelimit-remaining-tokens"] = str(left_tokens)
    return headers


def test_a_full_quota_is_used_at_once_up_to_what_is_left_then_at_its_refill() -> None:
    quota = Quota(None, None, now=0.0)
    at, tokens = depart(quota, 10, 0.0)  # nothing known yet: the first request goes
    assert at == 0.0
    quota.settle(1, tokens, announced(600, 599), refused=False, now=0.0)
    departures = [depart(quota, 10, 0.0)[0] for _ in range(620)]
    assert departures[:599] == [0.0] * 599  # the 599 the server said were left, at once
    assert departures[599:] == pytest.approx([0.1 * k for k in range(1, 22)])  # then 10 per second


def test_what_is_left_is_shared_with_the_requests_not_yet_answered() -> None:
    quota = Quota(None, None, now=0.0)
    sent = [depart(quota, 10, 0.0) for _ in range(5)]  # five in flight
    quota.settle(1, sent[0][1], announced(600, 3), refused=False, now=0.0)
    # 3 left at the server, 4 still promised to requests in flight: the next must wait for 2.
    assert depart(quota, 10, 0.0)[0] == pytest.approx(0.2)


def test_an_older_answer_does_not_overrule_a_newer_one() -> None:
    quota = Quota(None, None, now=0.0)
    first, second = depart(quota, 1, 0.0), depart(quota, 1, 0.0)
    quota.settle(2, second[1], announced(60, 0), refused=False, now=0.0)
    quota.settle(1, first[1], announced(60, 50), refused=False, now=0.0)  # stale: read before the other
    assert depart(quota, 1, 0.0)[0] >= 1.0  # 0 left, as the newer answer said


def test_tokens_are_charged_at_admission_and_never_refunded_by_guess() -> None:
    quota = Quota(None, 6000, now=0.0)  # 100 tokens per second, a burst of 100
    departures = []
    for seq in range(1, 11):
        at, tokens = depart(quota, 100, 0.0)
        departures.append(at)
        quota.settle(seq, tokens, None, refused=False, now=at)  # answers used far less: no matter
    assert departures == pytest.approx([float(k) for k in range(10)])


def test_a_refused_request_gives_back_its_charge() -> None:
    quota = Quota(60, None, now=0.0)  # one per second
    _, tokens = depart(quota, 1, 0.0)
    quota.settle(1, tokens, None, refused=True, now=0.0)
    assert depart(quota, 1, 0.0)[0] == 0.0


def test_requests_and_tokens_agree_on_one_departure() -> None:
    quota = Quota(60, 600, now=0.0)  # 1 request and 10 tokens per second
    departures = [depart(quota, 20, 0.0)[0] for _ in range(6)]
    # Tokens bind (2 s each after the burst); the request bucket is charged at those moments,
    # so the requests do not also leave together once tokens allow.
    gaps = [b - a for a, b in pairwise(departures)]
    assert all(gap >= 1.0 - 1e-9 for gap in gaps) and gaps[-1] == pytest.approx(2.0)


def test_given_limits_cap_announced_ones_and_announced_ones_are_followed() -> None:
    quota = Quota(100, None, now=0.0)
    _, tokens = depart(quota, 1, 0.0)
    quota.settle(1, tokens, announced(600, 590, 60000, 59000), refused=False, now=0.0)
    assert quota.limits() == {"requests": 100, "tokens": 60000} and quota.announced["requests"] == 600
    _, tokens = depart(quota, 1, 0.0)
    quota.settle(2, tokens, announced(300, 290, 30000, 29000), refused=False, now=0.0)
    assert quota.limits() == {"requests": 100, "tokens": 30000}  # the provider lowered one: followed


def test_a_429_that_the_headers_explain_is_exhaustion() -> None:
    quota = Quota(None, None, now=0.0)
    _, tokens = depart(quota, 50, 0.0)
    assert quota.settle(1, tokens, announced(600, 0), refused=True, now=0.0)
    _, tokens = depart(quota, 50, 0.0)
    assert not quota.settle(2, tokens, announced(600, 300), refused=True, now=0.0)  # plenty left: not this quota
    _, tokens = depart(quota, 50, 0.0)
    assert quota.settle(3, tokens, announced(600, 300, 6000, 20), refused=True, now=0.0)  # tokens ran out


def test_a_provider_charging_more_than_the_estimate_scales_the_charges_up() -> None:
    quota = Quota(None, None, now=0.0)
    left_requests, left_tokens = 500.0, 50_000.0
    for seq in range(1, 220):
        _, tokens = depart(quota, 100, 0.0)
        left_requests -= 1
        left_tokens -= 300  # the provider charges three times the estimate
        quota.settle(seq, tokens, announced(1000, left_requests, 100_000, left_tokens), refused=False, now=0.0)
    assert 2.5 < quota.scale <= 3.0
    assert quota.scale == pytest.approx(3.0, rel=0.05)  # up at once


def test_a_provider_charging_less_than_the_estimate_is_still_charged_the_estimate() -> None:
    # It counts the prompt's tokens, not the envelope's bytes: a third of the estimate. The drops
    # show what requests cost in the end, not what a provider holding the output cap while they
    # run needs: charged by the drops, a learned token quota met 2-3 % 429s.
    for with_requests in (True, False):  # without remaining-requests, the requests sent from here count
        quota = Quota(None, None, now=0.0)
        left_requests, left_tokens = 500.0, 50_000.0
        for seq in range(1, 1000):
            _, tokens = depart(quota, 100, 0.0)
            left_requests -= 1
            left_tokens -= 30
            headers = announced(1000 if with_requests else None, left_requests, 100_000, left_tokens)
            quota.settle(seq, tokens, headers, refused=False, now=0.0)
            assert quota.scale == 1.0
        assert quota.charge(100) == 100


def test_a_scale_raised_comes_down_gradually_to_the_estimate_and_no_lower() -> None:
    quota = Quota(None, None, now=0.0)
    left_requests, left_tokens = 5_000.0, 500_000.0
    scales = []
    for seq in range(1, 1200):
        _, tokens = depart(quota, 100, 0.0)
        left_requests -= 1
        left_tokens -= 300 if seq <= 200 else 30  # three times the estimate, then a third of it
        quota.settle(seq, tokens, announced(10_000, left_requests, 1_000_000, left_tokens), refused=False, now=0.0)
        scales.append(quota.scale)
    top = len(scales) - 1 - scales[::-1].index(max(scales))  # the last at the top
    assert max(scales) == pytest.approx(3.0, rel=0.05)
    assert all(b <= a for a, b in pairwise(scales[top:]))  # down, a measurement at a time
    assert any(1.0 < scale < 2.5 for scale in scales[top:])  # not at once: a step between
    assert scales[-1] == 1.0
