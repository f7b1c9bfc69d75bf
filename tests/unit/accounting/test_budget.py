"""The --max-cost budget: refusal of unpriced models, admission arithmetic, settling, the cap."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.accounting.budget import Budget, Verdict
from batchrun.accounting.pricing import Price, PriceTable, load_prices
from batchrun.errors import ConfigError
from batchrun.records import Job, Result

# A table with round prices so the arithmetic in the tests reads plainly: $1 and $2 per 1M.
PRICES = PriceTable({"m": Price(input=1.0, output=2.0, cached_input=0.5)}, date="2026-01-01")
MICRO = 1e-6  # USD of one input token of "m"


def job(body: Mapping[str, object], url: str = "/v1/chat/completions", index: int = 0) -> Job:
    model = body.get("model")
    return Job(index, index + 1, f"req-{index}", url, orjson.dumps(body), model if isinstance(model, str) else None)


def ok(prompt: int, completion: int, model: str = "m", cached: int = 0) -> Result:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": cached}}
    return Result(0, "c", 200, "r", {"model": model, "usage": usage}, None, attempts=1, model=model)


# -- construction ----------------------------------------------------------------------------------

def test_a_model_without_a_price_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ConfigError) as info:
        Budget(10.0, load_prices(), ["gpt-4o-mini", "my-llama", None])
    message = str(info.value)
    assert "--max-cost cannot be enforced" in message
    assert "my-llama" in message and "(no model)" in message and "--prices FILE" in message
    assert "gpt-4o-mini" not in message


def test_priced_models_including_dated_ids_are_accepted(tmp_path: Path) -> None:
    prices = tmp_path / "p.json"
    prices.write_text('{"models": {"my-llama": {"input": 0.1, "output": 0.1}}}')
    budget = Budget(10.0, load_prices(prices), ["gpt-4o-mini-2024-07-18", "my-llama"])
    assert budget.cap == 10.0 and budget.spent == 0.0


@pytest.mark.parametrize("cap", [0.0, -1.0, float("inf"), float("nan")])
def test_the_cap_must_be_a_positive_amount(cap: float) -> None:
    with pytest.raises(ConfigError, match="positive"):
        Budget(cap, PRICES, ["m"])


# -- worst cases -----------------------------------------------------------------------------------

def test_worst_case_is_the_input_bound_plus_the_output_cap_at_full_price() -> None:
    budget = Budget(1.0, PRICES, ["m"], exact=False)
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo"}], "max_tokens": 100, "n": 2}
    # Heuristic bound: UTF-8 bytes of role and content (4 + 6) plus framing 3 + 3; output 2 x 100.
    assert budget.worst_case(job(body)) == pytest.approx((16 * 1.0 + 200 * 2.0) * MICRO)


def test_worst_case_asks_the_counter_for_its_bound_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader asks for every line, on the event loop: the heuristic's estimate (~100x the
    bound's cost) would be thrown away."""

    class BoundOnly:
        name, exact = "bound only", False

        def count(self, text: str) -> int:
            raise AssertionError("the budget needs no estimate")

        def bound(self, text: str) -> int:
            return len(text.encode())

    monkeypatch.setattr("batchrun.accounting.ledger.counter_for", lambda encoding, exact: BoundOnly())
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo"}], "max_tokens": 100}
    assert Budget(1.0, PRICES, ["m"]).worst_case(job(body)) == pytest.approx((16 * 1.0 + 100 * 2.0) * MICRO)


def test_worst_case_without_a_cap_uses_the_default_and_embeddings_have_no_output() -> None:
    budget = Budget(1.0, PRICES, ["m"], default_max_output=1000, exact=False)
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert budget.worst_case(job(chat)) == pytest.approx((12 + 2000) * MICRO)
    embed = {"model": "m", "input": [1, 2, 3]}
    assert budget.worst_case(job(embed, "/v1/embeddings")) == pytest.approx(3 * MICRO)


def test_worst_case_of_a_model_not_checked_at_construction_is_an_error() -> None:
    budget = Budget(1.0, PRICES, ["m"])
    with pytest.raises(ConfigError, match="no price for model 'other'"):
        budget.worst_case(job({"model": "other", "messages": []}))


def test_worst_case_bounds_the_real_cost_of_english_text() -> None:
    prices = load_prices()
    budget = Budget(1.0, prices, ["gpt-4o-mini"], exact=False)
    text = "The quick brown fox jumps over the lazy dog. " * 20  # 201 tokens in o200k_base
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 50}
    actual = ok(201 + 3 + 1 + 3, 50, "gpt-4o-mini")
    assert budget.cost_of(1.0, actual) <= budget.worst_case(job(body))


# -- admission and settling ------------------------------------------------------------------------

