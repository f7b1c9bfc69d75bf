"""--max-cost end to end against the simulator: stop at the cap (exit 3), continue with a higher one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batchrun import RunConfig, run_batch
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
