"""A run as shards, one after another in this process (`scale.local`), against the simulator over
loopback: the same files as a single run of the input, resumable shard by shard."""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.config import RetryPolicy
from batchrun.disk import publish
from batchrun.errors import ConfigError
from batchrun.records import batch_request_id
from batchrun.scale import parts
from batchrun.scale.local import run_sharded
from batchrun.simulator import Faults, Simulator, SimulatorConfig, run_in_thread, serve

from ..helpers import OnWritten, chat_line, fail_replacing_onto, read_jsonl, write_jsonl

SAMPLES = Path(__file__).parents[2] / "samples"
TIMING = ("latency_ms", "wire_ms", "waited_ms", "started_at", "finished_at")  # measured: each run's own
MEASURED = ("source", "output_bytes", "latency_ms", "time_s", "timeline", "wall_time_s", "throughput_rps", "tokens_per_s",
            "pacing", "shards", "parts")


@pytest.fixture
def one_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run draws the same run id, so that a single run's ids are a sharded run's."""
    monkeypatch.setattr(secrets, "token_hex", lambda n=8: "5a" * n)


def messy_input(path: Path, n: int = 60) -> Path:
    """Requests with a BOM, CRLFs, blank lines, bad lines, and custom_ids repeated within and
    across shards; no newline at the end."""
    lines = []
    for i in range(n):
        row = chat_line(i)
        if i % 11 == 5:
            row["custom_id"] = f"req-{i // 3}"  # a repeat of an earlier line's id
        lines.append(orjson.dumps(row))
        if i % 9 == 4:
            lines.append(b"   ")
        if i % 13 == 7:
            lines.append(b'{"custom_id": "bad", "body": 3}')
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines))
    return path


def untimed(path: Path) -> list[dict[str, Any]]:
    lines = read_jsonl(path)
    for line in lines:
        for key in TIMING:
            line["batchrun"].pop(key, None)
    return lines


def report(path: Path) -> dict[str, Any]:
    doc = orjson.loads(path.read_bytes())
    return {key: value for key, value in doc.items() if key not in MEASURED}


def sharded_like(config: RunConfig, other: Path) -> RunConfig:
    return replace(config, output_path=other)


@pytest.mark.usefixtures("one_run_id")
async def test_a_sharded_run_writes_what_a_single_run_writes(tmp_path: Path, sim: Simulator) -> None:
    source = messy_input(tmp_path / "in.jsonl")
    single = RunConfig(source, tmp_path / "single.jsonl", base_url=sim.base_url, concurrency=8)
    sharded = sharded_like(single, tmp_path / "sharded.jsonl")
    one = await run_batch(single)
    many = await run_sharded(sharded, 3)
    assert (many.exit_code, many.written, many.failed) == (one.exit_code, one.written, one.failed) == (1, 65, 8)

    assert untimed(sharded.out) == untimed(single.out)  # ids, messages, line numbers: the single run's
    assert sharded.errors_path.read_bytes() == single.errors_path.read_bytes()
    messages = [line["error"]["message"] for line in read_jsonl(single.errors_path)]
    assert sum("was already used by an earlier line" in m for m in messages) == 3
    assert any(m.startswith(f"{source}:") for m in messages)
    mine, theirs = orjson.loads(sharded.report_path.read_bytes()), orjson.loads(single.report_path.read_bytes())
    assert report(sharded.report_path) == report(single.report_path)
    assert mine["latency_ms"]["count"] == theirs["latency_ms"]["count"] == 57 and mine["shards"] == 3
    assert mine["input"] == theirs["input"] and mine["wall_time_s"] > 0
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "in.jsonl", "sharded.errors.jsonl", "sharded.jsonl", "sharded.report.json",
        "single.errors.jsonl", "single.jsonl", "single.report.json"]

    again = await run_sharded(sharded, 3)  # finished: up to date, as a single run says
    assert again.up_to_date and again.exit_code == 1 and sim.stats.requests == 2 * 57


@pytest.mark.usefixtures("one_run_id")
async def test_a_shard_stopped_mid_run_resumes_sending_nothing_twice(tmp_path: Path, sim: Simulator) -> None:
    source = messy_input(tmp_path / "in.jsonl")
    reference = RunConfig(source, tmp_path / "single.jsonl", base_url=sim.base_url, concurrency=1)
    await run_batch(reference)
    sent_once = sim.stats.requests
    config = sharded_like(reference, tmp_path / "out.jsonl")
    made = parts.plan(config, 3)
    second = parts.part_config(config, made.shards[1], made.run_id)
    with anyio.CancelScope() as scope:
        await run_batch(second, observer=OnWritten(6, scope.cancel))
    assert second.checkpoint_path.exists() and not second.out.exists()
    stopped = orjson.loads(second.report_path.read_bytes())  # of its own lines
    assert stopped["input_lines"] == made.shards[2].first_index - made.shards[1].first_index
    assert stopped["input"]["span"] == {"start": made.shards[1].start, "end": made.shards[1].end}

    stats = await run_sharded(config, 3)
    assert stats.exit_code == 1
    # Each line once, the stopped shard's finished ones carried over; at most the request in
    # flight at the stop (concurrency 1) was sent again.
    assert 2 * sent_once <= sim.stats.requests <= 2 * sent_once + 1
    assert stats.carried_over >= 6
    assert untimed(config.out) == untimed(reference.out)


@pytest.mark.usefixtures("one_run_id")
@pytest.mark.parametrize("stop", ["before_commit", "between_renames", "while_removing_the_parts"])
async def test_an_interrupted_assemble_completes_at_the_next_start(
        tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch, stop: str) -> None:
    source = messy_input(tmp_path / "in.jsonl")
    reference = RunConfig(source, tmp_path / "single.jsonl", base_url=sim.base_url)
    await run_batch(reference)
    config = sharded_like(reference, tmp_path / "out.jsonl")
    with monkeypatch.context() as patch:
        if stop == "before_commit":  # the disk fills while the parts are put end to end
            real, copies = shutil.copyfileobj, []

            def copy_then_fail(*args: Any) -> None:
                copies.append(args)
                if len(copies) == 2:
                    raise OSError(28, "No space left on device")
                real(*args)

            patch.setattr(shutil, "copyfileobj", copy_then_fail)
        elif stop == "between_renames":
            fail_replacing_onto(patch, config.report_path)
        else:  # the plan and some parts are gone: only the commit record says the run is done
            removed: list[str] = []
            folder = parts.shards_folder(config.out)

            def remove_then_fail(name: str, dir_fd: int) -> None:
                if os.path.samestat(os.fstat(dir_fd), os.stat(folder)):  # not a shard's own checkpoint's
                    removed.append(name)
                if len(removed) == 4:
                    raise OSError(5, "Input/output error")
                remove(name, dir_fd)

            remove = publish._remove
            patch.setattr(publish, "_remove", remove_then_fail)
        with pytest.raises(OSError):
            await run_sharded(config, 3)
    assert parts.shards_folder(config.out).exists()
    sent = sim.stats.requests

    stats = await run_sharded(config, 3)
    assert stats.exit_code == 1 and sim.stats.requests == sent  # nothing sent again
    assert untimed(config.out) == untimed(reference.out)
    assert config.errors_path.read_bytes() == reference.errors_path.read_bytes()
    assert report(config.report_path) == report(reference.report_path)
    assert not parts.shards_folder(config.out).exists()


async def test_every_shard_writes_the_ids_of_the_plan_s_one_run_id(tmp_path: Path, sim: Simulator) -> None:
    source = messy_input(tmp_path / "in.jsonl")
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url)
    made = parts.plan(config, 3)
    for shard in made.shards:
        assert (await run_batch(parts.part_config(config, shard, made.run_id))).exit_code == 1
    parts.assemble(config, made, shards=3, wall_s=1.0)
    lines = read_jsonl(config.out)
    assert [line["id"] for line in lines] == [batch_request_id(made.run_id, i, line["custom_id"])
                                              for i, line in enumerate(lines)]


async def test_a_shard_s_checkpoint_resumes_only_its_own_range(tmp_path: Path, sim: Simulator) -> None:
    source = messy_input(tmp_path / "in.jsonl")
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, concurrency=1)
    made = parts.plan(config, 3)
    shard = made.shards[1]
    with anyio.CancelScope() as scope:
        await run_batch(parts.part_config(config, shard, made.run_id), observer=OnWritten(3, scope.cancel))
    other = replace(shard, end=shard.end - 1)  # the same part, another range: another plan's
    with pytest.raises(ConfigError, match="another part of the input"):
        await run_batch(parts.part_config(config, other, made.run_id))


def spent(config: RunConfig) -> float:
    """USD the parts' reports (finished or stopped) say their lines cost."""
    return sum(orjson.loads(path.read_bytes())["cost_usd"] for path in parts.shards_folder(config.out).glob("*.report.json"))


