"""What a run unattended says: ``-q`` is silent only when all went well, log lines carry the
date, bad input lines are not a flood, and a file that holds no request is refused up front."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from batchrun.engine import BAD_LINE_WARNINGS
from batchrun.simulator import Faults, Simulator, SimulatorConfig, run_in_thread

from ..helpers import chat_line, invoke, read_jsonl, write_jsonl

ISO_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ batchrun (DEBUG|INFO|WARNING|ERROR): ")




def test_quiet_prints_one_line_when_the_exit_code_is_not_0(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, messages=[]) if i == 1 else chat_line(i) for i in range(4)])
    out = tmp_path / "out.jsonl"
    code, err = invoke("run", str(source), "-o", str(out), "--base-url", sim.base_url, "-q")
    assert code == 1
    assert err.splitlines() == [f"batchrun: 1 of 4 lines failed: see {tmp_path / 'out.errors.jsonl'} "
                                f"(report: {tmp_path / 'out.report.json'})"]

    code, err = invoke("run", str(source), "-o", str(tmp_path / "capped.jsonl"), "--base-url", sim.base_url, "-q",
                       "--max-cost", "0.00001")
    assert code == 3
    [line] = err.splitlines()
    assert line.startswith("batchrun: stopped early: budget reached (--max-cost): ")
    assert line.count("run again with a higher --max-cost to continue") == 1

    good = write_jsonl(tmp_path / "good.jsonl", [chat_line(i) for i in range(4)])
    assert invoke("run", str(good), "--base-url", sim.base_url, "-q") == (0, "")

    with run_in_thread(SimulatorConfig(faults=Faults(require_api_key="sk-needed-here"))) as locked:
        code, err = invoke("run", str(good), "-o", str(tmp_path / "refused.jsonl"), "--base-url", locked.base_url, "-q")
    assert code == 4
    assert err.splitlines()[-1].startswith("batchrun: stopped early: ")  # after the error logged when it stopped
    # Running it again as it is would be refused the same way: the line names the fix first.
    assert err.splitlines()[-1].endswith("; set OPENAI_API_KEY (or the variable named by --api-key-env), then run the "
                                         f"command again to continue (report: {tmp_path / 'refused.report.json'})")


def test_log_lines_carry_an_iso_date(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0), [1, 2], chat_line(2)])
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 1
    logged = [line for line in err.splitlines() if " batchrun " in line]
    assert any(" INFO: started: 3 lines" in line for line in logged)
    assert any(f" WARNING: {source}:2: expected a JSON object" in line for line in logged)
    assert all(ISO_LOG_LINE.match(line) for line in logged), logged


def test_warnings_for_bad_lines_stop_at_20_then_one_count(tmp_path: Path, sim: Simulator) -> None:
    source = tmp_path / "in.jsonl"
    bad, good = 1000, 5
    source.write_bytes(b"not json\n" * bad + b"".join(orjson.dumps(chat_line(i)) + b"\n" for i in range(good)))
    out = tmp_path / "out.jsonl"
    code, err = invoke("run", str(source), "-o", str(out), "--base-url", sim.base_url)
    assert code == 1
    warned = [line for line in err.splitlines() if f"WARNING: {source}:" in line]
    assert len(warned) == BAD_LINE_WARNINGS == 20
    assert [line.split(f"{source}:")[1].split(":")[0] for line in warned] == [str(n) for n in range(1, 21)]
    errors = tmp_path / "out.errors.jsonl"
    assert f"WARNING: … and {bad - 20} more bad input lines: see {errors}" in err
    assert len(read_jsonl(errors)) == bad  # every one is in the errors file
    assert sim.stats.requests == good


@pytest.mark.parametrize(("name", "content", "hint"), [
    ("reviews.csv", b"id,text\n1,great product\n2,broke after a week\n", True),
    ("reviews.tsv", b"great product\nbroke after a week\n", True),
    ("reviews.jsonl", b"id;text\n1;great\n", True),  # a table by its first line, whatever its name
    ("arrays.jsonl", b"[1, 2]\n\n[3]\nnot json\n", False),
])
def test_a_file_without_a_single_request_is_refused_before_anything_is_sent(
        tmp_path: Path, sim: Simulator, name: str, content: bytes, hint: bool) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2
    assert f"no line of {source} is a valid request (the first: {source}:1: " in err and "nothing was sent" in err
    assert ("did you mean `batchrun label`" in err) == hint
    assert sim.stats.requests == 0
    assert [path.name for path in tmp_path.iterdir()] == [name]  # nothing created


def test_a_file_whose_only_request_is_its_last_line_runs(tmp_path: Path, sim: Simulator) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"id,text\n" * 50 + orjson.dumps(chat_line(0)) + b"\n")
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 1, err
    assert sim.stats.requests == 1 and len(read_jsonl(tmp_path / "out.jsonl")) == 51
