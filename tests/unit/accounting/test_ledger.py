"""The spend ledger alone: a line's worst case, its lost attempts, the sum kept across starts,
and reading it back from a checkpoint's ``spend.json`` or a report's ``spend``."""

from __future__ import annotations

import orjson
import pytest

from batchrun.accounting.ledger import SpendLedger, carried_spend, lost_attempts, worst_case
from batchrun.accounting.pricing import Price, PriceTable
from batchrun.records import Job, Result

PRICES = PriceTable({"m": Price(input=1.0, output=2.0)})
MICRO = 1e-6  # USD of one input token of "m"


def job(body: dict[str, object], model: str | None = "m") -> Job:
    return Job(0, 1, "req-0", "/v1/chat/completions", orjson.dumps(body), model)


def result(*, status: int | None, error: bool, unanswered: int = 0) -> Result:
    return Result(0, "req-0", status, None, None, {"code": "timeout"} if error else None, unanswered=unanswered)


def chat(max_tokens: int | None = None) -> dict[str, object]:
    body: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "0123456789"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def test_a_worst_case_is_the_input_bound_and_the_output_cap_or_the_default_when_none_is_stated() -> None:
    capped = worst_case(job(chat(max_tokens=100)), Price(1.0, 2.0), exact=False)
    uncapped = worst_case(job(chat()), Price(1.0, 2.0), default_max_output=1000, exact=False)
    assert uncapped - capped == pytest.approx((1000 - 100) * 2.0 * MICRO)
    assert capped > 100 * 2.0 * MICRO  # the input counts too


@pytest.mark.parametrize(("status", "error", "unanswered", "lost"), [
    (200, False, 0, 0),  # answered
    (400, True, 0, 0),  # refused: an answer, not billed
    (None, True, 0, 1),  # the last attempt's answer never came
    (200, False, 2, 2),  # answered after two attempts whose answers were lost
    (None, True, 3, 4),
])
def test_lost_attempts_are_the_retried_ones_and_a_last_one_without_a_response(
        status: int | None, error: bool, unanswered: int, lost: int) -> None:
    assert lost_attempts(result(status=status, error=error, unanswered=unanswered)) == lost


def test_a_lost_answer_is_charged_its_reservation_when_the_cap_reserved_one() -> None:
    ledger = SpendLedger(PRICES)
    ledger.settle(job(chat()), result(status=None, error=True, unanswered=1), worst=0.5)
    assert ledger.this_start == 1.0  # two lost attempts at 0.5


def test_a_lost_answer_without_a_reservation_is_charged_its_worst_case_at_the_table_price() -> None:
    ledger = SpendLedger(PRICES)
    ledger.settle(job(chat(max_tokens=100)), result(status=None, error=True))
    assert ledger.this_start == pytest.approx(worst_case(job(chat(max_tokens=100)), PRICES.price("m")))  # type: ignore[arg-type]
    assert ledger.this_start > 0


def test_an_answered_line_and_an_unpriced_model_add_nothing() -> None:
    ledger = SpendLedger(PRICES)
    ledger.settle(job(chat()), result(status=200, error=False), worst=0.5)
    ledger.settle(job(chat(), model="unknown"), result(status=None, error=True))
    assert ledger.this_start == 0.0


def test_the_total_is_what_earlier_starts_carried_and_this_ones_and_it_round_trips() -> None:
    ledger = SpendLedger(PRICES, carried=0.25)
    ledger.add(0.5)
    ledger.settle(job(chat()), result(status=None, error=True), worst=0.125)
    assert (ledger.carried, ledger.this_start, ledger.total) == (0.25, 0.625, 0.875)
    assert orjson.loads(ledger.encode()) == {"format": 1, "lost_answers_usd": 0.875}
    assert ledger.doc() == {"lost_answers_usd": 0.875}
    # The next start carries it, from the checkpoint's spend.json or from the report.
    assert carried_spend(orjson.loads(ledger.encode())) == 0.875
    assert carried_spend({"cost_usd_priced": 3.0, "spend": ledger.doc()}) == 0.875


@pytest.mark.parametrize("saved", [
    None, [], "0.5", {}, {"spend": None}, {"lost_answers_usd": "0.5"}, {"lost_answers_usd": True},
    {"lost_answers_usd": -1.0}, {"spend": {"other": 1}}, {"cost_usd_priced": 3.0},
])
def test_a_saved_spend_from_before_the_ledger_or_unreadable_carries_nothing(saved: object) -> None:
    assert carried_spend(saved) == 0.0
