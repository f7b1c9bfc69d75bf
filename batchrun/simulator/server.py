"""The simulator's HTTP/1.1 server: asyncio Protocol + httptools, served by :func:`serve`.

Each TCP connection is a :class:`_Connection`. httptools parses the bytes; every complete
request is given its fate by the shared :class:`~.faults.FaultPlan` as it arrives, queued, and
answered in order (HTTP/1.1 responses must follow request order, even when pipelined). Delays
are ``loop.call_later`` timers rather than a task per request (a timer is an entry in the loop's
heap, a task a coroutine the loop must step), and a connection that goes away cancels its timer,
so a hanging request leaks nothing.

With rate limits configured, a request is also given to the :class:`~.limits.Limiter` as it
arrives (before the fault draw), which charges it or turns it into a 429; its answer is then
computed at arrival, since the charge depends on it. Without limits nothing of that runs.

``async with serve(config) as sim`` runs it inside the current asyncio loop (tests); the
``runners`` module runs it on a loop of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple, cast

import httptools
import orjson

from .answers import Reply, answer, error_payload
from .batches import Batches, BatchStore, is_batch_route
from .faults import (
    MALFORMED_BODY,
    Fault,
    FaultPlan,
    Faults,
    rate_limit_reply,
    server_error_reply,
    unauthorized_reply,
)
from .limits import LIMITS_PATH, LimitChange, Limiter, RateLimits, Ticket
from .tiers import FLEX, FlexPlan, FlexTier, echoed, requested_tier, unavailable_reply

__all__ = ["STATS_PATH", "Simulator", "SimulatorConfig", "SimulatorStats", "serve"]

STATS_PATH = "/_simulator/stats"
"""``GET`` it for :class:`SimulatorStats` as JSON; it bypasses faults, latency, the key check,
the rate limits and the counters."""

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_HEAD = (
    b"HTTP/1.1 %d %s\r\n"
    b"content-type: %s\r\n"
    b"content-length: %d\r\n"
    b"x-request-id: %s\r\n"
    b"%s\r\n"  # extra headers, each ending in CRLF
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_JSON = b"application/json"
_BAD_REQUEST = orjson.dumps(error_payload("The HTTP request could not be parsed.", "invalid_request_error"))


@dataclass(frozen=True)
class SimulatorConfig:
    """Where the simulator listens and how it behaves.

    :param port: 0 picks a free port (read it from :attr:`Simulator.port`).
    :param latency_ms: fixed delay before every answer, faults included.
    :param jitter_ms: extra delay drawn uniformly from ``[0, jitter_ms]`` per request.
    :param seed: seeds fault and jitter draws, so a run with the same arrival order repeats.
    :param limits: OpenAI-style requests- and tokens-per-minute limits (see ``limits.py``); none
        by default. Change them while running with ``POST /_simulator/limits``. Their
        ``headers`` and ``token_charge`` model providers that publish no limits or charge
        tokens another way.
    :param limits_schedule: changes to ``limits`` at given times after the server starts.
    :param batches: the Batch API's processing times, limits, partial failures and lost
        responses (see ``batches.py``).
    :param flex: the flex service tier's refusals and latency (see ``tiers.py``).
    :param any_model: answer any model a request names (tests and benchmarks name their own);
        without it a model batchrun has no price for is answered 404 ``model_not_found``, as
        OpenAI answers a model that does not exist (`answers.known_model`).
    :param any_root: answer the routes without their ``/v1`` prefix too; without it a path
        outside ``/v1/`` is a 404, as OpenAI answers a base URL missing its ``/v1``.
        ``--mock`` and ``batchrun mock-server`` turn both off, so that a rehearsal meets those
        mistakes as a real run would.
    """

    host: str = "127.0.0.1"
    port: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    limits: RateLimits = field(default_factory=RateLimits)
    limits_schedule: tuple[LimitChange, ...] = ()
    batches: Batches = field(default_factory=Batches)
    flex: FlexTier = field(default_factory=FlexTier)
    any_model: bool = True
    any_root: bool = True

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")


@dataclass
class SimulatorStats:
    """Live counters; readable at any time, from any thread.

    ``connections`` counts TCP connections accepted, ``open_connections`` those still open.
    ``requests`` counts complete requests received; ``responses`` counts complete responses by
    status (a ``malformed`` fault is a 200). ``hangs`` are requests held by a ``timeout`` fault,
    ``truncations`` responses cut short; neither appears in ``responses``.

    429s come from two causes a benchmark must tell apart, both also in ``responses``: ``shed``
    counts those of the ``rate_429`` fault (random shedding, whatever the load), ``rate_limited``
    the refusals of the rate limits by the bucket that was short, ``"requests"`` or ``"tokens"``.
    ``charged_requests`` counts the requests admitted while limits are on, and ``charged_tokens``
    the tokens the buckets kept of their charges: net of refunds under ``token_charge="usage"``
    (once all are answered, the ``total_tokens`` of their 200s), the charges as made under
    ``"max"`` and ``"sum"`` (see ``limits.py`` for the accounting).

    ``flex_requests`` counts the requests that asked for the flex tier, ``flex_unavailable``
    those of them refused for capacity (429 Resource Unavailable, also in ``responses``).

    The Batch API counts ``files_uploaded``, ``batches_created``, the requests in those
    (``batch_requests``) and ``batches_cancelled`` (cancels that took effect), so a test can tell
    that a client never submitted twice, nor a line it should not have.
    """

    connections: int = 0
    open_connections: int = 0
    requests: int = 0
    responses: dict[int, int] = field(default_factory=dict)
    drops: int = 0
    hangs: int = 0
    truncations: int = 0
    malformed: int = 0
    shed: int = 0
    rate_limited: dict[str, int] = field(default_factory=lambda: {"requests": 0, "tokens": 0})
    charged_requests: int = 0
    charged_tokens: int = 0
    files_uploaded: int = 0
    batches_created: int = 0
    batch_requests: int = 0
    batches_cancelled: int = 0
    flex_requests: int = 0
    flex_unavailable: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot (status codes become string keys, as JSON requires)."""
        return {
            "connections": self.connections,
            "open_connections": self.open_connections,
            "requests": self.requests,
            "responses": {str(status): n for status, n in sorted(self.responses.copy().items())},
            "drops": self.drops,
            "hangs": self.hangs,
            "truncations": self.truncations,
            "malformed": self.malformed,
            "shed": self.shed,
            "rate_limited": self.rate_limited.copy(),
            "charged_requests": self.charged_requests,
            "charged_tokens": self.charged_tokens,
            "files_uploaded": self.files_uploaded,
            "batches_created": self.batches_created,
            "batch_requests": self.batch_requests,
            "batches_cancelled": self.batches_cancelled,
            "flex_requests": self.flex_requests,
            "flex_unavailable": self.flex_unavailable,
        }


