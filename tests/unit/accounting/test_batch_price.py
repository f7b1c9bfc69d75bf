"""Per-line pricing of lines answered through the Batch API: in the report, its saved state, the estimate,
and what ``report``, ``estimate`` and the end-of-run summary print about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from batchrun.accounting.estimate import estimate_file
from batchrun.accounting.pricing import Price, PriceTable
from batchrun.accounting.report import Report
from batchrun.cli import main
from batchrun.cli.summary import format_summary
from batchrun.money import usd
from batchrun.records import Result
from batchrun.stats import RunStats

from ...helpers import chat_line, write_jsonl

# USD per 1M tokens: a line of 1M prompt and 1M completion tokens costs $6 online, $3 through the Batch API.
PRICES = PriceTable({"m": Price(input=2.0, output=4.0, cached_input=1.0)}, date="2026-01-01")
MILLION = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "total_tokens": 2_000_000}


def line(custom_id: str, batch_id: str | None = None, model: str = "m") -> dict[str, Any]:
    """An output line that used 1M prompt and 1M completion tokens, answered online or by ``batch_id``."""
    extra: dict[str, Any] = {"attempts": 1}
    if batch_id is not None:
        extra["batch_id"] = batch_id
    body = {"id": "x", "object": "chat.completion", "model": model, "usage": MILLION}
    return {"id": "batch_req_1", "custom_id": custom_id, "response": {"status_code": 200, "request_id": "r",
                                                                      "body": body},
            "error": None, "batchrun": extra}


def hybrid(prices: PriceTable = PRICES) -> Report:
    """Three lines answered through two batches, one online (a deadline sent it online)."""
    report = Report(prices)
    for record in (line("a", "batch_1"), line("b", "batch_1"), line("c"), line("d", "batch_2")):
        report.add_record(record)
    return report


def test_a_hybrid_file_is_priced_line_by_line() -> None:
    doc = hybrid().to_dict()
    assert doc["cost_usd"] == pytest.approx(3 * 3.0 + 6.0)
    assert doc["batch_api"] == {"lines": 3, "cost_usd": pytest.approx(9.0), "saved_usd": pytest.approx(9.0)}
    assert doc["models"]["m"]["cost_usd"] == pytest.approx(15.0)
    assert doc["models"]["m"]["batch_api"] == {"requests": 3, "cost_usd": pytest.approx(9.0),
                                               "saved_usd": pytest.approx(9.0)}


def test_a_file_answered_online_has_no_batch_api_part() -> None:
    report = Report(PRICES)
    report.add_record(line("a"))
    doc = report.to_dict()
    assert doc["batch_api"] is None and doc["models"]["m"]["batch_api"] is None
    assert doc["cost_usd"] == pytest.approx(6.0)


def test_live_results_are_priced_as_their_output_lines() -> None:
    results = [Result(0, "a", 200, "r", line("a")["response"]["body"], None, attempts=1, model="m",
                      batch_id="batch_1"),
               Result(1, "b", 200, "r", line("b")["response"]["body"], None, attempts=1, model="m")]
    live, from_file = Report(PRICES), Report(PRICES)
    for result in results:
        live.add_result(result)
        from_file.add_record(orjson.loads(result.encode("run")))
    assert live.to_dict() == from_file.to_dict()
    assert live.to_dict()["cost_usd"] == pytest.approx(3.0 + 6.0)


def test_the_batch_discount_flag_prices_online_lines_at_the_batch_price_and_batch_lines_once() -> None:
    discounted = PRICES.with_batch_discount()
    assert discounted.with_batch_discount() is discounted
    doc = hybrid(discounted).to_dict()
    assert doc["cost_usd"] == pytest.approx(4 * 3.0)  # every line at 50%, none at 25%
    assert doc["batch_api"]["cost_usd"] == pytest.approx(9.0)
    assert doc["batch_api"]["saved_usd"] == pytest.approx(9.0)  # against the online price, not the flag's
    assert doc["prices"]["batch_discount"] is True and doc["prices"]["multiplier"] == 0.5


def test_a_batch_api_line_of_an_unpriced_model_makes_its_cost_and_saving_unknown() -> None:
    report = hybrid()
    report.add_record(line("e", "batch_3", model="mystery"))
    doc = report.to_dict()
    assert doc["batch_api"] == {"lines": 4, "cost_usd": None, "saved_usd": None}
    assert doc["cost_usd"] is None and doc["cost_usd_priced"] == pytest.approx(15.0)


def test_the_saved_state_carries_the_batch_api_counters() -> None:
    report = hybrid()
    restored = Report(PRICES)
    restored.restore(orjson.loads(orjson.dumps(report.state())))
    assert restored.to_dict() == report.to_dict()
    assert restored.to_dict()["batch_api"]["lines"] == 3


def test_a_state_saved_before_batch_api_counters_restores_as_online_lines() -> None:
    report = Report(PRICES)
    report.add_record(line("a"))
    state = report.state()
    for model in state["models"].values():
        del model["batch_requests"], model["batch_usage"]
    restored = Report(PRICES)
    restored.restore(state)
    restored.add_record(line("b", "batch_1"))  # a resume that finishes the rest through the Batch API
    doc = restored.to_dict()
    assert doc["cost_usd"] == pytest.approx(6.0 + 3.0)
    assert doc["batch_api"] == {"lines": 1, "cost_usd": pytest.approx(3.0), "saved_usd": pytest.approx(3.0)}


def test_the_estimate_gives_the_online_and_the_batch_api_price(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, "Say hello.", model="m", max_tokens=1_000_000)
                                               for i in range(2)])
    doc = estimate_file(path, PRICES).to_dict()
    online, batch = doc["cost_usd"], doc["batch_api"]["cost_usd"]
    assert online["high"] == pytest.approx(online["low"] + 2 * 4.0)
    assert batch == {"low": pytest.approx(online["low"] / 2), "high": pytest.approx(online["high"] / 2),
                     "expected": pytest.approx(online["expected"] / 2)}
    assert doc["batch_api"]["cost_usd_priced"] == batch
    assert doc["models"]["m"]["batch_api"] == {"cost_usd": batch}
    flagged = estimate_file(path, PRICES.with_batch_discount()).to_dict()
    assert flagged["cost_usd"] == batch and flagged["batch_api"]["cost_usd"] == batch  # halved once


# -- what the commands print ----------------------------------------------------------------------


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    """``PRICES`` as a price file: $6 a line online, $3 through the Batch API."""
    path = tmp_path / "prices.json"
    path.write_text('{"models": {"m": {"input": 2.0, "cached_input": 1.0, "output": 4.0}}}')
    return path


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_report_says_which_lines_went_through_the_batch_api(tmp_path: Path, prices: Path) -> None:
    output = write_jsonl(tmp_path / "out.jsonl", [line("a", "batch_1"), line("b", "batch_1"), line("c"),
                                                  line("d", "batch_2")])
    text = run("report", str(output), "--prices", str(prices))
    assert "  cost        $15.0000\n" in text
    assert "  Batch API   3 of 4 lines, priced at 50% of online (saved $9.0000)\n" in text
    assert "batch discount" not in text  # the prices line is the table's: online lines were not discounted
    flagged = run("report", str(output), "--prices", str(prices), "--batch-discount")
    assert "  cost        $12.0000\n" in flagged and "batch discount (50%) applied" in flagged


def test_report_on_a_file_answered_online_does_not_mention_the_batch_api(tmp_path: Path, prices: Path) -> None:
    output = write_jsonl(tmp_path / "out.jsonl", [line("a"), line("b")])
    assert "Batch API" not in run("report", str(output), "--prices", str(prices))


def test_estimate_shows_the_online_and_the_batch_api_price(tmp_path: Path, prices: Path) -> None:
    # 1M output tokens of cap a request: the high end of the range is dominated by known figures.
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, "hi", model="m", max_tokens=1_000_000) for i in range(2)])
    doc = orjson.loads(run("estimate", str(path), "--prices", str(prices), "--json"))
    online, batch = doc["cost_usd"], doc["batch_api"]["cost_usd"]
    assert batch["high"] == pytest.approx(online["high"] / 2) and online["high"] > 8.0
    online_text, batch_text = (f"{usd(cost['low'])} - {usd(cost['high'])}" for cost in (online, batch))
    text = run("estimate", str(path), "--prices", str(prices))
    assert f"  cost        {online_text} sent online\n" in text
    assert f"  Batch API   {batch_text} (50% of the online price)\n" in text
    flagged = run("estimate", str(path), "--prices", str(prices), "--batch-discount")
    assert f"  cost        {batch_text} at the Batch API's price (--batch-discount)\n" in flagged
    assert f"  Batch API   {batch_text} (50% of the online price)\n" in flagged


def test_the_run_summary_prices_batch_api_lines_at_its_price_and_says_so() -> None:
    stats = RunStats(Path("out.jsonl"), Path("out.errors.jsonl"), Report(PRICES, source="out.jsonl"), total_hint=2)
    for index, batch_id in enumerate(("batch_1", None)):
        stats.record(Result.from_line(index, orjson.dumps(line(f"c{index}", batch_id))))
    text = format_summary(stats, "out.report.json")
    assert "  cost        $9.0000\n" in text
    assert "  Batch API   1 of 2 lines, priced at 50% of online (saved $3.0000)\n" in text
