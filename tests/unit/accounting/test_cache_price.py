"""Lines answered from the response cache in the report: counted as hits, priced at nothing, and
what they saved — from a live result, from a file's line, across a resume and merged shards."""

from __future__ import annotations

import orjson
import pytest

from batchrun.accounting.pricing import load_prices
from batchrun.accounting.report import Report
from batchrun.records import Result

BODY = {"model": "gpt-4o-mini", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}}


def result(index: int, *, cached: bool) -> Result:
    return Result(index, f"r{index}", 200, "req", BODY, None, attempts=0 if cached else 1, model="gpt-4o-mini",
                  cached=cached)


def test_a_cached_line_costs_nothing_and_saves_what_it_would_have_cost() -> None:
    report = Report(load_prices())
    report.add_result(result(0, cached=False))
    one = report.cost()[0]
    assert one is not None and one > 0
    report.add_result(result(1, cached=True))
    report.add_result(result(2, cached=True))
    doc = report.to_dict()
    assert doc["cost_usd"] == pytest.approx(one)
    assert doc["cache"] == {"hits": 2, "saved_usd": pytest.approx(2 * one)}
    assert doc["models"]["gpt-4o-mini"]["cache"] == {"hits": 2, "saved_usd": pytest.approx(2 * one)}
    assert doc["tokens"]["total"] == 3 * 1500  # the output holds them all
    assert Report(load_prices()).to_dict()["cache"] is None


def test_a_files_cached_lines_are_read_and_survive_a_resume_and_a_merge() -> None:
    from_file = Report(load_prices())
    for i in range(3):
        from_file.add_record(orjson.loads(result(i, cached=i > 0).encode("0" * 16)))
    assert Result.from_line(1, result(1, cached=True).encode("0" * 16)).cached
    expected = from_file.to_dict()["cache"]
    assert expected["hits"] == 2
    restored = Report(load_prices())
    restored.restore(orjson.loads(orjson.dumps(from_file.state())))
    assert restored.to_dict()["cache"] == expected and restored.cost() == from_file.cost()
    merged = Report(load_prices())
    merged.merge(from_file)
    merged.merge(restored)
    assert merged.to_dict()["cache"]["hits"] == 4
    assert merged.cost()[0] == pytest.approx(2 * from_file.cost()[0])
