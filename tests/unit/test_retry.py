"""`retry.py`: the status classifier, Retry-After, and the retry policy as a pure function of what
a request's failures have spent (`next_wait`), asked as tenacity's tests ask its strategies: no
request, no sleep."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from batchrun.config import RetryPolicy
from batchrun.errors import (
    CapacityRefused,
    FatalEndpointError,
    HTTPStatusError,
    RateLimited,
    RetryableError,
    ServerError,
    TransportError,
)
from batchrun.retry import Retries, Spent, capacity_refused, next_wait, parse_retry_after, status_error


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "0.25"}, 0.25),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after-ms": "junk", "retry-after": "3"}, 3.0),
    ({"retry-after": "soon"}, None),
    ({"retry-after": "-4"}, None),
    ({}, None),
])
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(datetime(2026, 11, 26, 12, 0, 30, tzinfo=timezone.utc), usegmt=True)
    assert parse_retry_after({"retry-after": later}, now=now.timestamp()) == pytest.approx(30.0)
    earlier = format_datetime(datetime(2026, 11, 26, 11, 0, 0, tzinfo=timezone.utc), usegmt=True)
    assert parse_retry_after({"retry-after": earlier}, now=now.timestamp()) == 0.0


POLICY = RetryPolicy(max_attempts=4, backoff_base=1.0, backoff_max=8.0, rate_limit_patience=10.0,
                     retry_after_max=20.0)
SERVER = ServerError("http_500", "boom")
LIMITED = RateLimited("rate_limit_exceeded", "slow down")


def top(low: float, high: float) -> float:
    """A jitter draw at the top of its range: the wait is the cap itself."""
    return high


@pytest.mark.parametrize(("spent", "cap"), [
    (Spent(failures=0), 1.0), (Spent(failures=1), 2.0), (Spent(failures=2), 4.0),
    (Spent(failures=3, rate_limited=9), 8.0),  # capped at backoff_max; the 429s do not count
])
def test_a_failures_backoff_cap_doubles_with_the_earlier_failures_of_its_kind(spent: Spent, cap: float) -> None:
    policy = RetryPolicy(max_attempts=10, backoff_base=1.0, backoff_max=8.0)
    assert next_wait(policy, spent, SERVER, top) == cap


@pytest.mark.parametrize(("spent", "cap"), [
    (Spent(), 1.0), (Spent(rate_limited=1, rate_limited_wait=1.0), 2.0),
    (Spent(rate_limited=2, rate_limited_wait=1.0), 4.0),
    (Spent(failures=3, rate_limited=0), 1.0),  # the server errors before do not count
])
def test_a_429s_backoff_cap_doubles_with_the_earlier_429s(spent: Spent, cap: float) -> None:
    assert next_wait(POLICY, spent, LIMITED, top) == cap


def test_429s_and_other_failures_back_off_on_separate_counts() -> None:
    """Merge the two counts (one exponent for both kinds) and this fails."""
    after_429s = Spent(rate_limited=5, rate_limited_wait=2.0)
    assert next_wait(POLICY, after_429s, SERVER, top) == 1.0  # the first server error: the first cap
    after_errors = Spent(failures=3)
    assert next_wait(RetryPolicy(max_attempts=10), after_errors, LIMITED, top) == 1.0
    retries = Retries(POLICY, random.Random(4))
    for _ in range(5):
        assert retries.next_wait(LIMITED) is not None
    assert retries.spent.rate_limited == 5 and retries.spent.failures == 0
    assert retries.next_wait(SERVER) is not None and retries.spent.failures == 1


def test_the_backoff_is_full_jitter_below_the_cap() -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return (low + high) / 2

    assert next_wait(POLICY, Spent(failures=2), SERVER, uniform) == 2.0
    assert draws == [(0, 4.0)]
    rng = random.Random(1)
    waits = [next_wait(POLICY, Spent(failures=1), SERVER, rng.uniform) for _ in range(200)]
    assert all(w is not None and 0 <= w <= 2.0 for w in waits)
    assert max(w or 0 for w in waits) > 1.8 and min(w or 9 for w in waits) < 0.2  # spread over the whole range


def test_retry_after_is_honoured_with_a_little_jitter_and_capped() -> None:
    told = RateLimited("rate_limit_exceeded", "slow", retry_after=5.0)
    assert next_wait(POLICY, Spent(), told, lambda low, high: low) == 5.0
    assert next_wait(POLICY, Spent(), told, top) == 5.5  # 10% at most
    assert next_wait(POLICY, Spent(failures=3), ServerError("c", "m", retry_after=999.0), lambda low, high: low) is None
    assert next_wait(POLICY, Spent(failures=2), ServerError("c", "m", retry_after=999.0), top) == 22.0
    assert next_wait(RetryPolicy(rate_limit_patience=900.0, retry_after_max=20.0), Spent(),
                     RateLimited("c", "m", retry_after=999.0), lambda low, high: low) == 20.0


@pytest.mark.parametrize("failure", [SERVER, TransportError("connection_error", "reset")])
def test_while_the_endpoint_answers_most_requests_a_failure_is_retried_soon(failure: RetryableError) -> None:
    """However often the line failed before: its failures are its bad luck, not an outage."""
    policy = RetryPolicy(max_attempts=12, backoff_base=1.0, backoff_max=8.0)
    for failures in range(11):
        assert next_wait(policy, Spent(failures=failures), failure, top, failing_share=0.3) == 0.5
        assert next_wait(policy, Spent(failures=failures), failure, top, failing_share=0.49) == 0.5
    assert next_wait(policy, Spent(failures=11), failure, top, failing_share=0.0) is None  # still 12 attempts
    assert next_wait(RetryPolicy(backoff_base=0.2, backoff_max=8.0), Spent(failures=4), failure, top,
                     failing_share=0.1) == pytest.approx(0.1)  # a share of the backoff's base


@pytest.mark.parametrize("share", [0.5, 0.9, 1.0, None])
def test_while_failures_are_general_or_unknown_the_backoff_is_exponential(share: float | None) -> None:
    policy = RetryPolicy(max_attempts=12, backoff_base=1.0, backoff_max=8.0)
    caps = [next_wait(policy, Spent(failures=n), SERVER, top, failing_share=share) for n in range(5)]
    assert caps == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_the_endpoints_share_changes_neither_429s_nor_a_servers_retry_after() -> None:
    told = RateLimited("rate_limit_exceeded", "slow", retry_after=1.0)
    assert next_wait(POLICY, Spent(), told, top, failing_share=0.0) == 1.1
    assert next_wait(POLICY, Spent(rate_limited=2), LIMITED, top, failing_share=0.0) == 4.0
    refused = CapacityRefused("resource_unavailable", "Resource Unavailable")
    assert next_wait(POLICY, Spent(refused=2), refused, top, failing_share=0.0) == 4.0
    assert next_wait(POLICY, Spent(failures=1), ServerError("c", "m", retry_after=3.0), top, failing_share=0.0) == 3.3


def test_retries_pass_the_share_to_the_policy() -> None:
    retries = Retries(RetryPolicy(max_attempts=12, backoff_base=1.0, backoff_max=8.0), random.Random(5))
    waits = [retries.next_wait(SERVER, 0.2) for _ in range(6)]
    assert all(w is not None and w <= 0.5 for w in waits) and retries.spent.failures == 6
    assert [retries.next_wait(SERVER, 1.0) for _ in range(5)] != [None] * 5  # the count went on
    assert retries.spent.failures == 11 and retries.next_wait(SERVER, 0.2) is None


def test_other_failures_give_up_at_max_attempts() -> None:
    # max_attempts=4: the failures of attempts 1-3 are retried, the 4th is final.
    assert [next_wait(POLICY, Spent(failures=n), SERVER, top) is None for n in range(4)] == [False, False, False, True]
    assert next_wait(POLICY, Spent(failures=3, rate_limited=50), LIMITED, top) is not None  # 429s use no attempt


def test_429s_give_up_when_the_wait_would_spend_the_patience() -> None:
    told = RateLimited("rate_limit_exceeded", "slow", retry_after=1.0)
    low = lambda low, high: low  # noqa: E731 -- the draw without jitter
    assert next_wait(POLICY, Spent(rate_limited=8, rate_limited_wait=8.5), told, low) == 1.0  # 9.5 s < 10 s
    assert next_wait(POLICY, Spent(rate_limited=9, rate_limited_wait=9.0), told, low) is None  # 10 s: spent
    assert next_wait(POLICY, Spent(failures=0, rate_limited_wait=9.0), SERVER, top) is not None  # not a 429


def test_spent_counts_each_failure_in_its_own_kind() -> None:
    spent = Spent().after(LIMITED, 1.5).after(SERVER, 3.0).after(LIMITED, 0.5)
    assert spent == Spent(failures=1, rate_limited=2, rate_limited_wait=2.0)


def test_retries_ask_the_policy_once_per_failure() -> None:
    retries = Retries(RetryPolicy(max_attempts=3, rate_limit_patience=10.0), random.Random(3))
    limited = RateLimited("rate_limit", "slow", retry_after=1.0)
    waits = [retries.next_wait(limited) for _ in range(8)]
    assert all(w is not None and 1.0 <= w <= 1.1 for w in waits)  # 8 × ~1 s < 10 s
    assert retries.next_wait(SERVER) is not None and retries.next_wait(SERVER) is not None
    assert retries.next_wait(SERVER) is None  # the third non-429 failure
    spent = retries.spent
    assert retries.next_wait(SERVER) is None and retries.spent == spent  # a final answer counts nothing
    while retries.next_wait(limited) is not None:
        pass
    assert 9.0 <= retries.spent.rate_limited_wait < 10.0  # the patience, less the wait not taken


@pytest.mark.parametrize(("status", "headers", "code", "kind"), [
    (429, {}, "rate_limit_exceeded", RateLimited),
    (503, {}, "http_503", ServerError),
    (408, {}, "http_408", ServerError),
    (501, {}, "http_501", HTTPStatusError),
    (400, {}, "bad_param", HTTPStatusError),
    (400, {"x-should-retry": "true"}, "bad_param", ServerError),
    (503, {"x-should-retry": "False"}, "http_503", HTTPStatusError),
    (429, {}, "insufficient_quota", FatalEndpointError),
    (302, {}, "http_302", HTTPStatusError),
])
def test_one_classifier_for_every_error_status(status: int, headers: dict[str, str], code: str, kind: type) -> None:
    error = status_error(status, headers, code, "the message", location="https://elsewhere.example/", status_code=status)
    assert type(error) is kind


def test_the_classifier_keeps_what_the_server_said() -> None:
    error = status_error(429, {"retry-after": "7"}, "rate_limit_exceeded", "slow down", status_code=429, request_id="r1")
    assert isinstance(error, RateLimited) and error.retry_after == 7.0
    assert (error.code, error.message, error.status_code, error.request_id) == ("rate_limit_exceeded", "slow down", 429, "r1")
    moved = status_error(301, {}, "http_301", "", location="https://other.example/v1")
    assert "https://other.example/v1" in str(moved) and "not followed" in str(moved)


# -- refusals for capacity: shedding, not a quota ------------------------------------------------

@pytest.mark.parametrize(("status", "code", "message"), [
    (429, "resource_unavailable", "Resource Unavailable"),  # the simulator's, after OpenAI flex's
    (429, "http_429", "Resource Unavailable"),  # OpenAI's wording alone, no code
    (429, "capacity_exceeded", "Over capacity"),
    (498, "capacity_exceeded", "Flex tier capacity exceeded"),  # Groq's flex
    (529, "overloaded_error", "Overloaded"),  # Anthropic-style
])
def test_a_refusal_for_capacity_is_shedding(status: int, code: str, message: str) -> None:
    error = status_error(status, {}, code, message, status_code=status)
    assert type(error) is CapacityRefused
    assert capacity_refused(status, code, message)


@pytest.mark.parametrize(("status", "code", "message", "kind"), [
    (429, "rate_limit_exceeded", "Rate limit reached for requests", RateLimited),
    (503, "http_503", "The engine is currently overloaded", ServerError),
    (400, "invalid_request_error", "Resource Unavailable", HTTPStatusError),  # only a 429 says it so
])
def test_other_refusals_are_not_shedding(status: int, code: str, message: str, kind: type) -> None:
    assert type(status_error(status, {}, code, message, status_code=status)) is kind


def test_a_refusal_for_capacity_the_server_says_not_to_retry_is_final() -> None:
    error = status_error(429, {"x-should-retry": "false"}, "resource_unavailable", "Resource Unavailable")
    assert type(error) is HTTPStatusError


REFUSED = CapacityRefused("resource_unavailable", "Resource Unavailable")


def test_capacity_refusals_do_not_draw_on_the_quota_patience_nor_the_attempts() -> None:
    spent = Spent(failures=POLICY.max_attempts - 1, rate_limited=9, rate_limited_wait=POLICY.rate_limit_patience - 0.1)
    assert next_wait(POLICY, spent, LIMITED, top) is None  # the quota's patience is spent
    assert next_wait(POLICY, spent, SERVER, top) is None  # and the attempts
    assert next_wait(POLICY, spent, REFUSED, top) == 1.0  # capacity still gets its first backoff


def test_capacity_refusals_back_off_on_their_own_count_within_their_own_budget() -> None:
    assert next_wait(POLICY, Spent(refused=2, refused_wait=3.0), REFUSED, top) == 4.0
    assert next_wait(POLICY, Spent(failures=3, rate_limited=3), REFUSED, top) == 1.0
    assert next_wait(POLICY, Spent(refused=5, refused_wait=POLICY.rate_limit_patience - 1.0), REFUSED, top) is None
    after = Spent().after(REFUSED, 2.5)
    assert after == Spent(refused=1, refused_wait=2.5)
