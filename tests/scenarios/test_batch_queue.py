"""The provider's batch queue limit over loopback (batchapi/queue.py): batches submitted while
they fit under ``--batch-queue-tokens``, the rest as earlier ones end; a batch the simulator
refuses with ``token_limit_exceeded`` submitted again, never written as failed lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from batchrun.batchapi.options import BatchLimits, BatchOptions
from batchrun.cli import main
from batchrun.errors import ConfigError
from batchrun.stats import RunStats
from tests.batchworld import World, lines, world
from tests.helpers import read_jsonl

# 40 lines of 10 per batch: each batch enqueues about 1,100 tokens (the client's estimate) or
# 1,230 (the simulator's), so a limit of 2,600 holds two of them, never three.
LIMIT = 2_600
TEN = BatchLimits(max_requests=10)


def batches(w: World) -> list[dict[str, Any]]:
    reply = httpx.get(f"{w.sim.base_url}/batches?limit=100")
    data: list[dict[str, Any]] = reply.json()["data"]
    return data


def most_at_once(listed: list[dict[str, Any]]) -> int:
    """The most batches that were in the queue (created, not yet ended) at one moment."""
    spans = [(b["created_at"], b["completed_at"] or b["failed_at"]) for b in listed]
    return max(sum(start <= t < end for start, end in spans) for t, _ in spans)


def test_batches_are_submitted_while_they_fit_under_the_queue_and_the_rest_as_earlier_ones_end(tmp_path: Path) -> None:
    path = lines(tmp_path, 40, max_tokens=100)
    options = BatchOptions(BatchLimits(max_requests=10, queue_tokens=LIMIT), poll_interval=5.0)
    with world(seconds_per_request=1.0, queue_tokens=LIMIT) as w:
        stats = w.run(path, tmp_path / "out.jsonl", options)
        listed = batches(w)
    assert isinstance(stats, RunStats) and stats.exit_code == 0
    assert len(listed) == 4 and all(b["status"] == "completed" for b in listed)  # none refused
    assert most_at_once(listed) == 2
    assert all(record["error"] is None for record in read_jsonl(tmp_path / "out.jsonl"))


def test_a_batch_refused_for_the_queue_is_submitted_again_and_the_limit_learned(tmp_path: Path,
                                                                                caplog: pytest.LogCaptureFixture) -> None:
    path = lines(tmp_path, 40, max_tokens=100)
    options = BatchOptions(TEN, poll_interval=5.0)
    with world(seconds_per_request=1.0, queue_tokens=LIMIT) as w:
        stats = w.run(path, tmp_path / "out.jsonl", options)
        listed = batches(w)
    assert isinstance(stats, RunStats) and stats.exit_code == 0
    out = read_jsonl(tmp_path / "out.jsonl")
    assert len(out) == 40 and all(record["error"] is None for record in out)  # never failed lines
    refused = [b for b in listed if b["status"] == "failed"]
    assert refused and all(b["errors"]["data"][0]["code"] == "token_limit_exceeded" for b in refused)
    assert sum(b["status"] == "completed" for b in listed) == 4
    # The first wave's batches 3 and 4 were refused; the limit their refusal states was learned,
    # so each went again only when it fitted, and no batch was refused after.
    assert len(refused) == 2 and len(listed) == 6
    assert "refused for the provider's batch queue limit" in caplog.text


def test_a_detached_start_submits_what_fits_and_the_next_the_rest(tmp_path: Path) -> None:
    path = lines(tmp_path, 40, max_tokens=100)
    detached = BatchOptions(BatchLimits(max_requests=10, queue_tokens=LIMIT), detach=True, poll_interval=5.0)
    with world(seconds_per_request=1.0, queue_tokens=LIMIT) as w:
        first = w.run(path, tmp_path / "out.jsonl", detached)
        assert len(batches(w)) == 2
        w.clock.now += 100  # both ended at the provider
        w.run(path, tmp_path / "out.jsonl", detached)
        w.clock.now += 100
        last = w.run(path, tmp_path / "out.jsonl", detached)
        listed = batches(w)
    assert not isinstance(first, RunStats)
    assert isinstance(last, RunStats) and last.exit_code == 0
    assert len(listed) == 4 and all(b["status"] == "completed" for b in listed)


def test_the_plan_sizes_batches_to_the_queue_and_refuses_a_line_over_it(tmp_path: Path) -> None:
    path = lines(tmp_path, 40, max_tokens=100)
    with world(seconds_per_request=1.0) as w:
        stats = w.run(path, tmp_path / "out.jsonl", BatchOptions(BatchLimits(queue_tokens=1_200), poll_interval=5.0))
        assert isinstance(stats, RunStats) and stats.exit_code == 0
        assert len(batches(w)) == 4  # at most 1,200 tokens each, where one batch of 40 would do
        with pytest.raises(ConfigError, match=r"in\.jsonl:1: the request enqueues .* --batch-queue-tokens 50"):
            w.run(path, tmp_path / "other.jsonl", BatchOptions(BatchLimits(queue_tokens=50)))


def test_estimate_says_how_many_batches_and_how_much_queue(tmp_path: Path) -> None:
    path = lines(tmp_path, 40, max_tokens=100)
    result = CliRunner().invoke(main, ["estimate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert doc["batch_api"]["batches"] == 1
    assert doc["batch_api"]["queue_tokens"] == {"gpt-4o-mini": doc["tokens"]["input"] + doc["tokens"]["output_cap"]}
    text = CliRunner().invoke(main, ["estimate", str(path)]).stdout
    assert f"1 with --via batch, enqueuing {doc['tokens']['input'] + 4000:,} gpt-4o-mini tokens" in text


def test_the_option_needs_via_batch(tmp_path: Path) -> None:
    path = lines(tmp_path, 2)
    result = CliRunner().invoke(main, ["run", str(path), "--batch-queue-tokens", "1000", "--mock"])
    assert result.exit_code == 2 and "--batch-queue-tokens only applies with --via batch" in result.output


def test_the_simulator_refuses_past_its_queue_as_openai_does(tmp_path: Path) -> None:
    path = lines(tmp_path, 20, max_tokens=100)
    with world(seconds_per_request=1.0, queue_tokens=LIMIT) as w:
        w.run(path, tmp_path / "out.jsonl", BatchOptions(TEN, detach=True))  # two batches, 2,460 tokens
        w.run(path, tmp_path / "out2.jsonl", BatchOptions(TEN, detach=True))  # another run: over the queue
        w.clock.now += 1
        listed = batches(w)
    refused = [b for b in listed if b["status"] == "failed"]
    assert len(refused) == 2
    error = refused[0]["errors"]["data"][0]
    assert error == {"code": "token_limit_exceeded", "param": None, "line": None,
                     "message": "Enqueued token limit reached for gpt-4o-mini in organization "
                                "org-batchrun-simulator. Limit: 2,600 enqueued tokens. Please try again once some "
                                "in_progress batches have been completed."}
    assert refused[0]["request_counts"]["total"] == 0


def test_the_learned_limit_is_kept_for_later_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = lines(tmp_path, 60, max_tokens=100)
    detached = BatchOptions(TEN, detach=True, poll_interval=5.0)
    with world(seconds_per_request=1.0, queue_tokens=LIMIT) as w:
        w.run(path, tmp_path / "out.jsonl", detached)  # all 6 submitted: nothing is known yet
        w.clock.now += 1  # validated: 4 of them refused
        w.run(path, tmp_path / "out.jsonl", detached)  # learns the limit; the 4 wait
        for _ in range(3):
            w.clock.now += 100
            last = w.run(path, tmp_path / "out.jsonl", detached)  # 2 more each time, as the queue allows
        listed = batches(w)
    assert isinstance(last, RunStats) and last.exit_code == 0
    assert sum(b["status"] == "failed" for b in listed) == 4  # none refused after the first wave
    # Each refusal taken in once: a later start does not take a refused batch for the part's own.
    assert caplog.text.count("was refused for the provider's batch queue limit") == 4
    assert sum(b["status"] == "completed" for b in listed) == 6
    assert all(record["error"] is None for record in read_jsonl(tmp_path / "out.jsonl"))
