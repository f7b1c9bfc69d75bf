"""Tell a provider shedding load from a quota, when its headers do not say which.

An overloaded service answers a share of requests with 429 whatever the sending rate; a quota
refuses what is sent beyond its rate. Slowing down helps against the second only: cutting the
rate on every 429 of the first ratchets down to nothing, TCP Reno's failure on a lossy link.
Both may send the same body and a ``Retry-After``, so the test is the one that tells them apart:
whether the 429s follow the sending rate. Each slowdown is such a test, and is undone when the
429s stayed.

Answers are counted in periods: a period ends after `PERIOD` seconds and `MIN_ANSWERS` answers,
or sooner, once the last `MIN_ANSWERS` answers are mostly 429s beyond the floor (over
1 − 1/K of what the floor leaves: the SRE book's point where sending more only adds refusals) —
a quota that runs dry mid-period is answered at once, not a second of refusals later. Only
answers to requests sent since the pace last changed count: those sent before say nothing about
it. 429s that the ``x-ratelimit-*`` headers explain are the quota's business (`quota.Quota`) and
not counted here. Once shedding has been learned, the floor follows the share seen while free,
so shedding that eases is not kept as it was.

- **free** — nothing is paced. A period in which most requests are refused — more than
  1 − 1/K of them, the SRE book's rule, and more than the *noise floor* (the share of random
  shedding learned so far) and chance explain — starts a test. Fewer 429s than that are retried
  line by line, each after its own ``Retry-After``, and slow nothing else down: whether they
  are shedding or a quota a little below the sending rate, sending less would not get more
  lines answered sooner. The run's first burst is watched apart (`first_burst`): when its last
  requests come back refused after a long run of admissions, a quota's full bucket ran dry, and
  the test starts at once, just below the most that bucket can refill — not a period later,
  after each answer meanwhile sent another request into it.
- **testing** — send a little below the rate the server accepted between the period's first and
  last 429 (under a quota it had nothing to spare then: that is the quota's rate). If the share
  falls by half or to the floor, the 429s followed the rate: a quota. If it stays through two
  such slowdowns — and what the server accepted fell with the rate, as it does under shedding,
  where a quota above its rate goes on accepting as much — they did not: the share becomes
  the floor and pacing stops, whatever the
  share — slowing down would only slow the run. Otherwise the estimate was off (a short
  period, the tail of a burst): test again at the new accepted rate, up to five times, and then
  keep pacing as for a quota.
- **quota** — send at ``rate``. A period with more 429s than the floor explains — in itself, or
  pooled with every period since the last cut, so that small excesses add up — cuts the rate a
  little below what the server accepted; if the next period's share is the same, the cut was
  wrong (shedding, perhaps on top of the quota): that share becomes the floor and pacing stops,
  to be tested again against the new floor. Any other period raises the rate by a fiftieth.
  Once the server takes half again the quota's rate for a hundred answers with no more 429s
  than the floor, the quota is gone and pacing stops: it ends as it began, in one step.

This is the client-side adaptive throttling of Google's SRE book ("Handling Overload") turned
from rejecting requests into pacing them, with one change: its rule — throttle when requests
exceed K × accepts — ends a period at once (a quota running dry is answered in twenty answers,
not a second), and starts a test rather than throttling outright, since a line refused here is
sent again, not dropped: against shedding that does not depend on the rate, throttling would
cost time and save nothing.
"""

from __future__ import annotations

import logging
import math
from collections import deque

from .bucket import TokenBucket
from .first_burst import FirstBurst

PERIOD = 1.0  # seconds
MIN_ANSWERS = 20
K = 2.0  # the SRE book's multiplier: beyond 1 − 1/K refused, sending more only adds 429s
SIGMAS = 3.0  # how far above the floor a period's share must be to count
POOLED_SIGMAS = 2.5  # since the last cut, answers are pooled: small excesses add up
BELOW_ACCEPTED = 0.9  # pace at this share of the accepted rate, so the quota's bucket refills
RAISE = 1.02  # per period without excess 429s while a quota is paced
GONE = 1.5  # a quota taking this multiple of its rate without excess 429s is no longer there
ANSWERS_TO_END = 100  # answers sent past GONE before a quota may be declared gone
SHEDDING_TESTS = 2  # slowdowns that left the share as it was before it counts as shedding
FOLLOWED = 1.5  # accepted rate over sent rate, against the period before: at most this, shedding
MAX_TESTS = 5
MIN_RATE = 0.1  # requests per second: never pace slower than this
FLOOR_MEMORY = 500  # answers: how slowly the noise floor follows the share seen while free
PACE_BURST = 0.1  # seconds of the pace that may leave at once: a test must not start with a burst

