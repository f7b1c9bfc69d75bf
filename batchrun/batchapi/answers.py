"""A batch's answers in input order, and the engine's source of them (`Answers`).

The provider's output and error files come in an order of their own. `order` reads a batch's
output and error files once, and writes one line per request of the batch, in input order:
the provider's record with the credentials scrubbed from it as from an online answer, or, for a
request neither file answers, one that says why (its batch failed, expired, was cancelled, or
completed without it), or, for an answer over online answers' size cap, ``response_too_large``
as online. It holds an offset per request of one batch, never the answers themselves, and reads
the files in bounded chunks (`lines.read_lines`). `Answers` then reads every batch's ordered file in step with
the input, one line of each at a time: memory does not grow with the input.
"""

from __future__ import annotations

import contextlib
import heapq
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from ..bodies import DEFAULT_MAX_RESPONSE_BYTES, too_large
from ..client import missing_answer
from ..disk.publish import private_file
from ..errors import StopBefore
from ..records import Job, LineError, Result, failure
from ..scrub import Scrubber
from ..stats import EXIT_BUDGET
from .ledger import Ledger, Part
from .lines import Line, read_lines
from .plan import part_file

# The codes of lines a batch did not answer: with a deadline they are sent online instead.
UNANSWERED = frozenset({"batch_expired", "batch_cancelled", "batch_failed", "batch_result_missing"})


def output_file(directory: Path, part: Part) -> Path:
    return directory / f"part-{part.number:04d}.output.jsonl"


def error_file(directory: Path, part: Part) -> Path:
    return directory / f"part-{part.number:04d}.errors.jsonl"


def ordered_file(directory: Path, part: Part) -> Path:
    return directory / f"part-{part.number:04d}.answers.jsonl"


