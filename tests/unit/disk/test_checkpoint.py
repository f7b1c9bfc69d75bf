"""Checkpoints and resume, in-process over `httpx.MockTransport`."""

from __future__ import annotations

import fcntl
import os
import random
from pathlib import Path

import anyio
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun import RunConfig, run_batch, skip
from batchrun.errors import ConfigError
from batchrun.runner import run_async

from ...helpers import OnWritten, chat_line, checkpoint_survivors, read_jsonl, succeeded, write_jsonl

BASE = "http://127.0.0.1:9/v1"


class Endpoint:
    """A deterministic endpoint that records what it was sent; ``fail`` answers 400 to some lines."""

    def __init__(self, fail: set[str] | frozenset[str] = frozenset(), delays: dict[str, float] | None = None) -> None:
        self.fail = set(fail)
        self.delays = delays or {}
        self.sent: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        text = orjson.loads(request.content)["messages"][0]["content"]
        self.sent.append(text)
        await anyio.sleep(self.delays.get(text, 0))
        if text in self.fail:
            return httpx.Response(400, json={"error": {"message": "no", "code": "bad"}})
        return httpx.Response(200, json={"model": "m", "choices": [], "answer": text.upper(),
                                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def question(i: int) -> str:
    return f"question {i}"


def staggered() -> Endpoint:
    """Lines finish one after another, a millisecond apart, so an interruption leaves work undone."""
    return Endpoint(delays={question(i): 0.001 * i for i in range(60)})


async def interrupted_run(config: RunConfig, endpoint: Endpoint, after: int) -> None:
    with anyio.CancelScope() as scope:
        await run_batch(config, transport=httpx.MockTransport(endpoint), observer=OnWritten(after, scope.cancel))


def answers(path: Path) -> list[tuple[str, object, object]]:
    return [(o["custom_id"], o["response"]["body"], o["error"]) for o in read_jsonl(path)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(60)])


async def test_resume_sends_only_what_was_not_finished(source: Path, tmp_path: Path) -> None:
    config = RunConfig(source, base_url=BASE, concurrency=8)
    first = Endpoint(delays={question(i): 0.001 * (i % 7) for i in range(60)})
    await interrupted_run(config, first, after=25)
    checkpoint = tmp_path / "in.results.jsonl.checkpoint"
    assert not config.out.exists() and (checkpoint / "journal").exists()
    finished = checkpoint_survivors(checkpoint)
    assert len(finished) >= 25

    second = Endpoint()
    stats = await run_batch(config, transport=httpx.MockTransport(second))
    assert stats.exit_code == 0 and stats.carried_over == len(finished)
    assert not {f"req-{text.split()[1]}" for text in second.sent} & finished  # never sent again
    # Sent twice at most: the requests in flight (8) when the run was cut off.
    assert len(first.sent) + len(second.sent) <= 60 + 8
    assert answers(config.out) == [(f"req-{i}", {"model": "m", "choices": [], "answer": question(i).upper(),
                                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}, None)
                                   for i in range(60)]
    assert not checkpoint.exists()
    assert stats.written == 60 and stats.succeeded == 60


async def test_torn_journal_and_output_tails_are_ignored(source: Path, tmp_path: Path) -> None:
    config = RunConfig(source, base_url=BASE, concurrency=4)
    await interrupted_run(config, staggered(), after=30)
    checkpoint = tmp_path / "in.results.jsonl.checkpoint"
    with (checkpoint / "journal").open("ab") as f:
        f.write(b'41 1 0badc0de {"custom_id": "req-41", "respo')  # a record cut by the crash
    with (checkpoint / "output.jsonl").open("ab") as f:
        f.write(b"\x00" * 100)  # blocks allocated, never written
    stats = await run_batch(config, transport=httpx.MockTransport(Endpoint()))
    assert stats.exit_code == 0
    assert [o["custom_id"] for o in read_jsonl(config.out)] == [f"req-{i}" for i in range(60)]


async def test_changed_input_is_refused(source: Path) -> None:
    config = RunConfig(source, base_url=BASE)
    await interrupted_run(config, staggered(), after=10)
    rows = read_jsonl(source)
    rows[3]["body"]["messages"][0]["content"] = "QUESTION 3"
    write_jsonl(source, rows)
    with pytest.raises(ConfigError, match=r"content changed.*--restart"):
        await run_batch(config, transport=httpx.MockTransport(Endpoint()))
    write_jsonl(source, rows[:-1])
    with pytest.raises(ConfigError, match=r"input file changed \(size"):
        await run_batch(config, transport=httpx.MockTransport(Endpoint()))
    endpoint = Endpoint()
    stats = await run_batch(RunConfig(source, base_url=BASE, restart=True), transport=httpx.MockTransport(endpoint))
    assert stats.exit_code == 0 and len(endpoint.sent) == 59


async def test_changed_options_are_refused(source: Path) -> None:
    await interrupted_run(RunConfig(source, base_url=BASE), staggered(), after=10)
    other = RunConfig(source, base_url="http://127.0.0.1:10/v1")
    with pytest.raises(ConfigError, match=r"options changed \(base_url 'http://127.0.0.1:9/v1' → 'http://127.0.0.1:10/v1'\)"):
        await run_batch(other, transport=httpx.MockTransport(Endpoint()))
    # Options that do not shape requests may change between starts.
    stats = await run_batch(RunConfig(source, base_url=BASE, concurrency=3, timeout=5),
                            transport=httpx.MockTransport(Endpoint()))
    assert stats.exit_code == 0


async def test_a_finished_output_is_not_overwritten_silently(source: Path) -> None:
    config = RunConfig(source, base_url=BASE)
    await run_batch(config, transport=httpx.MockTransport(Endpoint()))
    config.report_path.unlink()  # nothing says which run the output holds (else it is up to date: test_cron.py)
    with pytest.raises(ConfigError, match=r"already holds a finished run.*--retry-failed.*--restart"):
        await run_batch(config, transport=httpx.MockTransport(Endpoint()))
    endpoint = Endpoint()
    stats = await run_batch(RunConfig(source, base_url=BASE, restart=True), transport=httpx.MockTransport(endpoint))
    assert stats.exit_code == 0 and len(endpoint.sent) == 60


async def test_retry_failed_resends_only_failures(source: Path) -> None:
    config = RunConfig(source, base_url=BASE)
    failing = {question(i) for i in (2, 17, 40)}
    first = await run_batch(config, transport=httpx.MockTransport(Endpoint(fail=failing)))
    assert first.exit_code == 1 and len(read_jsonl(config.errors_path)) == 3
    before = config.out.read_bytes().splitlines()

    endpoint = Endpoint()
    stats = await run_batch(RunConfig(source, base_url=BASE, retry_failed=True), transport=httpx.MockTransport(endpoint))
    assert sorted(endpoint.sent) == sorted(failing)
    assert stats.exit_code == 0 and stats.carried_over == 57
    after = config.out.read_bytes().splitlines()
    assert [a for i, a in enumerate(after) if i not in (2, 17, 40)] == [b for i, b in enumerate(before) if i not in (2, 17, 40)]
    assert config.errors_path.read_bytes() == b""


async def test_retry_failed_on_an_interrupted_run(source: Path) -> None:
    failing = {question(i) for i in range(0, 60, 3)}
    config = RunConfig(source, base_url=BASE, concurrency=2)
    await interrupted_run(config, Endpoint(fail=failing, delays=staggered().delays), after=30)
    finished = checkpoint_survivors(source.parent / "in.results.jsonl.checkpoint")
    endpoint = Endpoint()
    stats = await run_batch(RunConfig(source, base_url=BASE, retry_failed=True), transport=httpx.MockTransport(endpoint))
    assert stats.exit_code == 0
    resent = {f"req-{text.split()[1]}" for text in endpoint.sent}
    finished_ok = {cid for cid in finished if question(int(cid.split("-")[1])) not in failing}
    assert finished - finished_ok <= resent  # finished with a failure: sent again
    assert not finished_ok & resent  # finished with a success: kept
    assert [o["error"] for o in read_jsonl(config.out)] == [None] * 60


async def test_a_second_run_on_the_same_output_is_refused(source: Path, tmp_path: Path) -> None:
    config = RunConfig(source, base_url=BASE)
    checkpoint = tmp_path / "in.results.jsonl.checkpoint"
    checkpoint.mkdir()
    with (checkpoint / "lock").open("w") as held:
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match=r"another batchrun run \(pid 4242\) is writing"):
            await run_batch(config, transport=httpx.MockTransport(Endpoint()))


