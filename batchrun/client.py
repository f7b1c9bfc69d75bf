"""Send one `Job` to the endpoint and come back with its `Result`, retrying as `retry.py` says.

This is the one boundary where HTTP outcomes become batchrun's: statuses and httpx exceptions
are translated into the `errors.py` tree here and nowhere else, and every message that leaves
this module has the API key scrubbed from it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from .config import RunConfig
from .errors import (
    AuthRefused,
    CapacityRefused,
    ConnectionRefused,
    FatalEndpointError,
    HTTPStatusError,
    InvalidResponse,
    MalformedResponse,
    NoSuchPath,
    RateLimited,
    RequestError,
    RetryableError,
    TransportError,
    Unconfirmed,
)
from .pacing import SYSTEM_CLOCK, CircuitBreaker, Clock, Pacer, estimate_cost
from .pacing.quota import Share
from .plural import counted
from .records import Job, Result, openai_error, tier_of
from .retry import Retries, Spent, status_error
from .scrub import Scrubber
from .settings import DEFAULT_API_KEY_ENV
from .tiers import FALLBACK_REFUSALS, FLEX, STANDARD, with_tier
from .transport import Timeouts, Transport, as_transport
from .usage import Usage

if TYPE_CHECKING:  # only annotates: loaded when an httpx transport is passed in
    import httpx

AUTH_STATUSES = frozenset({401, 403})
# 401/403 in a row, after an earlier success, that mean the key itself stopped working (revoked,
# out of credit) rather than one line's model or resource being off limits to it.
AUTH_FAILURES_TO_STOP = 5
# 404s for the path itself (`_unknown_path`), before any success, that mean the base URL points
# where the endpoint is not. One could be a line's own (a proxy's page for an unknown deployment).
NO_SUCH_PATH_TO_STOP = 8
# A line's attempts refused a connection, before the endpoint ever answered, that mean nothing
# listens there: a server still starting has had the line's backoff (seconds) to come up. The
# outage breaker's probe, refused too, means the same: it went out a second or more later.
REFUSED_ATTEMPTS_TO_STOP = 3
USER_AGENT = "batchrun"
# The end of each fatal stop's next step (`FatalEndpointError.next_step`): what continues the run
# once the cause is fixed. A checkpoint in which no line was sent takes a corrected --base-url
# (`Checkpoint._unpin`); one that holds answers keeps the endpoint that gave them.
AGAIN = "run the command again"
NEW_BASE_URL = "a checkpoint with no line sent yet takes the new one"
_MAX_MESSAGE = 500
_SNIPPET = 200  # characters of a body that is not JSON quoted in a message
_SNIPPET_BYTES = 4096  # read past the snippet's end, so that a key it would cut is found whole


class Withheld(Exception):
    """``before_send`` kept a request off the wire (the run is draining): its line is left
    unanswered, for the next start."""


@dataclass(slots=True)
class Tally:
    """One line's attempts so far, and where its time went: on the wire, or waiting."""

    attempts: int = 0
    rate_limited: int = 0  # 429s answered to attempts that were retried
    wire_s: float = 0.0  # every attempt, from sending to its answer (or failure)
    # When the latest attempt was sent and answered (or failed), on the client's clock; None
    # until one is on the wire.
    sent: float | None = None
    answered: float = 0.0
    waited_s: float = 0.0  # for pacing, the breaker and backoff
    unanswered: int = 0  # retried attempts that were sent but whose answer was lost (maybe billed)
    dispatched: int = 0  # the last attempt's place in the dispatch order
    refused: int = 0  # refusals for capacity answered to attempts that were retried
    fell_back: bool = False  # moved from flex to the standard tier (--tier-fallback)


@dataclass(slots=True)
class Retrying:
    """A line whose first attempt failed in a way worth retrying: `Client.finish` goes on with it."""

    job: Job
    error: RetryableError
    tally: Tally


