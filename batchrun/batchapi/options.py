"""How a run goes through the Batch API: the provider's limits and the lifecycle's choices."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import BATCH_API, Bounds, Setting

FIRST_POLL = 1.0  # seconds before the first status check; each wait after doubles, up to the interval
DEADLINE_RANGE = Bounds(0, 10 * 86_400)

VIA = Setting("via", "--via", "online", BATCH_API, choices=("online", "batch"),
              help="batch: through the provider's Batch API (/v1/files, /v1/batches) at its price, within 24 h; run "
                   "the same command again to pick up the batches where they are.")
DETACH = Setting("detach", "--detach", False, BATCH_API,
                 help="With --via batch: submit, collect what has ended, and exit without waiting for the rest.")
CANCEL = Setting("cancel", "--cancel", False, BATCH_API,
                 help="With --via batch: cancel the run's batches, then write what they had answered.")
BATCH_DEADLINE: Setting[float | None] = Setting(
    "batch_deadline", "--batch-deadline", None, BATCH_API, bounds=DEADLINE_RANGE, kind="duration",
    metavar="DURATION", help="With --via batch: this long after the batches were planned (e.g. 6h), cancel those "
                             "still running and send the lines they did not answer online.")
POLL_INTERVAL = Setting("poll_interval", "--poll-interval", 60.0, BATCH_API, bounds=Bounds(0, 86_400, low_open=True),
                        help="With --via batch: the longest wait, in seconds, between status checks.")
# OpenAI's limits per batch (Azure OpenAI, Groq and Together keep the same or larger ones).
BATCH_MAX_REQUESTS = Setting("batch_max_requests", "--batch-max-requests", 50_000, BATCH_API,
                             bounds=Bounds(1, 10**7, whole=True), help="Most lines in one batch.")
BATCH_MAX_BYTES = Setting("batch_max_bytes", "--batch-max-bytes", 200 * 10**6, BATCH_API,
                          bounds=Bounds(1024, 2**40, whole=True), help="Largest request file of one batch, in bytes.")
BATCH_MIXED_MODELS = Setting("batch_mixed_models", "--batch-mixed-models", False, BATCH_API,
                             help="Let one batch hold several models (OpenAI allows one per batch; some providers more).")
BATCH_QUEUE_TOKENS: Setting[int | None] = Setting(
    "batch_queue_tokens", "--batch-queue-tokens", None, BATCH_API, bounds=Bounds(1, 10**12, whole=True), metavar="N",
    help="With --via batch: the provider's batch queue limit per model, in tokens (OpenAI's tier 1: 2,000,000 for "
         "gpt-4o-mini). Batches are sized to fit and submitted while the tokens they enqueue (prompts and output "
         "caps) fit under it, the next as earlier ones end. Default: learned from a batch refused for it.")
SETTINGS = (VIA, DETACH, CANCEL, BATCH_DEADLINE, POLL_INTERVAL, BATCH_MAX_REQUESTS, BATCH_MAX_BYTES, BATCH_MIXED_MODELS,
            BATCH_QUEUE_TOKENS)


@dataclass(frozen=True)
class BatchLimits:
    """How input lines are split into batches.

    :param max_requests: / :param max_bytes: at most this many lines, and bytes of request
        file, per batch.
    :param one_model: one model per batch (OpenAI requires it); every batch has one endpoint.
    :param queue_tokens: the provider's batch queue limit per model (`queue.py`): no batch
        enqueues more tokens than this; ``None``: none known.
    """

    max_requests: int = BATCH_MAX_REQUESTS.default
    max_bytes: int = BATCH_MAX_BYTES.default
    one_model: bool = True
    queue_tokens: int | None = None


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
    poll_interval: float = POLL_INTERVAL.default

    def __post_init__(self) -> None:
        BATCH_MAX_REQUESTS.check(self.limits.max_requests)
        BATCH_MAX_BYTES.check(self.limits.max_bytes)
        BATCH_QUEUE_TOKENS.check(self.limits.queue_tokens)
        POLL_INTERVAL.check(self.poll_interval)
        BATCH_DEADLINE.check(self.deadline)