def test_admit_reserves_waits_and_stops() -> None:
    budget = Budget(10 * MICRO, PRICES, ["m"])
    assert budget.admit(4 * MICRO) is Verdict.GO
    assert budget.admit(4 * MICRO) is Verdict.GO
    assert budget.reserved == pytest.approx(8 * MICRO) and budget.in_flight == 2
    assert budget.admit(4 * MICRO) is Verdict.WAIT     # fits only once something settles
    assert budget.admit(2 * MICRO) is Verdict.GO       # exactly at the cap is allowed
    assert budget.admit(11 * MICRO) is Verdict.STOP    # can never fit
    budget.settle(4 * MICRO, ok(3, 0))                 # cost 3 micro-dollars
    assert budget.spent == pytest.approx(3 * MICRO) and budget.reserved == pytest.approx(6 * MICRO)
    assert budget.admit(8 * MICRO) is Verdict.STOP     # 3 spent + 8 > 10 even with nothing in flight
    assert budget.admit(7 * MICRO) is Verdict.WAIT


def test_settle_charges_usage_at_the_price_of_the_billed_model() -> None:
    budget = Budget(1.0, load_prices(), ["gpt-4o-mini"])
    budget.admit(0.01)
    cost = budget.settle(0.01, ok(1000, 100, "gpt-4o-mini-2024-07-18", cached=200))
    assert cost == pytest.approx((800 * 0.15 + 200 * 0.075 + 100 * 0.6) / 1e6)
    assert budget.spent == pytest.approx(cost) and budget.reserved == 0 and budget.settled == 1


@pytest.mark.parametrize(("result", "charged"), [
    (Result(0, "c", 400, "r", {"error": {"code": "invalid_value"}}, {"code": "invalid_value", "message": "m"}), 0.0),
    (Result(0, "c", 429, "r", None, {"code": "rate_limit_exceeded", "message": "m"}), 0.0),
    (Result(0, "c", None, None, None, {"code": "request_timeout", "message": "m"}), 5 * MICRO),  # maybe billed
    (Result(0, "c", 200, "r", {"model": "m"}, None), 5 * MICRO),                                  # no usage
    (Result(0, "c", 200, "r", {"model": "unpriced", "usage": {"prompt_tokens": 1}}, None, model="unpriced"),
     5 * MICRO),
])
def test_what_a_request_without_priced_usage_is_charged(result: Result, charged: float) -> None:
    budget = Budget(1.0, PRICES, ["m"])
    budget.admit(5 * MICRO)
    assert budget.settle(5 * MICRO, result) == pytest.approx(charged)
    assert budget.spent == pytest.approx(charged) and budget.reserved == 0


def test_release_frees_a_reservation_without_charging() -> None:
    budget = Budget(1.0, PRICES, ["m"])
    budget.admit(0.5)
    budget.release(0.5)
    assert budget.reserved == 0 and budget.spent == 0 and budget.in_flight == 0


def test_reservations_do_not_drift_over_many_requests() -> None:
    budget = Budget(1.0, PRICES, ["m"])
    rng = random.Random(3)
    worsts = [rng.uniform(1e-7, 1e-3) for _ in range(10_000)]
    for worst in worsts:
        assert budget.admit(worst) is not Verdict.STOP
        budget.release(worst)
    assert budget.reserved == 0 and budget.in_flight == 0


def test_a_resumed_run_starts_from_what_it_spent_and_projects_the_total() -> None:
    budget = Budget(1.0, PRICES, ["m"], spent=0.9)
    assert budget.admit(0.2) is Verdict.STOP
    assert budget.projected_total(done=90, total=100) == pytest.approx(1.0)
    assert budget.projected_total(done=0, total=100) is None
    figures = budget.figures()
    assert figures.spent == pytest.approx(0.9) and figures.remaining == pytest.approx(0.1)
    assert "$0.9000 spent of the $1.0000 cap" in budget.describe_stop(0.2)


def test_the_stop_message_counts_what_the_requests_in_flight_cost_after_it() -> None:
    budget = Budget(1.0, PRICES, ["m"])
    assert budget.admit(0.3) is Verdict.GO and budget.admit(0.3) is Verdict.GO
    budget.settle(0.3, ok(500_000, 0))  # $0.50
    assert budget.admit(0.6) is Verdict.STOP  # 0.5 spent, one request in flight reserved at 0.3
    assert budget.describe_stop(0.6) == ("budget reached (--max-cost): $0.5000 spent of the $1.0000 cap; "
                                         "the next request may cost up to $0.6000")
    budget.settle(0.3, ok(0, 400_000))  # $0.80: an answer longer than its reservation
    assert budget.describe_stop(0.6) == (
        "budget reached (--max-cost): $1.3000 spent of the $1.0000 cap ($0.5000 when it was reached; the "
        "request then in flight, reserved at $0.3000, cost $0.8000: answers to requests without max_tokens can "
        "be longer than the 4,096 output tokens reserved, and a lost answer is charged its worst case); "
        "the next request may cost up to $0.6000")


def test_the_stop_message_of_requests_that_kept_within_their_reservation() -> None:
    budget = Budget(1.0, PRICES, ["m"], spent=0.8)
    assert budget.admit(0.1) is Verdict.GO and budget.admit(0.3) is Verdict.STOP
    budget.settle(0.1, ok(50_000, 0))
    assert budget.describe_stop(0.3) == ("budget reached (--max-cost): $0.8500 spent of the $1.0000 cap ($0.8000 "
                                         "when it was reached; the request then in flight, reserved at $0.1000, "
                                         "cost $0.0500); the next request may cost up to $0.3000")


