"""``--cache``: the response cache over loopback, against the simulator — a request answered
before is not sent again (nor submitted in a batch), failures are not kept, and a cache that
cannot be used never fails a run."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from batchrun.accounting.report import report_file
from batchrun.cache.store import cache_file
from batchrun.cli import main
from batchrun.config import RetryPolicy, RunConfig
from batchrun.engine import run_batch
from batchrun.runner import run_async
from batchrun.simulator import Faults, Simulator, SimulatorConfig, run_in_thread
from batchrun.stats import RunStats
from tests.batchworld import lines, world
from tests.helpers import chat_line, read_jsonl, write_jsonl

SAMPLES = Path(__file__).parents[2] / "samples"


def run(sim: Simulator, path: Path, out: Path, cache: Path | None, **config: Any) -> RunStats:
    stats: RunStats = run_async(partial(run_batch, RunConfig(path, out, base_url=sim.base_url, cache=cache, **config)))
    return stats


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """An output line without its line id and batchrun's block (attempts, timings)."""
    return {key: value for key, value in record.items() if key not in ("id", "batchrun")}


def sent(sim: Simulator, action: Any) -> int:
    """The requests the simulator received while ``action()`` ran."""
    before = sim.stats.requests
    action()
    return sim.stats.requests - before


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """The warnings batchrun logs (its logger may not propagate, and an earlier CLI test may have
    left it at ERROR: the CLI sets it up so)."""
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("batchrun")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_second_run_sends_nothing_and_writes_the_same_output(sim: Simulator, tmp_path: Path) -> None:
    # temperature > 0 is cached too: asking the cache is the user's choice
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, temperature=0.7) for i in range(40)])
    cache = tmp_path / "cache"
    first = sent(sim, lambda: run(sim, path, tmp_path / "a.jsonl", cache))
    second = sent(sim, lambda: run(sim, path, tmp_path / "b.jsonl", cache))
    assert (first, second) == (40, 0)
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert [comparable(r) for r in b] == [comparable(r) for r in a]
    assert all(r["batchrun"]["cached"] is True and r["batchrun"]["attempts"] == 0 for r in b)
    assert not any("cached" in r["batchrun"] for r in a)
    report_a = orjson.loads((tmp_path / "a.report.json").read_bytes())
    report_b = orjson.loads((tmp_path / "b.report.json").read_bytes())
    assert report_a["cache"] is None and report_a["cost_usd"] > 0
    assert report_b["cache"] == {"hits": 40, "saved_usd": pytest.approx(report_a["cost_usd"])}
    assert report_b["cost_usd"] == 0 and report_b["throughput_rps"] is None  # nothing sent
    assert report_b["tokens"] == report_a["tokens"]  # what the output holds
    (model,) = report_b["models"].values()
    assert model["cost_usd"] == 0 and model["cache"]["hits"] == 40
    assert report_file(tmp_path / "b.jsonl").to_dict()["cache"] == report_b["cache"]  # batchrun report agrees


def test_a_changed_parameter_model_or_endpoint_is_sent_again(sim: Simulator, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, temperature=0) for i in range(10)])
    run(sim, path, tmp_path / "a.jsonl", cache)
    changed = [chat_line(i, temperature=0) for i in range(10)]
    changed[3]["body"]["temperature"] = 0.5  # type: ignore[index]
    changed[5]["body"]["model"] = "gpt-4o"  # type: ignore[index]
    changed[7]["body"]["max_tokens"] = 50  # type: ignore[index]
    changed[8]["url"] = "/v1/completions"
    changed[8]["body"] = {"model": "gpt-4o-mini", "prompt": "question 8", "temperature": 0}
    path = write_jsonl(tmp_path / "changed.jsonl", changed)
    assert sent(sim, lambda: run(sim, path, tmp_path / "b.jsonl", cache)) == 4
    assert [i for i, r in enumerate(read_jsonl(tmp_path / "b.jsonl")) if "cached" not in r["batchrun"]] == [3, 5, 7, 8]
    with run_in_thread(SimulatorConfig()) as other:  # another endpoint: nothing it answers is there
        assert sent(other, lambda: run(other, path, tmp_path / "c.jsonl", cache)) == 10


