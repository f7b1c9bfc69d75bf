"""What a run did, counted as it goes: outcomes, retries, tokens; and the exit code (SPEC §5)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RateLimited, RequestError
from .records import Result
from .usage import Usage, UsageTotals

EXIT_OK = 0
EXIT_FAILED_LINES = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_STOPPED = 4


@dataclass
class RunStats:
    """Counters of one run; the writer updates them in output order.

    :param aborted: why the run stopped early, when it did (fatal endpoint error, disk error,
        interruption); such a run exits 4 and its output is left in the ``.partial`` files.
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
    max_buffered: int = 0
    aborted: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def record(self, result: Result) -> None:
        self.written += 1
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
        if self.aborted is not None:
            return EXIT_STOPPED
        return EXIT_FAILED_LINES if self.failed else EXIT_OK