async def test_a_stale_lock_does_not_block(source: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "in.results.jsonl.checkpoint"
    checkpoint.mkdir()
    (checkpoint / "lock").write_text("99999999\n")  # left by a killed process: no flock is held
    stats = await run_batch(RunConfig(source, base_url=BASE), transport=httpx.MockTransport(Endpoint()))
    assert stats.exit_code == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    stop_after=st.integers(1, 39),
    torn_journal=st.integers(0, 300),
    torn_output=st.integers(0, 300),
    concurrency=st.sampled_from([1, 3, 8]),
)
def test_any_interruption_resumes_to_the_uninterrupted_output(
    tmp_path_factory: pytest.TempPathFactory, seed: int, stop_after: int, torn_journal: int, torn_output: int,
    concurrency: int,
) -> None:
    folder = tmp_path_factory.mktemp("p")
    source = write_jsonl(folder / "in.jsonl", [chat_line(i) for i in range(40)])
    rng = random.Random(seed)
    delays = {question(i): rng.random() * 0.003 for i in range(40)}
    failing = {question(i) for i in range(40) if rng.random() < 0.2}
    config = RunConfig(source, base_url=BASE, concurrency=concurrency, window=max(concurrency, 6))

    run_async(interrupted_run, config, Endpoint(failing, delays), stop_after)
    checkpoint = folder / "in.results.jsonl.checkpoint"
    if not checkpoint.exists():  # the last lines finished before the interruption took effect
        assert len(read_jsonl(config.out)) == 40
        return
    for name, cut in (("journal", torn_journal), ("output.jsonl", torn_output)):  # what a crash may lose
        path = checkpoint / name
        os.truncate(path, max(path.stat().st_size - cut, 0))
    survivors = checkpoint_survivors(checkpoint)

    resumed = Endpoint(failing)
    stats = run_async(lambda: run_batch(config, transport=httpx.MockTransport(resumed)))
    assert stats.exit_code == (1 if failing else 0)
    assert not {f"req-{int(text.split()[1])}" for text in resumed.sent} & survivors
    out = read_jsonl(config.out)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(40)]
    assert [not succeeded(o) for o in out] == [question(i) in failing for i in range(40)]
    assert [o["response"]["body"].get("answer") for o in out] == [
        None if question(i) in failing else question(i).upper() for i in range(40)]
    assert [e["custom_id"] for e in read_jsonl(config.errors_path)] == [
        f"req-{i}" for i in range(40) if question(i) in failing]


