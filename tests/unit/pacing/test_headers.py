"""Reading the x-ratelimit-* headers."""

from __future__ import annotations

import pytest

from batchrun.pacing.headers import parse_duration, parse_limits


@pytest.mark.parametrize(("text", "seconds"), [
    ("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("1m30.5s", 90.5), ("0s", 0.0), ("2h1m", 7260.0),
    ("1.5s", 1.5), ("250us", 0.00025), ("7", 7.0), ("0.25", 0.25), (".5s", 0.5),
    ("soon", None), ("", None), ("5x", None), ("-3", None), ("1s2", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_limits() -> None:
    limits = parse_limits({
        "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": "2s",
    })
    assert limits is not None and limits.requests is not None and limits.tokens is not None
    assert (limits.requests.limit, limits.requests.remaining, limits.requests.reset) == (500, 499, pytest.approx(0.12))
    assert (limits.tokens.limit, limits.tokens.remaining, limits.tokens.reset) == (30000, 29000, 2.0)
    only_tokens = parse_limits({"x-ratelimit-limit-tokens": "100"})
    assert only_tokens is not None and only_tokens.requests is None and only_tokens.tokens is not None
    assert only_tokens.tokens.remaining is None
    assert parse_limits({}) is None
    assert parse_limits({"x-ratelimit-limit-requests": "many"}) is None