def order(directory: Path, part: Part, scrubber: Scrubber, cap: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
    """Write ``part``'s answers in input order (`ordered_file`), fsynced, from its downloaded files.

    :param scrubber: takes the credentials out of what the provider quotes back.
    :param cap: bytes of a line past which its answer is ``response_too_large``.
    """
    where: dict[int, tuple[IO[bytes], int, int] | bytes] = {}
    with contextlib.ExitStack() as files:
        for path in (output_file(directory, part), error_file(directory, part)):
            if path.exists():
                f = files.enter_context(open(path, "rb", opener=private_file))
                for line in read_lines(f, cap):
                    index = _index(line.data) if line.whole else line.head_index()
                    if index is not None and index not in where:  # the output file's answer first
                        where[index] = (f, line.offset, line.length) if line.whole else _too_large(index, line, cap)
        target = ordered_file(directory, part)
        with open(target, "wb", opener=private_file) as out, \
                open(part_file(directory, part.number), "rb", opener=private_file) as requests:
            for request in requests:
                index = _index(request)
                assert index is not None, "a request file batchrun wrote"
                found = where.get(index)
                if found is None:
                    out.write(_unanswered(index, part))
                    continue
                if isinstance(found, bytes):
                    out.write(found)
                    continue
                source, offset, length = found
                source.seek(offset)
                out.write(_scrubbed(source.read(length), scrubber))
            out.flush()
            os.fsync(out.fileno())


def _scrubbed(line: bytes, scrubber: Scrubber) -> bytes:
    """A provider's line, ended by a newline, with the credentials it quotes masked (as
    `Client` masks an online answer's)."""
    if scrubber.suspect(line):
        return orjson.dumps(scrubber.json(orjson.loads(line)), option=orjson.OPT_APPEND_NEWLINE)
    return line if line.endswith(b"\n") else line + b"\n"


def _too_large(index: int, line: Line, cap: int) -> bytes:
    """The record of an answer over the cap, which is not kept (as online: ``response_too_large``)."""
    status = line.head_status()
    how = f"{line.length:,} bytes in the batch's file, over {cap:,}"
    error = {"code": "response_too_large", "message": f"an answer too large to keep ({how})"}
    if status is not None:
        error["message"] = too_large(status, how).message
    response = {"status_code": status} if status is not None else None
    return orjson.dumps({"custom_id": str(index), "response": response, "error": error},
                        option=orjson.OPT_APPEND_NEWLINE)


def _index(line: bytes | bytearray) -> int | None:
    """The input index a line of a request, output or error file is about (its ``custom_id``)."""
    try:
        record = orjson.loads(line)
        return int(record["custom_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _unanswered(index: int, part: Part) -> bytes:
    if part.status == "failed":
        error = {"code": "batch_failed", "message": f"batch {part.batch_id} failed: {part.failure}"}
    elif part.status in ("expired", "cancelled"):
        error = {"code": f"batch_{part.status}",
                 "message": f"batch {part.batch_id} {part.status} before answering this request"
                 if part.batch_id else "cancelled before it was submitted"}
    else:
        error = {"code": "batch_result_missing",
                 "message": f"batch {part.batch_id} {part.status} without a result for this request"}
    return orjson.dumps({"custom_id": str(index), "response": None, "error": error}, option=orjson.OPT_APPEND_NEWLINE)


class Answers:
    """What the batches answered, asked line by line in input order (`engine.run_batch`).

    :param online: a line its batch did not answer (`UNANSWERED`) is sent online: `take`
        gives ``None`` for it, as for a line no batch holds.
    :param stop: ``(index, reason)``: batches were held back by ``--max-cost`` (`cap.py`); the run
        stops before the first of their lines, unless ``online``.
    """

    def __init__(self, ledger: Ledger, *, online: bool, stop: tuple[int, str] | None = None) -> None:
        self._online = online
        self._stop = None if online else stop
        self._files = contextlib.ExitStack()
        self._heads: list[tuple[int, int, bytes, Iterator[bytes]]] = []
        self._batch_ids: dict[int, str | None] = {}
        for part in ledger.parts:
            if part.collected:
                f = self._files.enter_context(open(ordered_file(ledger.dir, part), "rb", opener=private_file))  # noqa: SIM115 -- closed by close()
                self._batch_ids[part.number] = part.batch_id
                self._advance(part.number, iter(f))

    def _advance(self, number: int, lines: Iterator[bytes]) -> None:
        line = next(lines, None)
        if line is not None:
            index = _index(line)
            assert index is not None, "an ordered file batchrun wrote"
            heapq.heappush(self._heads, (index, number, line, lines))

    def take(self, job: Job | LineError) -> Result | None:
        """``job``'s answer from its batch, or ``None`` when it is to be sent online. Lines
        before ``job`` not asked for (an earlier start wrote them) are passed over."""
        if self._stop is not None and job.index >= self._stop[0]:
            raise StopBefore(self._stop[1], EXIT_BUDGET)
        if isinstance(job, LineError):  # never planned into a batch
            return None
        heads = self._heads
        while heads and heads[0][0] < job.index:
            _, number, _, lines = heapq.heappop(heads)
            self._advance(number, lines)
        if not heads or heads[0][0] != job.index:
            return None
        _, number, line, lines = heapq.heappop(heads)
        self._advance(number, lines)
        record = orjson.loads(line)
        result = _result(job, record, self._batch_ids[number])
        if self._online and result.error is not None and result.error.get("code") in UNANSWERED:
            return None
        return result

    def close(self) -> None:
        self._files.close()


def _result(job: Job, record: dict[str, Any], batch_id: str | None) -> Result:
    response = record.get("response")
    response = response if isinstance(response, dict) else {}
    status = response.get("status_code")
    status = status if isinstance(status, int) and not isinstance(status, bool) else None
    body = response.get("body")
    request_id = response.get("request_id")
    error = failure(record)
    if error is None and status is not None and 200 <= status < 300 and (missing := missing_answer(job.url, body)):
        error = {"code": "invalid_response", "message": f"HTTP {status} but {missing}"}
    model = body.get("model") if isinstance(body, dict) else None
    return Result(job.index, job.custom_id, status, request_id if isinstance(request_id, str) else None, body, error,
                  attempts=1, model=model or job.model, batch_id=batch_id)
