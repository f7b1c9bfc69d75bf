"""The simulator's Batch API: ``/v1/files`` and ``/v1/batches``, in memory, on the server's clock.

Routes (``/v1`` optional, as for the online endpoints)::

    POST /files                  multipart/form-data: purpose=batch, file=<JSONL of request lines>
    GET  /files/{id}             the File object
    GET  /files/{id}/content     the file's bytes (an input, output or error file)
    POST /batches                {"input_file_id", "endpoint", "completion_window": "24h", "metadata"}
    GET  /batches                ?limit=20&after=<id>: newest first, {"object": "list", ..., "has_more"}
    GET  /batches/{id}           the Batch object
    POST /batches/{id}/cancel    the Batch object, now cancelling

A batch runs no timers: its state is a function of the clock, recomputed whenever it is read.
From its creation at ``t0`` it is ``validating`` for ``validating_s``, then either ``failed``
(a line whose ``url`` is not the batch's endpoint, a repeated ``custom_id``, more lines or bytes
than the limits allow: ``errors`` says which) or ``in_progress``, answering its lines in input
order, one every ``seconds_per_request``; then ``finalizing`` for ``finalizing_s`` and
``completed``. A batch still unanswered ``expire_after_s`` after ``t0`` is ``expired`` at once;
a cancel puts it in ``cancelling`` for ``cancelling_s``, then ``cancelled``. In both cases the
lines answered before are in the output file and the others in the error file, with code
``batch_expired`` or ``batch_cancelled``.

Each line's answer is the online endpoints' own (:func:`~.answers.answer`), with the
``x-request-id`` the server would send, so bodies and ``usage`` match an online run. Output
lines come in an order of their own, as OpenAI warns they may. Seeded, line by line:
``rate_failed`` of the lines get ``failed_status`` in the output file (as OpenAI reports a
request that failed: ``response.status_code`` other than 200), and ``rate_lost`` are in neither
file while ``request_counts`` counts them as completed, which a client can only notice by
matching ``custom_id``s. ``request_counts.failed`` counts the non-200 answers and the lines of
the error file. Ids are derived from the seed and the order of creation, so a run repeats.
Two faults test what a client keeps of the files: ``quote`` is text (a test passes the API key)
that every output line's body and every error line's message quote back, as a provider echoing
the headers it was sent would; ``oversize`` pads the first line's answer to that many bytes more
(a ``padding`` string in its body), an answer past any cap a client holds answers to.

The server's faults, latency and key check apply to these routes as to any other (a truncated
``POST /batches`` has created its batch); its rate limits do not.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qs

import orjson

from .answers import Reply, answer, error_payload

__all__ = ["BATCH_ENDPOINTS", "BatchStore", "Batches", "is_batch_route"]

BATCH_ENDPOINTS: Final = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/completions")
"""The endpoints a batch may target (``POST /v1/batches``' ``endpoint``)."""

_PREFIXES = ("/v1/files", "/v1/batches", "/files", "/batches")
_FILE = re.compile(r"/files/([^/]+)(/content)?")
_BATCH = re.compile(r"/batches/([^/]+)(/cancel)?")
_JSONL = "application/jsonl"
_MAX_METADATA = 16


def is_batch_route(path: str) -> bool:
    """Whether ``path`` belongs to this module (checked only off the chat hot path)."""
    return path.startswith(_PREFIXES)


@dataclass(frozen=True)
class Batches:
    """How the simulated Batch API behaves; times in seconds of the server's clock.

    :param validating_s: how long a new batch stays ``validating``.
    :param seconds_per_request: time to answer each line, in input order.
    :param finalizing_s: how long a batch stays ``finalizing`` once every line is answered.
    :param cancelling_s: how long a cancelled batch stays ``cancelling``.
    :param expire_after_s: a batch not done this long after its creation expires (OpenAI: 24 h).
    :param max_requests: lines allowed per batch (OpenAI: 50,000); more make it ``failed``.
    :param max_bytes: input file size allowed per batch (OpenAI: 200 MB); more make it ``failed``.
    :param rate_failed: share of lines answered with ``failed_status`` in the output file.
    :param failed_status: the status of those answers (a 4xx or 5xx).
    :param rate_lost: share of lines missing from both files (counted as completed).
    :param quote: text every output body and error message quotes back (``Authorization: Bearer …``).
    :param oversize: bytes of padding in the first line's answer body.
    :param queue_tokens: the batch queue limit per model, as OpenAI's: a batch whose tokens
        (`enqueued_tokens`), with those of the model's batches validating, in progress or
        finalizing, exceed it fails validation with ``token_limit_exceeded``; ``None``: no limit.
    """

    validating_s: float = 0.01
    seconds_per_request: float = 0.001
    finalizing_s: float = 0.01
    cancelling_s: float = 0.01
    expire_after_s: float = 86_400.0
    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    rate_failed: float = 0.0
    failed_status: int = 500
    rate_lost: float = 0.0
    quote: str = ""
    oversize: int = 0
    queue_tokens: int | None = None

    def __post_init__(self) -> None:
        times = (self.validating_s, self.seconds_per_request, self.finalizing_s, self.cancelling_s)
        if min(times) < 0 or self.expire_after_s <= 0:
            raise ValueError("batch times must be >= 0 and expire_after_s > 0")
        if self.max_requests < 1 or self.max_bytes < 1:
            raise ValueError("max_requests and max_bytes must be >= 1")
        if self.rate_failed < 0 or self.rate_lost < 0 or self.rate_failed + self.rate_lost > 1:
            raise ValueError("rate_failed and rate_lost must be >= 0 and add up to at most 1")
        if not 400 <= self.failed_status <= 599:
            raise ValueError("failed_status must be a 4xx or 5xx")
        if self.oversize < 0:
            raise ValueError("oversize must be >= 0")
        if self.queue_tokens is not None and self.queue_tokens < 1:
            raise ValueError("queue_tokens must be >= 1")


class _Error(Exception):
    """An OpenAI-shaped error reply, raised inside this module."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


@dataclass(frozen=True)
class _Line:
    custom_id: str
    method: str
    url: str
    body: bytes


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    created_at: int
    content: bytes
    lines: tuple[_Line, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _Batch:
    id: str
    input: _File
    endpoint: str
    metadata: dict[str, str] | None
    created: float  # the clock's seconds (floats; the API shows whole seconds)
    errors: list[dict[str, Any]]  # validation errors: the batch fails when validation ends
    fates: list[Literal["ok", "failed", "lost"]]
    statuses: list[int] = field(default_factory=list)  # of the lines answered so far, in input order
    cancel_requested: float | None = None
    output_file: _File | None = None
    error_file: _File | None = None
    done: bool = False  # files written (a terminal status with lines to report)
    sequence: int = 0


class BatchStore:
    """Every file and batch of one server, answering the routes of the module docstring.

    :param clock: seconds since the epoch (the server's clock, anchored to wall time).
    :param count: called with a counter name (``files_uploaded``, ``batches_created``,
        ``batch_requests``, ``batches_cancelled``) and how many happened, for the server's stats.
    """

    def __init__(self, config: Batches, seed: int, clock: Callable[[], float], count: Callable[[str, int], None]) -> None:
        self._config = config
        self._seed = seed
        self._clock = clock
        self._count = count
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._serial = 0

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        """Answer one request to a Batch API route; never raises."""
        route, _, query = path.partition("?")
        if route.startswith("/v1/"):
            route = route[3:]
        try:
            return self._route(method, route, query, body)
        except _Error as exc:
            return Reply(exc.status, error_payload(str(exc), "invalid_request_error", exc.param, exc.code))

    def _route(self, method: str, route: str, query: str, body: bytes) -> Reply:
        now = self._clock()
        if route == "/files" and method == "POST":
            return Reply(200, self._upload(body, now).to_dict())
        if route == "/batches":
            if method == "POST":
                return Reply(200, self._view(self._create(body, now), now))
            if method == "GET":
                return Reply(200, self._list(query, now))
        match = _FILE.fullmatch(route)
        if match is not None and method == "GET":
            file = self._files.get(match.group(1))
            if file is None:
                raise _Error(404, f"No such File object: {match.group(1)}", "id")
            if match.group(2):
                return Reply(200, {}, raw=file.content, content_type=_JSONL)
            return Reply(200, file.to_dict())
        match = _BATCH.fullmatch(route)
        if match is not None and (method, bool(match.group(2))) in (("GET", False), ("POST", True)):
            batch = self._batches.get(match.group(1))
            if batch is None:
                raise _Error(404, f"No batch found with id '{match.group(1)}'.", "batch_id")
            return Reply(200, self._cancel(batch, now) if match.group(2) else self._view(batch, now))
        raise _Error(404, f"Invalid URL ({method} {route})")

    # files

    def _upload(self, body: bytes, now: float) -> _File:
        fields = _multipart(body)
        purpose = fields.get("purpose")
        if purpose is None:
            raise _Error(400, "Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
        if purpose[1] != b"batch":
            shown = purpose[1].decode(errors="replace")
            raise _Error(400, f"Invalid value for 'purpose': '{shown}'. The batchrun simulator accepts 'batch' "
                         "files only.", "purpose", "invalid_value")
        upload = fields.get("file")
        if upload is None or upload[0] is None:
            raise _Error(400, "Missing required parameter: 'file'.", "file", "missing_required_parameter")
        lines = _request_lines(upload[1])
        file = _File(self._new_id("file-", 24), upload[0], "batch", int(now), upload[1], lines)
        self._files[file.id] = file
        self._count("files_uploaded", 1)
        return file

    # batches

    def _create(self, body: bytes, now: float) -> _Batch:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _Error(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(request, dict):
            raise _Error(400, "The request body must be a JSON object.", code="invalid_type")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(request.get(name), str):
                raise _Error(400, f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        if request["endpoint"] not in BATCH_ENDPOINTS:
            raise _Error(400, f"Invalid value for 'endpoint': '{request['endpoint']}'. Supported values are: "
                         + ", ".join(f"'{e}'" for e in BATCH_ENDPOINTS) + ".", "endpoint", "invalid_value")
        if request["completion_window"] != "24h":
            raise _Error(400, f"Invalid value for 'completion_window': '{request['completion_window']}'. "
                         "Supported values are: '24h'.", "completion_window", "invalid_value")
        metadata = request.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict) and len(metadata) <= _MAX_METADATA
            and all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                    for k, v in metadata.items())
        ):
            raise _Error(400, "Invalid 'metadata': at most 16 string keys (64 characters) with string values "
                         "(512 characters).", "metadata", "invalid_value")
        file = self._files.get(request["input_file_id"])
        if file is None:
            raise _Error(404, f"No such File object: {request['input_file_id']}", "input_file_id")
        if file.purpose != "batch":
            raise _Error(400, f"File {file.id} has purpose '{file.purpose}'; a batch needs a 'batch' file.",
                         "input_file_id", "invalid_value")
        batch_id = self._new_id("batch_", 32)
        errors = self._validate(file, request["endpoint"]) or self._queue_check(file, now)
        fates = [] if errors else [self._fate(batch_id, i) for i in range(len(file.lines))]
        batch = _Batch(batch_id, file, request["endpoint"], metadata, now, errors, fates, sequence=self._serial)
        self._batches[batch.id] = batch
        self._count("batches_created", 1)
        self._count("batch_requests", len(file.lines))
        return batch

    def _validate(self, file: _File, endpoint: str) -> list[dict[str, Any]]:
        config = self._config
        if len(file.lines) > config.max_requests:
            message = f"The input file has {len(file.lines)} requests; a batch may have at most {config.max_requests}."
            return [_error("too_many_requests", message)]
        if len(file.content) > config.max_bytes:
            message = f"The input file has {len(file.content)} bytes; a batch may have at most {config.max_bytes}."
            return [_error("file_too_large", message)]
        errors = []
        seen: set[str] = set()
        for number, line in enumerate(file.lines, 1):
            if line.url != endpoint:
                message = f"The url '{line.url}' does not match the batch's endpoint '{endpoint}'."
                errors.append(_error("mismatched_endpoint", message, "url", number))
            if line.custom_id in seen:
                message = f"The custom_id '{line.custom_id}' appears more than once in the input file."
                errors.append(_error("duplicate_custom_id", message, "custom_id", number))
            seen.add(line.custom_id)
        return errors

    def _queue_check(self, file: _File, now: float) -> list[dict[str, Any]]:
        """OpenAI's enqueued token limit, checked as the batch is validated."""
        limit = self._config.queue_tokens
        if limit is None:
            return []
        model = _model(file)
        enqueued = sum(_enqueued(batch.input) for batch in self._batches.values()
                       if not batch.errors and _model(batch.input) == model
                       and self._view(batch, now)["status"] in ("validating", "in_progress", "finalizing"))
        if enqueued + _enqueued(file) <= limit:
            return []
        message = (f"Enqueued token limit reached for {model} in organization org-batchrun-simulator. Limit: "
                   f"{limit:,} enqueued tokens. Please try again once some in_progress batches have been completed.")
        return [_error("token_limit_exceeded", message)]

    def _fate(self, batch_id: str, index: int) -> Literal["ok", "failed", "lost"]:
        draw = _unit(b"%d:%s:%d" % (self._seed, batch_id.encode(), index))
        if draw < self._config.rate_lost:
            return "lost"
        if draw < self._config.rate_lost + self._config.rate_failed:
            return "failed"
        return "ok"

    def _cancel(self, batch: _Batch, now: float) -> dict[str, Any]:
        status = self._view(batch, now)["status"]
        if status in ("validating", "in_progress"):
            batch.cancel_requested = now
            self._count("batches_cancelled", 1)
        elif status not in ("cancelling", "cancelled"):
            raise _Error(400, f"Cannot cancel a batch with status '{status}'.", code="invalid_state")
        return self._view(batch, now)

    def _list(self, query: str, now: float) -> dict[str, Any]:
        params = parse_qs(query)
        try:
            limit = int(params.get("limit", ["20"])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise _Error(400, "Invalid 'limit': expected an integer between 1 and 100.", "limit", "invalid_value")
        ordered = sorted(self._batches.values(), key=lambda b: b.sequence, reverse=True)
        after = params.get("after", [None])[0]
        if after is not None:
            ids = [b.id for b in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        page = ordered[:limit]
        data = [self._view(b, now) for b in page]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(ordered) > limit,
        }

    # the lifecycle, as a function of the clock

    def _view(self, batch: _Batch, now: float) -> dict[str, Any]:
        """The Batch object as it stands at ``now``; writes its files when it reaches its end."""
        config = self._config
        total = len(batch.input.lines)
        t0 = batch.created
        started = t0 + config.validating_s
        expires = t0 + config.expire_after_s
        times: dict[str, float | None] = dict.fromkeys(
            ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
             "cancelled_at"))
        counts = {"total": total, "completed": 0, "failed": 0}
        cancel = batch.cancel_requested
        # The lines answered by `stop` (a cancel, the expiry, or now) are those of the output file.
        stop = min(now, expires, math.inf if cancel is None else cancel)
        if stop >= started:
            times["in_progress_at"] = started
        answered = 0 if batch.errors else self._answered(started, stop, total)
        finished = started + total * config.seconds_per_request
        ended = False
        if cancel is not None:
            times["cancelling_at"] = cancel
            ended = now >= cancel + config.cancelling_s
            status = "cancelled" if ended else "cancelling"
            if ended:
                times["cancelled_at"] = cancel + config.cancelling_s
        elif now < started:
            status = "validating"
        elif batch.errors:
            # Validation found errors: the batch fails as validation ends, never having started.
            status, times["in_progress_at"], times["failed_at"], counts["total"] = "failed", None, started, 0
        elif finished > expires and now >= expires:
            status, ended, times["expired_at"] = "expired", True, expires
        elif now < finished:
            status = "in_progress"
        else:
            times["finalizing_at"] = finished
            ended = now >= finished + config.finalizing_s
            status = "completed" if ended else "finalizing"
            if ended:
                times["completed_at"] = finished + config.finalizing_s
        failed = self._failures(batch, answered)
        counts["completed"], counts["failed"] = answered - failed, failed
        if ended and not batch.errors:
            counts["failed"] += total - answered
            if not batch.done:
                self._write_files(batch, answered, "batch_cancelled" if cancel is not None else "batch_expired")
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input.id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": batch.output_file.id if batch.output_file else None,
            "error_file_id": batch.error_file.id if batch.error_file else None,
            "created_at": int(t0),
            **{name: None if value is None else int(value) for name, value in times.items()},
            "expires_at": int(expires),
            "request_counts": counts,
            "metadata": batch.metadata,
        }

    def _failures(self, batch: _Batch, answered: int) -> int:
        """How many of the first ``answered`` lines got a status other than 200 (a lost line did not)."""
        for index in range(len(batch.statuses), answered):
            batch.statuses.append(self._reply(batch.input.lines[index], batch.fates[index]).status)
        return sum(status != 200 for status in batch.statuses[:answered])

    def _reply(self, line: _Line, fate: str) -> Reply:
        if fate == "failed":
            return _failed_reply(self._config.failed_status)
        if fate == "lost":  # answered as far as the batch knows; the answer never reaches a file
            return Reply(200, {})
        return answer(line.method, line.url, line.body)

    def _answered(self, started: float, stop: float, total: int) -> int:
        if stop < started:
            return 0
        per = self._config.seconds_per_request
        if per == 0:
            return total
        # A hair of tolerance, so that a clock set exactly to a line's end counts that line.
        return min(total, int((stop - started) / per + 1e-9))

    def _write_files(self, batch: _Batch, answered: int, unanswered_code: str) -> None:
        """Write the output and error files of a batch that has ended (each only if it has lines)."""
        batch.done = True
        output: list[bytes] = []
        errors: list[bytes] = []
        for index, (line, fate) in enumerate(zip(batch.input.lines, batch.fates, strict=True)):
            line_id = "batch_req_" + _hex(b"%s:%d" % (batch.id.encode(), index), 32)
            if index >= answered:
                message = ("This request could not be executed before the batch expired." if unanswered_code ==
                           "batch_expired" else "This request was not executed because the batch was cancelled.")
                record: dict[str, Any] = {"id": line_id, "custom_id": line.custom_id, "response": None,
                                          "error": {"code": unanswered_code, "message": message + self._quoted()}}
                errors.append(orjson.dumps(record))
                continue
            if fate == "lost":
                continue
            reply = self._reply(line, fate)
            request_id = "req_" + hashlib.blake2b(line.method.encode() + line.url.encode() + line.body,
                                                  digest_size=12).hexdigest()
            body = reply.payload
            if self._config.quote:
                body = {**body, "echo": self._quoted()}
            if index == 0 and self._config.oversize:
                body = {**body, "padding": "x" * self._config.oversize}
            record = {"id": line_id, "custom_id": line.custom_id,
                      "response": {"status_code": reply.status, "request_id": request_id, "body": body},
                      "error": None}
            output.append(orjson.dumps(record))
        # OpenAI does not keep the input order; neither does the simulator (a fixed order of its own).
        output.sort(key=lambda raw: hashlib.blake2b(raw, digest_size=8).digest())
        now = int(self._clock())
        if output:
            batch.output_file = self._store_output(batch, "output", output, now)
        if errors:
            batch.error_file = self._store_output(batch, "error", errors, now)

    def _quoted(self) -> str:
        return f" (sent with Authorization: Bearer {self._config.quote})" if self._config.quote else ""

    def _store_output(self, batch: _Batch, kind: str, lines: list[bytes], now: int) -> _File:
        file = _File(self._new_id("file-", 24), f"{batch.id}_{kind}.jsonl", "batch_output", now,
                     b"\n".join(lines) + b"\n")
        self._files[file.id] = file
        return file

    def _new_id(self, prefix: str, size: int) -> str:
        self._serial += 1
        return prefix + _hex(b"%d:%s%d" % (self._seed, prefix.encode(), self._serial), size)


def _enqueued(file: _File) -> int:
    """What a batch input file puts in the queue: each line's prompt (a token per 4 bytes of its
    body) and its output cap (4,096 when it states none)."""
    total = 0
    for line in file.lines:
        body = orjson.loads(line.body)
        caps = [body.get(name) for name in ("max_completion_tokens", "max_tokens", "max_output_tokens")]
        cap = next((value for value in caps if isinstance(value, int)), 4096)
        total += len(line.body) // 4 + cap
    return total


def _model(file: _File) -> str:
    model = orjson.loads(file.lines[0].body).get("model")
    return model if isinstance(model, str) else ""


def _request_lines(content: bytes) -> tuple[_Line, ...]:
    """The request lines of a batch input file, or a 400 naming the first bad line."""
    lines = []
    for number, raw in enumerate(content.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Error(400, f"Line {number} of the file is not valid JSON.", "file", "invalid_json_line") from None
        if not isinstance(line, dict):
            raise _Error(400, f"Line {number} of the file is not a JSON object.", "file", "invalid_json_line")
        for name, kind in (("custom_id", str), ("method", str), ("url", str), ("body", dict)):
            if not isinstance(line.get(name), kind):
                raise _Error(400, f"Line {number} of the file lacks a valid '{name}'.", "file",
                             "invalid_request_line")
        if line["method"] != "POST":
            raise _Error(400, f"Line {number}: only the POST method is supported.", "file", "invalid_request_line")
        lines.append(_Line(line["custom_id"], line["method"], line["url"], orjson.dumps(line["body"])))
    if not lines:
        raise _Error(400, "The file has no request lines.", "file", "empty_file")
    return tuple(lines)


def _multipart(body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, value).

    The boundary is read from the body's first line: clients send no preamble, and the server
    then needs no header of the request (its parser keeps only the ones the hot path needs).
    """
    first, _, _ = body.partition(b"\r\n")
    if not first.startswith(b"--") or len(first) < 3:
        raise _Error(400, "The request must be multipart/form-data with 'purpose' and 'file' fields.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(first + b"\r\n")[1:]:
        head, separator, value = part.partition(b"\r\n\r\n")
        if not separator:
            raise _Error(400, "A part of the multipart body has no headers.")
        if value.endswith((first + b"--\r\n", first + b"--")):
            value = value[: value.rindex(first + b"--")]
        value = value.removesuffix(b"\r\n")
        disposition = next((h for h in head.split(b"\r\n") if h.lower().startswith(b"content-disposition:")), b"")
        name = re.search(rb'\bname="([^"]*)"', disposition)
        filename = re.search(rb'\bfilename="([^"]*)"', disposition)
        if name is None:
            raise _Error(400, "A part of the multipart body has no name.")
        fields[name.group(1).decode(errors="replace")] = (
            filename.group(1).decode(errors="replace") if filename else None, value)
    return fields


def _failed_reply(status: int) -> Reply:
    if status >= 500:
        return Reply(status, error_payload("The server had an error while processing your request.", "server_error"))
    message = "The batchrun simulator refused this request (a configured partial failure)."
    return Reply(status, error_payload(message, "invalid_request_error"))


def _error(code: str, message: str, param: str | None = None, line: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _hex(data: bytes, size: int) -> str:
    return hashlib.blake2b(data, digest_size=size // 2).hexdigest()


def _unit(data: bytes) -> float:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / 2**64
