"""``batchrun run``'s options for the provider's Batch API (``--via batch``), and what they become."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..batchapi import options as defaults
from ..batchapi.options import BatchLimits, BatchOptions
from .bounded import Bounded

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """``90``, ``90s``, ``30m``, ``6h`` or ``1d``: seconds."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        match = _DURATION.fullmatch(str(value).strip().lower())
        if match is None:
            self.fail(f"{value!r} is not a duration such as 90s, 30m, 6h or 1d.", param, ctx)
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
        if not defaults.DEADLINE_RANGE.admits(seconds):
            self.fail(f"{value} is more than {defaults.DEADLINE_RANGE.high / 86_400:g} days.", param, ctx)
        return seconds


_OPTIONS = [
    click.option("--via", type=click.Choice(["online", "batch"]), default="online", show_default=True,
                 help="batch: through the provider's Batch API (/v1/files, /v1/batches) at its price, within "
                      "24 h; run the same command again to pick up the batches where they are."),
    click.option("--detach", is_flag=True,
                 help="With --via batch: submit, collect what has ended, and exit without waiting for the rest."),
    click.option("--cancel", is_flag=True,
                 help="With --via batch: cancel the run's batches, then write what they had answered."),
    click.option("--batch-deadline", type=Duration(), metavar="DURATION",
                 help="With --via batch: this long after the batches were planned (e.g. 6h), cancel those still "
                      "running and send the lines they did not answer online."),
    click.option("--poll-interval", type=Bounded(defaults.POLL_RANGE), default=defaults.DEFAULT_POLL_INTERVAL,
                 show_default=True, help="With --via batch: the longest wait, in seconds, between status checks."),
    click.option("--batch-max-requests", type=Bounded(defaults.MAX_REQUESTS_RANGE),
                 default=defaults.DEFAULT_MAX_REQUESTS, show_default=True, help="Most lines in one batch."),
    click.option("--batch-max-bytes", type=Bounded(defaults.MAX_BYTES_RANGE), default=defaults.DEFAULT_MAX_BYTES,
                 show_default=True, help="Largest request file of one batch, in bytes."),
    click.option("--batch-mixed-models", is_flag=True,
                 help="Let one batch hold several models (OpenAI allows one per batch; some providers more)."),
]


def batch_options(command: F) -> F:
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def make_batch_options(via: str, detach: bool, cancel: bool, batch_deadline: float | None, poll_interval: float,
                       batch_max_requests: int, batch_max_bytes: int, batch_mixed_models: bool) -> BatchOptions | None:
    """The `BatchOptions` of ``--via batch``; ``None`` for an online run.

    :raises click.UsageError: a Batch API option without ``--via batch``.
    """
    if via != "batch":
        given = [name for name, value in (("--detach", detach), ("--cancel", cancel),
                                          ("--batch-deadline", batch_deadline is not None)) if value]
        if given:
            raise click.UsageError(f"{', '.join(given)} only applies with --via batch")
        return None
    if detach and cancel:
        raise click.UsageError("--detach and --cancel exclude each other")
    limits = BatchLimits(max_requests=batch_max_requests, max_bytes=batch_max_bytes, one_model=not batch_mixed_models)
    return BatchOptions(limits, detach=detach, cancel=cancel, deadline=batch_deadline, poll_interval=poll_interval)
