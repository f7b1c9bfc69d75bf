"""A run's first burst into a quota's full bucket, on fake time: its 429s are the burst's tail.

`run` models what matters here and `test_acceptance.drive` leaves out: requests in flight that
answer after a latency, each answer freeing a slot that sends the next line at once, and 429s
retried after their ``Retry-After``.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections import deque
from dataclasses import dataclass

import pytest

from batchrun.pacing import acceptance as acceptance_module
from batchrun.pacing.acceptance import TESTING, Acceptance
from batchrun.pacing.first_burst import FirstBurst

from .test_acceptance import Server, quota, shedding


@dataclass
class Outcome:
    requests: int
    refused: int
    finished: float  # when the last line was answered
    early_refused: int  # refusals, in the first second, of requests sent after the burst's tail came back


def run(acceptance: Acceptance, server: Server, *, lines: int, concurrency: int = 64, latency: float = 0.05,
        spacing: float = 0.0005, retry_after: float = 1.0) -> Outcome:
    """Send ``lines`` with ``concurrency`` in flight, one every ``spacing`` seconds at most, each
    answered ``latency`` after it left; a 429's line is sent again ``retry_after`` later."""
    t, free, fresh = 0.0, concurrency, lines
    answers: list[tuple[float, float, bool]] = []  # (when answered, when sent, refused)
    retries: deque[float] = deque()  # when each refused line may go again, in order
    requests = refused = early = done = 0
    tail_seen: float | None = None
    while done < lines:
        while answers and answers[0][0] <= t:
            at, sent, no = heapq.heappop(answers)
            acceptance.record(no, sent, at)
            free += 1
            if no:
                refused += 1
                early += tail_seen is not None and tail_seen < sent < 1.0
                if tail_seen is None and sent < 0.1:
                    tail_seen = at
                retries.append(at + retry_after)
            else:
                done += 1
        if done == lines:
            break
        ready = fresh > 0 or (retries and retries[0] <= t)
        pace = acceptance.pace
        due = pace.due(1, t) if pace is not None else t
        if free and ready and due <= t:
            if pace is not None:
                pace.take(1, t)
            if retries and retries[0] <= t:
                retries.popleft()
            else:
                fresh -= 1
            free -= 1
            requests += 1
            heapq.heappush(answers, (t + latency, t, server(t)))
            t += spacing
            continue
        waits = [answers[0][0]] if answers else []
        if free and ready:
            waits.append(due)
        elif free and retries:
            waits.append(retries[0])
        t = max(t, min(waits))
    return Outcome(requests, refused, t, early)


def test_the_first_burst_into_a_full_bucket_is_paced_at_once() -> None:
    # The case: 50 per second, a bucket of 50 full at the start, 1,500 lines at C=64.
    outcome = run(Acceptance(0.0), quota(50, burst=50), lines=1500)
    assert outcome.refused <= 0.05 * outcome.requests  # without the burst's tail: about 6%
    assert outcome.finished <= 1.05 * (1500 - 50) / 50  # at least 95% of the quota used
    # Once the tail's 429s are back, what is sent meets a pace, not the empty bucket: only the
    # requests its four 429s freed slots for are refused.
    assert outcome.early_refused <= 4


def test_a_minute_bucket_the_burst_does_not_empty_is_left_to_the_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 per second with a minute's bucket: C=64 never empties 600 in one burst, so the run goes
    # exactly as it would without the watch.
    watched = run(Acceptance(0.0), quota(10), lines=900)
    monkeypatch.setattr(acceptance_module, "FirstBurst", Unseen)
    assert run(Acceptance(0.0), quota(10), lines=900) == watched


class Unseen(FirstBurst):
    def answer(self, refused: bool, sent: float, now: float) -> float | None:
        super().answer(refused, sent, now)
        return None


def tail_seen(server: Server, *, burst: int = 64, latency: float = 0.05, spacing: float = 0.0005) -> float | None:
    """The first burst's answers, in the order they come back, given to a `FirstBurst`."""
    watcher = FirstBurst()
    sent = [i * spacing for i in range(burst)]
    fates = [server(s) for s in sent]
    for s, refused in zip(sent, fates, strict=True):
        ceiling = watcher.answer(refused, s, s + latency)
        if ceiling is not None or watcher.done:
            return ceiling
    return None


def test_the_tail_of_a_burst_bounds_the_quota_by_what_was_admitted() -> None:
    ceiling = tail_seen(quota(50, burst=50))
    assert ceiling is not None and 49 <= ceiling <= 51  # 50 admitted, and the bucket's refill during the burst


def test_random_shedding_in_the_first_burst_is_not_taken_for_a_bucket() -> None:
    # Shedding may leave the burst's first twenty answers clean, but then rarely refuses four of
    # the next six: at its worst share a couple of runs in ten thousand.
    for share in (0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5):
        for seed in range(300):
            assert tail_seen(shedding(share, seed)) is None


def test_refusals_among_the_admissions_or_a_short_burst_are_not_a_tail() -> None:
    rng = random.Random(1)
    limit = quota(50, burst=50)
    assert tail_seen(lambda t: limit(t) or rng.random() < 0.1) is None  # shedding on top of a quota
    assert tail_seen(quota(50, burst=10)) is None  # too few admitted to tell: left to the periods


def test_answers_after_the_first_ones_came_back_are_not_the_burst() -> None:
    watcher = FirstBurst()
    for i in range(30):
        assert watcher.answer(False, i * 0.001, 0.05 + i * 0.001) is None
    for i in range(6):  # sent after the first answer came back at 0.05
        assert watcher.answer(True, 0.06 + i * 0.001, 0.11 + i * 0.001) is None
    assert watcher.answer(False, 0.2, 1.2) is None and watcher.done  # a second after the first answer


def test_the_period_the_tail_ends_counts_every_429_of_it(caplog: pytest.LogCaptureFixture) -> None:
    # The fourth 429 ends the period and starts the test: the -v line counts it with the other three.
    caplog.set_level(logging.DEBUG, "batchrun")
    acceptance = Acceptance(0.0)
    for i in range(54):
        acceptance.record(i >= 50, i * 0.0005, 0.05 + i * 0.0005)
    assert acceptance.state == TESTING
    assert "429s: 4 of 54 answers (7%)" in caplog.text
