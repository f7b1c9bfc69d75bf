"""How a run ends early, and what that leaves for the next start: an abort drains the requests
on the wire and writes their answers (the provider bills them); lines held back as maybe the
key's fault are not written on any stop, so the next start sends them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import orjson

from batchrun import RetryPolicy, RunConfig, run_batch
from batchrun.accounting.ledger import worst_case
from batchrun.accounting.pricing import load_prices
from batchrun.reader import read_jobs

from ..helpers import FakeClock, HeldClock, chat_line, read_jsonl, write_jsonl

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def custom_id(request: httpx.Request) -> str:
    question = orjson.loads(request.content)["messages"][0]["content"]
    return f"req-{question.split()[-1]}"


def answer(request: httpx.Request, tokens: tuple[int, int] = (10, 5)) -> httpx.Response:
    usage = {"prompt_tokens": tokens[0], "completion_tokens": tokens[1], "total_tokens": sum(tokens)}
    choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    return httpx.Response(200, json={"model": "gpt-4o-mini", "choices": [choice], "usage": usage})


def revoked() -> httpx.Response:
    return httpx.Response(401, json={"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})


class StoppingLogged(logging.Handler):
    """Sets ``event`` when the run logs that it is stopping (`Control.abort`)."""

    def __init__(self, event: anyio.Event) -> None:
        super().__init__()
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("stopping:"):
            self.event.set()


async def run(config: RunConfig, handler: Handler, seen: list[str]) -> None:
    async def recording(request: httpx.Request) -> httpx.Response:
        seen.append(custom_id(request))
        return await handler(request)

    await run_batch(config, transport=httpx.MockTransport(recording), clock=FakeClock())


async def test_an_abort_writes_the_answers_on_the_wire(tmp_path: Path) -> None:
    """The key is revoked mid-run: five 401s in a row abort it. A request the server was already
    answering is billed; its answer is written, and the next start does not buy it again."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    config = RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=4)
    aborted = anyio.Event()
    watcher = StoppingLogged(aborted)
    logging.getLogger("batchrun").addHandler(watcher)

    async def revoked_mid_run(request: httpx.Request) -> httpx.Response:
        line = custom_id(request)
        if line in ("req-0", "req-1"):
            return answer(request)
        if line == "req-2":  # on the wire when the abort comes: answered only after it
            await aborted.wait()
            await anyio.lowlevel.checkpoint()  # where a cancellation of the requests in flight lands
            return answer(request)
        return revoked()

    first: list[str] = []
    try:
        await run(config, revoked_mid_run, first)
    finally:
        logging.getLogger("batchrun").removeHandler(watcher)
    assert aborted.is_set() and "req-2" in first

    async def restored(request: httpx.Request) -> httpx.Response:
        return answer(request)

    second: list[str] = []
    await run(config, restored, second)
    assert "req-2" not in second  # answered once, not bought again
    assert set(first) | set(second) >= {f"req-{i}" for i in range(20)}
    records = read_jsonl(tmp_path / "in.results.jsonl")
    assert all(record["error"] is None and record["response"]["status_code"] == 200 for record in records)


async def test_lines_held_back_are_not_written_when_the_budget_stops_the_run(tmp_path: Path) -> None:
    """401s after a success may be those lines' own, or the key's: held until a later success
    says which. A stop says neither: they are left for the next start to send."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_completion_tokens=100) for i in range(10)])
    job = next(item for item in read_jobs(source, source.stat().st_size))
    price = load_prices().price("gpt-4o-mini")
    assert price is not None
    worst = worst_case(job, price)  # type: ignore[arg-type]
    config = RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=1, max_cost=2.5 * worst,
                       retry=RetryPolicy(max_attempts=1))

    async def refusing(request: httpx.Request) -> httpx.Response:
        line = custom_id(request)
        if line in ("req-1", "req-2"):
            return revoked()
        if line in ("req-3", "req-4"):  # lost answers: charged their worst case, until the cap stops the run
            raise httpx.ReadTimeout("timed out", request=request)
        return answer(request)

    first: list[str] = []
    await run(config, refusing, first)
    assert {"req-1", "req-2"} <= set(first) and "req-9" not in first
    report = orjson.loads((tmp_path / "in.results.report.json").read_bytes())
    assert report["exit_code"] == 3

    async def accepting(request: httpx.Request) -> httpx.Response:
        return answer(request)

    second: list[str] = []
    await run(RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=1, max_cost=1.0), accepting, second)
    assert {"req-1", "req-2"} <= set(second)  # sent again: their refusals were never written
    records = read_jsonl(tmp_path / "in.results.jsonl")
    assert [record["response"]["status_code"] for record in records[:3]] == [200, 200, 200]


async def test_a_line_waking_from_its_backoff_during_a_drain_is_not_sent(tmp_path: Path) -> None:
    """An abort drains the request on the wire; a line whose backoff ends meanwhile is not sent
    (the drain's deadline could cut it off after the provider billed it): the next start sends it."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(7)])
    config = RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=7)
    clock = HeldClock()  # the backoff lasts until the test ends it
    aborted = anyio.Event()
    watcher = StoppingLogged(aborted)
    logging.getLogger("batchrun").addHandler(watcher)
    seen: list[str] = []

    async def backoff_during_the_drain(request: httpx.Request) -> httpx.Response:
        line = custom_id(request)
        seen.append(line)
        if line == "req-0":  # a 500, then a backoff
            return httpx.Response(500, json={"error": {"message": "try again"}}) if seen.count(line) == 1 \
                else answer(request)
        if line != "req-1":  # five 401s in a row once req-0 is in its backoff: the run aborts
            while not clock.sleepers:
                await anyio.lowlevel.checkpoint()
            return revoked()
        await aborted.wait()  # req-1: on the wire through the drain
        clock.release.set()
        await anyio.wait_all_tasks_blocked()  # the woken line has sent, or been kept back
        return answer(request)

    try:
        await run_batch(config, transport=httpx.MockTransport(backoff_during_the_drain), clock=clock)
    finally:
        logging.getLogger("batchrun").removeHandler(watcher)
    assert aborted.is_set() and clock.waits and seen.count("req-0") == 1

    second: list[str] = []
    await run(config, _answered, second)
    assert "req-0" in second and "req-1" not in second  # req-1's answer was kept from the drain
    assert [record["custom_id"] for record in read_jsonl(tmp_path / "in.results.jsonl")] == \
        [f"req-{i}" for i in range(7)]


async def _answered(request: httpx.Request) -> httpx.Response:
    return answer(request)
