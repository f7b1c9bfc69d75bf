"""The few lines printed at the end of a run: what happened, where it went, what it used."""

from __future__ import annotations

from .stats import RunStats


def format_summary(stats: RunStats) -> str:
    rate = stats.written / stats.wall_s if stats.wall_s > 0 else 0.0
    lines = [f"{stats.written:,} lines in {stats.wall_s:.1f} s ({rate:,.0f} req/s): "
             f"{stats.succeeded:,} succeeded, {stats.failed:,} failed"]
    if stats.failures_by_code:
        codes = ", ".join(f"{code} {n:,}" for code, n in stats.failures_by_code.most_common())
        lines.append(f"  failures: {codes}")
    lines.append(f"  retries: {stats.retries:,} ({stats.rate_limited:,} rate-limited)")
    usage = stats.usage.overall()
    lines.append(f"  tokens: {usage.prompt:,} prompt ({usage.cached:,} cached) + {usage.completion:,} completion "
                 f"({usage.reasoning:,} reasoning) = {usage.total:,}")
    if stats.carried_over:
        lines.append(f"  resumed: {stats.carried_over:,} lines were finished by an earlier start")
    if stats.stop_reason is None:
        lines.append(f"  output: {stats.output_path}")
        lines.append(f"  errors: {stats.errors_path}")
    else:
        lines.append(f"  stopped early: {stats.stop_reason}")
        lines.append(f"  run the same command again to continue (checkpoint: {stats.output_path}.checkpoint/)")
    return "\n".join(lines)
