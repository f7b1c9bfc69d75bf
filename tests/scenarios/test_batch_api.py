"""``--via batch`` end to end against the simulator's Batch API over loopback, on the
simulator's clock that only the run's sleeps move on (tests/batchworld.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.batchapi.options import BatchLimits, BatchOptions
from batchrun.batchapi.pending import Pending
from batchrun.cli.tables import render_report
from batchrun.config import RunConfig
from batchrun.disk.checkpoint import Checkpoint
from batchrun.disk.identity import scan_input
from batchrun.errors import ConfigError
from batchrun.records import LineError
from batchrun.stats import RunStats
from tests.batchworld import FAST, lines, world
from tests.helpers import chat_line, read_jsonl, write_jsonl


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """An output line without what differs between two runs of one file: ids, timestamps, timings."""
    record = {key: value for key, value in record.items() if key not in ("id", "batchrun")}
    if record.get("response"):
        response = dict(record["response"])
        response.pop("request_id")
        body = {key: value for key, value in response["body"].items() if key not in ("id", "created")}
        record["response"] = {**response, "body": body}
    return record


def test_output_is_an_online_runs_modulo_ids_and_timestamps(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, model="gpt-4o-mini" if i % 3 else "gpt-4o")
                                               for i in range(30)])
    with world(seconds_per_request=1.0) as w:
        stats = w.run(path, tmp_path / "batch.jsonl")
        online = w.online(path, tmp_path / "online.jsonl")
        assert w.sim.stats.batches_created == 2  # one model per batch
        assert w.sim.stats.files_uploaded == 2
    assert isinstance(stats, RunStats) and stats.exit_code == 0 and online.exit_code == 0
    batch, direct = read_jsonl(tmp_path / "batch.jsonl"), read_jsonl(tmp_path / "online.jsonl")
    assert [comparable(r) for r in batch] == [comparable(r) for r in direct]
    assert all(r["batchrun"]["batch_id"].startswith("batch_") for r in batch)
    assert not any("started_at" in r["batchrun"] or "finished_at" in r["batchrun"] for r in batch)
    assert all(r["batchrun"]["finished_at"] >= r["batchrun"]["started_at"] for r in direct)
    assert (tmp_path / "batch.errors.jsonl").read_bytes() == b""
    report = orjson.loads((tmp_path / "batch.report.json").read_bytes())
    assert report["batch_api"]["lines"] == 30 and report["throughput_rps"] is None  # nothing was sent online
    assert report["options"]["via"] == "batch"
    assert "no request sent online" in render_report(report)
    assert not (tmp_path / "batch.jsonl.batches").exists()  # removed once the output is published


def by_batch(out: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The output's line numbers, by the batch that answered them."""
    batches: dict[str, list[int]] = {}
    for i, record in enumerate(out):
        batches.setdefault(record["batchrun"]["batch_id"], []).append(i)
    return batches


def test_split_by_count_one_model_a_batch_keeps_input_order_across_batches(tmp_path: Path) -> None:
    models = ("gpt-4o-mini", "gpt-4o")
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, model=models[i % 2]) for i in range(40)])
    options = BatchOptions(BatchLimits(max_requests=7), poll_interval=30.0)
    with world(seconds_per_request=0.5) as w:
        stats = w.run(path, tmp_path / "out.jsonl", options)
        created = w.sim.stats.batches_created
    assert isinstance(stats, RunStats) and stats.exit_code == 0
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["custom_id"] for r in out] == [f"req-{i}" for i in range(40)]
    batches = by_batch(out)
    assert created == len(batches) == 6  # 20 lines a model, 7 a batch: 7 + 7 + 6 each
    for members in batches.values():
        assert {out[i]["response"]["body"]["model"] for i in members} in ({"gpt-4o-mini"}, {"gpt-4o"})
        assert members == list(range(members[0], members[-1] + 1, 2))  # every other line: interleaved


def test_split_by_size(tmp_path: Path) -> None:
    rows = [chat_line(i, f"question {i:03d} " + "z" * 400) for i in range(20)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    request = [len(orjson.dumps({"custom_id": str(i), "method": "POST", "url": row["url"], "body": row["body"]})) + 1
               for i, row in enumerate(rows)]
    assert len(set(request[10:])) == 1  # every line from the tenth on is as long
    options = BatchOptions(BatchLimits(max_bytes=3 * request[-1] + 2), poll_interval=30.0)
    with world(seconds_per_request=0.5) as w:
        stats = w.run(path, tmp_path / "out.jsonl", options)
    assert isinstance(stats, RunStats) and stats.exit_code == 0
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["custom_id"] for r in out] == [f"req-{i}" for i in range(20)]
    assert [len(members) for members in by_batch(out).values()] == [3] * 6 + [2]


