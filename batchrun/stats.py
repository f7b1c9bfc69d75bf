"""What a run did, counted as it goes: outcomes, retries, tokens; and the exit code (SPEC §5)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RateLimited, RequestError
from .records import Result
from .usage import Usage, UsageTotals

if TYPE_CHECKING:
    from .throttle import Throttle

EXIT_OK = 0
EXIT_FAILED_LINES = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_STOPPED = 4


@dataclass
class RunStats:
    """Counters of one run; the writer updates them in output order.

    :param stop_reason: why the run stopped before finishing every line, when it did
        (interrupted, fatal endpoint error, disk error, budget); its checkpoint is kept.
    :param stop_code: the exit code such a stop maps to.
    :param carried_over: lines finished by earlier starts of the run, read back on resume.
    :param max_buffered: the most results that ever waited for an earlier line at once.
    """

    output_path: Path
    errors_path: Path
    total_hint: int | None = None
    written: int = 0
    succeeded: int = 0
    failed: int = 0
    failures_by_code: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    rate_limited: int = 0
    usage: UsageTotals = field(default_factory=UsageTotals)
    carried_over: int = 0
    max_buffered: int = 0
    stop_reason: str | None = None
    stop_code: int = EXIT_STOPPED
    throttle: Throttle | None = None  # live pacing state, for the progress display
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def record(self, result: Result) -> None:
        self.written += 1
        if result.carried_over:
            self.carried_over += 1
        if result.error is None:
            self.succeeded += 1
            usage = Usage.from_body(result.body)
            if usage is not None:
                self.usage.add(result.model, usage)
        else:
            self.failed += 1
            self.failures_by_code[result.error["code"]] += 1
            if result.status_code == 429:
                self.rate_limited += 1

    def record_retry(self, error: RequestError) -> None:
        self.retries += 1
        if isinstance(error, RateLimited):
            self.rate_limited += 1

    @property
    def wall_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def exit_code(self) -> int:
        if self.stop_reason is not None:
            return self.stop_code
        return EXIT_FAILED_LINES if self.failed else EXIT_OK