class Client:
    """Sends jobs; never raises for a failed request, only for a fatal one.

    :param transport: how bytes reach the endpoint; default `AiohttpTransport` sized to the
        concurrency. Any ``httpx.AsyncBaseTransport`` (``httpx.MockTransport`` in tests) works too.
    :param clock: what pacing and retries read and wait with (tests pass a fake).
    :param on_retry: called with the error and the wait before each retry, for counters and logs.
    :param before_send: called right before each request goes on the wire (the engine hands the
        answers it holds to the kernel there: none may be lost with a request in flight beside it);
        ``False`` keeps the request off the wire (`Withheld`).
    :param pacer: paces attempts (default: from the config's concurrency and limits).
    :param share: the default pacer's slice of limits shared with other processes.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        transport: Transport | httpx.AsyncBaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_retry: Callable[[Job, RequestError, float], None] | None = None,
        before_send: Callable[[], bool] | None = None,
        pacer: Pacer | None = None,
        share: Share | None = None,
    ) -> None:
        self._config = config
        self._transport = as_transport(transport, config.concurrency)
        self._clock = clock
        # Wall time of the clock's zero, read once: an attempt's start and end in the output are
        # its clock readings moved by it, so the hot path reads no second clock.
        self._epoch = time.time() - clock.now()
        self._on_retry = on_retry
        self._before_send = before_send
        self._scrubber = credentials_scrubber(config)
        self._headers = endpoint_headers(config)
        self._timeouts = Timeouts(connect=config.connect_timeout, total=config.timeout)
        self._urls: dict[str, str] = {}
        self._answered = False  # some request was answered with anything but 401/403
        self._succeeded = False  # some request was answered 2xx
        self._auth_failures = 0  # 401/403 in a row
        self._no_such_path = 0  # `NoSuchPath` 404s, before any success
        self._missing = ""  # the endpoint path of the latest
        # When lines still on flex go at the standard tier (--tier-fallback): from the run's start.
        fallback = config.tier_fallback
        self._standard_at = None if fallback is None or config.tier is None else clock.now() + fallback
        self.pacer = pacer or Pacer(
            concurrency=config.concurrency, rpm=config.rpm, tpm=config.tpm, clock=clock,
            breaker=CircuitBreaker(threshold=config.outage_threshold, give_up=config.max_outage, clock=clock),
            share=share,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._transport.aclose()

    async def send(self, job: Job) -> Result:
        """Send ``job`` with retries; the result is a success or a final failure.

        :raises FatalEndpointError: the endpoint rejected the credentials (401/403).
        """
        outcome = await self.first_attempt(job)
        return await self.finish(outcome) if isinstance(outcome, Retrying) else outcome

    async def first_attempt(self, job: Job) -> Result | Retrying:
        """Try ``job`` once: its final result, or what `finish` needs to go on.

        Split from the retries so that a caller can go on to other lines while this one waits
        out its backoff.
        """
        tally = Tally()
        if job.tier == FLEX:
            job = self._tiered(job, tally, Spent())
        try:
            result = await self._attempt(job, tally)
        except RetryableError as exc:
            return Retrying(job, exc, tally)
        except RequestError as exc:
            result = _failure(job, exc)
        return _finished(result, tally, self._epoch)

    async def finish(self, pending: Retrying) -> Result:
        """Go on after a failed first attempt: wait and try again as `retry.next_wait` says, until
        an attempt succeeds, one fails for good, or the retries are spent.

        A plain loop, not tenacity: an ``AsyncRetrying`` per retried line costs about 4× the
        loop's CPU (``docs/libraries.md``; ``scripts/bench_client.py --retries`` measures it).
        """
        job, tally, error = pending.job, pending.tally, pending.error
        retries = Retries(self._config.retry)
        breaker = self.pacer.breaker  # whether the endpoint answers other lines: a 5xx's wait depends on it
        while True:
            wait = retries.next_wait(error, breaker.failing_share())
            if wait is None:
                return _finished(_failure(job, error), tally, self._epoch)
            tally.rate_limited += isinstance(error, RateLimited)
            tally.refused += isinstance(error, CapacityRefused)
            tally.unanswered += isinstance(error, (TransportError, MalformedResponse))
            if self._on_retry is not None:
                self._on_retry(job, error, wait)
            tally.waited_s += wait
            await self._clock.sleep(wait)
            job = self._tiered(job, tally, retries.spent)
            try:
                result = await self._attempt(job, tally)
            except RetryableError as exc:
                error = exc
            except RequestError as exc:
                return _finished(_failure(job, exc), tally, self._epoch)
            else:
                return _finished(result, tally, self._epoch)

    def _tiered(self, job: Job, tally: Tally, spent: Spent) -> Job:
        """The job as its next attempt goes: at the standard tier once it was on flex and
        ``--tier-fallback``'s time has come, or flex refused it for capacity `FALLBACK_REFUSALS`
        times. An attempt already on the wire is never abandoned for it (it may be billed)."""
        if job.tier != FLEX or self._standard_at is None:
            return job
        if spent.refused < FALLBACK_REFUSALS and self._clock.now() < self._standard_at:
            return job
        tally.fell_back = True
        return with_tier(job, STANDARD)

    async def _attempt(self, job: Job, tally: Tally) -> Result:
        tally.attempts += 1
        now = self._clock.now
        asked = now()
        estimate = estimate_cost(job.body, job.max_output)
        permit = self.pacer.admit_now(estimate) or await self.pacer.admit(estimate)
        tally.dispatched = permit.seq
        sent = permit.sent
        tally.waited_s += sent - asked
        try:
            if self._before_send is not None and not self._before_send():
                raise Withheld
            reply = await self._transport.post(self._url(job.url), self._headers, job.body, self._timeouts)
        except TransportError as exc:
            _on_wire(tally, sent, now())
            self.pacer.settle(permit, None, None)
            if exc.code == "certificate_error":  # the same for every request: stop, don't burn the file
                raise FatalEndpointError(self._scrub(f"TLS certificate verification failed: {exc.message}"),
                                         f"check --base-url and the server's certificate, then {AGAIN}") from None
            if isinstance(exc, ConnectionRefused) and not self._answered and (
                    permit.probe or tally.attempts >= min(REFUSED_ATTEMPTS_TO_STOP, self._config.retry.max_attempts)):
                raise FatalEndpointError(f"connection refused: {_host_port(self._url(job.url))} (nothing listens "
                                         "there: start the server, or check --base-url)",
                                         f"start the server, or correct --base-url ({NEW_BASE_URL}), then {AGAIN}") from None
            raise type(exc)(exc.code, self._scrub(exc.message)) from None
        except (InvalidResponse, MalformedResponse) as exc:
            _on_wire(tally, sent, now())
            self.pacer.settle(permit, exc.status_code, None)
            raise
        except BaseException as exc:
            self.pacer.cancelled(permit, sent=not isinstance(exc, Withheld))
            raise
        _on_wire(tally, sent, now())
        headers = reply.headers
        request_id = _text(headers.get("x-request-id"))
        if request_id is not None:
            request_id = self._scrub(request_id)
        status = reply.status
        content = reply.content
        try:
            body, parsed = orjson.loads(content), True
        except orjson.JSONDecodeError:
            body, parsed = None, False
        suspect = parsed and self._scrubber.suspect(content)
        if suspect:  # a server that echoes what it was sent
            body = self._scrubber.json(body)
        if 200 <= status < 300 and parsed:
            self._auth_failures, self._answered, self._succeeded = 0, True, True
            usage = Usage.from_body(body)
            self.pacer.settle(permit, status, headers, usage.total if usage else None)
            missing = missing_answer(job.url, body)
            if missing:
                raise InvalidResponse("invalid_response", f"HTTP {status} but {missing}", status_code=status,
                                      request_id=request_id, body=body)
            model = body.get("model")
            return Result(job.index, job.custom_id, status, request_id, body, None, model=model or job.model,
                          usage=usage, tier=tier_of(body))
        if suspect:
            content = orjson.dumps(body)  # what error messages quote: decoded, and scrubbed
        error = self._status_error(status, request_id, body, content, headers, job.url)
        self.pacer.settle(permit, status, headers, shed=isinstance(error, CapacityRefused))
        raise error

    def _status_error(self, status: int, request_id: str | None, body: Any, content: bytes,
                      headers: Mapping[str, str], path: str) -> RequestError | FatalEndpointError:
        if 200 <= status < 300:
            snippet = _snippet(content, self._scrubber)
            return MalformedResponse("malformed_response", f"HTTP {status} with a body that is not JSON: {snippet!r}",
                                     status_code=status, request_id=request_id)
        code, message = describe_error(status, body, content, self._scrubber)
        kw: dict[str, Any] = {"status_code": status, "request_id": request_id, "body": body}
        if status in AUTH_STATUSES:
            self._auth_failures += 1
            if not self._answered or self._auth_failures >= AUTH_FAILURES_TO_STOP:
                if self._config.api_key is None and not self._config.headers:  # a --header may carry it (Azure's api-key)
                    return FatalEndpointError(f"no API key was sent (HTTP {status}: {message}); {_key_hint(self._config)}",
                                              f"{_key_hint(self._config)}, then {AGAIN}")
                return FatalEndpointError(f"the endpoint rejected the credentials (HTTP {status}): {message}",
                                          f"check the key in {self._config.api_key_env} (or the --header that carries it) "
                                          f"and --base-url, then {AGAIN}")
            return AuthRefused(code, message, **kw)  # this line's model or resource, or the key: not yet known
        self._auth_failures, self._answered = 0, True
        location = self._scrub(_text(headers.get("location")) or "elsewhere") if 300 <= status < 400 else None
        error = status_error(status, headers, code, message, location=location, **kw)
        if type(error) is HTTPStatusError and status == 404 and not self._succeeded and _unknown_path(body):
            self._no_such_path, self._missing = self._no_such_path + 1, path
            if self._no_such_path >= NO_SUCH_PATH_TO_STOP:
                return self._no_such_path_error()
            return NoSuchPath(code, message, **kw)
        return error

    def no_such_path(self) -> FatalEndpointError | None:
        """Why the run should stop when no request succeeded and some were answered 404 for the
        path itself (the base URL points where the endpoint is not), or ``None``."""
        return None if self._succeeded or not self._no_such_path else self._no_such_path_error()

    def _no_such_path_error(self) -> FatalEndpointError:
        tail = self._missing.removeprefix("/v1/").lstrip("/")
        return FatalEndpointError(
            f"the endpoint has no {urlsplit(self._url(self._missing)).path} (HTTP 404 for the path to "
            f"{counted(self._no_such_path, 'request')}, and none succeeded) — check --base-url "
            f"{self._scrub(self._config.base_url)} "
            f"(it should end where `{tail}` can be appended)", f"correct --base-url ({NEW_BASE_URL}), then {AGAIN}")

    def _scrub(self, text: str) -> str:
        """Remove the credentials from text that came from elsewhere (a server echoing headers, a URL)."""
        return self._scrubber.text(text)

    def _url(self, path: str) -> str:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = join_url(self._config.base_url, path)
        return url


def endpoint_headers(config: RunConfig) -> dict[str, str]:
    """The headers of every request to the endpoint: JSON, the credentials, then ``--header``'s, which win."""
    headers = {"content-type": "application/json", "accept": "application/json", "user-agent": USER_AGENT}
    if config.api_key is not None:
        headers["authorization"] = config.api_key.header()
    headers.update(config.header_fields())
    return headers