def test_a_line_larger_than_a_batch_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(0), chat_line(1, "y" * 5000)])
    options = BatchOptions(BatchLimits(max_bytes=2048), poll_interval=30.0)
    with world() as w, pytest.raises(Exception, match=r"in.jsonl:2: the request is .* bytes"):
        w.run(path, tmp_path / "out.jsonl", options)
    assert w.sim.stats.files_uploaded == 0
    assert not (tmp_path / "out.jsonl.batches").exists()  # a refused start leaves nothing behind


def test_a_checkpoint_of_an_online_run_is_refused_before_anything_is_submitted(tmp_path: Path) -> None:
    path = lines(tmp_path, 5)
    out = tmp_path / "out.jsonl"
    with world() as w:
        online = RunConfig(path, out, base_url=w.sim.base_url)
        checkpoint = Checkpoint(online)
        checkpoint.open(scan_input(path), restart=False, retry_failed=False)  # as a killed online run leaves it
        checkpoint.close()
        with pytest.raises(ConfigError, match="options changed"):
            w.run(path, out, FAST, retry_failed=True)
        assert w.sim.stats.files_uploaded == 0
    assert not (tmp_path / "out.jsonl.batches").exists()


def test_expiry_keeps_what_was_answered_and_retry_failed_resubmits_only_the_rest(tmp_path: Path) -> None:
    path = lines(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    # 20 lines take 6 s: the batch expires with a few left, and a batch of those few does not.
    with world(seconds_per_request=0.3, expire_after_s=5.5) as w:
        stats = w.run(path, out)
        assert isinstance(stats, RunStats) and stats.exit_code == 1
        records = read_jsonl(out)
        answered = [r for r in records if r["error"] is None]
        expired = [r for r in records if r["error"] is not None]
        assert 0 < len(answered) < 20
        assert {r["error"]["code"] for r in expired} == {"batch_expired"}
        assert read_jsonl(tmp_path / "out.errors.jsonl") == expired
        report = (tmp_path / "out.report.json").read_text()
        assert '"batch_expired"' in report

        again = w.run(path, out, FAST, retry_failed=True)
        assert isinstance(again, RunStats) and again.exit_code == 0
        assert w.sim.stats.batches_created == 2
    final = read_jsonl(out)
    assert [r["custom_id"] for r in final] == [f"req-{i}" for i in range(20)]
    assert all(r["error"] is None for r in final)
    first, second = {r["batchrun"]["batch_id"] for r in answered}, {r["batchrun"]["batch_id"] for r in final} - \
        {answered[0]["batchrun"]["batch_id"]}
    assert len(first) == 1 and len(second) == 1
    # The retry's batch held the expired lines only.
    assert sum(r["batchrun"]["batch_id"] in second for r in final) == len(expired)


def test_a_deadline_cancels_the_batch_and_sends_the_rest_online(tmp_path: Path) -> None:
    path = lines(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    options = BatchOptions(deadline=6.0, poll_interval=30.0)
    with world(seconds_per_request=1.0) as w:
        stats = w.run(path, out, options)
        assert w.sim.stats.batches_cancelled == 1
    assert isinstance(stats, RunStats) and stats.exit_code == 0
    records = read_jsonl(out)
    assert [r["custom_id"] for r in records] == [f"req-{i}" for i in range(20)]
    assert all(r["error"] is None for r in records)
    via_batch = [r for r in records if "batch_id" in r["batchrun"]]
    online = [r for r in records if "batch_id" not in r["batchrun"]]
    assert 0 < len(via_batch) < 20 and len(via_batch) + len(online) == 20
    assert all(r["batchrun"]["latency_ms"] is not None for r in online)  # sent by the engine


def test_a_deadline_passed_while_no_start_ran_cancels_and_sends_the_rest_online(tmp_path: Path) -> None:
    path = lines(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    with world(seconds_per_request=1.0) as w:
        assert isinstance(w.run(path, out, BatchOptions(detach=True)), Pending)
        w.clock.now += 6.5  # the next start comes after the deadline
        stats = w.run(path, out, BatchOptions(deadline=6.0, poll_interval=30.0))
        assert w.sim.stats.batches_cancelled == 1 and w.sim.stats.batches_created == 1
    assert isinstance(stats, RunStats) and stats.exit_code == 0
    records = read_jsonl(out)
    via_batch = [r for r in records if "batch_id" in r["batchrun"]]
    assert 0 < len(via_batch) < 20 and all(r["error"] is None for r in records)


def test_detach_submits_and_returns_then_a_later_run_collects(tmp_path: Path) -> None:
    path = lines(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    with world(seconds_per_request=100.0) as w:
        first = w.run(path, out, BatchOptions(detach=True))
        assert isinstance(first, Pending) and first.exit_code == 0
        assert "run the same command again" in first.message
        assert not out.exists()
        second = w.run(path, out, BatchOptions(detach=True))  # still running: nothing new submitted
        assert isinstance(second, Pending)
        assert w.sim.stats.batches_created == 1
        w.clock.now += 2000
        third = w.run(path, out, BatchOptions(detach=True))
        assert isinstance(third, RunStats) and third.exit_code == 0
        assert w.sim.stats.batches_created == 1
        fourth = w.run(path, out, BatchOptions(detach=True))
        assert isinstance(fourth, RunStats) and fourth.up_to_date
    assert len(read_jsonl(out)) == 10


def test_cancel_cancels_and_writes_what_was_answered(tmp_path: Path) -> None:
    path = lines(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    with world(seconds_per_request=1.0) as w:
        assert isinstance(w.run(path, out, BatchOptions(detach=True)), Pending)
        w.clock.now += 4.5
        stats = w.run(path, out, BatchOptions(cancel=True, poll_interval=30.0))
        assert w.sim.stats.batches_cancelled == 1
    assert isinstance(stats, RunStats) and stats.exit_code == 1
    codes = [r["error"]["code"] if r["error"] else None for r in read_jsonl(out)]
    assert codes.count(None) in range(1, 10) and set(codes) == {None, "batch_cancelled"}


def test_an_online_start_over_batches_in_flight_sends_nothing(tmp_path: Path) -> None:
    """The lines are at the provider, paid for there: the same output online would buy them twice."""
    path = lines(tmp_path, 30)
    out = tmp_path / "out.jsonl"
    with world(seconds_per_request=100.0) as w:
        assert isinstance(w.run(path, out, BatchOptions(detach=True)), Pending)
        before = w.sim.stats.requests
        with pytest.raises(ConfigError, match="--via batch"):
            w.online(path, out)
        assert w.sim.stats.requests == before  # not one line sent online
        w.clock.now += 5000
        collected = w.run(path, out)  # the batch route collects them
    assert isinstance(collected, RunStats) and collected.exit_code == 0
    assert all("batch_id" in r["batchrun"] for r in read_jsonl(out))


def test_max_cost_submits_only_batches_whose_worst_case_fits(tmp_path: Path) -> None:
    """A batch cannot be stopped once submitted: what does not fit under the cap is held back,
    never submitted, and the same command with a higher cap submits it."""
    from batchrun.batchapi.cap import worst_at_batch_price
    from batchrun.reader import read_jobs

    path = lines(tmp_path, 40, max_completion_tokens=50)
    out = tmp_path / "out.jsonl"
    worst = worst_at_batch_price(RunConfig(path, out, base_url="http://127.0.0.1:9/v1"))
    costs = [worst(job) for job in read_jobs(path, path.stat().st_size) if not isinstance(job, LineError)]
    cap = sum(costs[:25]) + costs[25] / 2  # 25 lines fit, the 26th does not
    with world(seconds_per_request=1.0) as w:
        first = w.run(path, out, max_cost=cap)
        assert isinstance(first, RunStats) and first.exit_code == 3
        assert "--max-cost" in (first.stop_reason or "") and "not submitted" in (first.stop_reason or "")
        assert w.sim.stats.batches_created == 1 and w.sim.stats.batch_requests == 25  # never one line more
        assert not out.exists()
        second = w.run(path, out, max_cost=1.0)
        assert isinstance(second, RunStats) and second.exit_code == 0
        assert w.sim.stats.batches_created == 2 and w.sim.stats.batch_requests == 40  # nothing submitted twice
    records = read_jsonl(out)
    assert [r["custom_id"] for r in records] == [f"req-{i}" for i in range(40)]
    assert all(r["error"] is None and "batch_id" in r["batchrun"] for r in records)
