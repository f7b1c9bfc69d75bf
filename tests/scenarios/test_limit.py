"""--limit N, a smoke run: only the first N lines are sent, their answers stay in the checkpoint,
and the run without --limit sends only the rest, reusing them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from batchrun import BatchOptions, RunConfig, run_via_batch
from batchrun.cli import main
from batchrun.errors import ConfigError
from batchrun.simulator import Simulator, SimulatorConfig, run_in_thread

from ..helpers import chat_line, read_jsonl, write_jsonl


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with run_in_thread(SimulatorConfig()) as simulator:
        yield simulator


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stderr


def test_a_smoke_run_sends_the_first_lines_and_the_full_run_reuses_them(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(12)])
    out = tmp_path / "in.results.jsonl"
    code, err = invoke("run", str(source), "--base-url", sim.base_url, "--limit", "3", "-c", "2")
    assert code == 0, err
    assert sim.stats.requests == 3
    assert not out.exists()  # not published: the run is not complete
    flat = " ".join(err.split())
    assert "--limit 3: the first 3 of 12 lines are done" in flat
    assert "run the command again without --limit (or with a higher one) to continue" in flat
    smoke = (tmp_path / "in.results.jsonl.checkpoint" / "output.jsonl").read_bytes()
    assert [orjson.loads(line)["custom_id"] for line in smoke.splitlines()] == ["req-0", "req-1", "req-2"]
    report = orjson.loads((tmp_path / "in.results.report.json").read_bytes())
    assert report["status"] == "stopped" and report["lines"] == 3 and "limit" not in report["options"]

    code, err = invoke("run", str(source), "--base-url", sim.base_url, "--limit", "5")  # a higher one goes on
    assert code == 0, err
    assert sim.stats.requests == 5

    code, err = invoke("run", str(source), "--base-url", sim.base_url)
    assert code == 0, err
    assert sim.stats.requests == 12  # none of the first five sent again
    assert "earlier starts finished 5 of the lines" in err
    assert out.read_bytes().startswith(smoke)
    assert [o["custom_id"] for o in read_jsonl(out)] == [f"req-{i}" for i in range(12)]


def test_the_smoke_runs_exit_code_is_its_lines(tmp_path: Path, sim: Simulator) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(orjson.dumps(chat_line(0)) + b"\n[1, 2]\n" + orjson.dumps(chat_line(2)) + b"\n")
    code, err = invoke("run", str(source), "--base-url", sim.base_url, "--limit", "2", "-q")
    assert code == 1, err  # the second line is not a request
    assert "without --limit" in err


def test_a_limit_of_the_whole_file_or_more_is_a_whole_run(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(4)])
    code, err = invoke("run", str(source), "--base-url", sim.base_url, "--limit", "4")
    assert code == 0, err
    assert len(read_jsonl(tmp_path / "in.results.jsonl")) == 4


def test_label_takes_the_limit_too(tmp_path: Path, sim: Simulator) -> None:
    data = tmp_path / "reviews.csv"
    data.write_text("id,text\n" + "".join(f"{i},review {i}\n" for i in range(6)), encoding="utf-8")
    template = tmp_path / "t.txt"
    template.write_text("Review: {text}", encoding="utf-8")
    command = ["label", str(data), "-t", str(template), "--labels", "positive,negative", "--base-url", sim.base_url]
    code, err = invoke(*command, "--limit", "2")
    assert code == 0, err
    assert sim.stats.requests == 2 and not (tmp_path / "reviews.labeled.csv").exists()
    code, err = invoke(*command)
    assert code == 0, err
    assert sim.stats.requests == 6
    assert len((tmp_path / "reviews.labeled.csv").read_text(encoding="utf-8").splitlines()) == 7


def test_a_limit_that_cannot_be_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--limit"):
        RunConfig(tmp_path / "in.jsonl", base_url="http://127.0.0.1:1/v1", limit=0)


async def test_a_limit_through_the_batch_api_is_refused(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    with pytest.raises(ConfigError, match="--via batch"):
        await run_via_batch(RunConfig(source, base_url="http://127.0.0.1:1/v1", limit=1), BatchOptions())
    code, err = invoke("run", str(source), "--mock", "--via", "batch", "--limit", "1")
    assert code == 2 and "--limit" in err and "--via batch" in err


def test_a_limit_with_ray_is_refused_before_ray_starts(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    code, err = invoke("run", str(source), "--mock", "--ray", "--limit", "1")
    assert code == 2 and "--limit" in err and "--ray" in err
