"""The token bucket's virtual scheduling, on explicit times."""

from __future__ import annotations

import pytest

from batchrun.pacing.bucket import TokenBucket


def schedule(bucket: TokenBucket, cost: float, now: float) -> float:
    at = bucket.due(cost, now)
    bucket.take(cost, at)
    return at


def test_paces_to_the_rate_whatever_the_costs() -> None:
    bucket = TokenBucket(per_minute=600, now=0.0)  # 10 per second, a burst of 10
    assert bucket.capacity == 10
    due = [schedule(bucket, 1, now=0.0) for _ in range(40)]
    assert due[:10] == [0.0] * 10  # the burst
    assert due[10:] == pytest.approx([0.1 * k for k in range(1, 31)])  # then one every 100 ms
    big = TokenBucket(per_minute=60, now=0.0)  # 1 per second, a burst of 1
    assert schedule(big, 5, now=0.0) == 0.0  # above the capacity: goes once the bucket is full ...
    assert schedule(big, 1, now=0.0) == pytest.approx(5.0)  # ... and the next one pays for it


def test_an_announced_bucket_holds_a_minute_and_believes_the_server() -> None:
    bucket = TokenBucket(per_minute=600, now=0.0, capacity=600)
    assert bucket.level == 600
    bucket.set_level(3, now=0.0)  # the server says 3 are left
    assert [schedule(bucket, 1, now=0.0) for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])
    bucket.give(1)  # one of them was refused: the server charged nothing
    assert bucket.level == pytest.approx(1.0)
    assert bucket.level_at(1000.0) == 600  # refills up to its capacity, no further


def test_a_new_rate_keeps_what_is_left_within_the_new_capacity() -> None:
    bucket = TokenBucket(per_minute=60, now=0.0, capacity=60)
    bucket.set_rate(6, now=0.0)
    assert bucket.capacity == 1.0 and bucket.level == 1.0
    bucket.set_rate(600, now=0.0, capacity=600)
    assert bucket.level == 1.0 and bucket.due(11, now=0.0) == pytest.approx(1.0)
