"""What a run did, counted as it goes, and the exit code it maps to (docs/contract.md, "Exit codes")."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .accounting.report import Report
from .records import Result

if TYPE_CHECKING:
    from .accounting.budget import Budget
    from .accounting.ledger import SpendLedger
    from .pacing import Pacer

EXIT_OK = 0
EXIT_FAILED_LINES = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_STOPPED = 4


@dataclass
class RunStats:
    """What a run did; the writer updates it in output order.

    Outcomes, tokens, cost, retries and latency are counted by `report` — the same accumulator
    ``batchrun report`` runs over a finished file — so the two always agree.

    :param stop_reason: why the run stopped before finishing every line, when it did
        (interrupted, fatal endpoint error, disk error, budget); its checkpoint is kept.
    :param stop_code: the exit code such a stop maps to.
    :param next_step: what continues a stopped run when it is not "run the same command again"
        (that would fail the same way, or do nothing more), ending in the command to run.
    :param up_to_date: the output already held this run, complete: nothing was done, and of
        the counters only the lines and their outcomes are known (from its report).
    :param carried_over: lines finished by earlier starts of the run, read back on resume.
    :param via_batch: lines this start wrote as the Batch API answered them (`batchapi`).
    :param from_cache: lines this start answered from the response cache (`batchrun.cache`).
    :param tokens_this_start: tokens of the lines this start sent and finished.
    :param max_buffered: the most results that ever waited for an earlier line at once.
    :param max_buffered_bytes: the most bytes of output lines that ever waited at once.
    """

    output_path: Path
    errors_path: Path
    report: Report = field(default_factory=Report)
    total_hint: int | None = None
    written: int = 0
    carried_over: int = 0
    via_batch: int = 0
    from_cache: int = 0
    tokens_this_start: int = 0
    max_buffered: int = 0
    max_buffered_bytes: int = 0
    stop_reason: str | None = None
    stop_code: int = EXIT_STOPPED
    next_step: str | None = None
    up_to_date: bool = False
    pacer: Pacer | None = None  # live pacing state, for the progress display
    budget: Budget | None = None  # live spending against --max-cost, for the progress display
    ledger: SpendLedger | None = None  # what lost answers may have cost, across starts (the report's ``spend``)
    simulated: bool = False  # the answers, and so the costs, came from the built-in simulator
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def record(self, result: Result) -> None:
        self.written += 1
        self.report.add_result(result)
        if result.carried_over:
            self.carried_over += 1
        elif result.batch_id is not None:
            self.via_batch += 1
        elif result.cached:
            self.from_cache += 1
        elif (usage := result.read_usage()) is not None:
            self.tokens_this_start += usage.total

    def restore(self, report: dict[str, Any], lines: int) -> None:
        """Count ``lines`` carried over whose report counters were saved (`Report.state`), as if
        each had been recorded.

        :raises (KeyError, TypeError, ValueError): ``report`` is not a saved state; nothing changed.
        """
        self.report.restore(report)
        self.written += lines
        self.carried_over += lines

    def count_finished_run(self, report: dict[str, Any]) -> None:
        """Take the lines and outcomes of the complete run whose report is ``report`` (see
        `up_to_date`); its fields were checked when it was read."""
        self.up_to_date = True
        self.written = self.carried_over = self.report.lines = report["lines"]
        self.report.succeeded = report["requests"]["succeeded"]
        self.report.failed = report["requests"]["failed"]

    @property
    def sent_this_start(self) -> int:
        """Lines this start sent and finished: what its rates count (lines carried over,
        answered through the Batch API or from the cache, took none of its time)."""
        return self.written - self.carried_over - self.via_batch - self.from_cache

    @property
    def succeeded(self) -> int:
        return self.report.succeeded

    @property
    def failed(self) -> int:
        return self.report.failed

    @property
    def failures_by_code(self) -> Counter[str]:
        return self.report.by_code

    @property
    def retries(self) -> int:
        return self.report.retries

    @property
    def rate_limited(self) -> int:
        return self.report.rate_limited

    @property
    def wall_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def status(self) -> str:
        """How the run ended, as its report says: complete, stopped, or stopped by the budget."""
        if self.stop_reason is None:
            return "complete"
        return "budget" if self.stop_code == EXIT_BUDGET else "stopped"

    @property
    def exit_code(self) -> int:
        if self.stop_reason is not None:
            return self.stop_code
        return EXIT_FAILED_LINES if self.failed else EXIT_OK
