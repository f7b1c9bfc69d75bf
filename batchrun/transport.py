"""How a request's bytes reach the endpoint: the `Transport` seam and its two implementations.

- `AiohttpTransport`, the default: aiohttp's connection pool. httpcore's pool thrashes at high
  concurrency (a released connection is offered to every waiter, encode/httpx#3215): at 256
  requests in flight one ``httpx.AsyncHTTPTransport`` serves about a twentieth of what aiohttp
  does (``python scripts/bench.py --clients httpx-pool,aiohttp``; docs/performance.md, "HTTP transport").
- `HttpxTransport`: any ``httpx.AsyncBaseTransport`` underneath — ``httpx.MockTransport`` in
  tests, or httpx's own pool, HTTP/2, proxies and mounts for whoever needs them.

The seam is plain values in and three out (no request or response objects) because building
``httpx.Request``/``httpx.Response`` objects costs CPU on every request: the ``httpx-aiohttp`` and
``aiohttp`` rows of the same benchmark differ by them. ``post`` is what online requests use;
``request`` sends any method and can stream a response body to a file (the Batch API's calls and
downloads).
Each transport translates its library's exceptions into `TransportError`, here and only here.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from collections.abc import AsyncIterable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

import aiohttp
import anyio
from multidict import CIMultiDict
from yarl import URL

from .bodies import DEFAULT_MAX_RESPONSE_BYTES, BodyBudget, collect, too_large
from .errors import ConnectionRefused, MalformedResponse, TransportError

if TYPE_CHECKING:  # imported where a request goes through it: runs on the default transport never load it
    import httpx

_CHUNK = 2**16


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, and for the whole attempt: from asking for a connection
    to the last byte of the response, sending the request included."""

    connect: float
    total: float


