"""A run's lifecycle over `httpx.MockTransport`: order, completeness, the window, aborts, output files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.config import RetryPolicy
from batchrun.transport import Reply, Timeouts

from ...helpers import FakeClock, HeldClock, chat_line, checkpoint_survivors, read_jsonl, write_jsonl

BASE = "http://127.0.0.1:9/v1"


def answer(request: httpx.Request) -> httpx.Response:
    body = orjson.loads(request.content)
    text = body["messages"][0]["content"]
    usage = {"prompt_tokens": len(text), "completion_tokens": 2, "total_tokens": len(text) + 2,
             "prompt_tokens_details": {"cached_tokens": 1}, "completion_tokens_details": {"reasoning_tokens": 1}}
    return httpx.Response(200, json={"model": body["model"], "choices": [], "echo": text, "usage": usage},
                          headers={"x-request-id": f"req_{text}"})



async def test_random_completion_order_gives_input_order(tmp_path: Path) -> None:
    rows = [chat_line(i) for i in range(500)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    rng = random.Random(7)

    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(rng.random() * 0.005)
        return answer(request)

    stats = await run_batch(RunConfig(source, base_url=BASE, concurrency=32), transport=httpx.MockTransport(handler))
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert [o["custom_id"] for o in out] == [r["custom_id"] for r in rows]
    assert all(o["response"]["body"]["echo"] == f"question {i}" for i, o in enumerate(out))
    assert all(o["response"]["status_code"] == 200 and o["error"] is None for o in out)
    assert out[3]["response"]["request_id"] == "req_question 3"
    assert out[0]["id"].startswith("batch_req_") and len({o["id"] for o in out}) == 500
    assert (stats.exit_code, stats.succeeded, stats.failed) == (0, 500, 0)
    usage = stats.report.models["gpt-4o-mini"].usage
    assert usage.prompt == sum(len(f"question {i}") for i in range(500))
    assert (usage.completion, usage.cached, usage.reasoning) == (1000, 500, 500)
    assert (tmp_path / "in.results.errors.jsonl").read_bytes() == b""
    assert not (tmp_path / "in.results.jsonl.checkpoint").exists()


class Watching:
    """An endpoint in the process that answers after a few turns of the event loop (a third of the
    first attempts with a 502), and notes each request sent while an answer it gave before is
    not in the checkpoint's files, read back through another descriptor."""

    def __init__(self, checkpoint: Path | None) -> None:
        """:param checkpoint: ``None``: answer as above, noting nothing."""
        self.checkpoint, self.rng = checkpoint, random.Random(3)
        self.answered = 0
        self.behind: list[tuple[int, int]] = []
        self.failed: set[bytes] = set()

    async def post(self, url: str, headers: object, body: bytes, timeouts: Timeouts) -> Reply:
        if self.answered and self.checkpoint is not None:
            kept = len(checkpoint_survivors(self.checkpoint))
            if kept < self.answered:
                self.behind.append((self.answered, kept))
        for _ in range(self.rng.randint(0, 3)):
            await anyio.lowlevel.checkpoint()
        if body not in self.failed and self.rng.random() < 0.3:
            self.failed.add(body)
            return Reply(502, {}, b"{}")
        self.answered += 1  # no await from here to the answer being put: only a new request sees it
        return Reply(200, {}, orjson.dumps({"model": "gpt-4o-mini", "choices": []}))

    async def aclose(self) -> None:
        pass


async def test_no_request_is_sent_while_an_answer_before_it_is_not_in_the_kernel(tmp_path: Path) -> None:
    """The answers of one event-loop turn share a write, and retries go out whenever their backoff
    ends: still, no request leaves before every answer is in the output or the journal, so a kill
    -9 loses no answer beside the requests in flight."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(400)])
    endpoint = Watching(tmp_path / "in.results.jsonl.checkpoint")
    config = RunConfig(source, base_url=BASE, concurrency=16, window=64)
    stats = await run_batch(config, transport=endpoint, clock=FakeClock())
    assert (stats.exit_code, stats.succeeded) == (0, 400)
    assert endpoint.failed and endpoint.behind == []


async def test_each_saved_snapshot_counts_in_its_report_every_line_it_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshot a resume starts from names the lines of the output it vouches for and the
    report's counters over them: answers written but not yet counted would be lost from the
    report of every later start."""
    from batchrun.disk.checkpoint import Checkpoint
    from batchrun.engine import run as engine

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(10_000)])
    saved: list[tuple[int, int]] = []
    save = Checkpoint.save_snapshot

    def watched(self: Checkpoint, snapshot: Any) -> None:
        saved.append((snapshot.lines, snapshot.report["lines"]))
        save(self, snapshot)

    monkeypatch.setattr(engine, "SYNC_INTERVAL", 0)
    monkeypatch.setattr(Checkpoint, "save_snapshot", watched)
    stats = await run_batch(RunConfig(source, base_url=BASE, concurrency=16), transport=Watching(None), clock=FakeClock())
    assert stats.exit_code == 0 and len(saved) > 2
    assert [lines for lines, counted in saved if lines != counted] == []