HOLD = 0.98  # pace at this share of the quota's measured rate: its bucket refills, slowly
RATE_GAP = 2.0  # seconds: two 429s further apart may have a full bucket between them
RATE_MEMORY = 10.0  # seconds of 429-to-429 spans the quota's rate is measured over
MIN_ADMITTED = 8  # admissions between 429s before the measure is used: one more or less is noise ...
MIN_SPAN = 0.5  # ... and seconds of spans: answers that come back in waves make shorter ones noise
CLIMB = 1.5  # per period without 429s, while the quota's rate is not measured yet
PROBE_STEP = 0.1  # the first probe above the measured rate raises the pace this much per period ...
MIN_PROBE_STEP = 0.01  # ... halved after each probe the quota refused, down to this
PROBE_WAIT = 2  # periods without excess 429s before the first probe ...
MAX_PROBE_WAIT = 32  # ... doubled after each probe the quota refused, up to this

FREE, TESTING, QUOTA = "free", "testing", "quota"

log = logging.getLogger("batchrun")


class Acceptance:
    """:param now: the clock reading at creation."""

    def __init__(self, now: float) -> None:
        self.state = FREE
        self.noise = 0.0
        self.pace: TokenBucket | None = None  # the request rate to keep to, when one is paced
        self._start = now
        self._answers = self._refused = 0
        self._first_refusal: float | None = None
        self._last_refusal = 0.0
        self._accepted_since = 0  # answers accepted since the period's first 429 ...
        self._accepted_until_last = 0  # ... and before its last one
        self._last_share = 0.0  # the share of the test or cut being checked, and of how many answers
        self._last_answers = 1
        self._last_sent = self._last_taken = 0.0  # requests sent and accepted per second, then
        self._same = 0  # slowdowns in a row that left the share where it was
        self._tests = 0
        self._checking = False  # the last period cut the pace: does the share fall now?
        self._quota_rate = 0.0  # what the server accepted when the quota last refused
        self._pooled = self._pooled_refused = 0  # answers since the last cut
        self._beyond = 0  # answers sent past GONE times the quota's rate
        self._changed = now  # when the pace last changed
        # The last MIN_ANSWERS answers counted since 429s came (a healthy period keeps none):
        # were they 429s.
        self._recent: deque[bool] = deque()
        self._recent_refused = 0
        # The quota's rate, measured from admissions between 429s (`_measure`).
        self._last_429: float | None = None
        self._admitted_since_429 = 0
        self._measured_admitted = self._measured_span = 0.0
        self._prior: float | None = None  # the last measure, while a new one is short of MIN_SPAN
        self._probe_step, self._probe_wait = PROBE_STEP, PROBE_WAIT
        self._quiet = 0  # periods without excess 429s since the last cut
        self._step = 0.0  # the probe's last raise
        self._corrected = False  # the first test's pace was cut to the rate measured
        self._remeasure = False  # a probe ended: pace to the quota as soon as it is measured anew
        self._burst: FirstBurst | None = FirstBurst()  # until the run's first burst is answered

    @property
    def watching_burst(self) -> bool:
        """Whether the run's first burst may yet turn out to have emptied a quota's full bucket:
        false once its tail set a pace, or its answers showed it could not (`first_burst`)."""
        return self._burst is not None

    @property
    def measured(self) -> float | None:
        """The quota's rate (requests per second) measured between 429s, while a quota is paced
        and no shedding is known (`_measure`); ``None`` before `MIN_ADMITTED` admissions and
        `MIN_SPAN` seconds between 429s have been seen."""
        if self.noise:
            return None
        if self._measured_admitted < MIN_ADMITTED or self._measured_span < MIN_SPAN:
            return self._prior
        return self._measured_admitted / self._measured_span

    @property
    def rate(self) -> float | None:
        """Requests per second being paced to, if any."""
        return self.pace.per_minute / 60 if self.pace is not None else None

    def record(self, refused: bool, sent: float, now: float) -> None:
        """Count an answer: a 429 no header explains (``refused``), or anything else.

        :param sent: when its request was sent.
        """
        if self.pace is not None:
            self._measure(refused, now)
        if sent < self._changed:
            return
        self._answers += 1
        if self._burst is not None and self._watch_burst(refused, sent, now):
            return
        if not refused and not self._refused and self.state == FREE and not self.noise:
            # A healthy endpoint: a period without a 429 only counts (this runs per answer).
            if now - self._start >= PERIOD:
                self._start, self._answers = now, 0
            return
        recent = self._recent
        if len(recent) == MIN_ANSWERS:
            self._recent_refused -= recent.popleft()
        recent.append(refused)
        self._recent_refused += refused
        if refused:
            self._refused += 1
            if self._first_refusal is None:
                self._first_refusal = now
            self._last_refusal, self._accepted_until_last = now, self._accepted_since
        elif self._first_refusal is not None:
            self._accepted_since += 1
        if self._answers >= MIN_ANSWERS and (now - self._start >= PERIOD or self._recent_refused > (
                self.noise + (1 - self.noise) * (1 - 1 / K)) * MIN_ANSWERS):
            self._end_period(now)

    def _watch_burst(self, refused: bool, sent: float, now: float) -> bool:
        """Whether the answer showed the first burst emptying a quota's full bucket (`first_burst`):
        then a test starts at once, paced just below the most the quota can refill."""
        burst = self._burst
        assert burst is not None
        ceiling = burst.answer(refused, sent, now)
        if burst.done:
            self._burst = None
        if ceiling is None or self.state != FREE or self.noise:
            return False
        log.debug("429s: the first burst's last requests were refused after %d admitted: a quota's full bucket, "
                  "refilled at most %.1f/s", burst.admitted, ceiling)
        self._refused += 1  # this answer's 429, in the period it ends
        self._end_period(now, ceiling)
        return True

    def _measure(self, refused: bool, now: float) -> None:
        """A quota's bucket is empty whenever it refuses, so what it admitted between two 429s is
        its refill over that span, give or take one, whatever was sent meanwhile. Spans pooled
        over `RATE_MEMORY` seconds of them measure its rate; a 429 more than `RATE_GAP` after the
        last one starts a new measure, since the bucket may have filled (and lost refill) in
        between. Only while paced: the answers of a burst, which met a full bucket and then an
        empty one, come back mixed.

        The first 429 of a probe (`_raise`) also ends it, at once, and the first test's pace
        is cut to the rate measured once that is lower."""
        if not refused:
            self._admitted_since_429 += 1
            return
        last = self._last_429
        if last is None or now - last > RATE_GAP:
            self._prior = self.measured  # until the new measure has MIN_ADMITTED
            self._measured_admitted = self._measured_span = 0.0
        else:
            kept = math.exp(-(now - last) / RATE_MEMORY)
            self._measured_admitted = self._measured_admitted * kept + self._admitted_since_429
            self._measured_span = self._measured_span * kept + (now - last)
        self._last_429, self._admitted_since_429 = now, 0
        if self.state == QUOTA and self._quiet > self._probe_wait:
            self._end_probe(now)
        elif self._remeasure and self._measured_admitted >= MIN_ADMITTED and self._measured_span >= MIN_SPAN:
            # The 429s after the probe's first measured the quota anew: keep just below it.
            self._remeasure = False
            anew = self._measured_admitted / self._measured_span
            self._set_rate(HOLD * anew, now)
            log.debug("429s: the quota measured %.1f/s after the probe: pace %.1f/s", anew, HOLD * anew)
        elif self.state == TESTING and self._tests == 1 and not self._corrected:
            # The first test's pace comes from a period of a few hundredths of a second, while
            # 429s come back in bulk: once the quota's rate is measured, and is below the pace,
            # cut to it at once — once, so that shedding is still told by the periods' shares.
            measured, rate = self.measured, self.rate or 0.0
            if measured is not None and measured < rate:
                self._corrected = True
                self._set_rate(HOLD * measured, now)
                log.debug("429s: testing; the quota measured %.1f/s, below the pace: pace %.1f/s", measured,
                          HOLD * measured)

    def _end_probe(self, now: float) -> None:
        """The first 429 of a probe: the quota's bucket ran dry. Step back to the last pace that
        had none (or to just below the rate measured, if higher) — if that is still above the
        quota (its bucket's stock may have hidden the overshoot), the 429s that follow measure it
        anew, and the pace goes just below it — and make the next probe wait twice as long and
        climb half as fast."""
        measured = self.measured
        rate = max((self.rate or MIN_RATE) / (1 + self._step), HOLD * measured if measured else 0.0)
        self._probe_step = max(MIN_PROBE_STEP, self._probe_step / 2)
        self._probe_wait = min(MAX_PROBE_WAIT, self._probe_wait * 2)
        self._quiet, self._remeasure = 0, True
        self._set_rate(rate, now)
        log.debug("429s: a 429 ended the probe: pace %.1f/s; the next after %d periods without 429s, %.1f%% a "
                  "period", rate, self._probe_wait, 100 * self._probe_step)

    def _end_period(self, now: float, ceiling: float | None = None) -> None:
        """:param ceiling: the quota's rate is at most this (`first_burst`): test it at once."""
        elapsed = max(now - self._start, 1e-9)
        share = self._refused / self._answers
        sent = self._answers / elapsed
        accepted = self._accepted_rate(elapsed)
        taken = (self._answers - self._refused) / elapsed
        if self.state == FREE:
            most = 1 - 1 / K + SIGMAS * math.sqrt(0.25 / self._answers)  # beyond chance, at any count
            if ceiling is not None or (share > most and self._excess(self._answers, self._refused)):
                self.state, self._tests, self._same, self._corrected = TESTING, 1, 0, False
                self._last_share, self._last_answers = share, self._answers
                self._last_sent, self._last_taken = sent, taken
                self._cut(accepted, now, ceiling)
            elif self.noise:  # shedding drifts: follow it, weighing a period by its answers
                self.noise += (share - self.noise) * self._answers / (self._answers + FLOOR_MEMORY)
        elif self.state == TESTING:
            self._test(share, sent, taken, accepted, now)
        else:
            self._follow_quota(share, sent, accepted, now)
        if log.isEnabledFor(logging.DEBUG):  # the trace `batchrun run -v` shows of unexplained 429s
            pace = "none" if self.rate is None else f"{self.rate:.1f}/s"
            measured = "" if self.measured is None else f" (quota measured {self.measured:.1f}/s)"
            log.debug("429s: %d of %d answers (%.0f%%) at %.1f sent/s, %.1f accepted/s; %s, pace %s%s, floor %.0f%%",
                      self._refused, self._answers, 100 * share, sent, taken, self.state, pace, measured,
                      100 * self.noise)
        if self.state == FREE and not self._refused:
            self._forget_measure()  # no 429s: nothing left to measure
        self._start, self._answers, self._refused = now, 0, 0
        self._first_refusal, self._accepted_since, self._accepted_until_last = None, 0, 0

    def _test(self, share: float, sent: float, taken: float, accepted: float, now: float) -> None:
        margin = self._margin(self._answers)
        if share <= max(self.noise + margin, self._last_share / 2):
            self._to_quota()
            return
        # Shedding takes the same share of whatever is sent, so what it accepts falls with the
        # rate; a quota still above its rate accepts as much as before. Near a share of 1 the
        # shares look alike either way: what was accepted tells them apart.
        followed = taken * self._last_sent <= FOLLOWED * self._last_taken * sent
        self._same = self._same + 1 if self._same_share(share) and followed else 0
        if self._same >= SHEDDING_TESTS:
            self._learn_floor(share)
            self._free(now)
            return
        if self._tests >= MAX_TESTS:  # the share moved, but never fell away: keep the pace
            self._to_quota()
            return
        self._tests += 1
        self._last_share, self._last_answers = share, self._answers
        self._last_sent, self._last_taken = sent, taken
        self._cut(accepted, now)

    def _follow_quota(self, share: float, sent: float, accepted: float, now: float) -> None:
        self._pooled += self._answers
        self._pooled_refused += self._refused
        over = self._excess(self._answers, self._refused) \
            or self._excess(self._pooled, self._pooled_refused, POOLED_SIGMAS)
        checking, self._checking = self._checking, False
        if over and checking and self._same_share(share):
            # The cut left the share as it was: shedding, not the quota. Learn it and look again.
            self._learn_floor(share)
            self._free(now)
        elif over:
            self._checking, self._last_share, self._last_answers = True, share, self._answers
            self._cut(accepted, now)
        else:
            self._beyond += self._answers if sent > GONE * self._quota_rate else 0
            if self._beyond >= ANSWERS_TO_END:
                self._free(now)  # the pace no longer holds anything back
            else:
                self._raise(now)

    def _raise(self, now: float) -> None:
        """A period without excess 429s under a quota: back up to just below its measured rate at
        once, and only after `_probe_wait` such periods in a row probe above it, from
        `_probe_step` a period, doubling each period up to `PROBE_STEP` — it may have been
        measured low, or been raised. Not measured yet, its rate is at least the pace it took
        without 429s: climb by `CLIMB` a period until they come, the first ending the climb as
        it ends a probe, and the next measuring it. With shedding known, a fiftieth a period."""
        rate, measured = self.rate or MIN_RATE, self.measured
        self._quiet += 1
        if self.noise:
            self._set_rate(RAISE * rate, now)
        elif measured is None:  # a climb is a probe of its own: its first 429 ends it
            self._quota_rate = max(self._quota_rate, rate)
            self._step, self._quiet = CLIMB - 1, max(self._quiet, self._probe_wait + 1)
            self._set_rate(CLIMB * rate, now)
        elif rate < HOLD * measured:
            self._set_rate(HOLD * measured, now)
        elif self._quiet > self._probe_wait:  # each period of the probe without 429s doubles its step
            self._step = min(PROBE_STEP, self._probe_step * 2 ** (self._quiet - self._probe_wait - 1))
            self._set_rate(rate * (1 + self._step), now)

    def _to_quota(self) -> None:
        self.state, self._checking = QUOTA, False
        self._pooled = self._pooled_refused = self._beyond = 0

    def _cut(self, accepted: float, now: float, ceiling: float | None = None) -> None:
        """Pace a little below the quota's rate: as measured between 429s when it has been, else
        what the server accepted in the period it refused — or, from the first burst, the most
        it can refill (``ceiling``)."""
        measured = self.measured
        if ceiling is not None:
            self._quota_rate, rate = ceiling, HOLD * ceiling
        elif measured is None:
            self._quota_rate, rate = accepted, BELOW_ACCEPTED * accepted
        else:
            self._quota_rate, rate = measured, HOLD * measured
        self._pooled = self._pooled_refused = self._beyond = self._quiet = 0
        self._set_rate(rate, now)

    def _accepted_rate(self, elapsed: float) -> float:
        """What the server accepted per second while it was refusing: between the period's first
        and last 429 it had nothing to spare, so what it took then is what it refills."""
        span = self._last_refusal - self._first_refusal if self._first_refusal is not None else 0.0
        if span > 0:
            return (self._accepted_until_last + 1) / span  # + 1: a short span may hold none
        return (self._answers - self._refused) / elapsed

    def _excess(self, answers: int, refused: int, sigmas: float = SIGMAS) -> bool:
        """Whether ``refused`` of ``answers`` is more than the noise floor and chance explain."""
        return refused > self.noise * answers + self._margin(answers, sigmas) * answers

    def _learn_floor(self, share: float) -> None:
        """The share of two periods alike is random shedding's: the new floor."""
        a, b = self._answers, self._last_answers
        self.noise = max(self.noise, (share * a + self._last_share * b) / (a + b))

    def _same_share(self, share: float) -> bool:
        """Whether this period's share and the one before the last slowdown differ by chance only."""
        a, b = self._answers, self._last_answers
        pooled = (share * a + self._last_share * b) / (a + b)
        return abs(share - self._last_share) <= SIGMAS * math.sqrt(max(pooled * (1 - pooled), 0.01) * (1 / a + 1 / b))

    def _margin(self, answers: int, sigmas: float = SIGMAS) -> float:
        """How far a share of ``answers`` may stray from the floor by chance: ``sigmas`` standard
        deviations of the count, and never less than one: with no floor, a lone 429 is not
        yet evidence."""
        spread = math.sqrt(max(answers * self.noise * (1 - self.noise), 1.0))
        return sigmas * spread / answers

    def _free(self, now: float) -> None:
        self.state, self.pace, self._changed = FREE, None, now
        self._forget_measure()
        self._probe_step, self._probe_wait = PROBE_STEP, PROBE_WAIT

    def _forget_measure(self) -> None:
        self._last_429, self._admitted_since_429, self._prior = None, 0, None
        self._measured_admitted = self._measured_span = 0.0

    def _set_rate(self, rate: float, now: float) -> None:
        self._changed = now
        rate = max(rate, MIN_RATE)
        capacity = max(1.0, rate * PACE_BURST)
        if self.pace is None:
            self.pace = TokenBucket(rate * 60, now, capacity=capacity, level=0.0)
        else:
            self.pace.set_rate(rate * 60, now, capacity)
