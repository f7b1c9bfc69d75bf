"""The provider's batch queue limit: the tokens a model's batches may have enqueued at once.

OpenAI counts, per model, the tokens of every batch validating, in progress or finalizing; a
batch that would take the count past the organization's limit fails validation with
``token_limit_exceeded`` (its ``errors.data``: "Enqueued token limit reached for gpt-4o-mini in
organization org-…. Limit: 2,000,000 enqueued tokens. Please try again once some in_progress
batches have been completed."). Such a batch answered nothing and cost nothing.

So a batch is submitted only while the tokens it enqueues (`enqueued_tokens`: each line's
prompt estimate and output cap), with those of the run's batches of its model still running, fit
under the limit (`BatchQueue.fits`); the next waits until earlier ones end. The limit is
``--batch-queue-tokens``, or learned from a batch refused for it (the figure its message gives,
else what was enqueued when it was refused), and kept in the ledger for later starts. A refused
batch is put back to be submitted again (`BatchQueue.refused`), never written as failed lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from ..errors import FatalEndpointError
from ..records import Job
from ..tokens import DEFAULT_MAX_OUTPUT_TOKENS, counter_for, encoding_for, request_tokens
from .ledger import Ledger, Part

log = logging.getLogger("batchrun")

REFUSED = "token_limit_exceeded"
_LIMIT = re.compile(r"limit(?: of)?:?\s*([\d,.]+)\s*([KkMm]?)", re.IGNORECASE)
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


def enqueued_tokens(job: Job) -> int:
    """The tokens ``job`` puts in the queue: its prompt's estimate and its output cap
    (`tokens.DEFAULT_MAX_OUTPUT_TOKENS` when it states none)."""
    body: Any = orjson.loads(job.body)
    tokens = request_tokens(job.url, body if isinstance(body, dict) else {}, counter_for(encoding_for(job.model)))
    return tokens.input + (DEFAULT_MAX_OUTPUT_TOKENS if tokens.max_output is None else tokens.max_output)


def refused_for_queue(batch: dict[str, Any]) -> str | None:
    """The message of a batch that failed for the queue limit; ``None`` for any other batch."""
    if batch.get("status") != "failed":
        return None
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and item.get("code") == REFUSED:
            return str(item.get("message") or REFUSED)
    return None


def stated_limit(message: str) -> int | None:
    """The limit a refusal's message states ("Limit: 2,000,000 enqueued tokens", "limit of 30K")."""
    match = _LIMIT.search(message)
    if match is None:
        return None
    try:
        return int(float(match.group(1).replace(",", "")) * _SCALE[match.group(2).lower()])
    except ValueError:
        return None


class BatchQueue:
    """Which of a run's batches may be submitted now under the queue limit (module docstring).

    :param given: ``--batch-queue-tokens``; the ledger's learned limit is used when lower.
    """

    def __init__(self, ledger: Ledger, given: int | None) -> None:
        self._ledger = ledger
        self._given = given
        self._waiting: set[int] = set()

    @property
    def limit(self) -> int | None:
        known = [limit for limit in (self._given, self._ledger.queue_tokens) if limit is not None]
        return min(known) if known else None

    def enqueued(self, model: str | None) -> int:
        """The tokens the run's batches of ``model`` have in the queue."""
        return sum(part.tokens for part in self._ledger.in_flight if part.model == model)

    def fits(self, part: Part) -> bool:
        """Whether ``part`` may be submitted now (said once of each batch that must wait). A batch
        goes alone whatever its size: only the provider knows what other runs have enqueued."""
        limit, enqueued = self.limit, self.enqueued(part.model)
        if limit is None or enqueued == 0 or enqueued + part.tokens <= limit:
            return True
        if part.number not in self._waiting:
            self._waiting.add(part.number)
            log.info("batch %d of %d (%s tokens) waits for the batch queue: %s of %s tokens of %s are enqueued",
                     part.number + 1, len(self._ledger.parts), f"{part.tokens:,}", f"{enqueued:,}", f"{limit:,}",
                     part.model or part.url)
        return False

    def refused(self, part: Part, message: str) -> None:
        """``part``'s batch failed for the queue limit: learn the limit and put it back.

        :raises FatalEndpointError: the batch alone is over the limit the provider states, so it
            would never be accepted.
        """
        others = self.enqueued(part.model) - (part.tokens if part in self._ledger.in_flight else 0)
        stated = stated_limit(message)
        if stated is not None and part.tokens > stated:
            raise FatalEndpointError(
                f"batch {part.number + 1} ({part.tokens:,} tokens) is refused by the provider's batch queue limit "
                f"({message}); it alone is over the limit: run it again with --restart --batch-queue-tokens "
                f"{stated} to plan smaller batches")
        learned = stated if stated is not None else (others or None)
        if learned is not None and (self._ledger.queue_tokens is None or learned < self._ledger.queue_tokens):
            self._ledger.queue_tokens = learned
        log.warning("batch %d of %d (%s tokens) was refused for the provider's batch queue limit (%s); it is "
                    "submitted again once earlier batches end", part.number + 1, len(self._ledger.parts),
                    f"{part.tokens:,}", message)
        part.refused = part.batch_id
        part.batch_id, part.status, part.counts, part.failure = None, None, {}, None
        part.output_file_id = part.error_file_id = None
