"""The spend ledger: money an output's starts may have been billed that no written line shows.

A line's cost is read back from its ``usage`` whenever a later start carries it over. What
``usage`` cannot show is an answer that never came back — a timeout, a dropped connection, a
request cancelled on the wire — which the provider may still have computed and billed. The cap
charges each such attempt its worst case (`budget.Budget.cost_of`); the ledger keeps that sum
across starts, so a new start's ``--max-cost`` begins from everything earlier ones may have
spent, not only from what the recorded usage prices. It is saved in the checkpoint with every
periodic sync and at the end of each start (``spend.json``), and published in the report
(``spend``), so a ``--retry-failed`` start and the parts of a sharded run carry it too.

What it may miss: the lost answers of the last second before a ``kill -9`` (the sync
interval), and, in a run without ``--max-cost``, requests cancelled on the wire (only a capped
run keeps each request's reservation). Neither can grow from start to start.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..records import Job, Result
from ..tokens import DEFAULT_MAX_OUTPUT_TOKENS, counter_for, encoding_for, request_tokens
from .pricing import Price, PriceTable

FORMAT = 1


def worst_case(job: Job, price: Price, *, default_max_output: int = DEFAULT_MAX_OUTPUT_TOKENS,
               exact: bool = True) -> float:
    """The most ``job`` can cost at ``price``, in USD: its input tokens' upper bound and its
    output cap (``default_max_output`` when it states none), with no cache hits."""
    body: Any = orjson.loads(job.body)
    # The bound alone: asked for every line of a capped run, on the event loop.
    tokens = request_tokens(job.url, body if isinstance(body, dict) else {},
                            counter_for(encoding_for(job.model), exact=exact), estimate=False)
    output = default_max_output if tokens.max_output is None else tokens.max_output
    return price.bound(tokens.input_bound, output)


def lost_attempts(result: Result) -> int:
    """Attempts of a finished line whose answer was lost (sent, maybe billed, never seen)."""
    return result.unanswered + (result.status_code is None and result.error is not None)


class SpendLedger:
    """USD lost answers may have cost, this output's earlier starts' (``carried``) and this one's.

    :param prices: what a lost answer's worst case is priced at when no cap reserved it; a
        model without a price adds nothing (its cost is unknown, as in the report).
    """

    def __init__(self, prices: PriceTable, *, carried: float = 0.0) -> None:
        self._prices = prices
        self.carried = carried
        self.this_start = 0.0

    @property
    def total(self) -> float:
        return self.carried + self.this_start

    def add(self, usd: float) -> None:
        self.this_start += usd

    def settle(self, job: Job, result: Result, worst: float | None = None) -> None:
        """Count the lost answers of a finished line, at ``worst`` (its reservation) when known."""
        lost = lost_attempts(result)
        if not lost:
            return
        if worst is None:
            price = self._prices.price(job.model)
            if price is None:
                return
            worst = worst_case(job, price)
        self.this_start += lost * worst

    def encode(self) -> bytes:
        return orjson.dumps({"format": FORMAT, "lost_answers_usd": self.total})

    def doc(self) -> dict[str, float]:
        """The report's ``spend``."""
        return {"lost_answers_usd": round(self.total, 9)}


def carried_spend(saved: Any) -> float:
    """The ledger's total from a saved ``spend.json`` or a report's ``spend`` (0 when absent or
    unreadable: a checkpoint or report from before the ledger)."""
    if isinstance(saved, dict):
        if "spend" in saved:
            saved = saved["spend"]
        value = saved.get("lost_answers_usd") if isinstance(saved, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return 0.0
