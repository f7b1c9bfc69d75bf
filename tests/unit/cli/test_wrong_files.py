"""A file given to the wrong command, or an option to the wrong command: exit 2, and the command
or file meant."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from batchrun.cli import main

from ...helpers import chat_line, write_jsonl

SAMPLES = Path(__file__).parents[3] / "samples"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_estimate_of_a_csv_lists_a_few_bad_lines_and_points_to_label(tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    data.write_text("id,text\n" + "".join(f"{i},review {i}\n" for i in range(319)), encoding="utf-8")
    code, _, err = invoke("estimate", str(data))
    assert code == 2
    lines = err.splitlines()
    assert sum("not valid JSON" in line for line in lines) == 20
    assert "batchrun: … and 300 more bad lines (--json lists the first 1,000)" in lines
    assert "320 of 320 lines would not be sent as they are" in err
    assert f"did you mean `batchrun label {data} -t TEMPLATE --dry-run`" in err


def test_estimate_of_a_jsonl_with_bad_lines_does_not_mention_label(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"{bad\n" + orjson.dumps(chat_line(1)) + b"\n")
    code, _, err = invoke("estimate", str(source))
    assert code == 2 and "in.jsonl:1: not valid JSON" in err and "more bad lines" not in err and "label" not in err


def test_report_of_a_label_output_exits_2_naming_where_its_results_are(tmp_path: Path) -> None:
    data = shutil.copy(SAMPLES / "reviews.csv", tmp_path / "reviews.csv")
    template = shutil.copy(SAMPLES / "sentiment.txt", tmp_path / "sentiment.txt")
    code, _, err = invoke("label", str(data), "-t", str(template), "--mock", "--mock-latency-ms", "0", "-q")
    assert code == 0, err
    results = tmp_path / "reviews.labeled.csv.batch" / "results.jsonl"
    for given in (tmp_path / "reviews.labeled.csv", data):  # the output, or its data
        code, out, err = invoke("report", str(given))
        assert code == 2 and out == ""
        assert f"{given} holds no results" in err and f"batchrun report {results}" in err
    assert invoke("report", str(results))[0] == 0


def test_report_of_an_input_file_exits_2_naming_its_results(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    code, _, err = invoke("report", str(source))
    assert code == 2
    assert "it is an input file of requests; a run's results are in" in err and "in.results.jsonl" in err


def test_report_of_an_empty_file_is_still_an_empty_report(tmp_path: Path) -> None:
    empty = tmp_path / "out.jsonl"
    empty.write_bytes(b"")
    assert invoke("report", str(empty))[0] == 0


@pytest.mark.parametrize(("option", "meant"), [
    (["--dry-run"], "run has no --dry-run: `batchrun estimate INPUT`"),
    (["--labels", "a,b"], "run has no --labels: `batchrun label DATA.csv -t TEMPLATE --labels A,B,...`"),
])
def test_run_points_to_the_command_that_has_the_option(tmp_path: Path, option: list[str], meant: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    code, _, err = invoke("run", str(source), "--mock", *option)
    assert code == 2 and meant in " ".join(err.split())
    assert not (tmp_path / "in.results.jsonl").exists()


def test_report_html_into_a_missing_folder_says_so(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_bytes(orjson.dumps({"custom_id": "a", "response": {"status_code": 200, "body": {}}, "error": None})
                       + b"\n")
    code, _, err = invoke("report", str(output), "--html", str(tmp_path / "nope" / "r.html"))
    assert code == 2 and f"output directory {tmp_path / 'nope'} does not exist" in err and "Errno" not in err