async def test_max_cost_is_one_cap_across_the_shards(tmp_path: Path) -> None:
    source = Path(shutil.copy(SAMPLES / "chat.jsonl", tmp_path / "chat.jsonl"))  # every line caps its output
    async with serve() as sim:
        config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, concurrency=4, max_cost=0.02)
        stopped = await run_sharded(config, 3)
        assert stopped.exit_code == 3 and "--max-cost" in (stopped.stop_reason or "")
        assert 0.015 < spent(config) <= 0.02  # near the cap, never past it, over the shards together
        # The shards an earlier start finished count too: this cap is not enough for the rest.
        again = await run_sharded(replace(config, max_cost=0.04), 3)
        assert again.exit_code == 3 and 0.035 < spent(config) <= 0.04

        resumed = await run_sharded(replace(config, max_cost=1.0), 3)
        assert resumed.exit_code == 0
        single = await run_batch(replace(config, output_path=tmp_path / "single.jsonl", max_cost=None))
    assert [(line["custom_id"], line["response"]["body"]) for line in read_jsonl(config.out)] == [
        (line["custom_id"], line["response"]["body"]) for line in read_jsonl(tmp_path / "single.jsonl")]
    assert resumed.report.cost()[0] == pytest.approx(single.report.cost()[0])


async def test_a_stopped_part_s_spend_counts_before_it_runs_again(tmp_path: Path) -> None:
    """A later part stopped mid-run (as a --ray start leaves the parts it was running) spent
    money: a start that runs the earlier parts first keeps within the cap with it counted."""
    source = Path(shutil.copy(SAMPLES / "chat.jsonl", tmp_path / "chat.jsonl"))
    async with serve() as sim:
        config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, concurrency=4)
        made = parts.plan(config, 3)
        last = parts.part_config(config, made.shards[2], made.run_id)
        with anyio.CancelScope() as scope:
            await run_batch(last, observer=OnWritten(40, scope.cancel))
        before = spent(config)
        assert before > 0 and not last.out.exists()

        cap = 2 * before  # less than the first two parts need
        stopped = await run_sharded(replace(config, max_cost=cap), 3)
    assert stopped.exit_code == 3 and "--max-cost" in (stopped.stop_reason or "")
    assert spent(config) <= cap