async def test_a_resumed_run_reports_rates_of_its_own_lines_only(source: Path, tmp_path: Path) -> None:
    config = RunConfig(source, base_url=BASE, concurrency=4)
    await interrupted_run(config, staggered(), after=30)
    stats = await run_batch(config, transport=httpx.MockTransport(Endpoint()))
    assert stats.exit_code == 0 and 30 <= stats.carried_over < 60
    doc = orjson.loads((tmp_path / "in.results.report.json").read_bytes())
    assert doc["lines"] == 60 and doc["tokens"]["total"] == 120
    sent_now = 60 - stats.carried_over
    assert doc["throughput_rps"] * doc["wall_time_s"] == pytest.approx(sent_now)
    assert doc["tokens_per_s"] * doc["wall_time_s"] == pytest.approx(2 * sent_now)


def _recovered_stats(config: RunConfig) -> tuple[int, dict[str, object], int, bytes]:
    from batchrun.accounting.report import Report
    from batchrun.disk.checkpoint import Checkpoint, Opened
    from batchrun.disk.identity import scan_input
    from batchrun.stats import RunStats

    stats = RunStats(config.out, config.errors_path, Report())
    checkpoint = Checkpoint(config)
    assert checkpoint.open(scan_input(config.input_path), restart=False, retry_failed=False) is Opened.RUN
    try:
        recovered = checkpoint.recover(stats)
    finally:
        checkpoint.close()
    if recovered.previous is not None:
        recovered.previous.close()
    errors = (config.checkpoint_path / "errors.jsonl").read_bytes()
    # Not the models: a failed line's model is the request's in a live run (the snapshot keeps
    # that), unknown when read back from a line without a body.
    report = {key: stats.report.to_dict()[key] for key in ("lines", "requests", "tokens", "retries", "latency_ms")}
    return recovered.prefix, report, stats.carried_over, errors


