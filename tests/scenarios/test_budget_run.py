"""--max-cost end to end against the simulator: stop at the cap (exit 3), continue with a higher one."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from batchrun import RetryPolicy, RunConfig, run_batch
from batchrun.errors import ConfigError
from batchrun.simulator import serve

from ..helpers import chat_line, read_jsonl, write_jsonl

SAMPLES = Path(__file__).parents[2] / "samples"


def bodies(path: Path) -> list[tuple[str, object]]:
    return [(line["custom_id"], line["response"]["body"]) for line in read_jsonl(path)]


async def test_the_cap_stops_the_run_and_a_higher_cap_continues_it(tmp_path: Path) -> None:
    source = Path(shutil.copy(SAMPLES / "chat.jsonl", tmp_path / "chat.jsonl"))  # every line caps its output
    out = tmp_path / "capped.jsonl"
    async with serve() as sim:
        first = await run_batch(RunConfig(source, out, base_url=sim.base_url, concurrency=8, max_cost=0.02))
        assert first.exit_code == 3 and "--max-cost" in (first.stop_reason or "")
        spent = first.report.cost()[0]
        assert spent is not None and 0.015 < spent <= 0.02  # near the cap, never past it
        assert first.budget is not None and first.budget.figures().spent == pytest.approx(spent, abs=1e-6)
        assert not out.exists() and (tmp_path / "capped.jsonl.checkpoint").exists()
        assert (tmp_path / "capped.report.json").exists()  # what was spent is on record even so

        second = await run_batch(RunConfig(source, out, base_url=sim.base_url, concurrency=8, max_cost=1.0))
        assert second.exit_code == 0 and second.carried_over == first.written
        reference = tmp_path / "uncapped.jsonl"
        await run_batch(RunConfig(source, reference, base_url=sim.base_url, concurrency=8))
    assert bodies(out) == bodies(reference)
    total = second.report.cost()[0]
    assert total is not None and total == pytest.approx(0.0585, abs=0.001)


async def test_a_model_without_a_price_refuses_the_cap(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0), chat_line(1, model="acme-llm-7b")])
    async with serve() as sim:
        with pytest.raises(ConfigError, match="acme-llm-7b"):
            await run_batch(RunConfig(source, base_url=sim.base_url, max_cost=1.0))
        assert sim.stats.requests == 0
    assert not (tmp_path / "in.results.jsonl.checkpoint").exists()  # refused before anything was kept
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"acme-llm-7b": {"input": 0.1, "output": 0.2}}}')
    async with serve() as sim:
        stats = await run_batch(RunConfig(source, base_url=sim.base_url, max_cost=1.0, prices_path=prices))
    assert stats.exit_code == 0 and stats.report.cost()[0] is not None


async def test_an_attempt_whose_answer_was_lost_is_charged_as_if_billed(tmp_path: Path) -> None:
    import httpx
    import orjson

    from ..helpers import FakeClock

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_completion_tokens=10) for i in range(2)])
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:  # sent, maybe processed and billed, but the answer never came back
            raise httpx.ReadTimeout("timed out", request=request)
        body = orjson.loads(request.content)
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        return httpx.Response(200, json={"model": body["model"], "choices": [], "usage": usage})

    config = RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=1, max_cost=1.0)
    stats = await run_batch(config, transport=httpx.MockTransport(handler), clock=FakeClock())
    assert stats.exit_code == 0 and stats.budget is not None
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert out[0]["batchrun"]["unanswered"] == 1 and "unanswered" not in out[1]["batchrun"]
    answered = stats.report.cost()[0]
    assert answered is not None
    # The lost attempt is charged its worst case on top of what the two answers cost.
    assert stats.budget.spent > answered * 1.5


async def test_the_cap_remembers_lost_answers_across_starts(tmp_path: Path) -> None:
    """Every answer is lost (a timeout): nothing in the output prices what was maybe billed, so
    only the spend ledger keeps the next start with the same cap from sending again."""
    import httpx

    from batchrun.accounting.ledger import worst_case
    from batchrun.accounting.pricing import load_prices
    from batchrun.reader import read_jobs

    from ..helpers import FakeClock

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_completion_tokens=100) for i in range(20)])
    job = next(iter(read_jobs(source, source.stat().st_size)))
    price = load_prices().price(job.model)  # type: ignore[union-attr]
    assert price is not None
    worst = worst_case(job, price)
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        raise httpx.ReadTimeout("timed out", request=request)

    def start() -> RunConfig:
        return RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=1, max_cost=5.5 * worst,
                         retry=RetryPolicy(max_attempts=2))

    first = await run_batch(start(), transport=httpx.MockTransport(handler), clock=FakeClock())
    assert first.exit_code == 3 and 0 < sent < 20
    spent = sent
    report = orjson.loads((tmp_path / "in.results.report.json").read_bytes())
    assert report["spend"]["lost_answers_usd"] == pytest.approx(spent * worst, rel=1e-6)  # every attempt was lost
    assert report["cost_usd"] == 0  # what the recorded usage prices: nothing

    again = await run_batch(start(), transport=httpx.MockTransport(handler), clock=FakeClock())
    assert again.exit_code == 3 and sent == spent  # the same command sends nothing more
    assert "--max-cost" in (again.stop_reason or "")


async def test_the_stop_says_what_the_requests_in_flight_cost_once_they_settled(tmp_path: Path) -> None:
    """Requests without ``max_tokens`` are reserved at 4,096 output tokens; answered with 16,000,
    those in flight when the cap was reached pass it, and the message and the report say so."""
    import asyncio

    import anyio
    import orjson

    from batchrun.money import usd

    from ..rawserver import RawServer, Seen, chat_answer, http

    quick = {f"question {i}" for i in range(5)}  # these five settle first and reach the cap
    release = asyncio.Event()  # of the server's loop: the rest wait for it
    stopped: list[object] = []

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.text not in quick:
            await release.wait()
        answer = chat_answer(seen)
        answer["usage"] = {"prompt_tokens": 3, "completion_tokens": 16_000, "total_tokens": 16_003}
        writer.write(http(200, orjson.dumps(answer)))
        return True

    class Watch:
        def started(self, stats: object) -> None:
            stopped.append(stats)

        def written(self, result: object, stats: object) -> None: ...

        def retrying(self, job: object, error: object, wait: float) -> None: ...

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(100)])
    with RawServer(handler) as server:
        config = RunConfig(source, tmp_path / "out.jsonl", base_url=server.base_url, concurrency=32, max_cost=0.05)

        async def release_after_the_stop() -> None:
            while not stopped or stopped[0].stop_reason is None:  # type: ignore[attr-defined]
                await anyio.lowlevel.checkpoint()
            server._loop.call_soon_threadsafe(release.set)

        async with anyio.create_task_group() as tg:
            tg.start_soon(release_after_the_stop)
            stats = await run_batch(config, observer=Watch())  # type: ignore[arg-type]
    assert stats.exit_code == 3 and stats.budget is not None
    in_flight = len(server.seen) - len(quick)
    assert in_flight > 0 and stats.written == len(server.seen)
    cost = stats.report.cost()[1]
    assert cost == pytest.approx(len(server.seen) * 16_003 * 0.6e-6, rel=0.01) and cost > 0.05
    reason = stats.stop_reason or ""
    assert reason.startswith(f"budget reached (--max-cost): {usd(cost)} spent of the $0.0500 cap "
                             f"({usd(5 * 16_003 * 0.6e-6)} when it was reached; the {in_flight} requests then in flight, ")
    assert f"cost {usd(in_flight * 16_003 * 0.6e-6)}: answers to requests without max_tokens" in reason
    report = orjson.loads(config.report_path.read_bytes())
    assert report["stop_reason"] == reason and usd(report["cost_usd"]) == usd(cost)