@dataclass(frozen=True)
class Simulator:
    """A running simulator: where it listens and what it has seen."""

    host: str
    port: int
    stats: SimulatorStats
    config: SimulatorConfig

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:<port>/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"


class _Request(NamedTuple):
    method: str
    path: str
    body: bytes
    keep_alive: bool
    authorized: bool
    control: bool  # a /_simulator/ endpoint: no faults, no latency, no limits, not counted
    fault: Fault
    status: int  # the 5xx of a SERVER_ERROR fault
    delay: float
    reply: Reply | None  # under rate limits: the answer or 429, computed at arrival
    ticket: Ticket | None  # under rate limits: the charge, settled when the answer goes out
    tier: str | None = None  # the service_tier the body names
    flex_refused: bool = False  # refused for capacity on the flex tier


class _Shared:
    """State common to all connections of one server."""

    def __init__(
        self, config: SimulatorConfig, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config
        self.loop = loop
        self.plan = FaultPlan(config.faults, config.seed, config.latency_ms, config.jitter_ms)
        self.flex = FlexPlan(config.flex, config.seed)
        self.stats = SimulatorStats()
        # The loop's clock, CLOCK_MONOTONIC (asyncio's loop.time() *is* time.monotonic()), read at
        # full resolution: uvloop's loop.time() rounds down to the millisecond, which would make
        # retry-after-ms up to 1 ms short for a client that honours it exactly.
        clock = clock or time.monotonic
        self.limiter = Limiter(config.limits, clock)
        # Batches show Unix timestamps: the same clock, anchored to wall time at start.
        offset = time.time() - clock()
        self.batches = BatchStore(config.batches, config.seed, lambda: offset + clock(), self._count)
        key = config.faults.require_api_key
        self.expected_auth = None if key is None else b"Bearer " + key.encode()
        self.connections: set[_Connection] = set()
        self._idle: asyncio.Future[None] | None = None

    def answer(self, method: str, path: str, body: bytes) -> Reply:
        """What the endpoint answers a request that no fault or limit stands in for."""
        if not self.config.any_root and not path.startswith("/v1/"):
            return Reply(404, error_payload(f"Invalid URL ({method} {path})", "invalid_request_error"))
        if is_batch_route(path):
            return self.batches.handle(method, path, body)
        return answer(method, path, body, any_model=self.config.any_model)

    def _count(self, name: str, n: int = 1) -> None:
        setattr(self.stats, name, getattr(self.stats, name) + n)

    def forget(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def close_connections(self) -> None:
        """Abort every connection (cancelling its timers) and wait until all are gone."""
        if not self.connections:
            return
        self._idle = self.loop.create_future()
        for connection in list(self.connections):
            connection.abort()
        await asyncio.wait_for(self._idle, timeout=5)


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue, and answer requests one at a time, in order."""

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._limiter = shared.limiter
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport  # set by connection_made, before any other call
        self._pending: deque[_Request] = deque()
        self._busy = False  # a response is being delayed or a request is hanging
        self._paused = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._delayed: _Request | None = None  # the request whose latency timer runs
        self._url = b""
        self._body: list[bytes] = []
        self._auth: bytes | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not registered as an asyncio.Transport subclass).
        self._transport = cast(asyncio.Transport, transport)
        self._shared.connections.add(self)
        self._shared.stats.connections += 1
        self._shared.stats.open_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for request in (self._delayed, *self._pending):  # they will never be answered
            if request is not None:
                self._settle(request, delivered=False)
        self._delayed = None
        self._pending.clear()
        self._shared.stats.open_connections -= 1
        self._shared.forget(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the request is complete; we answer it in HTTP/1.1 and ignore the offer
        except httptools.HttpParserError:
            limits = self._limiter.header_block() if self._limiter.enabled else b""
            self._write(400, (), b"req_bad_request", _BAD_REQUEST, False, limits)
            self._close()
            return
        self._advance()

    def abort(self) -> None:
        self._transport.abort()

    # httptools callbacks: collect one request, then queue it with its fate

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._auth = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"authorization":
            self._auth = value
        elif name == b"expect" and value.lower() == b"100-continue" and not (self._busy or self._pending):
            # curl waits a second for this before sending a body over 1 KB. Behind an unanswered
            # request it would come out of order, so then the client waits.
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        shared = self._shared
        method = self._parser.get_method().decode()
        path = self._url.decode("latin-1")
        body = b"".join(self._body)
        keep_alive = self._parser.should_keep_alive()
        if path in (STATS_PATH, LIMITS_PATH):  # a tuple compares; a set would hash every path
            self._pending.append(_Request(method, path, body, keep_alive, True, True, Fault.NONE, 0, 0.0, None, None))
            return
        shared.stats.requests += 1
        authorized = shared.expected_auth is None or self._auth == shared.expected_auth
        # The fault is drawn even for a 401 or a refusal, so the n-th request's fate doesn't depend
        # on them; but a wrong key always gets its 401, and a refused request its 429.
        reply: Reply | None
        ticket: Ticket | None
        if self._limiter.enabled and authorized and not is_batch_route(path):
            reply, ticket = self._admit(method, path, body)
            fault, status, delay = shared.plan.decide()
            if ticket.refusal is not None:
                fault = Fault.NONE
        else:
            reply = ticket = None
            fault, status, delay = shared.plan.decide()
            if not authorized:
                fault = Fault.NONE
        request = _Request(method, path, body, keep_alive, authorized, False, fault, status, delay, reply, ticket)
        tier = requested_tier(body)
        if tier is not None:
            request = self._tiered(request, tier)
        self._pending.append(request)

    def _tiered(self, request: _Request, tier: str) -> _Request:
        """A request that names a tier: on flex, refused for capacity at its share, else slower."""
        if tier != FLEX:
            return request._replace(tier=tier)
        shared = self._shared
        shared.stats.flex_requests += 1
        served = request.authorized and request.fault is Fault.NONE and (
            request.ticket is None or request.ticket.refusal is None)
        if served and shared.flex.refuse():
            return request._replace(tier=tier, flex_refused=True)
        return request._replace(tier=tier, delay=request.delay + shared.config.flex.latency_ms / 1000)

    def _admit(self, method: str, path: str, body: bytes) -> tuple[Reply, Ticket]:
        """Charge an arriving request to the rate limits: its answer, or the 429 that replaces it."""
        reply = self._shared.answer(method, path, body)
        ticket = self._limiter.admit(reply, body)
        if ticket.refusal is not None:
            return ticket.refusal, ticket
        stats = self._shared.stats
        stats.charged_requests += 1
        stats.charged_tokens += ticket.tokens
        return reply, ticket

    def _settle(self, request: _Request, delivered: bool) -> None:
        """Correct an admitted request's token charge as its answer goes out, or never will."""
        ticket = request.ticket
        if ticket is not None and ticket.refusal is None:
            self._shared.stats.charged_tokens -= self._limiter.settle(ticket, delivered)

    # answering

    def _advance(self) -> None:
        """Answer queued requests until one must wait; stop reading while requests wait."""
        while self._pending and not self._busy and not self._closed:
            request = self._pending.popleft()
            if request.delay > 0:
                self._busy = True
                self._delayed = request
                self._timer = self._shared.loop.call_later(request.delay, self._after_delay, request)
            else:
                self._act(request)
        if self._closed:
            return
        # Back-pressure for pipelining clients: don't parse more while requests are queued.
        if self._pending and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        elif not self._pending and self._paused:
            self._transport.resume_reading()
            self._paused = False

    def _after_delay(self, request: _Request) -> None:
        self._timer = None
        self._delayed = None
        self._busy = False
        self._act(request)
        self._advance()

    def _act(self, request: _Request) -> None:
        """Carry out one request's fate: answer, hang, drop, truncate or garble."""
        stats = self._shared.stats
        fault = request.fault
        if fault is Fault.HANG:
            self._settle(request, delivered=False)
            stats.hangs += 1
            self._busy = True
            hang_s = self._shared.config.faults.hang_s
            self._timer = self._shared.loop.call_later(hang_s, self._close)
            return
        if fault is Fault.DROP:
            self._settle(request, delivered=False)
            stats.drops += 1
            self._close()
            return
        # Deterministic, so that a rerun (or a resumed run) writes byte-identical output.
        fingerprint = hashlib.blake2b(request.method.encode() + request.path.encode() + request.body, digest_size=12)
        request_id = b"req_" + fingerprint.hexdigest().encode()
        headers: tuple[tuple[str, str], ...]
        content_type = _JSON
        if fault is Fault.MALFORMED:
            stats.malformed += 1
            status, headers, body = 200, (), MALFORMED_BODY
        else:
            reply = self._reply(request)
            status, headers = reply.status, reply.headers
            payload = reply.payload
            if request.tier is not None and status == 200:
                payload = echoed(payload, request.tier)
            if reply.raw is None:
                body = orjson.dumps(payload)
            else:
                body, content_type = reply.raw, reply.content_type.encode()
        limits = b""
        if (self._limiter.enabled or request.ticket is not None) and not request.control:
            limits = self._limits(request, delivered=fault is Fault.NONE and status == 200)
        if fault is Fault.TRUNCATE:
            stats.truncations += 1
            # The head promises the whole body; half of it arrives before the connection closes.
            self._write(status, headers, request_id, body, True, limits, cut=len(body) // 2, content_type=content_type)
            self._close()
            return
        self._write(status, headers, request_id, body, request.keep_alive, limits, content_type=content_type)
        if not request.control:
            stats.responses[status] = stats.responses.get(status, 0) + 1
        if not request.keep_alive:
            self._close()

    def _limits(self, request: _Request, delivered: bool) -> bytes:
        """Settle the request's charge; then the ``x-ratelimit-*`` lines of its response."""
        self._settle(request, delivered)
        ticket = request.ticket
        if ticket is not None and ticket.refused is not None:
            self._shared.stats.rate_limited[ticket.refused] += 1
        return self._limiter.header_block() if self._limiter.enabled else b""

    def _reply(self, request: _Request) -> Reply:
        if request.control:
            if request.path == LIMITS_PATH:
                return self._limiter.handle(request.method, request.body)
            if request.method != "GET":
                return Reply(405, error_payload(f"Use GET for {STATS_PATH}.", "invalid_request_error"))
            return Reply(200, self._shared.stats.to_dict())
        if not request.authorized:
            return unauthorized_reply()
        if request.fault is Fault.RATE_LIMIT:
            self._shared.stats.shed += 1
            faults = self._shared.config.faults
            return rate_limit_reply(faults.retry_after_s, faults.retry_after_ms)
        if request.fault is Fault.SERVER_ERROR:
            return server_error_reply(request.status)
        if request.flex_refused:
            self._shared.stats.flex_unavailable += 1
            return unavailable_reply(self._shared.config.flex.retry_after_s)
        if request.reply is not None:
            return request.reply
        return self._shared.answer(request.method, request.path, request.body)

    def _write(
        self,
        status: int,
        headers: tuple[tuple[str, str], ...],
        request_id: bytes,
        body: bytes,
        keep_alive: bool,
        limits: bytes = b"",
        cut: int | None = None,
        content_type: bytes = _JSON,
    ) -> None:
        """Send one response; with ``cut``, only that many bytes of its body.

        :param limits: header lines already encoded (the ``x-ratelimit-*`` ones), each ending in CRLF.
        """
        extra = b"".join(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in headers) + limits
        if not keep_alive:
            extra += b"connection: close\r\n"
        head = _HEAD % (status, _REASONS.get(status, b""), content_type, len(body), request_id, extra)
        self._transport.write(head + (body if cut is None else body[:cut]))

    def _close(self) -> None:
        """Close after flushing what was written (a FIN, not a reset)."""
        if not self._closed:
            self._closed = True
            self._transport.close()


@contextlib.asynccontextmanager
async def serve(
    config: SimulatorConfig | None = None, *, clock: Callable[[], float] | None = None
) -> AsyncIterator[Simulator]:
    """Run the simulator on the current asyncio loop for the duration of the block.

    :param config: defaults to ``SimulatorConfig()``: loopback, a free port, no latency, no faults.
    :param clock: the rate limits' and the Batch API's clock in seconds: ``time.monotonic`` (the
        loop's clock, at full resolution) unless a test fakes it. Batch timestamps are this clock
        plus the offset to ``time.time()`` at start.
        Latency and ``config.limits_schedule`` always run on the loop's own timers.
    :raises OSError: if the address cannot be bound.

    On exit every connection is aborted and every pending timer (latency, hang, limit change)
    cancelled.
    """
    config = config or SimulatorConfig()
    loop = asyncio.get_running_loop()
    shared = _Shared(config, loop, clock)
    server = await loop.create_server(lambda: _Connection(shared), config.host, config.port, backlog=2048)
    changes = [loop.call_later(change.at_s, shared.limiter.change, change) for change in config.limits_schedule]
    try:
        port = server.sockets[0].getsockname()[1]
        yield Simulator(config.host, port, shared.stats, config)
    finally:
        for timer in changes:
            timer.cancel()
        server.close()
        await shared.close_connections()
        await server.wait_closed()