def test_failures_are_not_kept(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(60)])
    cache = tmp_path / "cache"
    with run_in_thread(SimulatorConfig(faults=Faults(rate_500=0.3), seed=5)) as sim:
        first = run(sim, path, tmp_path / "a.jsonl", cache, retry=RetryPolicy(max_attempts=1))
        assert 0 < first.failed < 60
        again = sent(sim, lambda: run(sim, path, tmp_path / "b.jsonl", cache, retry=RetryPolicy(max_attempts=6)))
    assert again == first.failed + sum(  # only what failed was sent again (and its 500s retried)
        r["batchrun"]["attempts"] - 1 for r in read_jsonl(tmp_path / "b.jsonl") if "cached" not in r["batchrun"])
    cached = [r["batchrun"].get("cached", False) for r in read_jsonl(tmp_path / "b.jsonl")]
    failed_before = [r["error"] is not None or r["response"]["status_code"] != 200
                     for r in read_jsonl(tmp_path / "a.jsonl")]
    assert cached == [not failed for failed in failed_before]


def test_a_corrupt_cache_warns_once_and_the_run_succeeds(sim: Simulator, tmp_path: Path,
                                                          warnings: list[str]) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    cache = tmp_path / "cache"
    cache.mkdir()
    cache_file(cache).write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 4000)  # a header, and garbage behind it
    stats = run(sim, path, tmp_path / "out.jsonl", cache)
    assert stats.exit_code == 0 and stats.succeeded == 20 and sim.stats.requests == 20
    assert len([w for w in warnings if "response cache bypassed" in w]) == 1, warnings


def test_two_runs_at_once_share_one_cache(sim: Simulator, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    halves = [write_jsonl(tmp_path / f"in{n}.jsonl", [chat_line(i) for i in range(n * 150, n * 150 + 200)])
              for n in (0, 1)]  # 50 lines in common
    procs = [subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(half), "--base-url", sim.base_url,
                               "--cache", str(cache)], stderr=subprocess.PIPE, text=True) for half in halves]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert not any("bypassed" in error for error in errors), errors
    assert sqlite3.connect(cache_file(cache)).execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    union = write_jsonl(tmp_path / "all.jsonl", [chat_line(i) for i in range(350)])
    assert sent(sim, lambda: run(sim, union, tmp_path / "all.results.jsonl", cache)) == 0


def test_via_batch_submits_only_what_the_cache_lacks_and_fills_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = lines(tmp_path, 40)
    first_half = write_jsonl(tmp_path / "half.jsonl", [chat_line(i) for i in range(0, 40, 2)])
    with world(seconds_per_request=1.0) as w:
        stats = run_async(partial(run_batch, RunConfig(first_half, tmp_path / "half.out.jsonl",
                                                       base_url=w.sim.base_url, cache=cache)))
        assert stats.exit_code == 0 and w.sim.stats.requests == 20
        batch = w.run(path, tmp_path / "batch.jsonl", cache=cache)
        assert isinstance(batch, RunStats) and batch.exit_code == 0
        assert w.sim.stats.batch_requests == 20  # the other half came from the cache, never submitted
        out = read_jsonl(tmp_path / "batch.jsonl")
        assert [("cached" in r["batchrun"], "batch_id" in r["batchrun"]) for r in out] == \
            [(True, False), (False, True)] * 20
        report = orjson.loads((tmp_path / "batch.report.json").read_bytes())
        assert report["cache"]["hits"] == 20 and report["batch_api"]["lines"] == 20
        # the batches' answers are in the cache now: online, the whole file sends nothing
        requests = w.sim.stats.requests
        again = run_async(partial(run_batch, RunConfig(path, tmp_path / "online.jsonl", base_url=w.sim.base_url,
                                                       cache=cache)))
        assert again.exit_code == 0 and w.sim.stats.requests == requests
    assert [comparable(r) for r in read_jsonl(tmp_path / "online.jsonl")] == [comparable(r) for r in out]