def credentials_scrubber(config: RunConfig) -> Scrubber:
    """What takes the credentials out of text the endpoint sends: the key, and the extra
    headers' values (an Azure api-key, a gateway's token)."""
    return Scrubber([*(config.api_key.secrets() if config.api_key else ()), *config.header_fields().values()])


def describe_error(status: int, body: Any, content: bytes, scrubber: Scrubber) -> tuple[str, str]:
    """The ``(code, message)`` of an error response, from OpenAI's error shape when present;
    the message scrubbed and cut to a length to keep."""
    described = openai_error(status, body)
    if described is not None:
        code, message = described[0], described[1] or f"HTTP {status}"
    else:
        code = f"http_{status}"
        message = f"HTTP {status}: {_snippet(content, scrubber)}" if content else f"HTTP {status}"
    return code, scrubber.text(message)[:_MAX_MESSAGE]


def _snippet(content: bytes, scrubber: Scrubber) -> str:
    """The start of a body that is not JSON, scrubbed before it is cut."""
    return scrubber.text(content[:_SNIPPET_BYTES].decode("utf-8", "replace"))[:_SNIPPET]


def _text(value: str | None) -> str | None:
    """A header's text, safe to write: bytes that were not UTF-8 become U+FFFD."""
    if value is None or value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _failure(job: Job, exc: RequestError) -> Result:
    return Result(job.index, job.custom_id, exc.status_code, exc.request_id, exc.body,
                  {"code": exc.code, "message": exc.message}, model=job.model,
                  unconfirmed=isinstance(exc, Unconfirmed))


