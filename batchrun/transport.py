"""The HTTP transport under batchrun's httpx interface: aiohttp's connection pool.

The client speaks httpx (`httpx.Request` in, `httpx.Response` out), so tests and users can put
any `httpx.AsyncBaseTransport` underneath (``httpx.MockTransport`` in unit tests). This is the
default one. It exists because httpcore's pool thrashes at high concurrency (a released
connection is offered to every waiter; encode/httpx#3215): measured here, one
``httpx.AsyncClient`` reached 2% of the ideal rate at 256 requests in flight, where aiohttp's
connector reaches 86% (README, "HTTP transport").

Foreign exceptions are translated here, once, into httpx's: the client above only ever sees
httpx types.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx
from yarl import URL

# Headers aiohttp computes itself from the body and URL.
_SKIP_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` over one `aiohttp.ClientSession`.

    :param max_connections: the pool size; connections stay alive up to the same number, so at
        steady state the pool opens about ``max_connections`` connections in all.
    :param trust_env: honour ``HTTPS_PROXY``/``NO_PROXY`` and friends, as httpx does.
    """

    def __init__(self, *, max_connections: int, trust_env: bool = True) -> None:
        self._max_connections = max_connections
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds the session to the running event loop.
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=self._trust_env,
            # httpx.Response decodes Content-Encoding itself; decoding twice would fail.
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        headers = [(k, v) for k, v in request.headers.items() if k not in _SKIP_HEADERS]
        try:
            async with session.request(
                request.method,
                self._url(request.url),
                headers=headers,
                data=request.content,
                timeout=self._timeout(request.extensions.get("timeout")),
                # Never follow: a redirect to another host must not receive the Authorization header.
                allow_redirects=False,
            ) as resp:
                content = await resp.read()
                return httpx.Response(
                    resp.status,
                    headers=resp.raw_headers,
                    content=content,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1"},
                )
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise _timeout_error(exc, request) from None
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(_describe(exc), request=request) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(_describe(exc), request=request) from None
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(_describe(exc), request=request) from None

    def _url(self, url: httpx.URL) -> URL:
        text = str(url)
        parsed = self._urls.get(text)
        if parsed is None:
            parsed = self._urls[text] = URL(text, encoded=True)
        return parsed

    def _timeout(self, spec: dict[str, float | None] | None) -> aiohttp.ClientTimeout | None:
        if not spec:
            return None
        key = (spec.get("connect"), spec.get("read"), spec.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=pool, sock_connect=connect, sock_read=read
            )
        return timeout

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _timeout_error(exc: BaseException, request: httpx.Request) -> httpx.TimeoutException:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout("timed out connecting", request=request)
    return httpx.ReadTimeout("timed out waiting for the response", request=request)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