# -- the cap holds: a simulated run ----------------------------------------------------------------

def simulate(cap: float, requests: list[tuple[float, float]], concurrency: int, seed: int) -> tuple[Budget, float, int]:
    """Dispatch in order, completing in-flight requests in a random order, as the engine will.

    ``requests`` are (worst case, actual cost). Returns the budget, the sum of the excesses
    (actual - worst, when positive) of the requests in flight at the last admission, and how
    many requests were sent.
    """
    rng = random.Random(seed)
    budget = Budget(cap, PRICES, ["m"])
    in_flight: list[tuple[float, float]] = []
    sent = 0
    excess_at_last_admission = 0.0

    def settle_one() -> None:
        worst, actual = in_flight.pop(rng.randrange(len(in_flight)))
        prompt = round(actual / MICRO)
        budget.settle(worst, ok(prompt, 0))

    for worst, actual in requests:
        verdict = budget.admit(worst)
        while verdict is Verdict.WAIT:
            settle_one()
            verdict = budget.admit(worst)
        if verdict is Verdict.STOP:
            assert budget.spent + worst > budget.cap  # stopping only when it must
            break
        in_flight.append((worst, actual))
        sent += 1
        excess_at_last_admission = sum(max(0.0, a - w) for w, a in in_flight)
        while len(in_flight) >= concurrency:
            settle_one()
    while in_flight:
        settle_one()
    return budget, excess_at_last_admission, sent


costs = st.integers(min_value=1, max_value=5000)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(costs, costs), min_size=1, max_size=60), st.integers(1, 16), st.integers(1, 100_000),
       st.integers(0, 2**32))
def test_spend_never_exceeds_the_cap_when_worst_cases_are_bounds(pairs: list[tuple[int, int]], concurrency: int,
                                                                  cap_micro: int, seed: int) -> None:
    requests = [(max(a, b) * MICRO, min(a, b) * MICRO) for a, b in pairs]   # actual <= worst
    budget, _, _ = simulate(cap_micro * MICRO, requests, concurrency, seed)
    assert budget.spent <= budget.cap + 1e-12


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(costs, costs), min_size=1, max_size=60), st.integers(1, 16), st.integers(1, 100_000),
       st.integers(0, 2**32))
def test_overshoot_is_at_most_the_estimate_errors_in_flight(pairs: list[tuple[int, int]], concurrency: int,
                                                            cap_micro: int, seed: int) -> None:
    requests = [(a * MICRO, b * MICRO) for a, b in pairs]   # actual may exceed its estimate
    budget, excess, _ = simulate(cap_micro * MICRO, requests, concurrency, seed)
    assert budget.spent <= budget.cap + excess + 1e-12
    one_at_a_time, excess_one, _ = simulate(cap_micro * MICRO, requests, 1, seed)
    largest_error = max(max(0.0, a - w) for w, a in requests)
    assert one_at_a_time.spent <= one_at_a_time.cap + min(excess_one, largest_error) + 1e-12


def test_a_simulated_run_spends_close_to_the_cap_and_stops() -> None:
    requests = [(10 * MICRO, 7 * MICRO)] * 1000   # 1000 requests would cost 7,000 micro-dollars
    budget, _, sent = simulate(2000 * MICRO, requests, concurrency=8, seed=1)
    assert sent < 1000
    assert 2000 * MICRO - 10 * MICRO < budget.spent <= 2000 * MICRO


# -- the flex tier ---------------------------------------------------------------------------------

FLEX_PRICES = PriceTable({"m": Price(input=1.0, output=2.0, cached_input=0.5, flex=True)}, date="2026-01-01")


def test_a_line_on_flex_is_reserved_at_the_batch_rate_unless_it_may_fall_back() -> None:
    line = job({"model": "m", "max_tokens": 1000})
    flex = Job(line.index, line.line_no, line.custom_id, line.url, line.body, line.model, line.max_output, tier="flex")
    standard = Budget(1.0, FLEX_PRICES, ["m"]).worst_case(flex)
    assert Budget(1.0, FLEX_PRICES, ["m"], flex_reserved=True).worst_case(flex) == pytest.approx(standard / 2)
    assert Budget(1.0, FLEX_PRICES, ["m"], flex_reserved=True).worst_case(line) == pytest.approx(standard)


def test_an_answer_processed_on_flex_is_charged_at_the_batch_rate() -> None:
    budget = Budget(1.0, FLEX_PRICES, ["m"])
    answer = ok(1000, 1000)
    answer.tier = "flex"
    assert budget.cost_of(1.0, answer) == pytest.approx((1000 * 1.0 + 1000 * 2.0) * MICRO / 2)
    answer.tier = "default"
    assert budget.cost_of(1.0, answer) == pytest.approx((1000 * 1.0 + 1000 * 2.0) * MICRO)
