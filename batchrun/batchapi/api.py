"""The provider's ``/v1/files`` and ``/v1/batches``, called through the run's transport with its
headers, key handling, status classifier and retry policy (`retry.status_error`,
`retry.next_wait`), as online requests are.

The retries are tenacity's loop (`_retrying`) asking the same policy as online lines: a few calls
per batch, where its cost is not seen (``docs/libraries.md``).

Every call but one is safe to repeat: a batch is created once. A ``POST /batches`` whose reply
did not come back may have created it, so before trying again `BatchApi.create_batch` looks for
it by the ``metadata`` it was sent with (`find_batch`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import orjson

from ..bodies import DEFAULT_MAX_RESPONSE_BYTES
from ..client import credentials_scrubber, describe_error, endpoint_headers, join_url
from ..config import RunConfig
from ..disk.publish import private_file
from ..errors import FatalEndpointError, MalformedResponse, RetryableError, TransportError
from ..pacing import Clock
from ..retry import Retries, status_error
from ..transport import Timeouts, Transport
from .lines import read_lines

if TYPE_CHECKING:
    from tenacity import RetryCallState

log = logging.getLogger("batchrun")

# A file goes up or comes down whole within one attempt: far longer than one answer may take.
TRANSFER_TIMEOUT = 3600.0
PAGE = 100  # batches per page when looking one up
# A batch created this long before the run's ledger says it was planned is not the run's: the
# provider's clock and this machine's may differ by this much.
CLOCK_SKEW = 600.0
_MAX_ERROR_BODY = 65_536
T = TypeVar("T")


class BatchApi:
    """The Batch API of ``config.base_url``.

    :raises FatalEndpointError: from every call, when it failed for good: the credentials were
        refused, the endpoint has no Batch API, or it stayed down through the retries.
    """

    def __init__(self, config: RunConfig, transport: Transport, clock: Clock) -> None:
        self._config = config
        self._transport = transport
        self._clock = clock
        self._headers = endpoint_headers(config)
        self.scrubber = credentials_scrubber(config)
        self._timeouts = Timeouts(connect=config.connect_timeout, total=config.timeout)
        self._transfer = Timeouts(connect=config.connect_timeout, total=max(config.timeout, TRANSFER_TIMEOUT))

    async def upload(self, path: Path) -> str:
        """Upload a request file (purpose ``batch``); its file id. It is read whole: a batch's
        file is at most ``--batch-max-bytes``."""
        content = await anyio.to_thread.run_sync(_read, path)
        body, content_type = multipart(path.name, content)
        del content
        uploaded = await self._call("POST", "/v1/files", body, content_type=content_type, timeouts=self._transfer)
        return _field(uploaded, "id", "POST /v1/files")

    async def create_batch(self, file_id: str, endpoint: str, metadata: dict[str, str], since: float) -> dict[str, Any]:
        """Create the batch of ``file_id``, once: after an attempt whose reply was lost, the
        batch is looked for (`find_batch`) before another is made.

        :param since: when the run began (seconds since the epoch): older batches are not looked at.
        """
        request = orjson.dumps({"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h",
                                "metadata": metadata})
        tried = False

        async def create() -> dict[str, Any]:
            nonlocal tried
            if tried:
                found = await self.find_batch(metadata, since)
                if found is not None:
                    return found
            tried = True
            created: dict[str, Any] = await self._attempt("POST", "/v1/batches", request, "application/json", None,
                                                          self._timeouts)
            return created

        return await self._retrying("POST /v1/batches", create, "looking for the batch, then trying again")

    async def find_batch(self, metadata: dict[str, str], since: float) -> dict[str, Any] | None:
        """The newest batch whose ``metadata`` holds all of ``metadata``, created after ``since``."""
        after: str | None = None
        while True:
            query = f"?limit={PAGE}" + (f"&after={after}" if after else "")
            page = await self._call("GET", "/v1/batches" + query)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list) or not data:
                return None
            for batch in data:
                if not isinstance(batch, dict):
                    continue
                given = batch.get("metadata")
                if isinstance(given, dict) and all(given.get(key) == value for key, value in metadata.items()):
                    return batch
                created = batch.get("created_at")
                if isinstance(created, (int, float)) and created < since - CLOCK_SKEW:
                    return None  # newest first: the rest are older still
            last = data[-1].get("id") if isinstance(data[-1], dict) else None
            if not page.get("has_more") or not isinstance(last, str):
                return None
            after = last

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return _object(await self._call("GET", f"/v1/batches/{batch_id}"), f"GET /v1/batches/{batch_id}")

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        return _object(await self._call("POST", f"/v1/batches/{batch_id}/cancel", b""),
                       f"POST /v1/batches/{batch_id}/cancel")

    async def download(self, file_id: str, path: Path) -> None:
        """Write the content of ``file_id`` to ``path``, whole or not at all (a temporary name
        until it is complete)."""
        partial = path.with_name(f".{path.name}.part")
        partial.unlink(missing_ok=True)
        f = await anyio.to_thread.run_sync(functools.partial(open, partial, "w+b", opener=private_file))
        with f:
            await self._call("GET", f"/v1/files/{file_id}/content", into=f, timeouts=self._transfer)
        partial.replace(path)

    async def _call(self, method: str, path: str, body: bytes | None = None, *, content_type: str | None = None,
                    into: Any = None, timeouts: Timeouts | None = None) -> Any:
        async def call() -> Any:
            if into is not None:  # what a failed attempt wrote
                into.seek(0)
                into.truncate()
            return await self._attempt(method, path, body, content_type, into, timeouts or self._timeouts)

        return await self._retrying(f"{method} {path}", call)

    async def _retrying(self, call: str, attempt: Callable[[], Awaitable[T]], then: str = "trying again") -> T:
        """``attempt`` until it succeeds, fails for good, or `retry.next_wait` gives up, waiting
        on the run's clock.

        :raises FatalEndpointError: the retries are spent.
        """
        # Here, not at the top: a run that never calls the Batch API does not load it.
        from tenacity import AsyncRetrying, retry_if_exception_type

        decision = _Decision(Retries(self._config.retry))

        def before_sleep(state: RetryCallState) -> None:
            log.info("%s: %s; %s in %.1f s", call, _failure(state).message, then, state.upcoming_sleep)

        retrying = AsyncRetrying(sleep=self._clock.sleep, retry=retry_if_exception_type(RetryableError),
                                 stop=decision.stop, wait=decision.wait, before_sleep=before_sleep, reraise=True)
        try:
            return await retrying(attempt)
        except RetryableError as exc:
            raise FatalEndpointError(f"{call} failed, retries spent: {exc.message}") from None

    async def _attempt(self, method: str, path: str, body: bytes | None, content_type: str | None, into: Any,
                       timeouts: Timeouts) -> Any:
        headers = self._headers if content_type is None else {**self._headers, "content-type": content_type}
        url = join_url(self._config.base_url, path)
        try:
            reply = await self._transport.request(method, url, headers, body, timeouts, into=into)
        except TransportError as exc:
            raise type(exc)(exc.code, self.scrubber.text(exc.message)) from None
        status = reply.status
        if 200 <= status < 300:
            if into is not None:
                await anyio.to_thread.run_sync(_check_jsonl, into, status)
                return None
            try:
                return self.scrubber.json(orjson.loads(reply.content))
            except orjson.JSONDecodeError:
                raise MalformedResponse("malformed_response", f"HTTP {status} with a body that is not JSON",
                                        status_code=status) from None
        content = reply.content
        if into is not None:  # an error's body went where the file was to go
            into.seek(0)
            content = into.read(_MAX_ERROR_BODY)
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            answer = None
        code, message = describe_error(status, answer, content, self.scrubber)
        if status in (401, 403):
            raise FatalEndpointError(f"the endpoint rejected the credentials (HTTP {status}) for {method} {path}: "
                                     f"{message}")
        location = reply.headers.get("location") if 300 <= status < 400 else None
        error = status_error(status, reply.headers, code, message, status_code=status,
                             location=self.scrubber.text(location or "elsewhere"))
        if isinstance(error, (RetryableError, FatalEndpointError)):
            raise error
        raise FatalEndpointError(f"the Batch API refused {method} {path} (HTTP {status}, {code}): {error.message}")


class _Decision:
    """tenacity's stop and wait strategies, both read from one `Retries.next_wait` per failed
    attempt, asked whichever tenacity calls first."""

    def __init__(self, retries: Retries) -> None:
        self._retries = retries
        self._attempt = 0
        self._wait: float | None = None

    def _decide(self, state: RetryCallState) -> float | None:
        if state.attempt_number != self._attempt:
            self._attempt, self._wait = state.attempt_number, self._retries.next_wait(_failure(state))
        return self._wait

    def stop(self, state: RetryCallState) -> bool:
        return self._decide(state) is None

    def wait(self, state: RetryCallState) -> float:
        return self._decide(state) or 0.0


def _failure(state: RetryCallState) -> RetryableError:
    """The failure of the attempt tenacity is deciding about (its retry condition let only these through)."""
    failure = state.outcome.exception() if state.outcome is not None else None
    assert isinstance(failure, RetryableError), failure
    return failure


def multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    """The ``multipart/form-data`` body of a ``/v1/files`` upload of ``content`` (purpose
    ``batch``), and its content type, encoded by httpx."""
    import httpx  # here, not at the top: the default transport is aiohttp's, and this runs once a batch

    request = httpx.Request("POST", "http://upload/", data={"purpose": "batch"},
                            files={"file": (filename, content, "application/jsonl")})
    return request.read(), request.headers["content-type"]


def _check_jsonl(f: Any, status: int) -> None:
    """Every line of a downloaded output or error file is a JSON object: a body cut short or
    garbled on the way (a proxy's page) is downloaded again, not read as lines left unanswered.
    A line over the answers' cap is not parsed (nor held, `lines.read_lines`): it needs only to
    begin as an object, and is answered ``response_too_large`` (`answers.order`).

    :raises MalformedResponse: naming the first line that is not.
    """
    f.seek(0)
    for line_no, line in enumerate(read_lines(f, DEFAULT_MAX_RESPONSE_BYTES), 1):
        if line.whole:
            if not line.data.strip():
                continue
            try:
                record = orjson.loads(line.data)
            except orjson.JSONDecodeError:
                record = None
            good = isinstance(record, dict)
        else:
            good = line.data.lstrip().startswith(b"{")
        if not good:
            raise MalformedResponse("malformed_response", f"HTTP {status} with line {line_no} of the file not a "
                                    "JSON object", status_code=status)


def _read(path: Path) -> bytes:
    with open(path, "rb", opener=private_file) as f:
        return f.read()


def metadata(run: str, part: int) -> dict[str, str]:
    """What a batch is created with, to find it again whatever happened to the reply."""
    return {"batchrun_run": run, "batchrun_part": str(part)}


def _object(value: Any, call: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FatalEndpointError(f"{call}: the reply is not a JSON object")
    return value


def _field(value: Any, key: str, call: str) -> str:
    found = _object(value, call).get(key)
    if not isinstance(found, str) or not found:
        raise FatalEndpointError(f"{call}: the reply has no {key!r}")
    return found
