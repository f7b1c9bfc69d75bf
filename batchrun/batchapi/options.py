"""How a run goes through the Batch API: the provider's limits and the lifecycle's choices."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Bounds

# OpenAI's limits per batch (Azure OpenAI, Groq and Together keep the same or larger ones).
DEFAULT_MAX_REQUESTS = 50_000
DEFAULT_MAX_BYTES = 200 * 10**6
DEFAULT_POLL_INTERVAL = 60.0
FIRST_POLL = 1.0  # seconds before the first status check; each wait after doubles, up to the interval
MAX_REQUESTS_RANGE = Bounds(1, 10**7, whole=True)
MAX_BYTES_RANGE = Bounds(1024, 2**40, whole=True)
POLL_RANGE = Bounds(0, 86_400, low_open=True)
DEADLINE_RANGE = Bounds(0, 10 * 86_400)


@dataclass(frozen=True)
class BatchLimits:
    """How input lines are split into batches.

    :param max_requests: / :param max_bytes: at most this many lines, and bytes of request
        file, per batch.
    :param one_model: one model per batch (OpenAI requires it); every batch has one endpoint.
    """

    max_requests: int = DEFAULT_MAX_REQUESTS
    max_bytes: int = DEFAULT_MAX_BYTES
    one_model: bool = True


@dataclass(frozen=True)
class BatchOptions:
    """What ``--via batch`` does besides splitting.

    :param detach: submit what was never submitted, collect what is done, and return without
        waiting for the rest.
    :param cancel: cancel the run's batches, then collect what they answered.
    :param deadline: seconds after the first submission when the lines still unanswered are
        cancelled in their batches and sent online; ``None``: wait for the batches.
    :param poll_interval: the longest wait between two status checks.
    """

    limits: BatchLimits = BatchLimits()
    detach: bool = False
    cancel: bool = False
    deadline: float | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL

    def __post_init__(self) -> None:
        MAX_REQUESTS_RANGE.check("--batch-max-requests", self.limits.max_requests)
        MAX_BYTES_RANGE.check("--batch-max-bytes", self.limits.max_bytes)
        POLL_RANGE.check("--poll-interval", self.poll_interval)
        if self.deadline is not None:
            DEADLINE_RANGE.check("--batch-deadline", self.deadline)
