"""``run --ray`` on a local Ray cluster (one, shared by the tests here), against the simulator."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchrun import run_batch_sync
from batchrun.cli import main
from batchrun.config import RetryPolicy, RunConfig
from batchrun.errors import ConfigError
from batchrun.scale.parts import part_config, plan
from batchrun.simulator import Faults, RateLimits, Simulator, SimulatorConfig, run_in_thread
from batchrun.stats import RunStats
from tests.helpers import chat_line, read_jsonl, wait_for, write_jsonl

ray = pytest.importorskip("ray")

from batchrun.scale.ray_run import run_on_ray  # noqa: E402 -- only with Ray installed


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def slow() -> Iterator[Simulator]:
    with run_in_thread(SimulatorConfig(latency_ms=20)) as simulator:
        yield simulator


def actors() -> dict[str, Any]:
    """Every actor of the cluster, dead ones too: Ray's debugging table (the state API needs the
    dashboard, which the tests' cluster has not)."""
    table: dict[str, Any] = ray._private.state.actors()
    return table


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """An output line without what differs between two runs: its id and timings."""
    return {key: value for key, value in record.items() if key not in ("id", "batchrun")}


def rows(n: int) -> list[object]:
    lines: list[object] = [chat_line(i) for i in range(n)]
    lines[n // 3] = {"custom_id": "bad", "body": "not an object"}  # a bad line, in the first shard
    lines[2 * n // 3] = chat_line(1)  # a custom_id the first shard used, in the last
    return lines


class Shown:
    """A progress display that keeps what it was shown: the lines written, each time."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.written: list[int] = []

    def started(self, stats: RunStats) -> None:
        self.total = stats.total_hint

    def moved(self, stats: RunStats) -> None:
        self.written.append(stats.written)

    def close(self, stats: RunStats) -> None:
        self.written.append(stats.written)


def test_output_is_the_single_process_runs(sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", rows(300))
    shown = Shown()
    caplog.set_level(logging.DEBUG, logger="batchrun")
    before = set(actors())
    stats = run_on_ray(RunConfig(source, tmp_path / "ray.jsonl", base_url=sim.base_url), shards=2, display=shown)
    # One actor held the budget and the progress: a second would cost a second worker process.
    assert [actors()[new]["ActorClassName"] for new in set(actors()) - before] == ["RunDesk"]
    # -v says where the time went: the split made while joining the cluster, each shard's start,
    # run and end, its parts (a small input: one a shard), and what a part costs besides its run.
    [phases] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("phases: ")]
    assert re.fullmatch(r"phases: split [0-9.]+ s \(beside ray start\), plan [0-9.]+ s, shards [0-9.]+ s \(started "
                        r"after [0-9.]+, [0-9.]+ s; ran [0-9.]+, [0-9.]+ s; ended after [0-9.]+, [0-9.]+ s; parts 1, 1; "
                        r"[0-9.]+ s a part besides its run\), merge [0-9.]+ s", phases), phases
    # The display followed both shards as one run, to the last line.
    assert shown.total == 300 and shown.written[-1] == 300 and shown.written == sorted(shown.written)
    single = run_batch_sync(RunConfig(source, tmp_path / "one.jsonl", base_url=sim.base_url))
    assert (stats.exit_code, stats.succeeded, stats.failed) == (single.exit_code, single.succeeded, single.failed) \
        == (1, 298, 2)
    assert [comparable(r) for r in read_jsonl(tmp_path / "ray.jsonl")] == \
        [comparable(r) for r in read_jsonl(tmp_path / "one.jsonl")]
    assert [comparable(r) for r in read_jsonl(tmp_path / "ray.errors.jsonl")] == \
        [comparable(r) for r in read_jsonl(tmp_path / "one.errors.jsonl")]
    assert not (tmp_path / "ray.jsonl.shards").exists()


def kill_when_written(part: Path, lines: int, done: threading.Event) -> None:
    """SIGKILL the process writing ``part`` (its checkpoint's lock holds the pid) once its
    checkpoint holds ``lines`` lines."""
    checkpoint = part.with_name(part.name + ".checkpoint")
    while not done.wait(0.01):
        with contextlib.suppress(OSError, ValueError):  # not there yet, or the lock not yet written
            if (checkpoint / "output.jsonl").read_bytes().count(b"\n") >= lines:
                os.kill(int((checkpoint / "lock").read_text()), signal.SIGKILL)
                return


def test_a_killed_workers_shard_is_retried_and_resumes_sending_nothing_twice(slow: Simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(400)])
    out = tmp_path / "out.jsonl"
    before = slow.stats.requests
    done = threading.Event()
    killer = threading.Thread(target=kill_when_written, args=(tmp_path / "out.jsonl.shards" / "0000.jsonl", 60, done))
    killer.start()
    try:
        stats = run_on_ray(RunConfig(source, out, base_url=slow.base_url, concurrency=4), shards=2)
    finally:
        done.set()
        killer.join()
    assert stats.exit_code == 0, stats.stop_reason  # not a task that found no actor
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"req-{i}" for i in range(400)]
    # The killed shard's answers in its checkpoint were kept: at most its requests in flight went twice.
    assert 400 <= slow.stats.requests - before <= 400 + 4


def test_ctrl_c_drains_every_shard_and_the_same_command_finishes(slow: Simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(2000)])
    command = [sys.executable, "-m", "batchrun", "run", str(source), "--base-url", slow.base_url, "--ray",
               "--shards", "2", "-c", "4"]
    before = slow.stats.requests
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    with proc.stderr:
        wait_for(proc, "started: 2,000 lines")  # the progress of the shards, as one run's
        part = tmp_path / "in.results.jsonl.shards" / "0001.jsonl.checkpoint" / "output.jsonl"
        idle = threading.Event()
        while not part.exists() or not part.read_bytes():  # the second shard is answering
            idle.wait(0.05)
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
    assert proc.wait() == 4, rest
    assert "run the same command again" in rest
    sent = slow.stats.requests - before
    assert sent < 2000
    # The stopped run's report is where the message says, and says how it ended and how far it got.
    report = json.loads((tmp_path / "in.results.report.json").read_text())
    # 2,000 lines at -c 4: 2 shards ran 8 parts (those not started yet are left for the next start).
    assert (report["status"], report["exit_code"], report["shards"], report["parts"]) == ("stopped", 4, 2, 8)
    assert "interrupted by SIGINT" in report["stop_reason"]
    assert 0 < report["lines"] <= report["lines_finished"] <= sent
    # -q: nothing from Ray either, such as its notice on a new cluster when RAY_AUTH_MODE is not set
    # (this process's `ray.init` set it).
    unset = {name: value for name, value in os.environ.items() if name != "RAY_AUTH_MODE"}
    again = subprocess.run([*command, "-q"], capture_output=True, text=True, check=False, env=unset)
    assert (again.returncode, again.stderr) == (0, "")
    assert [r["custom_id"] for r in read_jsonl(tmp_path / "in.results.jsonl")] == [f"req-{i}" for i in range(2000)]
    assert slow.stats.requests - before <= 2000 + 2 * 4  # the drain let the requests in flight finish


def test_max_cost_is_one_cap_across_the_shards(sim: Simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_tokens=64) for i in range(400)])
    cap = 0.004  # about a quarter of the 400 lines' answers
    stats = run_on_ray(RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, max_cost=cap), shards=2)
    assert stats.exit_code == 3 and "--max-cost" in (stats.stop_reason or "")
    reports = sorted((tmp_path / "out.jsonl.shards").glob("*.report.json"))
    assert len(reports) == 2  # every shard stopped at the one cap, and said what it spent
    spent = sum(json.loads(report.read_text())["cost_usd_priced"] for report in reports)
    assert 0.9 * cap < spent <= cap


def test_shards_together_keep_to_a_quota_they_learn(tmp_path: Path) -> None:
    # 3,000 RPM starting full: 600 lines past it wait for the refill, about 12 s.
    limits = RateLimits(rpm=3000)
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3600)])
    with run_in_thread(SimulatorConfig(latency_ms=20, limits=limits)) as limited:
        stats = run_on_ray(RunConfig(source, tmp_path / "out.jsonl", base_url=limited.base_url, concurrency=64),
                           shards=2)
        refused = limited.stats.rate_limited["requests"]
        requests = limited.stats.requests
    assert stats.exit_code == 0
    assert refused < 0.01 * requests, f"{refused} of {requests} requests refused"


def test_a_killed_driver_is_resumed_by_the_same_command(slow: Simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(2000)])
    command = [sys.executable, "-m", "batchrun", "run", str(source), "--base-url", slow.base_url, "--ray",
               "--shards", "2", "-c", "4", "-q"]
    before = slow.stats.requests
    driver = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    folder = tmp_path / "in.results.jsonl.shards"

    def answering() -> bool:
        """A part has answers in its checkpoint (one may be published, its checkpoint gone, meanwhile)."""
        for output in folder.glob("*.jsonl.checkpoint/output.jsonl"):
            with contextlib.suppress(OSError):
                if output.read_bytes():
                    return True
        return False

    idle = threading.Event()
    while not ((folder / "0000.jsonl").exists() and answering()):  # a part finished, another running
        idle.wait(0.05)
    driver.kill()  # kill -9: Ray ends the tasks it owned
    driver.wait()
    for lock in folder.glob("*.jsonl.checkpoint/lock"):  # until their workers are gone (a start meanwhile is
        with contextlib.suppress(FileNotFoundError), lock.open("rb") as held:  # refused, as for one process)
            fcntl.flock(held, fcntl.LOCK_EX)
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert [r["custom_id"] for r in read_jsonl(tmp_path / "in.results.jsonl")] == [f"req-{i}" for i in range(2000)]
    assert slow.stats.requests - before <= 2000 + 2 * 4  # at most the requests in flight went twice


def test_a_local_clusters_workers_get_the_headers_and_nothing_writes_them(tmp_path: Path) -> None:
    secret = "sk-ray-header-0123456789abcdef"
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(50)])
    env = {name: value for name, value in os.environ.items() if name not in ("OPENAI_API_KEY", "RAY_ADDRESS")}
    with run_in_thread(SimulatorConfig(faults=Faults(require_api_key=secret))) as locked:
        done = subprocess.run([sys.executable, "-m", "batchrun", "run", str(source), "--base-url", locked.base_url,
                               "--ray", "--shards", "2", "--header", f"Authorization: Bearer {secret}"],
                              capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(tmp_path / "in.results.jsonl")) == 50
    assert secret not in done.stderr
    assert all(secret.encode() not in path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())


def test_headers_are_refused_on_a_cluster_the_workers_do_not_inherit_from(sim: Simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, headers=("api-key: abcdefgh12345678",))
    with pytest.raises(ConfigError, match="local cluster only"):
        run_on_ray(config, shards=2)  # the module's cluster was started by the tests, not by the run
    assert not (tmp_path / "out.jsonl.shards").exists()


def test_the_cap_counts_what_shards_finished_by_an_earlier_start_spent(sim: Simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_tokens=64) for i in range(400)])
    out = tmp_path / "out.jsonl"
    config = RunConfig(source, out, base_url=sim.base_url)
    made = plan(config, 2)
    first = part_config(config, made.shards[0], made.run_id)
    assert run_batch_sync(first).exit_code == 0  # an earlier start finished the first shard, and spent:
    spent = json.loads(first.report_path.read_text())["cost_usd_priced"]
    stats = run_on_ray(replace(config, max_cost=spent + 0.001), shards=2)  # ... leaving $0.001 for the rest
    assert stats.exit_code == 3
    second = part_config(config, made.shards[1], made.run_id)
    assert json.loads(second.report_path.read_text())["cost_usd_priced"] <= 0.001


def test_retry_failed_on_ray_sends_only_the_failed_lines_again(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(200)])
    out = tmp_path / "out.jsonl"
    with run_in_thread(SimulatorConfig(faults=Faults(rate_500=0.2), seed=3)) as flaky:
        once = RunConfig(source, out, base_url=flaky.base_url, retry=RetryPolicy(max_attempts=1))
        first = run_on_ray(once, shards=2)
        failed = first.failed
        assert first.exit_code == 1 and failed > 0
        before = flaky.stats.requests
        again = run_on_ray(replace(once, retry=RetryPolicy(max_attempts=10), retry_failed=True), shards=2)
        sent = flaky.stats.requests - before
    assert again.exit_code == 0
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"req-{i}" for i in range(200)]
    assert failed <= sent < 2 * failed + 20  # the failed lines, with their retries: not the 200



def test_label_on_ray_is_the_online_label_run(sim: Simulator, tmp_path: Path) -> None:
    samples = Path(__file__).parents[2] / "samples"
    data, template = samples / "reviews.csv", samples / "sentiment.txt"
    outputs = {}
    for name, route in (("online", ()), ("ray", ("--ray", "--shards", "2"))):
        outputs[name] = tmp_path / f"{name}.csv"
        result = CliRunner().invoke(main, ["label", str(data), "-t", str(template), "--labels",
                                           "positive,negative,neutral", "-o", str(outputs[name]), "--base-url",
                                           sim.base_url, *route], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        assert ("running 2 shards" in result.stderr) == (name == "ray")
    assert outputs["ray"].read_bytes() == outputs["online"].read_bytes()
    work = tmp_path / "ray.csv.batch"
    assert [comparable(r) for r in read_jsonl(work / "results.jsonl")] == \
        [comparable(r) for r in read_jsonl(tmp_path / "online.csv.batch/results.jsonl")]
    assert (work / "results.report.json").exists() and not (work / "results.jsonl.shards").exists()


NODE_KEY = "sk-node-0123456789abcdef"


@pytest.fixture(scope="module")
def head() -> Iterator[dict[str, str]]:
    """A cluster that ``ray start --head`` left running, as a user's may be, in a Ray temp dir of
    its own: yields the environment in which Ray finds it by itself (its current-cluster file),
    with ``RAY_ADDRESS`` naming it. Its node was started elsewhere, with ``NODE_KEY`` in
    ``$BR_NODE_KEY`` and no ``$OPENAI_API_KEY``."""
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("no ray command beside this Python")
    root = Path(tempfile.mkdtemp(prefix="br", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    (root / "elsewhere").mkdir()
    env = {name: value for name, value in os.environ.items() if name not in ("OPENAI_API_KEY", "RAY_ADDRESS")}
    env.update(RAY_TMPDIR=str(root), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    node = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", "0", "--num-cpus", "1",
                             "--include-dashboard", "false", "--disable-usage-stats"],
                            cwd=root / "elsewhere", env={**env, "BR_NODE_KEY": NODE_KEY,
                                                         "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert node.stdout is not None
    output = node.stdout
    drain: threading.Thread | None = None
    try:
        said = []
        for line in output:
            said.append(line)
            if "will now block" in line:  # after it wrote the current-cluster file
                break
        else:
            pytest.fail(f"ray start --head failed (exit {node.wait()}):\n{''.join(said)}")
        drain = threading.Thread(target=output.read)  # --block goes on writing
        drain.start()
        yield {**env, "RAY_ADDRESS": (root / "ray" / "ray_current_cluster").read_text().strip()}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)  # its group: the head's processes, started by this test
        node.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        if drain is not None:
            drain.join()  # at the end of the output: every process of the group is gone
        output.close()
        shutil.rmtree(root, ignore_errors=True)


def test_ray_without_an_address_runs_its_own_cluster_with_the_credentials(head: dict[str, str],
                                                                            tmp_path: Path) -> None:
    secret = "sk-driver-0123456789abcdef"
    write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(50)])
    found = {name: value for name, value in head.items() if name != "RAY_ADDRESS"}  # found through its file only
    with run_in_thread(SimulatorConfig(faults=Faults(require_api_key=secret))) as locked:
        done = subprocess.run([sys.executable, "-m", "batchrun", "run", "in.jsonl", "-o", "out.jsonl", "--base-url",
                               locked.base_url, "--ray", "--shards", "2", "-q"], capture_output=True, text=True,
                              check=False, cwd=tmp_path, env={**found, "OPENAI_API_KEY": secret})
        answered = dict(locked.stats.responses)
    assert (done.returncode, done.stderr) == (0, "")
    assert answered == {200: 50}  # every request carried the key
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 50
    # Its cluster (Ray's latest session) started no autoscaler monitor, log monitor or API server:
    # each would have its log files there.
    logs = Path(head["RAY_TMPDIR"]) / "ray" / "session_latest" / "logs"
    started = {path.name.partition(".")[0] for path in logs.iterdir()}
    assert {"gcs_server", "raylet"} <= started and not started & {"monitor", "log_monitor", "dashboard"}
    # Its workers: one per CPU, which Ray starts with the cluster, or one per shard and one for the
    # actor if more; not another besides (on 2 CPUs, with the actor created before the tasks, a 4th).
    workers = list(logs.glob("python-core-worker-*.log"))
    assert len(workers) <= max(os.cpu_count() or 1, 2 + 1), sorted(path.name for path in workers)


def test_on_an_existing_cluster_the_key_is_the_nodes_and_paths_the_drivers(head: dict[str, str],
                                                                           tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    with run_in_thread(SimulatorConfig(faults=Faults(require_api_key=NODE_KEY))) as locked:
        command = [sys.executable, "-m", "batchrun", "run", "in.jsonl", "-o", "out.jsonl", "--base-url",
                   locked.base_url, "--ray", "-q"]
        missing = subprocess.run([*command, "--api-key-env", "BR_DRIVER_KEY"], capture_output=True, text=True,
                                 check=False, cwd=tmp_path, env={**head, "BR_DRIVER_KEY": NODE_KEY})
        refused = locked.stats.requests
        done = subprocess.run([*command, "--api-key-env", "BR_NODE_KEY"], capture_output=True, text=True,
                              check=False, cwd=tmp_path, env={**head, "BR_NODE_KEY": NODE_KEY})
        answered = dict(locked.stats.responses)
        # Two tries to reach the cluster (Ray's core warns on stderr at each), with a token it refuses:
        unjoined = subprocess.run([*command, "--api-key-env", "BR_NODE_KEY", "--restart"], capture_output=True, text=True,
                                  check=False, cwd=tmp_path, env={**head, "BR_NODE_KEY": NODE_KEY,
                                                                  "RAY_AUTH_TOKEN": secrets.token_hex(16),
                                                                  "RAY_gcs_server_port_wait_time_s": "2"})
    assert unjoined.returncode == 2
    assert unjoined.stderr.splitlines() == [f"batchrun: error: --ray: cannot join the Ray cluster at $RAY_ADDRESS: "
                                            f"Failed to connect to Ray cluster at {head['RAY_ADDRESS']}"]
    # The node has no $BR_DRIVER_KEY: refused before sending, never sent without it.
    assert missing.returncode == 2 and "$BR_DRIVER_KEY is not set on the Ray node" in missing.stderr
    assert refused == 0
    # Its workers start in another directory: the relative paths are the driver's all the same.
    assert (done.returncode, done.stderr) == (0, "")
    assert answered == {200: 20}
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 20