async def test_retry_failed_retries_a_sharded_run_s_failed_lines_shard_by_shard(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(40)])
    flaky = SimulatorConfig(faults=Faults(rate_500=0.3), seed=4)
    with run_in_thread(flaky) as sim:
        config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, retry=RetryPolicy(max_attempts=1),
                           outage_threshold=0)
        first = await run_sharded(config, 3)
    assert first.exit_code == 1 and 0 < first.failed < 40
    with run_in_thread(SimulatorConfig()) as sim:
        config = replace(config, base_url=sim.base_url, retry_failed=True)
        second = await run_sharded(config, 3)
        assert second.exit_code == 0 and sim.stats.requests == first.failed  # only the failed lines again
        assert second.carried_over == 40 - first.failed
        single = await run_batch(replace(config, output_path=tmp_path / "single.jsonl", retry_failed=False))
    assert [(line["custom_id"], line["response"]["body"]) for line in read_jsonl(config.out)] == [
        (line["custom_id"], line["response"]["body"]) for line in read_jsonl(single.output_path)]
    assert not parts.shards_folder(config.out).exists()
    assembled = orjson.loads(config.report_path.read_bytes())
    assert assembled["requests"]["succeeded"] == 40 and assembled["shards"] == 3


async def test_retry_failed_counts_every_part_s_earlier_lines_under_the_cap(tmp_path: Path) -> None:
    # A small output cap: a line's worst case is near what it costs, far below what 40 lines did.
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_completion_tokens=20) for i in range(40)])
    with run_in_thread(SimulatorConfig(faults=Faults(rate_500=0.3), seed=4)) as sim:
        config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, retry=RetryPolicy(max_attempts=1),
                           outage_threshold=0)
        first = await run_sharded(config, 3)
    assert first.exit_code == 1 and first.failed
    paid = first.report.cost()[1]
    with run_in_thread(SimulatorConfig()) as sim:
        # The lines the first start answered used up the cap: the parts that retry later count too.
        again = await run_sharded(replace(config, base_url=sim.base_url, retry_failed=True, max_cost=paid * 1.001), 3)
        assert again.exit_code == 3 and sim.stats.requests == 0
