"""The transport seam's choices alone (loopback requests are in test_transport_request.py, proxies
in test_transport_proxy.py): which transport serves a run, and how a failure without a response
is described."""

from __future__ import annotations

import aiohttp
import httpx

from batchrun.errors import ConnectionRefused, TransportError
from batchrun.transport import (
    AiohttpTransport,
    HttpxTransport,
    Reply,
    Timeouts,
    _connection_error,
    _timeout_message,
    as_transport,
)


class Own:
    """A transport of the user's own, on the seam."""

    async def post(self, url: str, headers: object, body: bytes, timeouts: Timeouts) -> Reply:
        return Reply(200, {}, b"{}")

    async def aclose(self) -> None:
        pass


async def test_no_transport_is_the_default_pool_an_httpx_one_is_adapted_and_one_on_the_seam_is_kept() -> None:
    default = as_transport(None, max_connections=7)
    assert isinstance(default, AiohttpTransport) and default._max_connections == 7
    await default.aclose()
    adapted = as_transport(httpx.MockTransport(lambda request: httpx.Response(200)), max_connections=7)
    assert isinstance(adapted, HttpxTransport)
    own = Own()
    assert id(as_transport(own, max_connections=7)) == id(own)  # type: ignore[arg-type]


def test_a_refused_connection_is_told_apart_through_the_errors_chain() -> None:
    caused = httpx.ConnectError("All connection attempts failed")
    caused.__cause__ = ConnectionRefusedError(111, "Connection refused")  # raise ... from
    error = _connection_error(caused)
    assert type(error) is ConnectionRefused
    assert (error.code, error.message) == ("connection_error", "ConnectError: All connection attempts failed")
    met = httpx.ConnectError("failed")
    met.__context__ = OSError("wrapped")
    met.__context__.__context__ = ConnectionRefusedError(111, "Connection refused")  # raised while handling
    assert type(_connection_error(met)) is ConnectionRefused


def test_another_connection_failure_is_a_transport_error_named_by_its_type() -> None:
    error = _connection_error(aiohttp.ServerDisconnectedError())
    assert type(error) is TransportError
    assert error.message.startswith("ServerDisconnectedError")
    bare = _connection_error(OSError())
    assert (type(bare), bare.message) == (TransportError, "OSError")


def test_a_timeout_names_the_option_whose_limit_it_hit() -> None:
    timeouts = Timeouts(connect=2.5, total=30)
    assert _timeout_message(aiohttp.ConnectionTimeoutError(), timeouts) == (
        "timed out connecting: no connection within 2.5 s (--connect-timeout)")
    assert _timeout_message(aiohttp.SocketTimeoutError(), timeouts) == (
        "timed out: the response was not complete within 30 s (--timeout)")
    assert _timeout_message(None, timeouts).endswith("within 30 s (--timeout)")
