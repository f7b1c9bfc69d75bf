"""`batchrun.label.join`: rows and their ordered results become labeled rows, and the results
are marked where an answer cannot be used (the round trip through the engine is in test_job.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.errors import ConfigError
from batchrun.label.answers import Labels
from batchrun.label.join import join, read_outcome
from batchrun.label.render import row_id
from batchrun.label.rows import Row, RowWriter

LABELS = Labels(("yes", "no"))


def answered(custom_id: str, text: str | None, finish_reason: str = "stop") -> dict[str, Any]:
    body = {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}]}
    return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}


def failed(custom_id: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "response": None,
            "error": {"code": "rate_limit_exceeded", "message": "slow down"}}


def rows(n: int) -> list[Row]:
    return [Row(i + 1, i + 2, {"q": f"question {i}"}) for i in range(n)]


def run_join(tmp_path: Path, records: list[dict[str, Any]], n: int) -> tuple[Any, list[list[str]], list[Any],
                                                                             list[Any]]:
    writer = RowWriter(tmp_path / "out.csv", "csv", ["q"], ["label", "_error", "_raw"])
    marked, errors = io.BytesIO(), io.BytesIO()
    lines = [orjson.dumps(record) + b"\n" for record in records]
    try:
        counts = join(rows(n), lines, LABELS, lambda row: row_id(row, None), writer, marked, errors)
    except BaseException:
        writer.discard()
        raise
    writer.commit()
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    return counts, table, [orjson.loads(line) for line in marked.getvalue().splitlines()], \
        [orjson.loads(line) for line in errors.getvalue().splitlines()]


def test_each_row_gets_its_answer_or_why_not_and_unusable_answers_are_marked(tmp_path: Path) -> None:
    records = [answered("line-2", "Yes."), failed("line-3"), answered("line-4", "maybe"),
               answered("line-5", "", finish_reason="length")]
    counts, table, marked, errors = run_join(tmp_path, records, 4)
    assert (counts.rows, counts.ok, dict(counts.errors)) == (4, 1, {"rate_limit_exceeded": 1, "invalid_label": 1,
                                                                    "output_cap": 1})
    assert table[0] == ["q", "label", "_error", "_raw"]
    assert table[1] == ["question 0", "yes", "", ""]
    assert table[2] == ["question 1", "", "rate_limit_exceeded: slow down", ""]
    assert table[3][1:] == ["", "invalid_label: 'maybe' is not one of: yes, no", "maybe"]
    assert table[4][2].startswith("output_cap: ")
    assert marked[0] == orjson.loads(orjson.dumps(records[0]))  # a usable answer's line is copied as it was
    assert marked[2]["error"] is None and marked[2]["batchrun"]["error"]["code"] == "invalid_label"
    assert [r["custom_id"] for r in errors] == ["line-3", "line-4", "line-5"]


def test_a_retried_answer_that_is_now_usable_loses_its_mark() -> None:
    record = {**answered("line-2", "no"), "batchrun": {"error": {"code": "invalid_label", "message": "x"}}}
    outcome = read_outcome(record, LABELS)
    assert outcome.values == {"label": "no", "_error": None, "_raw": None} and outcome.error is None


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([answered("line-2", "yes"), answered("line-9", "no")], r"row 2 \(line 3\) has the result for custom_id 'line-9'"),
        ([answered("line-2", "yes")], r"row 2 \(line 3\) has no result"),
        ([answered("line-2", "yes"), answered("line-3", "no"), answered("line-4", "no")], "more results than data rows"),
    ],
)
def test_results_of_other_rows_are_refused(tmp_path: Path, records: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_join(tmp_path, records, 2)