# How OpenAI (and servers that copy it) and llama.cpp's server begin the error of a 404 for a
# path they do not serve.
_UNKNOWN_PATH_MESSAGES = ("Invalid URL", "File Not Found")


def _unknown_path(body: Any) -> bool:
    """Whether a 404's body says the path is unknown, not a model or resource: not an API's own
    error (an HTML page, a router's ``{"detail": "Not Found"}``), or one that says so."""
    if not isinstance(body, dict):
        return True
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message")).startswith(_UNKNOWN_PATH_MESSAGES)
    return not isinstance(error, str) and body.get("object") != "error"  # vLLM's older error shape


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _key_hint(config: RunConfig) -> str:
    if config.api_key_env == DEFAULT_API_KEY_ENV:
        return f"set {DEFAULT_API_KEY_ENV} (or the variable named by --api-key-env)"
    return f"set {config.api_key_env} (the variable named by --api-key-env)"


def _on_wire(tally: Tally, sent: float, answered: float) -> None:
    tally.sent, tally.answered = sent, answered
    tally.wire_s += answered - sent


def _finished(result: Result, tally: Tally, epoch: float) -> Result:
    """:param epoch: the wall time of the client's clock's zero."""
    result.attempts = tally.attempts
    result.rate_limited = tally.rate_limited
    result.capacity_refused = tally.refused
    result.fell_back = tally.fell_back
    result.unanswered = tally.unanswered
    result.dispatched = tally.dispatched
    if tally.sent is not None:
        result.latency_ms = round((tally.answered - tally.sent) * 1000, 1)
        # To the ms: a whole number of ms over 1000 is written with 3 decimals at most, and
        # costs a third of round(x, 3).
        result.started_at = round((epoch + tally.sent) * 1000) / 1000
        result.finished_at = round((epoch + tally.answered) * 1000) / 1000
    if tally.attempts > 1:
        result.wire_ms = round(tally.wire_s * 1000, 1)
    if tally.waited_s:
        waited_ms = round(tally.waited_s * 1000, 1)
        if waited_ms:
            result.waited_ms = waited_ms
    return result


