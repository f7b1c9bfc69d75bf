"""Counts read as English: ``1 request``, never ``1 requests``."""

from __future__ import annotations

from pathlib import Path

from batchrun.accounting.estimate import Estimate
from batchrun.accounting.pricing import load_prices
from batchrun.accounting.report import report_file
from batchrun.plural import counted


def test_counted() -> None:
    assert [counted(n, "request") for n in (0, 1, 2, 1234)] == ["0 requests", "1 request", "2 requests",
                                                                "1,234 requests"]
    assert counted(1, "batch", "batches") == "1 batch" and counted(3, "batch", "batches") == "3 batches"


def test_one_unpriced_request_is_one_request() -> None:
    estimate = Estimate(load_prices(), source="in.jsonl")
    estimate.add_request("my-own-model", "/v1/chat/completions", {"model": "my-own-model", "messages": []})
    assert any("no price for model 'my-own-model' (1 request):" in note for note in estimate.warnings())


def test_one_unreadable_line_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("not json\n")
    assert any(note.startswith("1 line is not an output record and was skipped: ")
               for note in report_file(path).warnings())
