"""``run --ray`` with more parts than shards (`scale.slots`), on a local Ray cluster of its own."""

from __future__ import annotations

import http.server
import json
import logging
import re
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from batchrun.config import RunConfig
from batchrun.scale import shards
from batchrun.simulator import Simulator
from batchrun.stats import RunStats
from tests.helpers import chat_line, read_jsonl, write_jsonl

ray = pytest.importorskip("ray")

from batchrun.scale.ray_run import run_on_ray  # noqa: E402 -- only with Ray installed

PARTS = 2 * shards.PARTS_PER_SHARD  # what 2 shards plan of 400 lines once a part may be as small as a line


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of a few lines: a test's input is planned as 2 shards' `PARTS`."""
    monkeypatch.setattr(shards, "PART_WAVES", 0)


class Shown:
    """A progress display that keeps the lines written it was shown."""

    def __init__(self) -> None:
        self.written: list[int] = []

    def started(self, stats: RunStats) -> None:
        self.written.append(stats.written)

    def moved(self, stats: RunStats) -> None:
        self.written.append(stats.written)

    def close(self, stats: RunStats) -> None:
        self.written.append(stats.written)


@contextmanager
def gate(upstream: Simulator, held: bytes) -> Iterator[tuple[str, threading.Event]]:
    """A proxy to ``upstream`` that holds each request whose body has ``held`` until the event is
    set: its base URL, and the event."""
    release = threading.Event()
    root = upstream.base_url.rsplit("/v1", 1)[0]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if held in body:
                release.wait()
            request = urllib.request.Request(root + self.path, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request) as reply:
                answer = reply.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", release
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def phases_line(caplog: pytest.LogCaptureFixture) -> str:
    [line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("phases: ")]
    return line


def test_a_slow_part_holds_up_only_its_slot_and_finished_parts_give_their_leases_back(
        sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [chat_line(i) for i in range(400)]
    lines[0] = chat_line(0, content="hold me")  # the first part cannot finish until the test lets it
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    folder = tmp_path / "out.jsonl.shards"
    holders: list[list[int]] = []
    done = threading.Event()
    caplog.set_level(logging.DEBUG, logger="batchrun")

    def release_when_the_rest_is_done(release: threading.Event) -> None:
        """Once every other part is published, note which parts hold a lease of the run's budget
        (its actor's records), then let the first part finish."""
        while not done.wait(0.02):
            if all((folder / f"{n:04d}.jsonl").exists() for n in range(1, PARTS)):
                run_id = json.loads((folder / "plan.json").read_bytes())["run_id"]
                [name] = [n for n in ray.util.list_named_actors() if n.startswith(f"batchrun-desk-{run_id}-")]
                desk = ray.get_actor(name)
                holders.append(ray.get(desk.__ray_call__.remote(lambda desk: sorted(desk.shards))))
                release.set()
                return

    with gate(sim, b"hold me") as (base_url, release):
        watcher = threading.Thread(target=release_when_the_rest_is_done, args=(release,))
        watcher.start()
        try:
            stats = run_on_ray(RunConfig(source, tmp_path / "out.jsonl", base_url=base_url, rpm=600_000, concurrency=8),
                               shards=2)
        finally:
            done.set()
            watcher.join()
    assert stats.exit_code == 0, stats.stop_reason
    assert [r["custom_id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [f"req-{i}" for i in range(400)]
    # 8 parts were planned for 2 shards; the first shard ran the held part only, the second the others.
    assert f"running 2 shards ({PARTS} parts)" in caplog.text
    assert re.search(rf"; parts 1, {PARTS - 1}; ", phases_line(caplog)), phases_line(caplog)
    # While the held part ran, it alone held a lease: those that finished had given theirs back.
    assert holders == [[0]]


def test_a_stopped_driver_resumes_without_running_its_finished_parts_again(
        sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_tokens=64) for i in range(400)])
    out = tmp_path / "out.jsonl"
    before = sim.stats.requests
    # A cap of about half the run's cost: the first parts finish, the run stops in later ones.
    stopped = run_on_ray(RunConfig(source, out, base_url=sim.base_url, concurrency=4, max_cost=0.008), shards=2)
    assert stopped.exit_code == 3, stopped.stop_reason
    reports = {path.name: path.read_bytes() for path in (tmp_path / "out.jsonl.shards").glob("*.report.json")
               if json.loads(path.read_bytes())["status"] == "complete"}
    finished = len(reports)
    assert 2 <= finished < PARTS
    sent_first = sim.stats.requests - before

    caplog.set_level(logging.INFO, logger="batchrun")
    shown = Shown()
    again = run_on_ray(RunConfig(source, out, base_url=sim.base_url, concurrency=4), shards=2, display=shown)
    assert again.exit_code == 0, again.stop_reason
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"req-{i}" for i in range(400)]
    # Only the parts not finished ran; the finished ones' lines were not sent again, and the
    # progress counted them from the start.
    assert f"running 2 shards ({PARTS - finished} parts)" in caplog.text
    assert sim.stats.requests - before <= 400 + 2 * 4  # at most the requests in flight at the stop went twice
    assert sent_first < sim.stats.requests - before
    assert shown.written[0] >= sum(json.loads(report)["lines"] for report in reports.values())
    assert shown.written[-1] == 400


def test_a_start_with_fewer_shards_counts_every_stopped_part_s_spend_from_the_start(
        sim: Simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_tokens=64) for i in range(400)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, concurrency=4, max_cost=0.008)
    assert run_on_ray(config, shards=2).exit_code == 3
    reports = [json.loads(path.read_bytes()) for path in (tmp_path / "out.jsonl.shards").glob("*.report.json")]
    # The cap stops the running parts (both, unless one had just finished its lines):
    # tests/scenarios/test_shards.py stops a part by hand where it must be more than one.
    assert sum(report["status"] != "complete" for report in reports) >= 1
    spent = sum(report["cost_usd_priced"] + report["spend"]["lost_answers_usd"] for report in reports)

    before = sim.stats.requests
    # One shard: the stopped parts run one after the other. The cap is what every part already
    # spent, so the first of them to run again may send nothing, whatever the second spent.
    again = run_on_ray(replace(config, max_cost=spent * 1.001), shards=1)
    assert again.exit_code == 3 and sim.stats.requests == before
