"""`batchrun.batchapi.queue`: what a line enqueues, a refusal read from a Batch object, the limit
it states, and which batches may go now (end to end over loopback: test_batch_queue.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.batchapi.ledger import Ledger, Part
from batchrun.batchapi.queue import BatchQueue, enqueued_tokens, refused_for_queue, stated_limit
from batchrun.errors import FatalEndpointError
from batchrun.records import Job

OPENAI = ("Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 2,000,000 enqueued tokens. "
          "Please try again once some in_progress batches have been completed.")
AZURE = ("The number of enqueued tokens has surpassed the configured limit of 30K for the deployment "
         "'gpt-4.1-batch'. Please either increase the limit or try again once the current jobs have finished.")


def job(body: dict[str, Any], url: str = "/v1/chat/completions") -> Job:
    return Job(0, 1, "a", url, orjson.dumps({"model": "gpt-4o-mini", **body}), "gpt-4o-mini")


def failed(code: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "errors": {"object": "list",
                                           "data": [{"code": code, "message": message, "param": None, "line": None}]}}


def test_a_line_enqueues_its_prompt_and_its_output_cap() -> None:
    capped = job({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 100})
    uncapped = job({"messages": [{"role": "user", "content": "hello"}]})
    assert 100 < enqueued_tokens(capped) < 120
    assert enqueued_tokens(uncapped) - enqueued_tokens(capped) == 4096 - 100  # the default cap when none is set
    assert enqueued_tokens(job({"input": "hello"}, "/v1/embeddings")) < 10  # embeddings produce no output


def test_a_refusal_for_the_queue_is_told_from_other_failures() -> None:
    assert refused_for_queue(failed("token_limit_exceeded", OPENAI)) == OPENAI
    assert refused_for_queue(failed("mismatched_endpoint", "no")) is None
    assert refused_for_queue({"status": "in_progress"}) is None
    assert refused_for_queue({"status": "failed", "errors": None}) is None


@pytest.mark.parametrize(("message", "limit"), [(OPENAI, 2_000_000), (AZURE, 30_000), ("Limit: 1.5M", 1_500_000),
                                                ("the queue is full", None)])
def test_the_limit_a_refusal_states(message: str, limit: int | None) -> None:
    assert stated_limit(message) == limit


def ledger(tmp_path: Path, *tokens: int) -> Ledger:
    parts = [Part(number, "/v1/chat/completions", "gpt-4o-mini", 1, tokens=count) for number, count in enumerate(tokens)]
    return Ledger(tmp_path, "run", 0.0, {}, parts)


def submit(part: Part, batch_id: str) -> None:
    part.batch_id, part.status = batch_id, "in_progress"


def test_a_batch_goes_while_it_fits_beside_those_of_its_model_still_running(tmp_path: Path) -> None:
    book = ledger(tmp_path, 1_000, 1_000, 1_000, 5_000)
    queue = BatchQueue(book, 2_500)
    first, second, third, huge = book.parts
    assert queue.fits(first)
    submit(first, "b1")
    assert queue.fits(second)
    submit(second, "b2")
    assert not queue.fits(third) and queue.enqueued("gpt-4o-mini") == 2_000
    assert queue.fits(Part(9, "/v1/chat/completions", "gpt-4o", 1, tokens=2_000))  # another model's queue
    first.status = "completed"  # ended: out of the queue
    assert queue.fits(third) and not queue.fits(huge)
    second.status = "completed"
    assert queue.fits(huge)  # alone, whatever its size: only the provider knows what else is queued
    assert BatchQueue(ledger(tmp_path, 10**9), None).fits(Part(0, "/v1/chat/completions", "m", 1, tokens=10**9))


def test_a_refused_batch_is_put_back_and_the_limit_learned(tmp_path: Path) -> None:
    book = ledger(tmp_path, 1_000, 1_000)
    queue = BatchQueue(book, None)
    first, second = book.parts
    submit(first, "b1")
    submit(second, "b2")
    second.file_id = "file-2"
    queue.refused(second, "Enqueued token limit reached. Limit: 1,500 enqueued tokens.")
    assert (second.batch_id, second.status, second.refused, second.file_id) == (None, None, "b2", "file-2")
    assert book.queue_tokens == 1_500 and queue.limit == 1_500 and not queue.fits(second)
    assert BatchQueue(book, 1_200).limit == 1_200  # the lower of the given and the learned


def test_without_a_stated_limit_what_was_enqueued_is_learned(tmp_path: Path) -> None:
    book = ledger(tmp_path, 700, 1_000)
    first, second = book.parts
    submit(first, "b1")
    submit(second, "b2")
    BatchQueue(book, None).refused(second, "queue full")
    assert book.queue_tokens == 700


def test_a_batch_alone_over_the_stated_limit_stops_the_run(tmp_path: Path) -> None:
    book = ledger(tmp_path, 3_000)
    submit(book.parts[0], "b1")
    with pytest.raises(FatalEndpointError, match=r"it alone is over the limit: .* --restart --batch-queue-tokens 2000"):
        BatchQueue(book, None).refused(book.parts[0], "Limit: 2,000 enqueued tokens.")


def test_the_learned_limit_is_saved_with_the_ledger(tmp_path: Path) -> None:
    book = ledger(tmp_path, 1_000)
    book.queue_tokens = 1_500
    book.parts[0].refused = "b0"
    book.save()
    loaded = Ledger.load(tmp_path)
    assert loaded is not None and loaded.queue_tokens == 1_500 and loaded.parts[0].refused == "b0"
