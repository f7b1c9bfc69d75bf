"""Shedding or a quota, told apart by whether the 429s follow the sending rate — on fake time.

A client that would send ``rate`` requests per second meets a server model; answers come back
at once, and the client keeps to whatever pace `Acceptance` sets.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import pairwise

from batchrun.pacing.acceptance import FREE, QUOTA, Acceptance
from batchrun.pacing.bucket import TokenBucket

Server = Callable[[float], bool]  # refused at time t?
Log = list[tuple[float, bool]]


def drive(acceptance: Acceptance, server: Server, *, rate: float, until: float, start: float = 0.0) -> Log:
    log: Log = []
    t = start
    while t < until:
        pace = acceptance.pace
        if pace is not None:
            t = pace.due(1, t)
            pace.take(1, t)
        refused = server(t)
        acceptance.record(refused, t, t)
        log.append((t, refused))
        t += 1 / rate
    return log


def shedding(share: float, seed: int = 7) -> Server:
    rng = random.Random(seed)
    return lambda t: rng.random() < share


def quota(per_second: float, *, burst: float | None = None, lifted_at: float = float("inf")) -> Server:
    """A quota's bucket, full at the start: ``burst`` (default: a minute's worth), refilled at ``per_second``."""
    bucket = TokenBucket(per_second * 60, 0.0, capacity=burst or per_second * 60)

    def server(t: float) -> bool:
        if t >= lifted_at:
            return False
        if bucket.level_at(t) < 1:
            return True
        bucket.take(1, t)
        return False

    return server


def window(log: Log, start: float, end: float) -> tuple[int, int]:
    """Requests sent and refused between ``start`` and ``end``."""
    inside = [refused for t, refused in log if start <= t < end]
    return len(inside), sum(inside)


def test_shedding_a_minority_of_requests_is_never_paced() -> None:
    for share in (0.1, 0.3):
        acceptance = Acceptance(0.0)
        log = drive(acceptance, shedding(share), rate=500, until=30)
        assert acceptance.state == FREE and acceptance.pace is None
        sent, _ = window(log, 0, 30)
        assert sent >= 0.99 * 500 * 30  # full speed from the start: no test, no slowdown


def test_a_quota_without_headers_is_found_and_kept_to() -> None:
    acceptance = Acceptance(0.0)
    log = drive(acceptance, quota(10), rate=500, until=180)  # 600 at once, then 10 per second
    assert acceptance.state == QUOTA
    sent, refused = window(log, 30, 180)
    accepted = sent - refused
    assert accepted >= 0.9 * 10 * 150  # at least 90% of the quota
    assert refused <= 0.03 * sent  # at most 3% refused


def test_a_quota_is_measured_between_its_429s_and_kept_to_without_probing_into_it() -> None:
    # Between two 429s the quota's bucket was empty at both ends: what it admitted in between is
    # its refill. Paced just below that, a run is refused only when it probes above it.
    for burst in (50, 3000):  # a per-second quota with a burst of a second, and one of a minute
        acceptance = Acceptance(0.0)
        log = drive(acceptance, quota(50, burst=burst), rate=500, until=120)
        assert acceptance.state == QUOTA
        assert acceptance.measured is not None and abs(acceptance.measured - 50) < 1
        sent, refused = window(log, 10, 120)
        assert sent - refused >= 0.98 * 50 * 110
        assert refused <= 0.005 * sent  # a fiftieth a period above the quota's rate: about 1%


def test_probes_above_a_quota_back_off_as_its_429s_recur() -> None:
    acceptance = Acceptance(0.0)
    log = drive(acceptance, quota(50, burst=50), rate=500, until=240)
    starts: list[float] = []  # when each burst of 429s after the opening began
    for t, refused in log:
        if refused and t > 10 and (not starts or t - starts[-1] > 2):
            starts.append(t)
    gaps = [b - a for a, b in pairwise(starts)]
    assert len(gaps) >= 4
    assert all(later > earlier - 1 for earlier, later in pairwise(gaps))  # each probe waits longer ...
    assert gaps[2] > 3 * gaps[0] and min(gaps[2:]) > 30  # ... twice as long, up to half a minute


def test_shedding_on_top_of_a_quota_is_neither_ignored_nor_chased() -> None:
    rng = random.Random(3)
    limit = quota(10)
    acceptance = Acceptance(0.0)
    log = drive(acceptance, lambda t: rng.random() < 0.1 or limit(t), rate=500, until=240)
    sent, refused = window(log, 60, 240)
    assert sent - refused >= 0.8 * 10 * 180  # not chased down: the quota is used
    assert refused <= 0.3 * sent  # not ignored: unpaced, nearly all would be refused


def test_pacing_ends_soon_after_the_quota_is_lifted() -> None:
    acceptance = Acceptance(0.0)
    log = drive(acceptance, quota(10, lifted_at=120), rate=500, until=240)
    assert acceptance.state == FREE
    sent, _ = window(log, 200, 240)
    assert sent >= 0.99 * 500 * 40


def test_a_server_shedding_most_requests_at_random_is_not_slowed_down() -> None:
    acceptance = Acceptance(0.0)
    log = drive(acceptance, shedding(0.8), rate=500, until=60)
    assert acceptance.state == FREE and abs(acceptance.noise - 0.8) < 0.06
    sent, _ = window(log, 20, 60)
    assert sent >= 0.99 * 500 * 40  # slowing down would not make it refuse less