def test_label_with_cache_sends_nothing_the_second_time(sim: Simulator, tmp_path: Path) -> None:
    for name in ("reviews.csv", "sentiment.txt"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    cache = tmp_path / "cache"

    def label(out: str) -> None:
        result = CliRunner().invoke(main, ["label", str(tmp_path / "reviews.csv"), "-t", str(tmp_path / "sentiment.txt"),
                                           "--labels", "positive,negative,neutral", "--base-url", sim.base_url,
                                           "--cache", str(cache), "-o", str(tmp_path / out), "-q"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.stderr

    assert sent(sim, lambda: label("a.csv")) == 30
    assert sent(sim, lambda: label("b.csv")) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_without_cache_nothing_is_made(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    result = CliRunner().invoke(main, ["run", str(path), "--base-url", sim.base_url, "-q"], catch_exceptions=False)
    assert result.exit_code == 0 and not (tmp_path / "xdg").exists()
    assert sent(sim, lambda: CliRunner().invoke(main, ["run", str(path), "--base-url", sim.base_url, "-q",
                                                       "--cache", "-o", str(tmp_path / "o.jsonl")])) == 5
    assert cache_file(tmp_path / "xdg" / "batchrun").exists()  # --cache alone: the default location
    assert sent(sim, lambda: CliRunner().invoke(main, ["run", str(path), "--base-url", sim.base_url, "-q",
                                                       "--cache", "-o", str(tmp_path / "p.jsonl")])) == 0


def test_cached_lines_cost_nothing_against_max_cost(sim: Simulator, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    known = [chat_line(i, max_tokens=50) for i in range(40)]
    first = run(sim, write_jsonl(tmp_path / "a.jsonl", known), tmp_path / "a.out.jsonl", cache)
    spent = first.report.cost()[0]
    assert spent is not None and spent > 0
    more = write_jsonl(tmp_path / "b.jsonl", [*known, *(chat_line(i, max_tokens=50) for i in range(40, 45))])
    # the 40 lines cached would pass this cap if they were charged; the 5 new ones fit under it
    second = run(sim, more, tmp_path / "b.out.jsonl", cache, max_cost=spent / 2)
    assert second.exit_code == 0 and second.stop_reason is None
    assert second.from_cache == 40 and second.sent_this_start == 5


def test_shards_share_one_cache(sim: Simulator, tmp_path: Path) -> None:
    from batchrun.scale.local import run_sharded

    cache = tmp_path / "cache"
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(90)])

    def sharded(out: str) -> RunStats:
        config = RunConfig(path, tmp_path / out, base_url=sim.base_url, cache=cache)
        stats: RunStats = run_async(partial(run_sharded, config, 3))
        return stats

    assert sent(sim, lambda: sharded("a.jsonl")) == 90
    assert sent(sim, lambda: sharded("b.jsonl")) == 0
    report = orjson.loads((tmp_path / "b.report.json").read_bytes())
    assert report["cache"]["hits"] == 90 and report["cost_usd"] == 0  # the parts' counters, added up
    assert [comparable(r) for r in read_jsonl(tmp_path / "b.jsonl")] == \
        [comparable(r) for r in read_jsonl(tmp_path / "a.jsonl")]


def test_label_via_batch_with_cache_submits_nothing_the_cache_holds(tmp_path: Path) -> None:
    for name in ("reviews.csv", "sentiment.txt"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    cache = tmp_path / "cache"

    def label(w: Any, out: str, *extra: str) -> None:
        result = CliRunner().invoke(main, ["label", str(tmp_path / "reviews.csv"), "-t", str(tmp_path / "sentiment.txt"),
                                           "--labels", "positive,negative,neutral", "--base-url", w.sim.base_url,
                                           "--cache", str(cache), "-o", str(tmp_path / out), "-q", *extra],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.stderr

    with world(seconds_per_request=1.0) as w:
        label(w, "a.csv")  # online: fills the cache
        requests = w.sim.stats.requests
        label(w, "b.csv", "--via", "batch", "--detach")  # nothing to wait for: it writes at once
        assert w.sim.stats.batches_created == 0 and w.sim.stats.batch_requests == 0
        assert w.sim.stats.requests == requests  # not even a file uploaded
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