async def test_bad_lines_and_failed_requests_keep_their_place(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        orjson.dumps(chat_line(0)) + b"\n"
        + b"not json\n"
        + orjson.dumps(chat_line(2, content="reject me")) + b"\n"
        + orjson.dumps(chat_line(0)) + b"\n"  # duplicate custom_id
        + orjson.dumps(chat_line(4)) + b"\n"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if b"reject me" in request.content:
            return httpx.Response(400, json={"error": {"message": "no", "code": "invalid_value"}})
        return answer(request)

    out_path = tmp_path / "out" / "r.jsonl"
    out_path.parent.mkdir()
    stats = await run_batch(RunConfig(source, out_path, base_url=BASE), transport=httpx.MockTransport(handler))
    out = read_jsonl(out_path)
    assert [o["custom_id"] for o in out] == ["req-0", "line-2", "req-2", "req-0", "req-4"]
    assert [o["error"]["code"] if o["error"] else None for o in out] == [
        None, "invalid_request_line", None, "duplicate_custom_id", None]
    assert out[1]["response"] is None and f"{source}:2:" in out[1]["error"]["message"]
    # An HTTP error keeps its response (error null, as in OpenAI's error file) and is still a failure.
    assert out[2]["response"]["status_code"] == 400 and out[2]["batchrun"]["attempts"] == 1
    assert out[2]["response"]["body"] == {"error": {"message": "no", "code": "invalid_value"}}
    assert out[2]["batchrun"]["error"] == {"code": "invalid_value", "message": "no"}
    errors = read_jsonl(tmp_path / "out" / "r.errors.jsonl")
    assert errors == [out[1], out[2], out[3]]
    assert stats.exit_code == 1 and stats.failures_by_code == {"invalid_request_line": 1, "invalid_value": 1,
                                                               "duplicate_custom_id": 1}


async def test_auth_failure_aborts_with_partial_files(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(200)])
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, json={"error": {"message": "Incorrect API key", "code": "invalid_api_key"}})

    stats = await run_batch(RunConfig(source, base_url=BASE, concurrency=4), transport=httpx.MockTransport(handler))
    assert stats.exit_code == 4 and stats.stop_reason is not None and "HTTP 401" in stats.stop_reason
    assert calls <= 4  # the pool stops at the first rejection instead of burning the file
    assert not (tmp_path / "in.results.jsonl").exists()
    assert (tmp_path / "in.results.jsonl.checkpoint" / "journal").exists()


async def test_retries_are_counted(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(50)])
    seen: dict[bytes, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.content] = seen.get(request.content, 0) + 1
        if seen[request.content] == 1:
            return httpx.Response(429, headers={"retry-after-ms": "1"})
        if seen[request.content] == 2:
            return httpx.Response(502)
        return answer(request)

    stats = await run_batch(RunConfig(source, base_url=BASE), transport=httpx.MockTransport(handler), clock=FakeClock())
    assert (stats.succeeded, stats.retries, stats.rate_limited) == (50, 100, 50)
    assert all(o["batchrun"]["attempts"] == 3 for o in read_jsonl(tmp_path / "in.results.jsonl"))


async def test_a_line_waiting_out_its_backoff_keeps_no_other_line_from_being_sent(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(10)])
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        text = orjson.loads(request.content)["messages"][0]["content"]
        sent.append(text)
        if text in ("question 0", "question 1") and sent.count(text) == 1:
            return httpx.Response(500, json={"error": {"message": "busy", "type": "server_error"}})
        return answer(request)

    clock = HeldClock()  # backoff sleeps last until released
    config = RunConfig(source, base_url=BASE, concurrency=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run_batch(config, transport=httpx.MockTransport(handler), clock=clock))
        while clock.sleepers < 2:  # lines 0 and 1 fail first, whatever else happens
            await anyio.lowlevel.checkpoint()
        await anyio.wait_all_tasks_blocked()
        # Both pool places' first lines are asleep in their backoff; the other lines went anyway.
        assert sorted(set(sent)) == sorted(f"question {i}" for i in range(10))
        clock.release.set()
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert [o["error"] for o in out] == [None] * 10 and [o["batchrun"]["attempts"] for o in out[:3]] == [2, 2, 1]


