"""--max-cost end to end against the simulator: stop at the cap (exit 3), continue with a higher one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batchrun import RunConfig, run_batch
from batchrun.errors import ConfigError
from batchrun.simulator import serve

from .helpers import chat_line, read_jsonl, write_jsonl

SAMPLES = Path(__file__).parent.parent / "samples"


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
    assert total is not None and total == pytest.approx(0.0494, abs=0.001)


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
