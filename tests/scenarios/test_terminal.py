"""What a person sees on the terminal: log lines above the bar, counters in step with it, a
summary that fits 80 columns, one way of writing money, the command that continues a run the
budget stopped, and a --mock run that says it was simulated."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import shlex
import struct
import subprocess
import sys
import termios
from pathlib import Path

import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.accounting.budget import Budget
from batchrun.accounting.estimate import Estimate
from batchrun.accounting.pricing import load_prices
from batchrun.accounting.report import Report
from batchrun.cli.progress import BarProgress, LogProgress
from batchrun.cli.summary import format_summary
from batchrun.cli.tables import render_estimate
from batchrun.records import Result
from batchrun.simulator import serve
from batchrun.stats import EXIT_BUDGET, RunStats

from ..helpers import chat_line, read_jsonl, write_jsonl
from ..screen import screen

ROOT = Path(__file__).parents[2]
BAR = re.compile(r"\| ([\d,]+)/([\d,]+) [\d.,-]+ lines/s")
FRAME = re.compile(r"\| ([\d,]+)/([\d,]+) [^\n]*\x1b\[K\n  failed ([\d,]+)")
MONEY = re.compile(r"<?\$[\d,.]*\d")


def result_line(index: int, *, ok: bool, model: str = "gpt-4o-mini", tokens: int = 10, code: str = "server_error",
                latency: float = 120.0) -> bytes:
    usage = {"prompt_tokens": tokens, "completion_tokens": tokens // 2, "total_tokens": tokens + tokens // 2}
    body = {"id": "x", "object": "chat.completion", "model": model, "usage": usage}
    record = {"id": f"batch_req_{index}", "custom_id": f"req-{index}",
              "response": {"status_code": 200 if ok else 500, "request_id": "r", "body": body},
              "error": None if ok else {"code": code, "message": "failed"},
              "batchrun": {"attempts": 2, "latency_ms": latency, "wire_ms": latency * 2, "waited_ms": 50.0}}
    return orjson.dumps(record) + b"\n"


# -- the progress bar ------------------------------------------------------------------------------

def test_log_lines_go_above_the_bar_not_into_it(tmp_path: Path) -> None:
    """A real run on a pseudo-terminal: each warning has a row of its own, with no bar in it."""
    lines: list[object] = [chat_line(i) for i in range(120)]
    for at in (30, 60, 90):
        lines[at] = {"custom_id": f"bad-{at}"}  # no body: warned about while the bar is shown
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    main_fd, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(source), "--mock", "--mock-latency-ms", "1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal, cwd=tmp_path)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    assert proc.wait() == 1  # the three bad lines failed
    rows = screen(b"".join(chunks).decode())
    warnings = [row for row in rows if "WARNING" in row]
    assert len(warnings) == 3, rows
    for row in warnings:
        assert "lines/s" not in row and "failed " not in row, row  # the lines were cleared before it
    at = next(i for i, row in enumerate(rows) if BAR.search(row))  # the last frame, left on screen
    assert BAR.search(rows[at]).groups() == ("120", "120"), rows  # type: ignore[union-attr]
    assert rows[at + 1].startswith("  failed 3 · spent $"), rows
    assert len(rows[at]) < 120 and len(rows[at + 1]) < 120, rows  # the pty's width: nothing wrapped


def test_the_counters_beside_the_bar_agree_with_its_count() -> None:
    terminal = io.StringIO()
    progress = BarProgress(terminal, min_interval=0)  # draw on every line
    stats = RunStats(Path("out.jsonl"), Path("out.errors.jsonl"), total_hint=50)
    progress.started(stats)
    for index in range(50):
        result = Result.from_line(index, result_line(index, ok=index % 7 != 0))
        stats.record(result)
        progress.written(result, stats)
    progress.close(stats)
    frames = FRAME.findall(terminal.getvalue())
    assert len(frames) > 40
    for done, _, failed in frames:
        assert int(failed) == len(range(0, int(done), 7)), (done, failed)  # lines 0, 7, 14, ... failed
    assert frames[-1] == ("50", "50", "8")


# -- the summary -----------------------------------------------------------------------------------

def test_the_summary_fits_80_columns_whatever_the_names_and_numbers(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stats = RunStats(Path("results/out.jsonl"), Path("results/out.errors.jsonl"),
                     Report(load_prices(), source="results/out.jsonl"), total_hint=10_000_000, simulated=True)
    models = ["ft:gpt-4o-mini-2024-07-18:acme-research-laboratory:sentiment-v2:9xYzAbCd",
              "gpt-4o-mini", "o4-mini-2025-04-16", "meta-llama/Llama-3.3-70B-Instruct-Turbo-Free-Edition"]
    codes = ["server_error", "rate_limit_exceeded", "timeout", "connection_error", "invalid_request_error",
             "context_length_exceeded", "insufficient_quota", "http_529", "http_404", "invalid_json"]
    index = 0
    for model in models:
        for ok in (True, False):
            for code in codes:
                stats.record(Result.from_line(index, result_line(index, ok=ok, model=model, tokens=12_345_678_901,
                                                                 code=code, latency=98_765.4)))
                index += 1
    stats.budget = Budget(5.0, load_prices(), ["gpt-4o-mini"], spent=4.9)
    stats.stop_reason, stats.stop_code = stats.budget.describe_stop(0.25), EXIT_BUDGET
    argv = ["run", "a-rather-long-directory-name/with-a-long-input-file-name.jsonl", "-o", "results/out.jsonl",
            "--concurrency", "256", "--max-cost", "5", "--prices", "my prices.toml", "--rpm", "10000"]
    text = format_summary(stats, "results/out.report.json", argv)
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, text
    assert "  ft:gpt-4…9xYzAbCd  " in text  # a long name is cut in the table (the warning has it whole)
    assert "  246,913,578,020  " in text  # numbers are never cut
    assert "\n    10000 --max-cost 620000\n" in text  # the command is continued with \\, not cut


async def test_money_is_written_one_way_everywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Progress log, summary, report table, estimate, budget message: ``$`` and four decimals."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_tokens=100) for i in range(20)])
    logger = logging.getLogger("batchrun")
    logger.addHandler(caplog.handler)  # the CLI's logging, set up by other tests, does not propagate
    try:
        with caplog.at_level(logging.INFO, logger="batchrun"):
            async with serve() as sim:
                config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, max_cost=0.0005,
                                   concurrency=1)
                stats = await run_batch(config, observer=LogProgress(interval=0))
    finally:
        logger.removeHandler(caplog.handler)
    assert stats.exit_code == EXIT_BUDGET
    progress = [record.getMessage() for record in caplog.records if "progress:" in record.getMessage()]
    assert progress and "projected" in progress[0]
    estimate = Estimate(load_prices(), source=str(source))
    for line in read_jsonl(source):
        estimate.add_request(line["body"]["model"], line["url"], line["body"])
    texts = [*progress, format_summary(stats, "out.report.json", ["run", "in.jsonl"]),
             render_estimate(estimate.to_dict())]
    amounts = [amount for text in texts for amount in MONEY.findall(text)]
    assert len(amounts) > 10
    odd = [amount for amount in amounts if not re.fullmatch(r"\$[\d,]+\.\d{4}|<\$0\.0001", amount)]
    assert not odd, odd


# -- exit 3: the one instruction, and it works -----------------------------------------------------

def test_after_the_budget_stops_a_run_the_printed_command_continues_it(tmp_path: Path) -> None:
    source = Path(tmp_path / "chat.jsonl")
    source.write_bytes((ROOT / "samples" / "chat.jsonl").read_bytes())
    first = _batchrun(tmp_path, "run", "chat.jsonl", "--mock", "--mock-latency-ms", "1", "--max-cost", "0.01")
    assert first.returncode == 3, first.stderr
    assert "run the same command again" not in first.stderr  # that would stop at once, again
    rows = first.stderr.splitlines()
    start = rows.index("to continue, run it again with a higher cap:") + 1
    command = []
    for row in rows[start:]:
        command.append(row.rstrip("\\").strip())
        if not row.endswith("\\"):
            break
    words = shlex.split(" ".join(command))
    assert words[:3] == ["batchrun", "run", "chat.jsonl"] and words[-2] == "--max-cost"
    assert float(words[-1]) > 0.01
    second = _batchrun(tmp_path, *words[1:])
    assert second.returncode == 0, second.stderr
    assert "resumed:" in second.stderr
    assert len(read_jsonl(tmp_path / "chat.results.jsonl")) == 200


def _batchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)


# -- --mock says so ------------------------------------------------------------------------------------

def test_a_mock_run_says_its_answers_and_costs_are_simulated(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    mock = _batchrun(tmp_path, "run", "in.jsonl", "--mock", "--mock-latency-ms", "1")
    assert mock.returncode == 0, mock.stderr
    assert "simulated: --mock: the answers and costs come from the built-in simulator" in mock.stderr
    assert orjson.loads((tmp_path / "in.results.report.json").read_bytes())["simulated"] is True

    async def real() -> RunStats:
        async with serve() as sim:
            return await run_batch(RunConfig(source, tmp_path / "real.jsonl", base_url=sim.base_url))

    from batchrun.runner import run_async

    stats: RunStats = run_async(real)
    assert orjson.loads((tmp_path / "real.report.json").read_bytes())["simulated"] is False
    assert "simulated" not in format_summary(stats, "real.report.json")
