"""Every exception batchrun raises, in one tree.

    BatchrunError
    ├── ConfigError          bad options or environment: nothing was sent (exit 2)
    ├── InputFileError       the input file cannot be read at all (exit 2)
    ├── FatalEndpointError   every further request would fail too (the credentials refused, the
    │                        account out of quota, no such path, nothing listening): stop (exit 4)
    └── RequestError         one request failed; the run goes on
        ├── HTTPStatusError        a status that is not worth retrying (400, 404, 422 ...)
        │   └── Unconfirmed        this line's failure, or the whole run's: held until the run shows which
        │       ├── AuthRefused    401/403 once the key has worked
        │       └── NoSuchPath     a 404 for the path itself, before any success
        ├── InvalidResponse        a 2xx that is not an answer: wrong shape, or too large
        └── RetryableError         worth another attempt (`docs/retries.md`)
            ├── RateLimited        429
            ├── CapacityRefused    the provider lacks capacity (flex's 429 Resource Unavailable, 498, 529)
            ├── ServerError        408, 409, 5xx but 501/505..., or any with x-should-retry: true
            ├── MalformedResponse  a 2xx whose body is not JSON
            └── TransportError     timeout or connection failure, no HTTP response
                └── ConnectionRefused  nothing listens at the endpoint's address

    StopBefore   a source of answers says the run stops before a line (the engine's own signal,
                 caught by its pool: it never reaches a user)

A `RequestError` that survives its retries becomes an error record in the output: a failed
request is data, not a crash. Messages never contain the API key (see `client.py`).
"""

from __future__ import annotations

from typing import Any


class BatchrunError(Exception):
    """Base class of every error batchrun raises."""


class ConfigError(BatchrunError):
    """Options or environment make the run impossible."""


class InputFileError(BatchrunError):
    """The input file is missing, unreadable or not a file."""


class FatalEndpointError(BatchrunError):
    """Every further request would fail too: the run stops, resumable.

    :param next_step: what to do before the command is run again, when running it again as it
        is would fail the same way ("correct --base-url …, then run the command again").
    """

    def __init__(self, message: str, next_step: str | None = None) -> None:
        super().__init__(message)
        self.next_step = next_step


class RequestError(BatchrunError):
    """One request failed.

    :param code: the machine-readable code written to the output's ``error.code``.
    :param status_code: the HTTP status, or ``None`` when no response arrived.
    :param request_id: the server's ``x-request-id``, when there was one.
    :param body: the parsed JSON body of the response, when it had one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.body = body


class HTTPStatusError(RequestError):
    """A status the server will answer the same way however often it is asked."""


class Unconfirmed(HTTPStatusError):
    """Final for its line, but whether it is the line's alone or every line's shows only in what
    the next answers are: the line is written once one shows it (`engine.Control.held`)."""


class AuthRefused(Unconfirmed):
    """A 401/403 after other requests were answered: this line's model or resource, or the key
    itself stopped working."""


class NoSuchPath(Unconfirmed):
    """A 404 for the path itself (an HTML page, a router's "not found", OpenAI's "Invalid URL"),
    before any request succeeded: the base URL may point where the endpoint is not."""


class InvalidResponse(RequestError):
    """A success status whose body is not what the endpoint answers (a misconfigured proxy, a
    body over the size cap): asking again would get the same, and may be billed again."""


class RetryableError(RequestError):
    """A failure that another attempt may not meet.

    :param retry_after: seconds the server asked us to wait, when it said.
    """

    def __init__(self, code: str, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(code, message, **kw)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """429: the server declined to do the work now."""


class CapacityRefused(RetryableError):
    """The provider has no capacity for the request now (OpenAI flex's 429 ``Resource
    Unavailable``, Groq's 498 ``capacity_exceeded``, a 529 ``overloaded_error``): shedding, not a
    quota, so it slows no other line (`retry.capacity_refused`)."""


class ServerError(RetryableError):
    """A transient server-side status."""


class MalformedResponse(RetryableError):
    """A success status with a body that is not JSON (a proxy's HTML page, a cut-off body)."""


class TransportError(RetryableError):
    """No HTTP response: timeout, refused or dropped connection."""


class ConnectionRefused(TransportError):
    """The connection was refused: nothing listens at the address (yet, or any more)."""


class StopBefore(Exception):
    """A source of answers (`engine.sources`) says the run must stop before this line: it and
    every later one are left for a later start.

    :param reason: why, for the summary and the report; :param code: the exit code.
    """

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code
