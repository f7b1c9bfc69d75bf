"""What is printed at the end of a run: the report table, then where everything went."""

from __future__ import annotations

from ..stats import RunStats
from .tables import render_report


def format_summary(stats: RunStats, report_path: str) -> str:
    lines = [render_report(stats.report.to_dict()).rstrip()]
    pacer = stats.pacer
    if pacer is not None and (pacer.limits() or pacer.rate_limited):
        limits = ", ".join(f"{value:,.0f} {'rpm' if kind == 'requests' else 'tpm'}"
                           for kind, value in pacer.limits().items()) or "none"
        shedding = pacer.acceptance.noise
        shed = f" (the endpoint shed about {shedding:.0%} of requests at random)" if shedding else ""
        lines.append(f"pacing: limits {limits}; {pacer.rate_limited:,} responses were 429{shed}")
    if stats.carried_over:
        lines.append(f"resumed: {stats.carried_over:,} lines were finished by an earlier start")
    if stats.stop_reason is None:
        lines.append(f"output: {stats.output_path}")
        lines.append(f"errors: {stats.errors_path}")
    else:
        lines.append(f"stopped early: {stats.stop_reason}")
        lines.append(f"run the same command again to continue (checkpoint: {stats.output_path}.checkpoint/)")
    lines.append(f"report: {report_path}")
    return "\n".join(lines)
