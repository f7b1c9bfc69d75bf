"""How a request's bytes reach the endpoint: the `Transport` seam and its two implementations.

- `AiohttpTransport`, the default: aiohttp's connection pool. httpcore's pool thrashes at high
  concurrency (a released connection is offered to every waiter, encode/httpx#3215): measured
  here, one ``httpx.AsyncClient`` reached 2% of the ideal rate at 256 requests in flight where
  aiohttp reaches 86% (README, "HTTP transport").
- `HttpxTransport`: any ``httpx.AsyncBaseTransport`` underneath — ``httpx.MockTransport`` in
  tests, or httpx's own pool, HTTP/2, proxies and mounts for whoever needs them.

The seam is three values in and three out (no request or response objects) because building
``httpx.Request``/``httpx.Response`` cost 40 µs per request, a third of batchrun's own overhead.
Each transport translates its library's exceptions into `TransportError`, here and only here.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

from .errors import TransportError


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, and for the response once connected."""

    connect: float
    read: float


@dataclass(slots=True)
class Reply:
    """An HTTP response: ``headers`` look names up case-insensitively."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class Transport(Protocol):
    async def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts) -> Reply:
        """Send one POST; :raises TransportError: when no HTTP response arrives."""

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """POSTs over one `aiohttp.ClientSession`.

    :param max_connections: the pool size; idle connections are kept up to the same number, so
        at steady state about ``max_connections`` connections are opened in all.
    :param trust_env: honour ``HTTPS_PROXY``/``NO_PROXY`` and friends, as httpx does.
    """

    def __init__(self, *, max_connections: int, trust_env: bool = True) -> None:
        self._max_connections = max_connections
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._routes: dict[str, tuple[URL, URL | None]] = {}
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds the session to the running event loop.
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # aiohttp's own trust_env looks up netrc and proxies in a thread on every request,
            # which doubled the CPU per request here; proxies are resolved once per URL instead.
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts) -> Reply:
        session = self._session or self._open()
        target, proxy = self._route(url)
        try:
            async with session.post(
                target,
                data=body,
                headers=headers,
                proxy=proxy,
                timeout=self._timeout(timeouts),
                # Never follow: a redirect to another host must not receive the Authorization header.
                allow_redirects=False,
            ) as resp:
                return Reply(resp.status, resp.headers, await resp.read())
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise TransportError("request_timeout", _timeout_message(exc)) from None
        except aiohttp.ClientError as exc:
            raise TransportError("connection_error", _describe(exc)) from None

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
            timeout = self._timeouts[timeouts] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
            )
        return timeout

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxTransport:
    """POSTs through any ``httpx.AsyncBaseTransport``."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts) -> Reply:
        timeout = {"connect": timeouts.connect, "read": timeouts.read, "write": timeouts.read, "pool": None}
        request = httpx.Request("POST", url, headers=headers, content=body, extensions={"timeout": timeout})
        try:
            response = await self._transport.handle_async_request(request)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise TransportError("request_timeout", f"timed out: {_describe(exc)}") from None
        except httpx.TransportError as exc:
            raise TransportError("connection_error", _describe(exc)) from None
        return Reply(response.status_code, response.headers, content)

    async def aclose(self) -> None:
        await self._transport.aclose()


def as_transport(transport: Transport | httpx.AsyncBaseTransport | None, max_connections: int) -> Transport:
    """The transport to use: the default, or an httpx one adapted to the seam."""
    if transport is None:
        return AiohttpTransport(max_connections=max_connections)
    if isinstance(transport, httpx.AsyncBaseTransport):
        return HttpxTransport(transport)
    return transport


def _timeout_message(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    return "timed out waiting for the response"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
