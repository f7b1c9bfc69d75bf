"""`batchrun.label.preview`: the dry run renders and prices every row, shows the first, and
writes and sends nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.errors import InputFileError
from batchrun.label import LabelJob, Labels, RequestSpec, preview
from batchrun.label.template import parse_text_template


def job(tmp_path: Path, rows: str) -> LabelJob:
    data = tmp_path / "d.csv"
    data.write_text("text\n" + rows)
    return LabelJob(data, RequestSpec(parse_text_template("Is {text} good?"), "gpt-4o-mini", Labels(("yes", "no"))))


def test_the_first_requests_and_an_estimate_of_all(tmp_path: Path) -> None:
    shown = preview(job(tmp_path, "".join(f"row {i}\n" for i in range(10))), count=2)
    assert [request.custom_id for request in shown.requests] == ["line-2", "line-3"]
    assert shown.requests[1].body["messages"][-1]["content"] == "Is row 1 good?"
    estimate = shown.estimate.to_dict()
    assert estimate["requests"] == 10
    assert sorted(path.name for path in tmp_path.iterdir()) == ["d.csv"]  # nothing written


def test_rows_a_run_would_refuse_are_refused(tmp_path: Path) -> None:
    made = job(tmp_path, "")
    made.data_path.write_text("other\nx\n")
    with pytest.raises(InputFileError, match=r"d.csv:1 \(the header\): the template uses \{text\}"):
        preview(made)
