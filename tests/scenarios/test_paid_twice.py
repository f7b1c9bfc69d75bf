"""The paid-twice bound (docs/reliability.md, "What can be paid for twice"): after an abort, a budget stop or a
failed publish, a resume sends no line whose answer was received. (SIGTERM: test_crash.py;
kill -9 and a failed publish: unit/disk/test_publish.py.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest

from batchrun import RunConfig, run_batch

from ..helpers import chat_line, read_jsonl, write_jsonl

BASE = "http://127.0.0.1:9/v1"


def answer(text: str) -> httpx.Response:
    return httpx.Response(200, json={"model": "gpt-4o-mini", "choices": [{"message": {"content": text}}],
                                     "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})


def content(request: httpx.Request) -> str:
    return str(orjson.loads(request.content)["messages"][0]["content"])


@pytest.mark.parametrize(("late", "abort"), [(late, late + extra) for late in range(4) for extra in range(3)])
async def test_an_abort_keeps_every_answer_already_received(tmp_path: Path, late: int, abort: int) -> None:
    """Eight requests are answered at once: four at once, three ``late`` scheduling steps later,
    and one with a 401 ``abort`` steps later — the key is revoked: every later request gets 401
    too, and a few in a row abort the run. Whatever the interleaving, the answers received (each
    written in the step it arrived) reach the disk, and the lines refused are not written: the
    next start sends them."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(40)])
    config = RunConfig(source, base_url=BASE, concurrency=8)
    arrived, gate = 0, anyio.Event()
    all_arrived = anyio.Event()
    answered: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        me, arrived = arrived, arrived + 1
        if arrived == 8:
            all_arrived.set()
        if me >= 8:  # the key is revoked
            return httpx.Response(401, json={"error": {"message": "no", "code": "invalid_api_key"}})
        await gate.wait()
        for _ in range(0 if me < 4 else late if me < 7 else abort):
            await anyio.lowlevel.checkpoint()
        if me == 7:
            return httpx.Response(401, json={"error": {"message": "no", "code": "invalid_api_key"}})
        answered.append(content(request))
        return answer(content(request))

    async def release_together() -> None:
        await all_arrived.wait()
        gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_together)
        stats = await run_batch(config, transport=httpx.MockTransport(handler))
    assert stats.exit_code == 4 and "HTTP 401" in (stats.stop_reason or "")
    assert len(answered) >= 4  # how many of the late ones beat the abort depends on the interleaving

    sent: list[str] = []

    def second(request: httpx.Request) -> httpx.Response:
        sent.append(content(request))
        return answer(content(request))

    stats = await run_batch(config, transport=httpx.MockTransport(second))
    assert stats.exit_code == 0 and stats.carried_over == len(answered)
    assert not set(sent) & set(answered)
    assert len(sent) == 40 - len(answered)
    assert [line["custom_id"] for line in read_jsonl(config.out)] == [f"req-{i}" for i in range(40)]


async def test_a_budget_stop_then_a_resume_buys_no_answer_twice(tmp_path: Path) -> None:
    rows = [chat_line(i, max_tokens=10) for i in range(60)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"gpt-4o-mini": {"input": 1000, "output": 1000}}}')  # $0.02 a request
    sent: Counter[str] = Counter()

    async def handler(request: httpx.Request) -> httpx.Response:
        text = content(request)
        sent[text] += 1
        await anyio.sleep(0.001 * (hash(text) % 5))
        return answer(text)

    first = await run_batch(RunConfig(source, base_url=BASE, concurrency=8, max_cost=0.5, prices_path=prices),
                            transport=httpx.MockTransport(handler))
    assert first.exit_code == 3
    second = await run_batch(RunConfig(source, base_url=BASE, concurrency=8, prices_path=prices),
                             transport=httpx.MockTransport(handler))
    assert second.exit_code == 0
    assert sent == Counter({f"question {i}": 1 for i in range(60)})


async def test_max_cost_caps_the_spend_across_a_resume(tmp_path: Path) -> None:
    """The first start answers lines 1-20 but not line 0, so they wait in the journal, past the
    ordered prefix; the resume must count them against its cap."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_tokens=10) for i in range(60)])
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"gpt-4o-mini": {"input": 1000, "output": 1000}}}')  # $0.02 an answer
    answered, twenty = 0, anyio.Event()

    async def head_stalls(request: httpx.Request) -> httpx.Response:
        nonlocal answered
        if content(request) == "question 0":
            await anyio.sleep_forever()
        answered += 1
        if answered == 20:
            twenty.set()
        return answer(content(request))

    config = RunConfig(source, base_url=BASE, concurrency=4, window=21, prices_path=prices)
    async with anyio.create_task_group() as tg:
        async def stop_when_journaled() -> None:
            await twenty.wait()
            await anyio.wait_all_tasks_blocked()  # the writer has journaled all twenty
            tg.cancel_scope.cancel()

        tg.start_soon(stop_when_journaled)
        await run_batch(config, transport=httpx.MockTransport(head_stalls))
    with (tmp_path / "in.results.jsonl.checkpoint" / "journal").open("rb") as f:
        assert sum(1 for _ in f) == 20

    capped = RunConfig(source, base_url=BASE, concurrency=4, window=21, prices_path=prices, max_cost=0.7)
    stats = await run_batch(capped, transport=httpx.MockTransport(lambda r: answer(content(r))))
    assert stats.exit_code == 3
    spent = stats.report.cost()[0]
    assert spent is not None and 0.4 < spent <= 0.7
