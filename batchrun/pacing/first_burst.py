"""Tell a quota's full bucket running dry in a run's first burst, from the order of its 429s.

A run starts by sending as many requests as it may keep in flight, before any answer can say
whether the endpoint has a quota. A bucket that holds fewer admits the first of them and refuses
the rest: the burst's 429s are its *tail*, the requests sent last, each after every admitted one.
Random shedding refuses requests wherever they fall in the order, so a long run of admissions
followed by a run of refusals is a pattern it almost never makes — a chance of about 2 in 10,000
at its worst share, once per run (`CLEAN` admissions, then `TAIL` refusals out of at most
`TAIL` + 2 answers).

Seen, it tells more than that a quota exists: the bucket held about what was admitted, and a
provider's bucket holds at least a second of its rate (a per-second quota holds one second,
a per-minute one a minute), so the rate is at most the admitted count over one second plus the
burst's length. Pacing at once to just below that stops the requests that each answer would
otherwise send into the empty bucket while the refusals are counted period by period (see
`acceptance`).
"""

from __future__ import annotations

import math

CLEAN = 20  # admissions in a row before the first 429: a bucket this size or larger is spotted
TAIL = 4  # 429s, with at most TAIL - 2 admissions among them, before the pattern counts
WATCH = 1.0  # seconds after the first answer: the burst's answers are in by then


class FirstBurst:
    """Watches the answers to the requests sent before the first answer came back."""

    def __init__(self) -> None:
        self.done = False
        self._heard: float | None = None  # when the first answer came back
        self._first_sent = math.inf
        self._last_admitted = -math.inf  # when the last request admitted before the first 429 left
        self._admitted = 0
        self._refused = self._admitted_after = 0
        self._tail_sent = 0.0  # when the first refused request left

    def answer(self, refused: bool, sent: float, now: float) -> float | None:
        """Count an answer; once the burst's tail is seen refused, return the most requests per
        second the quota can refill, and be `done`.

        :param sent: when its request was sent.
        """
        if self._heard is None:
            self._heard = now
        elif now - self._heard > WATCH:
            self.done = True
            return None
        if sent >= self._heard:
            return None  # sent after an answer came back: not the burst
        if not refused:
            if self._refused:
                self._admitted_after += 1
                self.done = self._admitted_after > TAIL - 2
            else:
                self._admitted += 1
                self._first_sent = min(self._first_sent, sent)
                self._last_admitted = max(self._last_admitted, sent)
            return None
        if not self._refused:
            if self._admitted < CLEAN or sent < self._last_admitted:
                self.done = True  # not the tail: a 429 among the admissions, or too few before it
                return None
            self._tail_sent = sent
        self._refused += 1
        if self._refused < TAIL:
            return None
        self.done = True
        return self._admitted / (1.0 + self._tail_sent - self._first_sent)

    @property
    def admitted(self) -> int:
        """Requests of the burst admitted before its first 429."""
        return self._admitted
