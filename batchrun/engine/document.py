"""The report document of a run: the one builder that a single run, a stopped run and the
assembly of a sharded run's parts all write their ``report.json`` with (docs/contract.md, "The report")."""

from __future__ import annotations

from typing import Any

import orjson

from ..pacing import Pacer
from ..stats import RunStats


def run_facts(*, input_path: str, same_run: dict[str, Any], input_lines: int, lines_finished: int,
              max_cost: float | None) -> dict[str, Any]:
    """What the report of a run says besides its counters and how it ended: how far it got, and
    what makes another start the same run (`disk.identity.identity`), so that one finds it up
    to date."""
    return {"input_lines": input_lines, "lines_finished": lines_finished,
            "input": {"path": input_path, **same_run["input"]}, "options": same_run["options"], "max_cost": max_cost}


def report_json(stats: RunStats, facts: dict[str, Any], output_bytes: int | None = None, *,
                counters: bool = False, extra: dict[str, Any] | None = None) -> bytes:
    """The report document (`Report.to_dict`), after its schema how the run ended (`RunStats.status`,
    the exit code, why it stopped) and the `run_facts`.

    :param output_bytes: the size of a published output.
    :param counters: keep the raw counters too, for parts that are added up exactly (`scale.parts`).
    :param extra: more top-level facts (a sharded run's shard count).
    """
    stats.report.set_wall_time(stats.wall_s, lines=stats.sent_this_start, tokens=stats.tokens_this_start)
    counted = stats.report.to_dict()
    doc = {"schema": counted.pop("schema"), "status": stats.status, "exit_code": stats.exit_code,
           "stop_reason": stats.stop_reason, **facts, "output_bytes": output_bytes, **counted}
    doc["simulated"] = stats.simulated
    if stats.ledger is not None:
        doc["spend"] = stats.ledger.doc()
    if counters:
        doc["counters"] = stats.report.state()
    if stats.pacer is not None:
        doc["pacing"] = _pacing(stats.pacer)
    doc.update(extra or {})
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def _pacing(pacer: Pacer) -> dict[str, object]:
    """How the run was paced, for the report: a run's own, not in the output file."""
    acceptance = pacer.acceptance
    return {
        "limits_per_minute": pacer.limits(),
        "limits_announced_by_endpoint": pacer.quota.announced,
        "token_charge_scale": pacer.quota.scale,
        "concurrency": pacer.concurrency,
        "rate_limited_responses": pacer.rate_limited,
        "unexplained_429s": {"state_at_end": acceptance.state, "shedding_share": acceptance.noise,
                             "paced_rps_at_end": acceptance.rate},
        "endpoint": pacer.breaker.state,
    }