# What a success body must hold to be an answer, by endpoint.
_ANSWER_KEYS = (("/chat/completions", "choices"), ("/completions", "choices"), ("/embeddings", "data"),
                ("/responses", "output"))


def missing_answer(path: str, body: Any) -> str | None:
    """What a 2xx body lacks to be the endpoint's answer, or ``None`` when it looks right."""
    if not isinstance(body, dict):
        return f"the body is a JSON {type(body).__name__}, not an object"
    key = _answer_key(path)
    if key is None:
        return None
    answer = body.get(key)
    if not isinstance(answer, list):
        return f"the body has no {key!r} list"
    # An error with nothing beside it is a failure however it is sent. With an answer beside
    # it, the answer is kept as it came, error and all: asking again would buy it twice.
    if not answer and body.get("error"):
        return f"the body holds an 'error' and an empty {key!r} list"
    return None


@functools.lru_cache(maxsize=64)  # a file holds a few paths, each on many lines
def _answer_key(path: str) -> str | None:
    path = path.partition("?")[0]
    return next((key for suffix, key in _ANSWER_KEYS if path.endswith(suffix)), None)


def join_url(base_url: str, path: str) -> str:
    """Where a request for the envelope ``path`` goes, joined as the openai SDK joins: the base URL
    with a trailing slash, then the path relative to the API root. The envelope's leading ``/v1``
    is that root, which the base URL stands for; any other path is taken below the base URL as
    it is. The base URL's query (Azure's ``api-version``) goes on every request, merged with the
    path's own, whose names win.

    >>> join_url("http://127.0.0.1:4010", "/v1/chat/completions")
    'http://127.0.0.1:4010/chat/completions'
    >>> join_url("https://h/openai/deployments/d?api-version=1", "/v1/chat/completions")
    'https://h/openai/deployments/d/chat/completions?api-version=1'
    """
    base, _, base_query = base_url.partition("?")
    path, _, query = path.partition("?")
    if path == "/v1" or path.startswith("/v1/"):
        path = path[len("/v1") :]
    if not base.endswith("/"):
        base += "/"
    query = _merge_query(base_query, query)
    url = base + path.lstrip("/")
    return f"{url}?{query}" if query else url


def _merge_query(base: str, own: str) -> str:
    """``base``'s parameters but those ``own`` sets again, then ``own``'s, as sent."""
    mine = [pair for pair in own.split("&") if pair]
    names = {pair.partition("=")[0] for pair in mine}
    return "&".join([pair for pair in base.split("&") if pair and pair.partition("=")[0] not in names] + mine)
