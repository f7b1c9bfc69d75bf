"""The values that flow through a run, and their encoding as output lines (docs/contract.md, "Output").

reader → `Job` (or `LineError`) → client → `Result` → writer.

An output line has OpenAI's Batch output shape and meaning: ``response`` holds the HTTP answer
(its status, whatever it was, its ``request_id``, its body), ``error`` is for a line that has
no answer to show or none that batchrun could use (a timeout, a refused connection, a 2xx
whose body is not the endpoint's answer). A line that failed on its HTTP status has
``error: null``; batchrun's own reading of it is in ``batchrun.error``, where `failure` finds it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .json_numbers import is_int
from .output_cap import hit_output_cap
from .usage import Usage

DEFAULT_URL = "/v1/chat/completions"


@dataclass(slots=True)
class Job:
    """One request line, ready to send.

    :param index: 0-based position among the request lines (blank lines are not counted).
    :param line_no: 1-based physical line number in the input file, for messages.
    :param url: the endpoint path, e.g. ``/v1/chat/completions``.
    :param body: the request body, already encoded.
    :param max_output: the most output tokens the body allows, when it says (`tokens.max_output`).
    :param tier: the ``service_tier`` batchrun put in the body (`tiers`); ``None``: none.
    """

    index: int
    line_no: int
    custom_id: str
    url: str
    body: bytes
    model: str | None
    max_output: int | None = None
    tier: str | None = None


@dataclass(slots=True)
class LineError:
    """A line that cannot be sent: it becomes an error record in its place."""

    index: int
    line_no: int
    custom_id: str
    code: str
    message: str


@dataclass(slots=True)
class Result:
    """The final outcome of one line.

    A success has ``error is None`` and ``body`` the endpoint's JSON. A failure with an HTTP
    response keeps its ``status_code`` and ``body``; one without has ``status_code is None``.
    ``error`` is set for every failure; the output line shows it as OpenAI's ``error`` only
    when there is no HTTP error status to show instead (`http_failure`).
    """

    index: int
    custom_id: str
    status_code: int | None
    request_id: str | None
    body: Any
    error: dict[str, str] | None
    attempts: int = 0
    latency_ms: float | None = None  # the last attempt on the wire, from sending to its answer
    started_at: float | None = None  # when that attempt was sent, and answered: epoch seconds
    finished_at: float | None = None
    model: str | None = None
    rate_limited: int = 0  # 429s answered to the attempts that were retried
    wire_ms: float | None = None  # every attempt on the wire, when there was more than one
    waited_ms: float | None = None  # waiting to be sent: pacing, the breaker, backoff
    unanswered: int = 0  # retried attempts whose answer was lost: the provider may have billed them
    unconfirmed: bool = False  # this line's failure or the whole run's: held until known (`engine.Control.held`)
    dispatched: int = 0  # its last attempt's place in the dispatch order
    usage: Usage | None = None  # the body's usage, when the client already read it
    cut: bool | None = None  # the answer stopped at its output cap, once read (`read_cut`)
    # The encoded output line, once known; carried-over results come with it.
    line: bytes | None = None
    # Finished by an earlier start of the run (read back from its checkpoint), not by this one.
    carried_over: bool = False
    # Answered through the provider's Batch API, by this batch (`batchapi`); priced at its discount.
    batch_id: str | None = None
    # The service tier the answer says it was processed at (its body's ``service_tier``), read
    # before the body is let go; a flex answer is priced at the Batch API's price.
    tier: str | None = None
    fell_back: bool = False  # sent at the standard tier after flex (--tier-fallback)
    capacity_refused: int = 0  # refusals for capacity answered to the attempts that were retried
    # Answered from the response cache (`batchrun.cache`): never sent, and priced at nothing.
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def http_failure(self) -> bool:
        """Failed on its HTTP status: the output line shows the response, and ``error: null``."""
        return self.error is not None and self.status_code is not None and not 200 <= self.status_code < 300

    def read_usage(self) -> Usage | None:
        """The body's usage: as the client already read it, or read now (and kept)."""
        if self.usage is None:
            self.usage = Usage.from_body(self.body)
        return self.usage

    def read_cut(self) -> bool:
        """Whether the answer stopped at its output cap (`output_cap.hit_output_cap`), kept once read."""
        if self.cut is None:
            self.cut = hit_output_cap(self.body)
        return self.cut

    def shed_body(self) -> None:
        """Keep the encoded line (`encode` first) and what counting the result reads from its
        body (the usage, the billed model, the output cap), and let the parsed body go: a result
        waiting for an earlier line then holds its line and little else."""
        assert self.line is not None, "encode before shedding the body"
        self.read_usage()
        self.read_cut()
        billed = self.body.get("model") if isinstance(self.body, dict) else None
        if isinstance(billed, str) and billed:
            self.model = billed
        self.body = None

    @classmethod
    def from_line_error(cls, err: LineError) -> Result:
        return cls(err.index, err.custom_id, None, None, None, {"code": err.code, "message": err.message})

    @classmethod
    def from_line(cls, index: int, line: bytes) -> Result:
        """A result carried over from an output line an earlier run wrote.

        :raises ValueError: the line is not an output record (a torn or foreign line).
        """
        record = orjson.loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("custom_id"), str):
            raise ValueError("not an output record")
        response = record.get("response")
        response = response if isinstance(response, dict) else {}
        extra = record.get("batchrun")
        extra = extra if isinstance(extra, dict) else {}
        body = response.get("body")
        model = body.get("model") if isinstance(body, dict) else None
        return cls(index, record["custom_id"], response.get("status_code"), response.get("request_id"), body,
                   failure(record), extra.get("attempts", 0), extra.get("latency_ms"), extra.get("started_at"),
                   extra.get("finished_at"), model,
                   extra.get("rate_limited", 0), extra.get("wire_ms"), extra.get("waited_ms"),
                   extra.get("unanswered", 0), line=line, carried_over=True, batch_id=batch_of(record),
                   tier=tier_of(body), fell_back=extra.get("tier_fallback") is True,
                   capacity_refused=extra.get("capacity_refused", 0), cached=extra.get("cached") is True)

    def encode(self, run_id: str) -> bytes:
        """The output line, newline included, in the OpenAI Batch output shape (module docstring).

        :param run_id: the run's own id (`Checkpoint.run_id`), so that two runs of one file
            write different ids, and every start of one run the same.
        """
        if self.line is not None:
            return self.line
        line_id = batch_request_id(run_id, self.index, self.custom_id)
        response = None
        if self.status_code is not None:
            # OpenAI's request_id is always a string: one derived from the line's id when the
            # server sent none, the same at every start of the run.
            request_id = self.request_id or f"req_batchrun_{line_id.removeprefix('batch_req_')}"
            response = {"status_code": self.status_code, "request_id": request_id, "body": self.body}
        extras: dict[str, Any] = {"attempts": self.attempts, "latency_ms": self.latency_ms}
        if self.finished_at is not None:
            extras["started_at"] = self.started_at
            extras["finished_at"] = self.finished_at
        http_failure = self.http_failure
        if http_failure:
            extras["error"] = self.error
        if self.rate_limited:  # so `batchrun report` on the file counts the retried 429s too
            extras["rate_limited"] = self.rate_limited
        if self.wire_ms is not None:
            extras["wire_ms"] = self.wire_ms
        if self.waited_ms is not None:
            extras["waited_ms"] = self.waited_ms
        if self.unanswered:
            extras["unanswered"] = self.unanswered
        if self.batch_id is not None:
            extras["batch_id"] = self.batch_id
        if self.capacity_refused:
            extras["capacity_refused"] = self.capacity_refused
        if self.fell_back:
            extras["tier_fallback"] = True
        if self.cached:
            extras["cached"] = True
        record = {
            "id": line_id,
            "custom_id": self.custom_id,
            "response": response,
            "error": None if http_failure else self.error,
            "batchrun": extras,
        }
        try:
            self.line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError as exc:
            # Valid JSON that orjson reads but cannot write back (nested over 255 levels).
            self.body = self.usage = None
            self.error = {"code": "invalid_response", "message": f"the response body cannot be stored: {exc}"}
            return self.encode(run_id)
        return self.line


