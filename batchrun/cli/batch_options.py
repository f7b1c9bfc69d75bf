"""``batchrun run``'s options for the provider's Batch API (``--via batch``, declared in
`batchapi.options`), and what they become."""

from __future__ import annotations

import click

from ..batchapi.options import SETTINGS, BatchLimits, BatchOptions
from .declared import options

batch_options = options(SETTINGS)


def make_batch_options(via: str, detach: bool, cancel: bool, batch_deadline: float | None, poll_interval: float,
                       batch_max_requests: int, batch_max_bytes: int, batch_mixed_models: bool,
                       batch_queue_tokens: int | None) -> BatchOptions | None:
    """The `BatchOptions` of ``--via batch``; ``None`` for an online run.

    :raises click.UsageError: a Batch API option without ``--via batch``.
    """
    if via != "batch":
        given = [name for name, value in (("--detach", detach), ("--cancel", cancel),
                                          ("--batch-deadline", batch_deadline is not None),
                                          ("--batch-queue-tokens", batch_queue_tokens is not None)) if value]
        if given:
            raise click.UsageError(f"{', '.join(given)} only applies with --via batch")
        return None
    if detach and cancel:
        raise click.UsageError("--detach and --cancel exclude each other")
    limits = BatchLimits(max_requests=batch_max_requests, max_bytes=batch_max_bytes, one_model=not batch_mixed_models,
                         queue_tokens=batch_queue_tokens)
    return BatchOptions(limits, detach=detach, cancel=cancel, deadline=batch_deadline, poll_interval=poll_interval)
