"""``batchrun label`` on every route: ``--via batch`` against the simulator's Batch API over
loopback, on the simulator's own clock (tests/batchworld.py) that only the test moves, so every
start runs with ``--detach`` (no waits) and a later one collects; ``--ray`` is in test_ray.py.
Each route's labeled output is the online run's, byte for byte."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchrun.cli import main
from tests.batchworld import World, world
from tests.helpers import read_jsonl

SAMPLES = Path(__file__).parents[2] / "samples"
SENTIMENT = "positive,negative,neutral"


def label(w: World, data: Path, out: Path, *extra: str) -> tuple[int, str]:
    """``batchrun label`` of the review sample into ``out`` against ``w``'s simulator: its exit code and stderr."""
    args = ["label", str(data), "-t", str(data.with_name("sentiment.txt")), "--labels", SENTIMENT,
            "-o", str(out), "--base-url", w.sim.base_url, *extra]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, " ".join(result.stderr.split())  # as one line, however the summary wraps


@pytest.fixture
def data(tmp_path: Path) -> Path:
    for name in ("reviews.csv", "sentiment.txt"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    return tmp_path / "reviews.csv"


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A results line without what differs between two runs of one file: ids, timestamps, timings."""
    record = {key: value for key, value in record.items() if key not in ("id", "batchrun")}
    if record.get("response"):
        response = {key: value for key, value in record["response"].items() if key != "request_id"}
        response["body"] = {key: value for key, value in response["body"].items() if key not in ("id", "created")}
        record["response"] = response
    return record


def test_via_batch_detached_then_collected_is_the_online_output(tmp_path: Path, data: Path) -> None:
    online, batch = tmp_path / "online.csv", tmp_path / "batch.csv"
    with world(seconds_per_request=1.0) as w:
        code, err = label(w, data, online)
        assert code == 0, err
        code, err = label(w, data, batch, "--via", "batch", "--detach")
        assert code == 0, err
        assert "batches: 1 " in err and "run the same command again to collect the results" in err
        assert not batch.exists() and w.sim.stats.batches_created == 1
        code, err = label(w, data, batch, "--via", "batch", "--detach")  # still running: nothing new
        assert code == 0 and "They go on at the provider" in err and not batch.exists()
        w.clock.now += 100  # the batch's 30 rows took 30 s of the provider's time
        code, err = label(w, data, batch, "--via", "batch", "--detach")
        assert code == 0, err
        assert "labeled 30 rows into" in err and "30 answered, 0 with an _error" in err
        assert w.sim.stats.batches_created == 1 and w.sim.stats.files_uploaded == 1
    assert batch.read_bytes() == online.read_bytes()
    results = read_jsonl(tmp_path / "batch.csv.batch/results.jsonl")
    assert [comparable(r) for r in results] == \
        [comparable(r) for r in read_jsonl(tmp_path / "online.csv.batch/results.jsonl")]
    assert all(r["batchrun"]["batch_id"].startswith("batch_") for r in results)
    assert not (tmp_path / "batch.csv.batch/results.jsonl.batches").exists()

    with world() as w:
        code, err = label(w, data, batch, "--via", "batch")
        assert code == 0 and "is up to date" in err and w.sim.stats.batches_created == 0  # as online


def test_a_changed_template_is_refused_while_batches_are_at_the_provider(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out.csv"
    with world(seconds_per_request=1.0) as w:
        assert label(w, data, out, "--via", "batch", "--detach")[0] == 0
        template = data.with_name("sentiment.txt")
        template.write_text(template.read_text() + "\nBe brief.\n")
        code, err = label(w, data, out, "--via", "batch", "--detach")
        assert code == 2 and "changed since the earlier run" in err, err
        assert w.sim.stats.batches_created == 1


def test_cancel_joins_what_was_answered(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out.csv"
    with world(seconds_per_request=1.0, cancelling_s=0.0) as w:  # cancelled at once: the start waits for nothing
        assert label(w, data, out, "--via", "batch", "--detach")[0] == 0
        w.clock.now += 10.5  # about a third of the rows answered
        code, err = label(w, data, out, "--via", "batch", "--cancel")
        assert w.sim.stats.batches_cancelled == 1
    assert code == 1, err
    rows = out.read_text().splitlines()
    cancelled = [row for row in rows if "batch_cancelled" in row]
    assert 0 < len(cancelled) < 30 and f"{30 - len(cancelled)} answered, {len(cancelled)} with an _error" in err


def labeled(out: Path) -> list[dict[str, str]]:
    with out.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def batch_ids(out: Path) -> list[str | None]:
    """The batch that answered each row (``None``: answered online), from the engine's results."""
    return [r["batchrun"].get("batch_id") for r in read_jsonl(out.with_name(out.name + ".batch") / "results.jsonl")]


def test_a_passed_deadline_sends_the_rest_online_and_retry_failed_goes_by_batch(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out.csv"
    with world(seconds_per_request=1.0, cancelling_s=0.0, rate_failed=0.3, failed_status=400) as w:
        assert label(w, data, out, "--via", "batch", "--detach")[0] == 0
        w.clock.now += 10.5  # about a third of the rows answered, some with a 400
        code, err = label(w, data, out, "--via", "batch", "--batch-deadline", "0s")
        assert w.sim.stats.batches_cancelled == 1
        first = labeled(out)
        failed = [i for i, row in enumerate(first) if row["_error"]]
        sent = batch_ids(out)
        assert code == 1 and failed and all(sent[i] is not None for i in failed), err  # the batch's 400s
        assert None in sent and all(row["label"] for i, row in enumerate(first) if sent[i] is None)  # online

        code, err = label(w, data, out, "--via", "batch", "--retry-failed", "--detach")
        assert code == 0 and "They go on at the provider" in err, err
        w.clock.now += 100
        code, err = label(w, data, out, "--via", "batch", "--retry-failed", "--detach")
        assert w.sim.stats.batches_created == 2
    assert code in (0, 1) and "labeled 30 rows" in err, err
    again, resent = labeled(out), batch_ids(out)
    retry_batch = {resent[i] for i in failed}
    assert len(retry_batch) == 1 and retry_batch != {sent[failed[0]]}  # the failed rows, in one new batch
    assert [i for i, batch in enumerate(resent) if batch in retry_batch] == failed  # and only those
    assert [row for i, row in enumerate(again) if i not in failed] == \
        [row for i, row in enumerate(first) if i not in failed]  # every earlier answer kept
