"""``-`` for standard input or output is refused with the way round it, before anything is read
or sent: a run reads its input again to resume, and writes a file an interrupted run goes on with."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from batchrun.cli import main

from ...helpers import chat_line, write_jsonl


@pytest.mark.parametrize(("args", "message"), [
    (["run", "-", "--mock"], "'-' (standard input) is not supported: the input is read more than once"),
    (["run", "{input}", "-o", "-", "--mock"], "'-' (standard output) is not supported: the results are written"),
    (["label", "-", "-t", "{template}", "--mock"], "'-' (standard input) is not supported"),
    (["label", "{data}", "-t", "{template}", "-o", "-", "--mock"], "'-' (standard output) is not supported"),
])
def test_a_dash_for_stdin_or_stdout_exits_2_saying_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    (tmp_path / "data.csv").write_text("text\nhello\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("Say {text}", encoding="utf-8")
    argv = [a.format(input=source, data=tmp_path / "data.csv", template=tmp_path / "t.txt") for a in args]
    result = CliRunner().invoke(main, argv, input=source.read_text(), catch_exceptions=False)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "in.jsonl", "t.txt"]  # nothing written