@pytest.mark.parametrize("damage", ["none", "missing", "torn", "stale"])
async def test_a_resume_restores_the_prefix_from_its_snapshot_or_reads_it_all(source: Path, damage: str) -> None:
    """The snapshot (prefix.json) stands in for reading the ordered prefix back; one that is
    missing, torn or no longer true of the output is not used, and the prefix is read whole."""
    rows = [chat_line(i) if i % 5 else chat_line(i, content="fail") for i in range(60)]
    write_jsonl(source, rows)
    config = RunConfig(source, base_url=BASE, concurrency=4)
    await interrupted_run(config, Endpoint(fail={"fail"}), after=30)
    folder = config.checkpoint_path
    snapshot = folder / "prefix.json"
    with_snapshot = _recovered_stats(config)
    assert with_snapshot[0] >= 30 and with_snapshot[3].count(b"\n") == (with_snapshot[0] + 4) // 5
    snapshot_bytes = snapshot.read_bytes()
    snapshot.unlink()
    assert _recovered_stats(config) == with_snapshot  # read whole: the same counts
    snapshot.write_bytes(snapshot_bytes)
    if damage == "torn":
        snapshot.write_bytes(snapshot_bytes[: len(snapshot_bytes) // 2])
    elif damage == "stale":  # the output lost its last line after the snapshot was taken
        output = folder / "output.jsonl"
        lines = output.read_bytes().splitlines(keepends=True)
        output.write_bytes(b"".join(lines[:-1]))
        expected = (with_snapshot[0] - 1, with_snapshot[2] - 1)
    elif damage == "missing":
        snapshot.unlink()
    recovered = _recovered_stats(config)
    if damage == "stale":
        assert (recovered[0], recovered[2]) == expected and recovered[1]["lines"] == expected[0]
    else:
        assert recovered == with_snapshot
    stats = await run_batch(config, transport=httpx.MockTransport(Endpoint(fail={"fail"})))
    assert stats.written == 60 and stats.failed == 12
    assert [o["custom_id"] for o in read_jsonl(config.out)] == [f"req-{i}" for i in range(60)]
    assert len(read_jsonl(config.errors_path)) == 12


@pytest.mark.parametrize("snapshot", [True, False])
async def test_a_broken_line_in_the_prefix_keeps_no_id_from_a_later_line(source: Path, snapshot: bool,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume reads the finished lines' ids off their starts only when none of them was refused
    as invalid (`skip.skip_in_steps`), as the prefix's counters say, from its snapshot or read
    whole: a broken line that starts like a request has no id but its line number's, and a later
    line with the id it seems to have is sent."""
    monkeypatch.setattr(skip, "_SKIP_BLOCK", 1024)  # blocks within the prefix of this short file
    rows = [orjson.dumps(chat_line(i)) for i in range(60)]
    rows[2] = rows[2][:-1]  # its closing brace lost: not JSON
    rows[50] = orjson.dumps({**chat_line(50), "custom_id": "req-2"})
    source.write_bytes(b"".join(row + b"\n" for row in rows))
    config = RunConfig(source, base_url=BASE, concurrency=4)
    await interrupted_run(config, staggered(), after=30)
    assert (config.checkpoint_path / "prefix.json").exists()
    if not snapshot:
        (config.checkpoint_path / "prefix.json").unlink()
    second = Endpoint()
    stats = await run_batch(config, transport=httpx.MockTransport(second))
    assert stats.exit_code == 1 and 30 <= stats.carried_over < 50 and question(50) in second.sent
    out = read_jsonl(config.out)
    assert (out[2]["custom_id"], out[2]["error"]["code"]) == ("line-3", "invalid_request_line")
    assert out[2]["error"]["message"].startswith(f"{source}:3: not valid JSON")
    assert (out[50]["custom_id"], out[50]["error"]) == ("req-2", None)


async def test_a_later_line_with_a_finished_lines_id_is_still_a_duplicate(source: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume reads the finished lines' ids off their starts and keeps those the lines left
    repeat (`skip.skip_in_steps`): such a line is refused as a duplicate, as it is in a run
    that was never interrupted, and not sent."""
    monkeypatch.setattr(skip, "_SKIP_BLOCK", 1024)  # blocks within the prefix of this short file
    rows = [chat_line(i) for i in range(60)]
    rows[55] = {**chat_line(55), "custom_id": "req-3"}
    write_jsonl(source, rows)
    config = RunConfig(source, base_url=BASE, concurrency=4)
    await interrupted_run(config, staggered(), after=30)
    second = Endpoint()
    stats = await run_batch(config, transport=httpx.MockTransport(second))
    assert stats.exit_code == 1 and 30 <= stats.carried_over < 55 and question(55) not in second.sent
    out = read_jsonl(config.out)
    assert (out[55]["custom_id"], out[55]["error"]["code"]) == ("req-3", "duplicate_custom_id")
    assert out[55]["error"]["message"].startswith(f"{source}:56: custom_id 'req-3' was already used")
    assert [o["error"] for o in out[:55] + out[56:]] == [None] * 59
