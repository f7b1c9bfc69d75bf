"""What is printed at the end of a run: the report table, then where everything went, and the
one thing to do next when the run stopped early. Every line fits `tables.WIDTH` columns. With
``--quiet``, or when there was nothing to do, one line instead."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence

from ..accounting.budget import projected_spend
from ..plural import counted
from ..stats import EXIT_BUDGET, RunStats
from .tables import WIDTH, fit, render_report


def format_summary(stats: RunStats, report_path: str, argv: Sequence[str] = ()) -> str:
    """:param argv: the command's arguments after ``batchrun``, to spell out the command that
    continues a run the budget stopped."""
    lines = []
    if stats.simulated:
        lines.append("simulated: --mock: the answers and costs come from the built-in simulator")
    pacer = stats.pacer
    if pacer is not None and (pacer.limits() or pacer.rate_limited):
        limits = ", ".join(f"{value:,.0f} {'rpm' if kind == 'requests' else 'tpm'}"
                           for kind, value in pacer.limits().items()) or "none"
        shedding = pacer.acceptance.noise
        shed = f" (the endpoint shed about {shedding:.0%} of requests at random)" if shedding else ""
        were = "was" if pacer.rate_limited == 1 else "were"
        lines.append(f"pacing, this start: limits {limits}; {counted(pacer.rate_limited, 'answer')} {were} 429{shed}")
    if stats.carried_over:
        lines.append(f"resumed: of the {counted(stats.written, 'line')} above, {stats.carried_over:,} "
                     f"{'was' if stats.carried_over == 1 else 'were'} finished by earlier starts, "
                     f"{stats.written - stats.carried_over:,} by this one")
    if stats.stop_reason is None:
        lines.append(f"output: {stats.output_path}")
        lines.append(f"errors: {stats.errors_path}")
    else:
        lines.append(f"stopped early: {stats.stop_reason}")
    if stats.written or stats.stop_reason is None:
        text = [render_report(stats.report.to_dict()).rstrip(), *(fit(line, 2) for line in lines)]
    else:  # stopped before any line was done: an all-zero table would bury why, and what next
        text = [fit(lines[-1], 2)]
    if stats.stop_reason is not None:
        text += _next_step(stats, argv)
    return "\n".join([*text, fit(f"report: {report_path}", 2)])


def _next_step(stats: RunStats, argv: Sequence[str]) -> list[str]:
    """The one instruction that continues the run."""
    budget = stats.budget
    if stats.stop_code != EXIT_BUDGET or budget is None:
        again = stats.next_step or "run the same command again"
        return [fit(f"{again} to continue (checkpoint: {stats.output_path}.checkpoint/)", 2)]
    # Enough for the rest of the file at the rate so far, and at least for the request turned away.
    projected = projected_spend(budget.spent, stats.written, stats.total_hint or 0) or budget.spent
    cap = _round_up(max(projected, budget.cap) + (budget.refused or 0.0))
    return ["to continue, run it again with a higher cap:", *_shell_lines(["batchrun", *with_cap(argv, cap)])]


def _shell_lines(command: Sequence[str]) -> list[str]:
    """``command`` quoted for a POSIX shell, split at spaces into lines continued with ``\\``,
    so that it still runs when pasted whole."""
    lines = [""]
    for word in map(shlex.quote, command):
        if lines[-1] and len(lines[-1]) + 1 + len(word) > WIDTH - 2:
            lines[-1] += " \\"
            lines.append("   ")
        lines[-1] += f" {word}" if lines[-1] else f"  {word}"
    return lines


def with_cap(argv: Sequence[str], cap: str) -> list[str]:
    """``argv`` with its ``--max-cost`` (if any) replaced by ``cap``, which also overrides
    ``$BATCHRUN_MAX_COST``."""
    args: list[str] = []
    value_next = False
    for arg in argv:
        if value_next:
            value_next = False
        elif arg == "--max-cost":
            value_next = True
        elif not arg.startswith("--max-cost="):
            args.append(arg)
    return [*args, "--max-cost", cap]


def _round_up(usd: float) -> str:
    """Two significant digits, rounded up: ``0.04123`` → ``0.042``, ``7.13`` → ``7.2``."""
    exponent = math.floor(math.log10(usd)) - 1 if usd > 0 else 0
    places = max(0, -exponent)
    return f"{math.ceil(usd / 10.0**exponent - 1e-9) * 10.0**exponent:.{places}f}"


def up_to_date_line(stats: RunStats, report_path: str) -> str:
    """The one line of a start that found its output already complete (as ``make`` says a target
    is up to date): nothing was sent, and the exit code is that run's."""
    failed = f", {stats.failed:,} failed" if stats.failed else ""
    return (f"batchrun: {stats.output_path} is up to date: this input already ran to completion with these options "
            f"({counted(stats.written, 'line')}{failed}; report: {report_path}); nothing was sent")


def outcome_line(stats: RunStats, report_path: str) -> str:
    """The one line ``--quiet`` prints for a run that did not end with every line succeeded."""
    if stats.stop_reason is None:
        return (f"batchrun: {stats.failed:,} of {stats.written:,} lines failed: see {stats.errors_path} "
                f"(report: {report_path})")
    again = ("run again with a higher --max-cost to continue" if stats.status == "budget"
             else f"{stats.next_step or 'run the same command again'} to continue")
    return f"batchrun: stopped early: {stats.stop_reason}; {again} (report: {report_path})"
