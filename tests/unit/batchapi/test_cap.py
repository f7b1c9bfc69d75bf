"""``--max-cost`` on the Batch API alone: a line's worst case at the batch price, what a retried
output spent before, and which planned batches a start may submit."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchrun.batchapi.cap import BatchCap, spent_before, split, worst_at_batch_price
from batchrun.batchapi.ledger import Ledger, Part
from batchrun.batchapi.plan import part_file, request_line
from batchrun.config import RunConfig
from batchrun.errors import ConfigError
from batchrun.records import Job

MICRO = 1e-6


def config(tmp_path: Path, **options: object) -> RunConfig:
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"m": {"input": 2.0, "output": 4.0}}}')  # $1 and $2 per 1M at half price
    return RunConfig(tmp_path / "in.jsonl", tmp_path / "out.jsonl", base_url="http://127.0.0.1:9/v1", prices_path=prices,
                     **options)  # type: ignore[arg-type]


def job(index: int, model: str | None = "m", max_tokens: int = 1000) -> Job:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
    return Job(index, index + 1, f"req-{index}", "/v1/chat/completions", body, model)


def ledger(tmp_path: Path, *parts: Part) -> Ledger:
    return Ledger(tmp_path, "run1", 0.0, {}, list(parts))


def part(number: int, worst: float | None, *, submitted: bool = False, lines: int = 10) -> Part:
    return Part(number=number, url="/v1/chat/completions", model="m", first_line=1, lines=lines, worst_usd=worst,
                batch_id=f"batch_{number}" if submitted else None)


def test_worst_case_at_half_the_online_price(tmp_path: Path) -> None:
    worst = worst_at_batch_price(config(tmp_path))(job(0))
    output = 1000 * 2.0 * MICRO  # its max_tokens at $2 per 1M, half of $4
    assert output < worst < output + 100 * 1.0 * MICRO


@pytest.mark.parametrize(("model", "named"), [("my-llama", "my-llama"), (None, "(no model)")])
def test_an_unpriced_model_is_refused_naming_the_input_file_and_line(tmp_path: Path, model: str | None,
                                                                     named: str) -> None:
    worst = worst_at_batch_price(config(tmp_path))
    with pytest.raises(ConfigError) as refused:
        worst(job(6, model))
    assert str(refused.value).startswith(f"{tmp_path / 'in.jsonl'}:7: --max-cost cannot be enforced: no price for {named}.")
    assert "--prices FILE" in str(refused.value)


def test_only_a_retried_output_counts_what_its_report_says_was_spent(tmp_path: Path) -> None:
    (tmp_path / "out.report.json").write_bytes(orjson.dumps({"cost_usd_priced": 0.5, "spend": {"lost_answers_usd": 0.25}}))
    assert spent_before(config(tmp_path)) == 0.0
    assert spent_before(config(tmp_path, retry_failed=True)) == 0.75


@pytest.mark.parametrize("report", [None, b"not json", b'{"cost_usd_priced": null}', b'{"cost_usd_priced": "1"}'])
def test_a_retried_output_without_a_readable_report_spent_nothing_known(tmp_path: Path, report: bytes | None) -> None:
    if report is not None:
        (tmp_path / "out.report.json").write_bytes(report)
    assert spent_before(config(tmp_path, retry_failed=True)) == 0.0


def test_the_plan_splits_at_the_cap_less_what_was_spent_before(tmp_path: Path) -> None:
    assert split(config(tmp_path)) is None
    (tmp_path / "out.report.json").write_bytes(orjson.dumps({"cost_usd_priced": 0.25}))
    cap = split(config(tmp_path, max_cost=1.0, retry_failed=True))
    assert cap is not None and cap.room == 0.75
    assert cap.worst(job(0)) == worst_at_batch_price(config(tmp_path))(job(0))


def test_without_a_cap_every_batch_fits(tmp_path: Path) -> None:
    cap = BatchCap(config(tmp_path), ledger(tmp_path, part(0, 100.0)))
    assert cap.fits(part(0, 100.0)) and cap.held_back == []


def test_a_batch_fits_when_its_worst_case_and_the_submitted_ones_are_within_the_cap(tmp_path: Path) -> None:
    submitted, next_one, too_big = part(0, 0.5, submitted=True), part(1, 0.5), part(2, 0.25, lines=3)
    cap = BatchCap(config(tmp_path, max_cost=1.0), ledger(tmp_path, submitted, next_one, too_big))
    assert cap.committed() == 0.5  # only the batch with an id counts
    assert cap.fits(next_one)  # 0.5 + 0.5 is the cap: it fits exactly
    next_one.batch_id = "batch_1"
    assert cap.committed() == 1.0
    assert not cap.fits(too_big)
    assert cap.held_back == [too_big]
    reason = cap.stop_reason()
    assert reason.startswith("budget reached (--max-cost): 3 lines in 1 batch held back, not submitted")
    assert "--max-cost" in reason and "run again with a higher --max-cost" in reason


def test_a_retried_output_s_earlier_spend_counts_against_the_cap(tmp_path: Path) -> None:
    (tmp_path / "out.report.json").write_bytes(orjson.dumps({"cost_usd_priced": 0.75}))
    cap = BatchCap(config(tmp_path, max_cost=1.0, retry_failed=True), ledger(tmp_path, part(0, 0.5)))
    assert cap.committed() == 0.75
    assert not cap.fits(part(0, 0.5))


def test_a_batch_planned_without_a_cap_has_its_worst_case_read_from_its_request_file_once(tmp_path: Path) -> None:
    jobs = [job(0), job(1, max_tokens=10)]
    part_file(tmp_path, 0).write_bytes(b"".join(request_line(j) for j in jobs))
    planned = part(0, None, lines=2)
    cap = BatchCap(config(tmp_path, max_cost=10.0), ledger(tmp_path, planned))
    assert cap.fits(planned)
    worst = worst_at_batch_price(config(tmp_path))
    assert planned.worst_usd == pytest.approx(sum(worst(j) for j in jobs))
    part_file(tmp_path, 0).unlink()  # kept in the part from now on
    assert cap.fits(planned)
