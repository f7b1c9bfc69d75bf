"""What earlier starts of a run paid for, which its next start carries against ``--max-cost``:
the lines they finished, and what their lost answers may have cost (`accounting.ledger`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import orjson

from ..accounting.ledger import carried_spend
from ..accounting.pricing import PriceTable, load_prices
from ..accounting.report import Report
from ..config import RunConfig
from ..disk.checkpoint import Checkpoint, Opened, Recovered
from ..disk.identity import scan_input
from ..records import Result
from ..stats import RunStats


def carried_ledger(config: RunConfig, checkpoint: Checkpoint) -> float:
    """USD earlier starts' lost answers may have cost: the checkpoint's ledger, or, for a new
    checkpoint retrying a finished output, that output's report's."""
    saved = checkpoint.load_spend()
    if saved is None and checkpoint.previous.exists():
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            saved = orjson.loads(config.report_path.read_bytes())
    return carried_spend(saved)


def carried(stats: RunStats, recovered: Recovered, checkpoint: Checkpoint, prices: PriceTable, lost: float) -> float:
    """USD a start carries against the cap, all paid for by whichever earlier start: the ordered
    prefix (``stats``, as `Checkpoint.recover` counted it), the lines past it that earlier starts
    finished (the journal, a finished output being retried), and ``lost``, what their lost
    answers may have cost (`carried_ledger`)."""
    return stats.report.cost()[1] + _cost_past_prefix(recovered, checkpoint, prices) + lost


def _cost_past_prefix(recovered: Recovered, checkpoint: Checkpoint, prices: PriceTable) -> float:
    spent = Report(prices)
    for entry in (recovered.finished or {}).values():
        _charge(spent, entry.index, entry.line)
    if recovered.previous is not None:
        with checkpoint.open_previous() as f:
            for index, line in enumerate(f):
                if index >= recovered.prefix:
                    _charge(spent, index, line)
    return spent.cost()[1]


def _charge(spent: Report, index: int, line: bytes) -> None:
    with contextlib.suppress(ValueError):  # unreadable: the line is done again, and charged then
        spent.add_result(Result.from_line(index, line))


def spent_so_far(config: RunConfig) -> float:
    """USD the unfinished earlier starts of ``config`` spent, as its checkpoint tells it (0 when
    it has none, or its output is finished): what `run_batch` carries against the cap when it
    starts it again. Recovering repairs the checkpoint as that start would. With
    ``retry_failed`` and no checkpoint yet, the finished output's lines, which the retry's
    checkpoint will carry.

    :raises ConfigError: that start would refuse the checkpoint (another run holds it, or it is
        of another input or options).
    """
    fresh = not config.checkpoint_path.is_dir()
    if fresh and not (config.retry_failed and config.out.exists()):
        return 0.0
    prices = load_prices(config.prices_path, batch_discount=config.batch_discount)
    if fresh:
        return _output_cost(config.out, prices)
    span = config.span
    checkpoint = Checkpoint(config)
    opened = checkpoint.open(scan_input(config.input_path, (span.start, span.end) if span else None),
                             restart=False, retry_failed=config.retry_failed)
    if opened is not Opened.RUN:
        return 0.0
    try:
        stats = RunStats(config.out, config.errors_path, Report(prices))
        recovered = checkpoint.recover(stats)
        return carried(stats, recovered, checkpoint, prices, carried_ledger(config, checkpoint))
    finally:
        checkpoint.close()


def _output_cost(path: Path, prices: PriceTable) -> float:
    spent = Report(prices)
    with path.open("rb") as f:
        for index, line in enumerate(f):
            _charge(spent, index, line)
    return spent.cost()[1]
