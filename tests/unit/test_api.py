"""The Python API: what ``import batchrun`` offers, used from synchronous code."""

from __future__ import annotations

from pathlib import Path

import anyio

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
