"""What earlier starts paid for, read back before a start of the same run (`engine.carry`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.accounting.ledger import carried_spend
from batchrun.config import RetryPolicy
from batchrun.engine.carry import spent_so_far

from ...helpers import OnWritten, chat_line, write_jsonl

BASE = "http://127.0.0.1:9/v1"


def answer(request: httpx.Request) -> httpx.Response:
    text = orjson.loads(request.content)["messages"][0]["content"]
    if text.endswith("7"):
        return httpx.Response(500, json={"error": {"message": "boom", "type": "server_error"}})
    usage = {"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60}
    return httpx.Response(200, json={"model": "gpt-4o-mini", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "ok"}, "finish_reason": "stop"}], "usage": usage})


def config_for(tmp_path: Path) -> RunConfig:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(30)])
    return RunConfig(source, tmp_path / "out.jsonl", base_url=BASE, concurrency=1,
                     retry=RetryPolicy(max_attempts=1), outage_threshold=0)


def test_nothing_is_carried_before_a_first_start(tmp_path: Path) -> None:
    assert spent_so_far(config_for(tmp_path)) == 0.0


async def test_a_stopped_start_carries_its_lines_and_its_lost_answer(tmp_path: Path) -> None:
    config = replace(config_for(tmp_path), drain_timeout=0.0)

    async def stuck_at_12(request: httpx.Request) -> httpx.Response:
        if b"question 12" in request.content:
            await anyio.sleep_forever()  # on the wire when the run stops: it may be billed
        return answer(request)

    with anyio.CancelScope() as scope:
        await run_batch(config, transport=httpx.MockTransport(stuck_at_12), observer=OnWritten(12, scope.cancel))
    stopped = orjson.loads(config.report_path.read_bytes())
    assert stopped["lines"] == 12 and carried_spend(stopped) > 0
    assert spent_so_far(config) == pytest.approx(stopped["cost_usd_priced"] + carried_spend(stopped))


async def test_a_finished_output_about_to_be_retried_carries_its_lines(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    await run_batch(config, transport=httpx.MockTransport(answer))
    finished = orjson.loads(config.report_path.read_bytes())
    assert finished["requests"]["failed"] == 3 and finished["cost_usd_priced"] > 0
    assert spent_so_far(config) == 0.0  # finished: nothing left for a start to carry
    assert spent_so_far(replace(config, retry_failed=True)) == pytest.approx(finished["cost_usd_priced"])
    assert not config.checkpoint_path.exists()  # read, not started
