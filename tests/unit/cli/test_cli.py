"""The command line: exit codes, messages, and the commands end to end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from batchrun.cli import main
from batchrun.simulator import Faults, SimulatorConfig, run_in_thread

from ...helpers import chat_line, files_under, read_jsonl, write_jsonl

SAMPLES = Path(__file__).parents[3] / "samples"


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_mock_run_of_the_sample(tmp_path: Path) -> None:
    sample = shutil.copy(SAMPLES / "chat.jsonl", tmp_path / "chat.jsonl")
    code, _, err = invoke("run", str(sample), "--mock", "--mock-latency-ms", "1")
    assert code == 0, err
    out = read_jsonl(tmp_path / "chat.results.jsonl")
    assert [o["custom_id"] for o in out] == [f"explain-{i:04d}" for i in range(200)]
    assert "200 succeeded, 0 failed" in err and "chat.results.jsonl" in err
    assert "started: 200 lines" in err  # stderr is not a terminal: log lines, not a bar
    # The README's first command: its reasoning-model lines leave room to think, so none is cut.
    assert "output cap" not in err
    assert (tmp_path / "chat.results.errors.jsonl").read_bytes() == b""


def test_failed_lines_exit_1_and_fill_the_errors_file(tmp_path: Path) -> None:
    sample = shutil.copy(SAMPLES / "mixed.jsonl", tmp_path / "mixed.jsonl")
    code, _, err = invoke("run", str(sample), "--mock", "-o", str(tmp_path / "r.jsonl"))
    assert code == 1
    errors = read_jsonl(tmp_path / "r.errors.jsonl")
    # The bad line has no response; the 400 keeps its own, with error null, as OpenAI's error file has it.
    assert errors[0]["error"]["code"] == "invalid_request_line" and errors[0]["response"] is None
    assert errors[1]["error"] is None and errors[1]["response"]["status_code"] == 400
    assert errors[1]["response"]["body"]["error"]["code"] == "empty_array"
    assert f"{sample}:5:" in err  # the bad line is named with its file and line
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 6


def test_rerun_flags(tmp_path: Path) -> None:
    sample = shutil.copy(SAMPLES / "mixed.jsonl", tmp_path / "mixed.jsonl")
    assert invoke("run", str(sample), "--mock")[0] == 1
    code, _, err = invoke("run", str(sample), "--mock")
    assert code == 1 and "is up to date" in err  # the same run again: nothing to do, its exit code
    code, _, err = invoke("run", str(sample), "--mock", "--retry-failed")
    # the two failures were tried again, and failed again
    assert code == 1 and "resumed: of the 6 lines above, 4 were finished by earlier starts, 2 by this one" in err
    assert invoke("run", str(sample), "--mock", "--restart")[0] == 1
    code, _, err = invoke("run", str(sample), "--mock", "--restart", "--retry-failed")
    assert code == 2 and "exclude each other" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.jsonl", "--mock"], "missing.jsonl: no such file"),
        (["run", "{dir}", "--mock"], "is a directory"),
        (["run", "{input}", "--base-url", "https://api.example.com/v1"], "no API key"),
        (["run", "{input}", "--mock", "-o", "{dir}/nope/out.jsonl"], "output directory does not exist"),
        (["run", "{input}", "--base-url", "ftp://example.com"], "must be an http(s) URL"),
        (["run", "{input}", "--mock", "--concurrency", "0"], "Invalid value for '--concurrency'"),
        (["run", "{input}", "--mock", "-o", "{input}"], "is the input file"),
    ],
)
def test_usage_errors_exit_2_before_sending(tmp_path: Path, args: list[str], message: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    argv = [a.format(dir=tmp_path, input=source) for a in args]
    code, _, err = invoke(*argv)
    assert code == 2 and message in err
    assert not list(tmp_path.glob("*.results.jsonl"))


def test_rejected_key_exits_4_and_never_shows_the_key(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(50)])
    with run_in_thread(SimulatorConfig(faults=Faults(require_api_key="sk-good"))) as sim:
        code, out, err = invoke("run", str(source), "--base-url", sim.base_url, "--api-key-env", "MY_KEY", "-v",
                                env={"MY_KEY": "sk-bad-0123456789"})
    assert code == 4 and "rejected the credentials (HTTP 401)" in err
    assert "sk-bad-0123456789" not in out + err
    for path in files_under(tmp_path):
        assert b"sk-bad-0123456789" not in path.read_bytes()


def test_key_comes_from_the_environment(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    with run_in_thread(SimulatorConfig(faults=Faults(require_api_key="sk-good"))) as sim:
        code, _, err = invoke("run", str(source), "-q", env={"OPENAI_API_KEY": "sk-good", "OPENAI_BASE_URL": sim.base_url})
    assert code == 0, err
    assert err == ""  # --quiet


def test_help_has_examples() -> None:
    for command in ("run", "mock-server"):
        code, out, _ = invoke(command, "--help")
        assert code == 0 and "Examples:" in out
    code, out, _ = invoke("run", "--help")
    assert ".results.jsonl" in out and "Exit codes" in out


@pytest.mark.parametrize("any_model", [False, True])
def test_mock_server_serves_until_interrupted(any_model: bool) -> None:
    """It answers as OpenAI does: 404 model_not_found to a model it does not know (unless
    --any-model), and 404 to a base URL without its /v1."""
    flag = ["--any-model"] if any_model else []
    proc = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0", "--latency-ms", "1", *flag],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        base_url = line.split()[3]
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{base_url}/chat/completions", json={"model": "gpt-4o-mini", **chat})
        assert reply.status_code == 200 and reply.json()["usage"]["total_tokens"] > 0
        own = httpx.post(f"{base_url}/chat/completions", json={"model": "my-own-model", **chat})
        if any_model:
            assert own.status_code == 200
        else:
            assert own.status_code == 404 and own.json()["error"]["code"] == "model_not_found"
        no_v1 = httpx.post(f"{base_url.removesuffix('/v1')}/chat/completions", json={"model": "gpt-4o-mini", **chat})
        assert no_v1.status_code == 404
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "simulator stopped after 3 requests" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_mock_server_rejects_impossible_rates() -> None:
    code, _, err = invoke("mock-server", "--rate-429", "0.7", "--rate-500", "0.6")
    assert code == 2 and "add up to at most 1" in err


def test_interrupt_exits_4_and_keeps_what_was_written(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5000)])
    with run_in_thread(SimulatorConfig(latency_ms=20)) as sim:
        proc = subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(source), "--base-url", sim.base_url,
                                 "-c", "4", "--progress-interval", "0.05"],
                                stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        with proc.stderr:
            for line in proc.stderr:
                if "progress:" in line:  # requests are flowing
                    break
            proc.send_signal(signal.SIGINT)
            rest = proc.stderr.read()
        assert proc.wait(timeout=20) == 4
    assert "interrupted by SIGINT" in rest and "run the same command again" in rest
    assert not (tmp_path / "in.results.jsonl").exists()
    written = read_jsonl(tmp_path / "in.results.jsonl.checkpoint" / "output.jsonl")
    assert 0 < len(written) < 5000
    assert [o["custom_id"] for o in written] == [f"req-{i}" for i in range(len(written))]


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(300)])
    code, _, err = invoke("run", str(source), "--mock", "--mock-latency-ms", "5", "-c", "8",
                          "--progress-interval", "0.05")
    assert code == 0
    progress = [line for line in err.splitlines() if "progress:" in line]
    assert progress and "/300 lines" in progress[-1] and "req/s" in progress[-1]


def test_progress_bar_counts_lines() -> None:
    import io

    from batchrun.cli.progress import BarProgress
    from batchrun.records import Result
    from batchrun.stats import RunStats

    stream = io.StringIO()
    stats = RunStats(Path("o.jsonl"), Path("o.errors.jsonl"), total_hint=3)
    bar = BarProgress(stream)
    bar.started(stats)
    for i in range(3):
        result = Result(i, f"c{i}", 200, None, {}, None)
        stats.record(result)
        bar.written(result, stats)
    bar.close(stats)
    assert "| 3/3 " in stream.getvalue() and "failed 0" in stream.getvalue()


def test_a_misspelt_model_is_rehearsed_with_mock(tmp_path: Path) -> None:
    """--mock answers a model that does not exist as OpenAI does: each line fails model_not_found."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    code, _, err = invoke("run", str(source), "--mock", "--mock-latency-ms", "1", "--model", "gpt-4o-mni")
    assert code == 1, err
    failures = read_jsonl(tmp_path / "in.results.errors.jsonl")
    assert [f["response"]["body"]["error"]["code"] for f in failures] == ["model_not_found"] * 3


def test_a_command_collects_young_garbage_less_often_and_an_importer_keeps_its_settings(tmp_path: Path) -> None:
    """The command's process is batchrun's own: its young generation is collected every
    `YOUNG_GENERATION` allocations, not CPython's 700 (a tenth of a run's CPU). A program that
    only imports batchrun keeps its own thresholds."""
    import gc

    from batchrun.runner import YOUNG_GENERATION

    gc.set_threshold(700, 10, 10)  # the conftest puts back what was there before
    import batchrun  # noqa: F401
    assert gc.get_threshold() == (700, 10, 10)
    code, _, _ = invoke("report", str(write_jsonl(tmp_path / "out.jsonl", [])))
    assert code == 0 and gc.get_threshold() == (YOUNG_GENERATION, 10, 10)