def batch_request_id(run_id: str, index: int, custom_id: str) -> str:
    """A ``batch_req_…`` id unique to the run and the line, and the same at every start of the run."""
    digest = _run_hash(run_id).copy()
    digest.update(f"{index}\0{custom_id}".encode())
    return f"batch_req_{digest.hexdigest()}"


@functools.lru_cache(maxsize=8)  # a process runs one run at a time, or a few shards
def _run_hash(run_id: str) -> hashlib.blake2b:
    """The hash of a run's ids with the run's part taken in: each line's only adds its own."""
    return hashlib.blake2b(f"{run_id}\0".encode(), digest_size=12)


def batch_of(record: Mapping[str, Any]) -> str | None:
    """The Batch API batch that answered an output line batchrun wrote (``batchrun.batch_id``), or
    ``None`` when it was answered online."""
    extra = record.get("batchrun")
    batch_id = extra.get("batch_id") if isinstance(extra, dict) else None
    return batch_id if isinstance(batch_id, str) else None


def tier_of(body: Any) -> str | None:
    """The service tier an answer says it was processed at (``service_tier``, as OpenAI echoes
    it), or ``None`` when it does not say."""
    tier = body.get("service_tier") if isinstance(body, dict) else None
    return tier if isinstance(tier, str) and tier else None


def failure(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """Why an output line failed, or ``None`` when it did not.

    Its ``error``; else batchrun's reading of a line that failed with a response
    (``batchrun.error``: an HTTP error status, or in ``batchrun label``'s results an answer that
    does not fit); else, in a file batchrun did not write (OpenAI's, vLLM's), an HTTP status
    that is not 2xx, described from the body's OpenAI-shaped error when it has one.
    """
    error = record.get("error")
    if isinstance(error, dict) and error:
        return error
    extra = record.get("batchrun")
    own = extra.get("error") if isinstance(extra, dict) else None
    if isinstance(own, dict):
        return own
    response = record.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    text = str(error) if error else None  # vLLM writes some errors as a bare string
    if not is_int(status) or 200 <= status < 300:
        return {"code": "error", "message": text} if text else None
    body = response.get("body") if isinstance(response, dict) else None
    code, message = openai_error(status, body) or (f"http_{status}", None)
    return {"code": code, "message": message or text or f"HTTP {status}"}


def openai_error(status: int, body: Any) -> tuple[str, str | None] | None:
    """The code and message of an error response's body in OpenAI's shape (``error.code``, else
    ``error.type``, else ``http_<status>``; ``error.message`` when it has one), or ``None`` when
    the body holds no such error object."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    return str(error.get("code") or error.get("type") or f"http_{status}"), str(message) if message else None