async def test_slow_head_request_stalls_dispatch_at_the_window(tmp_path: Path) -> None:
    """100k lines, the first one slow: never more than ``window`` lines past it are held."""
    n, window = 100_000, 256
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(b'{"model":"m","messages":[{"role":"user","content":"%d"}]}\n' % i for i in range(n)))
    served = 0
    served_while_head_waited = -1
    head_may_answer = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal served, served_while_head_waited
        if request.content.endswith(b'"content":"0"}]}'):
            await head_may_answer.wait()
            await anyio.wait_all_tasks_blocked()  # everything that could be dispatched has been
            served_while_head_waited = served
        else:
            served += 1
            if served == window - 1:
                head_may_answer.set()
        return httpx.Response(200, content=b'{"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}')

    config = RunConfig(source, base_url=BASE, concurrency=16, window=window)
    with anyio.fail_after(120):
        stats = await run_batch(config, transport=httpx.MockTransport(handler))
    assert served_while_head_waited == window - 1
    assert stats.max_buffered == window - 1
    assert stats.succeeded == n
    with (tmp_path / "in.results.jsonl").open("rb") as f:
        assert all(orjson.loads(line)["custom_id"] == f"line-{i + 1}" for i, line in enumerate(f))


async def test_lines_waiting_behind_a_slow_head_are_bounded_in_bytes(tmp_path: Path) -> None:
    """Large answers behind a slow first line: dispatch pauses once the waiting lines hold
    ``window_bytes`` (the window, 4,096 lines, is far off), and every line is still written, in order."""
    n, concurrency, window_bytes = 300, 4, 2**18
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
    sent_while_head_waited = -1
    sent = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent, sent_while_head_waited
        if b'"question 0"' in request.content:
            await anyio.wait_all_tasks_blocked()  # answered once nothing more can be dispatched
            sent_while_head_waited = sent
        else:
            sent += 1
        response = answer(request)
        return httpx.Response(200, json={**orjson.loads(response.content), "pad": "x" * 8192})

    config = RunConfig(source, base_url=BASE, concurrency=concurrency, window_bytes=window_bytes)
    with anyio.fail_after(60):
        stats = await run_batch(config, transport=httpx.MockTransport(handler))
    lines = (tmp_path / "in.results.jsonl").read_bytes().splitlines(keepends=True)
    assert [orjson.loads(line)["custom_id"] for line in lines] == [f"req-{i}" for i in range(n)]
    assert stats.succeeded == n and sent_while_head_waited < n - 1
    # The reader stopped at the bound; what landed after it had already passed the reader (in
    # flight, or in the job stream: two lines per slot at most).
    longest = max(map(len, lines))
    assert window_bytes <= stats.max_buffered_bytes < window_bytes + 2 * concurrency * longest


async def test_missing_output_directory_fails_before_sending(tmp_path: Path) -> None:
    from batchrun.errors import ConfigError

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    calls = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or answer(r))  # type: ignore[func-returns-value]
    with pytest.raises(ConfigError, match="does not exist"):
        await run_batch(RunConfig(source, tmp_path / "nope" / "o.jsonl", base_url=BASE), transport=transport)
    assert calls == []


async def test_ctrl_c_while_the_connections_close_still_publishes(tmp_path: Path) -> None:
    """Past the pool SIGINT raises where it lands; there, every line is answered already."""
    from batchrun.transport import HttpxTransport

    class InterruptedClosing(HttpxTransport):
        async def aclose(self) -> None:
            raise KeyboardInterrupt

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    config = RunConfig(source, base_url=BASE)
    try:
        stats = await run_batch(config, transport=InterruptedClosing(httpx.MockTransport(answer)), handle_signals=True)
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped a run whose every line was answered")
    assert stats.exit_code == 0 and stats.stop_reason is None
    assert [o["custom_id"] for o in read_jsonl(config.out)] == [f"req-{i}" for i in range(5)]
    assert not config.checkpoint_path.exists()


