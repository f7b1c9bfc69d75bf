"""`batchrun label --retry-failed` after the prompt was fixed: only the failed rows are sent, with
the new template or params, and the answered rows keep their answers; and CSV delimiters other
than a comma, sniffed from the header or given by --delimiter. Answers come from a raw loopback
server that records every prompt."""

from __future__ import annotations

import csv
from pathlib import Path

from ..labeltables import answering, invoke, prompt, read_table, write_table

FAILING = {"v1 b", "v1 d"}  # the first template's prompts the server cannot answer


def answer(text: str, before: int) -> str | None:
    return None if text in FAILING else f"ans:{text}"


def setup(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    data = write_table(tmp_path / "d.csv", [["id", "text"], ["1", "a"], ["2", "b"], ["3", "c"], ["4", "d"]])
    template = tmp_path / "prompt.txt"
    template.write_text("v1 {text}")
    return data, template, [str(data), "-t", str(template), "--max-attempts", "1"]


def test_retry_failed_sends_the_failed_rows_with_the_new_template_and_keeps_the_answers(tmp_path: Path) -> None:
    _, template, run = setup(tmp_path)
    with answering(answer) as server:
        code, err = invoke(*run, "--base-url", server.base_url)
        assert code == 1, err
        template.write_text("v2 {text}")  # the fix
        code, err = invoke(*run, "--base-url", server.base_url, "--retry-failed")
        assert code == 0, err
        assert "the template or request options changed" in err and "(4 of 4 requests differ)" in err
        assert "keeps the answers" in err
        sent = [prompt(seen) for seen in server.seen]
        assert sorted(sent[4:]) == ["v2 b", "v2 d"]  # the failed rows only (in any order), as now rendered
        out = read_table(tmp_path / "d.labeled.csv")
        assert [row[2] for row in out[1:]] == ["ans:v1 a", "ans:v2 b", "ans:v1 c", "ans:v2 d"]

        # A changed --param: nothing failed, so nothing is sent and every answer stays.
        code, err = invoke(*run, "--base-url", server.base_url, "--retry-failed", "--param", "temperature=0")
        assert code == 0, err
        assert len(server.seen) == 6 and read_table(tmp_path / "d.labeled.csv") == out


def test_retry_failed_over_changed_data_is_still_refused(tmp_path: Path) -> None:
    data, template, run = setup(tmp_path)
    with answering(answer) as server:
        code, err = invoke(*run, "--base-url", server.base_url)
        assert code == 1, err
        write_table(data, [["id", "text"], ["1", "a"], ["2", "b"], ["3", "c changed"], ["4", "d"]])
        template.write_text("v2 {text}")
        code, err = invoke(*run, "--base-url", server.base_url, "--retry-failed")
        assert code == 2 and "the data rows are not those of that run" in err and "--restart" in err, err
        assert len(server.seen) == 4  # nothing was sent


def test_a_semicolon_csv_is_sniffed_and_its_output_keeps_the_delimiter(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text('id;text\n1;"hello, world"\n2;bye, then\n', encoding="utf-8")
    template = tmp_path / "prompt.txt"
    template.write_text("{text}")
    with answering(lambda text, before: text.upper()) as server:
        code, err = invoke(str(data), "-t", str(template), "--base-url", server.base_url)
        assert code == 0, err
        assert sorted(prompt(seen) for seen in server.seen) == ["bye, then", "hello, world"]
    with (tmp_path / "d.labeled.csv").open(newline="", encoding="utf-8") as f:
        assert list(csv.reader(f, delimiter=";")) == [["id", "text", "answer", "_error", "_raw"],
                                                       ["1", "hello, world", "HELLO, WORLD", "", ""],
                                                       ["2", "bye, then", "BYE, THEN", "", ""]]


def test_delimiter_given_or_refused_with_a_reason(tmp_path: Path) -> None:
    template = tmp_path / "prompt.txt"
    template.write_text("{text}")
    ambiguous = tmp_path / "a.csv"
    ambiguous.write_text("text,kind|note\nx,y|z\n", encoding="utf-8")
    with answering(lambda text, before: "ok") as server:
        code, err = invoke(str(ambiguous), "-t", str(template), "--base-url", server.base_url)
        assert code == 2 and f"{ambiguous}:1:" in err and "give it with --delimiter" in err, err
        code, err = invoke(str(ambiguous), "-t", str(template), "--base-url", server.base_url, "--delimiter", ",")
        assert code == 0, err
        assert [prompt(seen) for seen in server.seen] == ["x"]
        code, err = invoke(str(ambiguous), "-t", str(template), "--base-url", server.base_url,
                           "--delimiter", "|", "-o", str(tmp_path / "pipe.csv"))
        assert code == 2 and "{text}" in err  # split on |, the header has no column "text"

        jsonl = tmp_path / "d.jsonl"
        jsonl.write_text('{"text": "x"}\n', encoding="utf-8")
        code, err = invoke(str(jsonl), "-t", str(template), "--base-url", server.base_url, "--delimiter", ";")
        assert code == 2 and "--delimiter is for CSV/TSV data" in err
        code, err = invoke(str(ambiguous), "-t", str(template), "--base-url", server.base_url, "--delimiter", ";;")
        assert code == 2 and "is not one character" in err