@dataclass(slots=True)
class Reply:
    """An HTTP response: ``headers`` look names up case-insensitively."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class Transport(Protocol):
    async def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts) -> Reply:
        """Send one POST and read its whole response within ``timeouts.total``.

        :raises TransportError: no HTTP response arrived, or not all of it in time.
        :raises InvalidResponse: the body is larger than the transport accepts.
        """

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                      timeouts: Timeouts, *, into: BinaryIO | None = None) -> Reply:
        """Send one request of any method and read its response within ``timeouts.total``.
        With ``into``, the body is written to that file as it arrives (no size cap, not held
        in memory, not counted in the shared body budget) and ``Reply.content`` is empty;
        without, it is read as `post` reads it (the per-response cap and the shared budget).
        A ``body`` of None sends none. After an error ``into`` holds what had arrived.

        :raises TransportError: no HTTP response arrived, or not all of it in time.
        :raises InvalidResponse: without ``into``, the body is larger than the transport accepts.
        """

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """Requests over one `aiohttp.ClientSession`.

    :param max_connections: the pool size; idle connections are kept up to the same number, so
        at steady state about ``max_connections`` connections are opened in all.
    :param trust_env: honour ``HTTPS_PROXY``/``NO_PROXY`` and friends, as httpx does.
    :param max_response_bytes: a larger body (after decompression) fails its request.
    :param bodies: the bytes all bodies being read may hold together.
    """

    def __init__(self, *, max_connections: int, trust_env: bool = True,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, bodies: BodyBudget | None = None) -> None:
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes
        self.bodies = bodies or BodyBudget()
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._routes: dict[str, tuple[URL, URL | None]] = {}
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
        # The last headers given (a copy) and their aiohttp form: a client gives the same ones to
        # every request, and aiohttp would copy a plain dict into a CIMultiDict each time.
        self._headers: tuple[dict[str, str], CIMultiDict[str]] | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds the session to the running event loop.
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # aiohttp's own trust_env looks up netrc and proxies in a thread on every request;
            # proxies are resolved once per URL instead.
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts) -> Coroutine[Any, Any, Reply]:
        # `request`'s coroutine itself, not one awaiting it: a level less for every resume of
        # every request.
        return self.request("POST", url, headers, body, timeouts)

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                      timeouts: Timeouts, *, into: BinaryIO | None = None) -> Reply:
        session = self._session or self._open()
        target, proxy = self._route(url)
        try:
            async with session.request(
                method,
                target,
                data=body,
                headers=self._multidict(headers),
                proxy=proxy,
                timeout=self._timeout(timeouts),
                # Never follow: a redirect to another host must not receive the Authorization header.
                allow_redirects=False,
            ) as resp:
                content = await (self._read(resp) if into is None else _write(resp.content.iter_chunked(_CHUNK), into))
                return Reply(resp.status, resp.headers, content)
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise TransportError("request_timeout", _timeout_message(exc, timeouts)) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TransportError("certificate_error", _describe(exc)) from None
        except aiohttp.ClientError as exc:
            raise _connection_error(exc) from None

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        length = resp.content_length
        holding = self.bodies.holding()
        try:
            if length is not None and "content-encoding" not in resp.headers:
                if length > self._max_response_bytes:
                    raise too_large(resp.status, f"{length:,} bytes announced")
                if not holding.take_now(length):
                    await holding.take(length)
                return await resp.read()
            return await collect(resp.content.iter_chunked(_CHUNK), holding, self._max_response_bytes, resp.status)
        finally:
            holding.give_back()

    def _multidict(self, headers: Mapping[str, str]) -> CIMultiDict[str]:
        last = self._headers
        if last is None or last[0] != headers:
            last = self._headers = (dict(headers), CIMultiDict(headers))
        return last[1]

    def _route(self, url: str) -> tuple[URL, URL | None]:
        """The parsed URL and the proxy to reach it through, computed once per URL."""
        route = self._routes.get(url)
        if route is None:
            parsed = URL(url, encoded=True)
            route = self._routes[url] = (parsed, self._proxy_for(parsed))
        return route

    def _proxy_for(self, url: URL) -> URL | None:
        if not self._trust_env or url.host is None or urllib.request.proxy_bypass(url.host):
            return None
        proxy = urllib.request.getproxies().get(url.scheme)
        return URL(proxy) if proxy else None

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            # aiohttp's total covers the upload, the head and the body read in `_read` (the
            # connection's timer runs until the body is consumed); an idle timeout (sock_read)
            # would let a server that sends a byte now and then keep an attempt going forever.
            timeout = self._timeouts[timeouts] = aiohttp.ClientTimeout(
                total=timeouts.total, sock_connect=timeouts.connect
            )
        return timeout

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxTransport:
    """Requests through any ``httpx.AsyncBaseTransport``."""

    def __init__(self, transport: httpx.AsyncBaseTransport,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, bodies: BodyBudget | None = None) -> None:
        self._transport = transport
        self._max_response_bytes = max_response_bytes
        self.bodies = bodies or BodyBudget()

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts) -> Reply:
        return await self.request("POST", url, headers, body, timeouts)

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                      timeouts: Timeouts, *, into: BinaryIO | None = None) -> Reply:
        import httpx  # loaded already: the transport underneath is httpx's

        # httpx has no total timeout: the deadline is this scope, httpx's own bound only connecting.
        timeout = {"connect": timeouts.connect, "read": None, "write": None, "pool": None}
        request = httpx.Request(method, url, headers=headers, content=body, extensions={"timeout": timeout})
        status: int | None = None  # a transport may decode the body before it hands the response on
        try:
            with anyio.fail_after(timeouts.total):
                response = await self._transport.handle_async_request(request)
                status = response.status_code
                try:
                    content = await (self._read(response) if into is None else _write(response.aiter_bytes(), into))
                finally:
                    await response.aclose()
        except TimeoutError:
            raise TransportError("request_timeout", _timeout_message(None, timeouts)) from None
        except httpx.TimeoutException as exc:
            raise TransportError("request_timeout", f"timed out: {_describe(exc)}") from None
        except httpx.TransportError as exc:
            raise _connection_error(exc) from None
        except httpx.DecodingError as exc:  # a corrupt gzip/brotli body: another attempt may not be
            raise MalformedResponse("malformed_response", f"a body that cannot be decoded: {_describe(exc)}",
                                    status_code=status) from None
        return Reply(response.status_code, response.headers, content)

    async def _read(self, response: httpx.Response) -> bytes:
        holding = self.bodies.holding()
        try:
            return await collect(response.aiter_bytes(), holding, self._max_response_bytes, response.status_code)
        finally:
            holding.give_back()

    async def aclose(self) -> None:
        await self._transport.aclose()


def as_transport(transport: Transport | httpx.AsyncBaseTransport | None, max_connections: int) -> Transport:
    """The transport to use: the default, or an httpx one adapted to the seam."""
    if transport is None:
        return AiohttpTransport(max_connections=max_connections)
    httpx = sys.modules.get("httpx")  # an httpx transport was made with httpx loaded; else none is one
    if httpx is not None and isinstance(transport, httpx.AsyncBaseTransport):
        return HttpxTransport(transport)
    return cast("Transport", transport)


async def _write(chunks: AsyncIterable[bytes], into: BinaryIO) -> bytes:
    # A blocking write per chunk: it lands in the page cache, far faster than the network fills it.
    async for chunk in chunks:
        into.write(chunk)
    return b""


def _timeout_message(exc: BaseException | None, timeouts: Timeouts) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"timed out connecting: no connection within {timeouts.connect:g} s (--connect-timeout)"
    return f"timed out: the response was not complete within {timeouts.total:g} s (--timeout)"


def _connection_error(exc: BaseException) -> TransportError:
    """A refused connection is told apart (a server not started, a wrong port); its cause is
    aiohttp's ``os_error``, or an httpx error's chain."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ConnectionRefusedError):
        cause = cause.__cause__ or cause.__context__
    kind = TransportError if cause is None else ConnectionRefused
    return kind("connection_error", _describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
