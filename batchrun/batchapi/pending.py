"""What a run through the Batch API returns while its batches are still at the provider: a
module of its own so that the command line can tell it apart without importing the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pending:
    """The batches are at the provider, not all ended: nothing is written yet.

    :param message: what happened and what to run next.
    """

    message: str
    exit_code: int
