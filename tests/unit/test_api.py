"""The Python API: what ``import batchrun`` offers, used from synchronous code."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import batchrun
from batchrun.simulator import run_in_thread

from ..helpers import chat_line, read_jsonl, write_jsonl


def test_exported_members() -> None:
    exported = {name for name in dir(batchrun) if not name.startswith("_")}
    modules = {name for name in exported if type(getattr(batchrun, name)).__name__ == "module"}
    assert set(batchrun.__all__) == exported - modules - {"annotations"}
    for name in batchrun.__all__:
        assert getattr(batchrun, name).__module__.startswith("batchrun")


def test_run_batch_sync_against_the_simulator(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(30)])
    with run_in_thread() as sim:
        config = batchrun.RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, concurrency=8)
        stats = batchrun.run_batch_sync(config)
    assert (stats.exit_code, stats.succeeded) == (0, 30)
    assert stats.report.usage().total > 0
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 30


def test_run_via_batch_against_the_simulators_batch_api(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(10)])
    with run_in_thread() as sim:
        config = batchrun.RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url)
        stats = anyio.run(batchrun.run_via_batch, config, batchrun.BatchOptions(poll_interval=0.05))
        assert sim.stats.batches_created == 1
    assert isinstance(stats, batchrun.RunStats) and (stats.exit_code, stats.succeeded) == (0, 10)
    assert all(record["batchrun"]["batch_id"] for record in read_jsonl(tmp_path / "out.jsonl"))


def test_a_config_reads_the_environment_only_through_from_env(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    environ = {"OPENAI_API_KEY": "sk-from-env", "OPENAI_ORG_ID": "org-1", "OPENAI_BASE_URL": "https://gw.example/v1"}
    config = batchrun.RunConfig.from_env(source, environ=environ, concurrency=3)
    assert config.api_key is not None and config.api_key.reveal() == "sk-from-env"
    assert (config.base_url, config.organization, config.concurrency) == ("https://gw.example/v1", "org-1", 3)
    own = batchrun.RunConfig.from_env(source, environ={"MY_KEY": "sk-mine"}, api_key_env="MY_KEY")
    assert own.api_key is not None and own.api_key.reveal() == "sk-mine"
    given = batchrun.RunConfig.from_env(source, environ=environ, base_url="http://127.0.0.1:9/v1")
    assert given.base_url == "http://127.0.0.1:9/v1"  # what is passed wins
    with pytest.raises(batchrun.ConfigError, match=r"set OPENAI_API_KEY .* RunConfig\.from_env"):
        batchrun.RunConfig(source)  # a bare config reads nothing, and says how to


def test_mock_starts_the_simulator_for_the_run(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    stats = batchrun.run_batch_sync(batchrun.RunConfig(source, mock=True))
    assert (stats.exit_code, stats.succeeded, stats.simulated) == (0, 5, True)
    assert all(record["response"]["body"]["system_fingerprint"] == "fp_batchrun_sim"
               for record in read_jsonl(tmp_path / "in.results.jsonl"))


def test_mock_with_a_loopback_base_url_uses_the_simulator_there(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    with run_in_thread() as sim:
        stats = batchrun.run_batch_sync(batchrun.RunConfig(source, mock=True, base_url=sim.base_url))
        assert sim.stats.requests == 5
    assert stats.exit_code == 0


def test_estimate_and_report_functions(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_tokens=10) for i in range(4)])
    estimate = batchrun.estimate(source)
    assert (estimate.requests, estimate.problems) == (4, 0)
    low, high, _ = estimate.cost()[0] or (0.0, 0.0, 0.0)
    batchrun.run_batch_sync(batchrun.RunConfig(source, mock=True))
    report = batchrun.report(tmp_path / "in.results.jsonl")
    assert report.succeeded == 4 and low <= (report.cost()[1] or 0.0) <= high


def test_label_file_with_mock(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("id,text\n1,great\n2,awful\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("Review: {text}", encoding="utf-8")
    outcome = batchrun.label_file_sync(data, tmp_path / "t.txt", labels="positive,negative", mock=True)
    assert outcome.exit_code == 0 and outcome.counts is not None and outcome.counts.ok == 2
    assert outcome.output_path == tmp_path / "d.labeled.csv"
