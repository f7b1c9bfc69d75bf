"""The report document alone: how the run ended and its facts first, then the counted figures;
the spend ledger, the raw counters and a sharded run's extra facts when asked for."""

from __future__ import annotations

from pathlib import Path

import orjson

from batchrun.accounting.ledger import SpendLedger
from batchrun.accounting.pricing import PriceTable
from batchrun.engine.document import report_json, run_facts
from batchrun.records import Result
from batchrun.stats import EXIT_BUDGET, RunStats

SAME_RUN = {"input": {"size": 120, "sha256": "ab12"}, "options": {"model": None, "max_tokens": None}}


def stats(*, failed: bool = False) -> RunStats:
    run = RunStats(Path("out.jsonl"), Path("out.errors.jsonl"), total_hint=2, started=10.0, finished=12.0)
    run.record(Result(0, "req-0", 200, "req_a", {"usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                                          "total_tokens": 5}}, None, attempts=1))
    if failed:
        run.record(Result(1, "req-1", 400, "req_b", {"error": {"message": "no"}}, {"code": "invalid_value",
                                                                                   "message": "no"}, attempts=1))
    return run


def facts() -> dict[str, object]:
    return run_facts(input_path="in.jsonl", same_run=SAME_RUN, input_lines=2, lines_finished=2, max_cost=0.5)


def test_run_facts_name_the_input_with_what_makes_another_start_the_same_run() -> None:
    assert facts() == {"input_lines": 2, "lines_finished": 2, "input": {"path": "in.jsonl", "size": 120, "sha256": "ab12"},
                       "options": {"model": None, "max_tokens": None}, "max_cost": 0.5}


def test_the_document_leads_with_how_the_run_ended_then_its_facts_then_the_counters() -> None:
    doc = orjson.loads(report_json(stats(failed=True), facts(), 4096))
    assert list(doc)[:5] == ["schema", "status", "exit_code", "stop_reason", "input_lines"]
    assert (doc["status"], doc["exit_code"], doc["stop_reason"], doc["output_bytes"]) == ("complete", 1, None, 4096)
    assert doc["input"]["path"] == "in.jsonl" and doc["max_cost"] == 0.5
    assert doc["requests"]["succeeded"] == 1 and doc["requests"]["failed"] == 1
    assert doc["simulated"] is False
    assert "spend" not in doc and "counters" not in doc and "pacing" not in doc


def test_a_budget_stop_is_the_documents_status_and_exit_code() -> None:
    run = stats()
    run.stop_reason, run.stop_code = "budget reached (--max-cost)", EXIT_BUDGET
    doc = orjson.loads(report_json(run, facts()))
    assert (doc["status"], doc["exit_code"], doc["stop_reason"], doc["output_bytes"]) == (
        "budget", EXIT_BUDGET, "budget reached (--max-cost)", None)


def test_the_spend_ledger_is_published_with_what_earlier_starts_carried() -> None:
    run = stats()
    run.ledger = SpendLedger(PriceTable({}), carried=0.25)
    run.ledger.add(0.125)
    assert orjson.loads(report_json(run, facts()))["spend"] == {"lost_answers_usd": 0.375}


def test_raw_counters_and_extra_facts_only_when_asked_for() -> None:
    run = stats()
    doc = orjson.loads(report_json(run, facts(), counters=True, extra={"shards": 4, "status": "stopped"}))
    assert doc["counters"] == run.report.state()
    assert doc["shards"] == 4
    assert doc["status"] == "stopped"  # a sharded run's own word on how it ended comes last


def test_the_wall_time_is_set_from_the_run_before_the_counters_are_read() -> None:
    doc = orjson.loads(report_json(stats(), facts()))
    assert doc["wall_time_s"] == 2.0
