"""The hard spending cap of ``batchrun run --max-cost USD``, as pure arithmetic (no I/O, no clock).

The engine asks before it dispatches each request, in input order::

    budget = Budget(cap_usd, prices, models_in_the_file)   # ConfigError if a model has no price
    worst = budget.worst_case(job)       # USD the request can cost at most
    verdict = budget.admit(worst)        # GO: reserved; WAIT: ask again after a settle; STOP
    ...                                  # send it
    budget.settle(worst, result)         # the reservation becomes the cost its usage reports

`admit` says GO only when ``spent + reserved + worst <= cap``, and then reserves ``worst``;
WAIT when the request would fit were nothing in flight (the engine waits for a request to
settle and asks again); STOP when it cannot fit even then — spending only grows, so the run
stops dispatching there and exits 3, and a re-run with a higher cap continues.

Why the cap holds. A request's worst case is its input tokens' upper bound plus its output
cap, all at full (uncached) prices: the exact count when an exact tokenizer is installed, else
the UTF-8 length of its text (every BPE token covers at least one byte); the output cap is its
``max_tokens``/``max_completion_tokens``/``max_output_tokens`` times ``n``. When every request
states an output cap, no request can cost more than its reservation and the spend never exceeds
the cap. A request that states no cap is reserved at ``default_max_output`` tokens and may
exceed that; then the overshoot is at most the excess of the requests in flight at the last
admission — one request's error when they run one at a time. Images are reserved at their
fixed estimate (`tokens.IMAGE_TOKENS`), not a bound.

What a settled request costs: its ``usage`` at the model's prices when the body reports usage
(successes, and any failure that carries usage); nothing for an HTTP error without usage (the
APIs do not bill those); the whole reservation when no response came back (a timeout or a
dropped connection may still have been processed and billed) or a success reported no usage.
Each retried attempt whose answer was lost the same way (``Result.unanswered``) is charged
its worst case on top. Those are known only when the line settles, so the cap may be passed
by them: at most the worst cases of the lost attempts of the lines in flight at the last
admission, and only when answers are being lost.

So a stop does not end the spending: the requests in flight when it came settle after it, and
those without an output cap may cost more than their reservation. `describe_stop` says what
was spent once they have (the engine asks again after the pool is done), and what part of it
they added.

Money is kept in integer nano-dollars, rounded up, so reserving and releasing never drift.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ..errors import ConfigError
from ..money import usd
from ..records import Job, Result
from ..tokens import DEFAULT_MAX_OUTPUT_TOKENS
from .ledger import worst_case
from .pricing import FLEX, Price, PriceTable

_NANO = 1_000_000_000


class Verdict(enum.Enum):
    """The answer of `Budget.admit`."""

    GO = "go"        # reserved: send it
    WAIT = "wait"    # fits once requests in flight settle: ask again after the next settle
    STOP = "stop"    # does not fit even with nothing in flight: stop dispatching


class Pool(Protocol):
    """USD this process draws from a cap shared with other processes (`batchrun.scale.budget`),
    in nano-dollars; ``spent`` is what this process has spent so far, carried lines included."""

    wake: Callable[[], None] | None  # called when more may have come in

    def admit(self, need: int, spent: int) -> Verdict:
        """GO: ``need`` is reserved from what this process holds."""
        ...

    def settled(self, need: int, cost: int, spent: int) -> None: ...

    def released(self, need: int) -> None: ...

    def run_spent(self, spent: int) -> int:
        """What every process has spent, as far as this one knows."""
        ...


@dataclass(frozen=True, slots=True)
class BudgetFigures:
    """The live figures for a progress display, in USD."""

    cap: float
    spent: float
    reserved: float
    in_flight: int
    settled: int

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap - self.spent - self.reserved)


class Budget:
    """Spend so far, reservations in flight, and the cap.

    :param cap: USD the run may spend, > 0.
    :param models: every model the input file asks for (``None`` for a request with none):
        each must have a price, or the cap could not be enforced.
    :param spent: USD already spent by an earlier part of the same run (a resumed run).
    :param default_max_output: output tokens reserved for a request that states no cap.
    :param exact: count input tokens exactly when an exact tokenizer is installed.
    :param pool: the cap is shared with other processes: reserve from what this one leased.
    :param flex_reserved: a line sent on the flex tier (`Job.tier`) is reserved at flex's price,
        the Batch API's; ``False`` when it may still go at the standard tier (``--tier-fallback``).
        An answer is charged at flex's price when it says it was processed on flex.
    :raises ConfigError: the cap is not positive, or a model has no price.
    """

    def __init__(self, cap: float, prices: PriceTable, models: Iterable[str | None], *, spent: float = 0.0,
                 default_max_output: int = DEFAULT_MAX_OUTPUT_TOKENS, exact: bool = True,
                 pool: Pool | None = None, flex_reserved: bool = False) -> None:
        if not cap > 0 or math.isinf(cap):
            raise ConfigError(f"--max-cost must be a positive number of USD, got {cap}")
        self._table = prices
        self._flex_table = prices.with_batch_discount()
        self.flex_reserved = flex_reserved
        self._prices: dict[str, Price] = {}
        unpriced = set()
        for model in models:
            price = prices.price(model) if model else None
            if price is None:
                unpriced.add(model if model else "(no model)")
            else:
                self._prices[model] = price  # type: ignore[index]  # model is a str here
        if unpriced:
            raise ConfigError(
                f"--max-cost cannot be enforced: no price for {', '.join(sorted(unpriced))}. "
                "Add them with --prices FILE (USD per 1M tokens), or run without --max-cost.")
        self._cap = _nano(cap)
        self._spent = _nano(spent)
        self._reserved = 0
        self.in_flight = 0
        self.settled = 0
        self.refused: float | None = None  # the worst case of the request a STOP turned away
        self._at_stop: _AtStop | None = None
        self.default_max_output = default_max_output
        self.exact = exact
        self.pool = pool

    # -- the engine's protocol ---------------------------------------------------------------

    def worst_case(self, job: Job) -> float:
        """The most ``job`` can cost, in USD (see the module docstring)."""
        price = self._price(job.model)
        if job.tier == FLEX and self.flex_reserved:
            price = self._flex_table.price(job.model) or price
        return worst_case(job, price, default_max_output=self.default_max_output, exact=self.exact)

    def admit(self, worst: float) -> Verdict:
        """May a request of this worst case be sent now? On GO its worst case is reserved."""
        need = _nano(worst)
        if self.pool is not None:
            verdict = self.pool.admit(need, self._spent)
        elif self._spent + need > self._cap:
            verdict = Verdict.STOP
        elif self._spent + self._reserved + need > self._cap:
            verdict = Verdict.WAIT
        else:
            verdict = Verdict.GO
        if verdict is Verdict.STOP:
            self.refused = worst
            self._at_stop = _AtStop(self._run_spent(), self._spent, self._reserved, self.in_flight)
        if verdict is not Verdict.GO:
            return verdict
        self._reserved += need
        self.in_flight += 1
        return Verdict.GO

    def settle(self, worst: float, result: Result) -> float:
        """Replace the reservation of a finished request by what it cost; returns that, in USD."""
        cost = self.cost_of(worst, result)
        self._release(worst)
        self._spent += _nano(cost)
        self.settled += 1
        if self.pool is not None:
            self.pool.settled(_nano(worst), _nano(cost), self._spent)
        return cost

    def release(self, worst: float) -> None:
        """Drop the reservation of a request that was admitted but never sent."""
        self._release(worst)
        if self.pool is not None:
            self.pool.released(_nano(worst))

    def carry(self, spent: float) -> None:
        """Count what earlier starts of the same run spent (the lines a resume carries over, and
        the spend ledger's lost answers), or what another route spent for this run (a batch's answers)."""
        self._spent += _nano(spent)

    def answered(self, result: Result) -> float:
        """Charge an answer another route bought for this run (the Batch API's) at what its usage
        cost, at the price of that route; returns it, in USD. An answer from the response cache
        was bought by no one: it costs nothing."""
        if result.cached:
            return 0.0
        usage = result.read_usage()
        table = self._table.with_batch_discount() if result.batch_id is not None else self._table
        cost = (table.cost(result.model, usage) or 0.0) if usage is not None else 0.0
        self._spent += _nano(cost)
        if self.pool is not None:
            self.pool.settled(0, _nano(cost), self._spent)
        return cost

    def cost_of(self, worst: float, result: Result) -> float:
        """What a finished request is charged (module docstring), in USD."""
        return self._final_cost(worst, result) + result.unanswered * worst

    def _final_cost(self, worst: float, result: Result) -> float:
        usage = result.read_usage()
        if usage is not None:
            # Priced as the model the body names (what was billed); one the table cannot price
            # (a server-side alias of a priced model, say) is charged its reservation.
            price = (self._flex_table if result.tier == FLEX else self._table).price(result.model)
            return worst if price is None else price.cost(usage)
        if result.status_code is None or result.error is None:
            return worst  # no response (maybe billed), or a success without usage
        return 0.0

    # -- live figures --------------------------------------------------------------------------

    @property
    def cap(self) -> float:
        return self._cap / _NANO

    @property
    def spent(self) -> float:
        return self._spent / _NANO

    @property
    def reserved(self) -> float:
        return self._reserved / _NANO

    def figures(self) -> BudgetFigures:
        return BudgetFigures(self.cap, self.spent, self.reserved, self.in_flight, self.settled)

    def projected_total(self, done: int, total: int) -> float | None:
        """The spend the whole file will come to at the rate so far (``done`` of ``total`` lines)."""
        return projected_spend(self.spent, done, total)

    def describe_stop(self, worst: float) -> str:
        """Why dispatching stopped, for the log, the summary and the report: what was spent,
        the requests that were in flight at the stop included once they have settled."""
        text = f"budget reached (--max-cost): {usd(self._run_spent() / _NANO)} spent of the {usd(self.cap)} cap"
        stop = self._at_stop
        if stop is not None and stop.in_flight and (added := self._spent - stop.own_spent) > 0:
            them = "the request" if stop.in_flight == 1 else f"the {stop.in_flight:,} requests"
            text += (f" ({usd(stop.run_spent / _NANO)} when it was reached; {them} then in flight, reserved at "
                     f"{usd(stop.reserved / _NANO)}, cost {usd(added / _NANO)}")
            if added > stop.reserved:
                text += (f": answers to requests without max_tokens can be longer than the {self.default_max_output:,} "
                         "output tokens reserved, and a lost answer is charged its worst case")
            text += ")"
        return f"{text}; the next request may cost up to {usd(worst)}"

    def _run_spent(self) -> int:
        """Nano-dollars spent: by this process, or by every process sharing the cap."""
        return self._spent if self.pool is None else self.pool.run_spent(self._spent)

    def _price(self, model: str | None) -> Price:
        price = self._prices.get(model) if model else None
        if price is None:
            raise ConfigError(f"--max-cost: no price for model {model!r}, which was not in the file when it was checked")
        return price

    def _release(self, worst: float) -> None:
        need = _nano(worst)
        self._reserved = max(0, self._reserved - need)
        self.in_flight = max(0, self.in_flight - 1)


@dataclass(frozen=True, slots=True)
class _AtStop:
    """The figures when `Budget.admit` said STOP, in nano-dollars."""

    run_spent: int
    own_spent: int
    reserved: int
    in_flight: int


def projected_spend(spent: float, done: int, total: int) -> float | None:
    """What ``total`` lines will cost if the rest cost what the ``done`` ones did."""
    if done <= 0 or total <= 0:
        return None
    return spent * max(total, done) / done


def _nano(usd: float) -> int:
    """USD as integer nano-dollars, rounded up (a reservation is never smaller than asked)."""
    return math.ceil(usd * _NANO - 1e-6)
