"""``--max-cost`` on the Batch API: a batch is submitted only when its worst case fits.

A submitted batch cannot be stopped at a cap: the provider answers every line of it. So the cap
is kept before submitting. The plan puts the lines whose worst cases fit under the cap in
batches of their own (`plan.CapSplit`); a start submits a batch only when its worst case, with
the worst cases of the batches already submitted and what a finished output being retried
spent, is within the cap. A batch that does not fit is held back, never submitted: the engine
writes what the submitted batches answered up to the first held-back line, and the run ends
there as a budget stop does (exit 3); the same command with a higher cap submits the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from ..accounting.ledger import carried_spend, worst_case
from ..accounting.pricing import load_prices
from ..config import RunConfig
from ..disk.publish import private_file
from ..errors import ConfigError
from ..money import usd
from ..plural import counted
from ..records import Job
from .ledger import Ledger, Part
from .plan import CapSplit, part_file


def worst_at_batch_price(config: RunConfig) -> Callable[[Job], float]:
    """A line's worst case at the Batch API's price.

    :raises ConfigError: the line's model has no price, so the cap could not be kept (nothing was sent).
    """
    table = load_prices(config.prices_path, batch_discount=config.batch_discount).with_batch_discount()

    def worst(job: Job) -> float:
        price = table.price(job.model) if job.model else None
        if price is None:
            raise ConfigError(f"{config.input_path}:{job.line_no}: --max-cost cannot be enforced: no price for "
                              f"{job.model or '(no model)'}. Add it with --prices FILE (USD per 1M tokens), or run "
                              "without --max-cost")
        return worst_case(job, price)

    return worst


def spent_before(config: RunConfig) -> float:
    """USD a finished output being retried spent (its report: usage and lost answers); else 0."""
    if not config.retry_failed:
        return 0.0
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        report = orjson.loads(config.report_path.read_bytes())
        cost = report.get("cost_usd_priced")
        return (cost if isinstance(cost, (int, float)) else 0.0) + carried_spend(report)
    return 0.0


def split(config: RunConfig) -> CapSplit | None:
    """Where the plan splits for the cap, or ``None`` without one."""
    if config.max_cost is None:
        return None
    return CapSplit(config.max_cost - spent_before(config), worst_at_batch_price(config))


class BatchCap:
    """Which of a run's batches this start may submit under ``config.max_cost``."""

    def __init__(self, config: RunConfig, ledger: Ledger) -> None:
        self._config, self._ledger = config, ledger
        self._before = spent_before(config)
        self.held_back: list[Part] = []

    def fits(self, part: Part) -> bool:
        """Whether ``part`` may be submitted now; one that may not is held back."""
        cap = self._config.max_cost
        if cap is None:
            return True
        if self._worst(part) + self.committed() <= cap:
            return True
        self.held_back.append(part)
        return False

    def committed(self) -> float:
        """What the batches submitted may cost at most, with what was spent before them."""
        return self._before + sum(self._worst(part) for part in self._ledger.parts if part.batch_id is not None)

    def stop_reason(self) -> str:
        lines = sum(part.lines for part in self.held_back)
        worst = sum(self._worst(part) for part in self.held_back)
        return (f"budget reached (--max-cost): {counted(lines, 'line')} in {counted(len(self.held_back), 'batch', 'batches')} "
                "held back, not submitted — "
                f"their worst case ({usd(worst)}) does not fit under the {usd(self._config.max_cost or 0)} cap beside "
                f"the {usd(self.committed())} the submitted batches may cost; run again with a higher --max-cost "
                "to submit them")

    def _worst(self, part: Part) -> float:
        if part.worst_usd is None:  # planned by a start without a cap: read its request file once
            worst = worst_at_batch_price(self._config)
            part.worst_usd = sum(worst(job) for job in _requests(part_file(self._ledger.dir, part.number)))
        return part.worst_usd


def _requests(path: Path) -> Iterator[Job]:
    """The requests of a batch's request file, as jobs (`plan.request_line` wrote them)."""
    with open(path, "rb", opener=private_file) as f:
        for line in f:
            record = orjson.loads(line)
            body = record["body"]
            model = body.get("model") if isinstance(body, dict) else None
            yield Job(int(record["custom_id"]), 0, record["custom_id"], record["url"], orjson.dumps(body), model)