async def test_a_huge_retry_after_delays_its_own_line_only_and_counts_against_patience(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(6)])

    def handler(request: httpx.Request) -> httpx.Response:
        if orjson.loads(request.content)["messages"][0]["content"] == "question 0":
            return httpx.Response(429, json={"error": {"message": "slow down", "code": "rate_limit_exceeded"}},
                                  headers={"retry-after": "86400"})
        return answer(request)

    clock = FakeClock()
    config = RunConfig(source, base_url=BASE, retry=RetryPolicy(rate_limit_patience=900))
    stats = await run_batch(config, transport=httpx.MockTransport(handler), clock=clock)
    out = read_jsonl(tmp_path / "in.results.jsonl")
    # Each wait capped at 300 s; a third would pass the 900 s of patience, so the line gives up.
    assert out[0]["error"] is None and out[0]["response"]["status_code"] == 429
    assert out[0]["batchrun"]["error"]["code"] == "rate_limit_exceeded" and out[0]["batchrun"]["attempts"] == 3
    assert [w for w in clock.waits if w >= 300] == [pytest.approx(300, rel=0.1)] * 2
    assert all(o["error"] is None and "waited_ms" not in o["batchrun"] for o in out[1:])  # nobody else waited
    assert stats.exit_code == 1


async def test_latency_is_time_on_the_wire_and_waiting_is_counted_apart(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    clock = FakeClock()
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        clock.t += 0.25  # each attempt spends 250 ms on the wire
        if calls == 1:
            return httpx.Response(503, json={"error": {"message": "busy", "type": "server_error"}},
                                  headers={"retry-after": "2"})
        return answer(request)

    stats = await run_batch(RunConfig(source, base_url=BASE), transport=httpx.MockTransport(handler), clock=clock)
    extra = read_jsonl(tmp_path / "in.results.jsonl")[0]["batchrun"]
    assert extra["latency_ms"] == 250.0 and extra["wire_ms"] == 500.0  # the answering attempt; all attempts
    assert 2000 <= extra["waited_ms"] <= 2200  # the Retry-After, with its jitter
    doc = stats.report.to_dict()
    assert doc["latency_ms"]["max"] == pytest.approx(250, rel=0.01)
    assert doc["time_s"]["on_the_wire"] == pytest.approx(0.5) and doc["time_s"]["waiting"] >= 2.0


async def test_a_403_for_one_line_is_that_lines_failure_but_a_revoked_key_stops_the_run(tmp_path: Path) -> None:
    rows = [chat_line(i) for i in range(40)]
    rows[7]["body"]["model"] = "gpt-secret"  # a model the key may not use
    source = write_jsonl(tmp_path / "in.jsonl", rows)

    def handler(request: httpx.Request) -> httpx.Response:
        if orjson.loads(request.content)["model"] == "gpt-secret":
            return httpx.Response(403, json={"error": {"message": "no access to gpt-secret", "code": "model_not_found"}})
        return answer(request)

    stats = await run_batch(RunConfig(source, base_url=BASE, concurrency=1), transport=httpx.MockTransport(handler))
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert stats.exit_code == 1 and out[7]["error"] is None and out[7]["response"]["status_code"] == 403
    assert out[7]["batchrun"]["error"]["code"] == "model_not_found" and stats.failures_by_code == {"model_not_found": 1}
    assert all(o["error"] is None and o["response"]["status_code"] == 200 for i, o in enumerate(out) if i != 7)

    revoked = write_jsonl(tmp_path / "later.jsonl", [chat_line(i) for i in range(200)])
    calls = 0

    def revoking(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 20:  # the key is revoked mid-run: every request from now on
            return httpx.Response(401, json={"error": {"message": "key revoked", "code": "invalid_api_key"}})
        return answer(request)

    stats = await run_batch(RunConfig(revoked, base_url=BASE, concurrency=1), transport=httpx.MockTransport(revoking))
    assert stats.exit_code == 4 and "HTTP 401" in (stats.stop_reason or "")
    assert calls == 20 + 5  # a few in a row are enough: the rest of the file is not burnt


async def test_a_body_that_cannot_be_decoded_is_retried_as_malformed(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(200, content=b"\x1f\x8bnot gzip at all", headers={"content-encoding": "gzip"})
        return answer(request)

    stats = await run_batch(RunConfig(source, base_url=BASE), transport=httpx.MockTransport(handler), clock=FakeClock())
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert stats.exit_code == 0 and out[0]["error"] is None and out[0]["batchrun"]["attempts"] == 2
