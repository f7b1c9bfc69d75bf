"""Stream the input JSONL into `Job`s, and bad lines into `LineError`s.

Lines are read one at a time; nothing but the duplicate-id table grows with the file. A bad
line never stops the stream: it becomes a `LineError` in its place, so the output still has
one line per request line.

A resume reads past the lines an earlier start finished (`skip.skip_in_steps`), which keeps
only their ``custom_id`` values (a later line may repeat one) and says where to go on
(`Position`).
"""

from __future__ import annotations

import functools
import re
import string
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .errors import InputFileError
from .idset import IdSet
from .records import DEFAULT_URL, Job, LineError
from .tokens import max_output

BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 32 * 2**20  # far above any real request; a bigger line is a broken file
_SKIP_CHUNK = 2**20
# The characters of a URL's path and query (RFC 3986), spelled as they go on the wire: the URL
# is sent as given, so a space, a control character or a backslash would reach the server raw.
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DOT_SEGMENT = re.compile(r"(?:\.|%2e){1,2}", re.IGNORECASE)
_ENCODED_SLASH = re.compile(r"%2f|%5c", re.IGNORECASE)
_TABLE_SUFFIXES = (".csv", ".tsv")
_TABLE_SEPARATOR = re.compile(rb"[,;\t]")  # in a first line that is not JSON: a header row


def open_input(path: Path, kind: str = "a JSONL file") -> BinaryIO:
    """Open an input file for binary reading, with errors a user can act on.

    :param kind: what the file should be, for the message when it is a directory.
    :raises InputFileError: missing, a directory, unreadable.
    """
    try:
        if path.is_dir():
            raise InputFileError(f"{path}: is a directory, not {kind}")
        return path.open("rb")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except PermissionError:
        raise InputFileError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open: {exc.strerror}") from None


@dataclass
class Position:
    """How far a read of the input got: enough to go on as if it had read from the start.

    :param offset: bytes consumed. :param line_no: physical lines consumed.
    :param index: request lines consumed. :param seen: their ``custom_id`` values.
    """

    offset: int = 0
    line_no: int = 0
    index: int = 0
    seen: IdSet = field(default_factory=IdSet)


def read_jobs(path: Path, limit: int | None = None, start: Position | None = None, model: str | None = None,
              duplicates: frozenset[int] = frozenset()) -> Generator[Job | LineError, None, None]:
    """Yield one `Job` or `LineError` per non-blank line of ``path``, in file order.

    :param limit: read no further than this many bytes: the size the run fingerprinted, so
        that lines appended while it runs are neither sent nor make its checkpoint refused.
    :param start: go on from there (`skip.skip_requests`) instead of from the start of the file.
    :param model: the model every request is sent with, in place of its own (``--model``).
    :param duplicates: indices of lines whose ``custom_id`` a line before ``start`` used, though
        ``start`` has not seen it (a shard's: `scale.shards.duplicates`).
    :raises InputFileError: when the file cannot be opened or read.
    """
    position = start if start is not None else Position()
    seen = position.seen
    with open_input(path) as f:
        try:
            for line_no, line in jsonl_lines(f, position, limit):
                item = _item(line, position.index, line_no, path, model)
                if (isinstance(line, bytes) and (not seen.add(item.custom_id) or position.index in duplicates)
                        and isinstance(item, Job)):
                    item = LineError(
                        position.index, line_no, item.custom_id, "duplicate_custom_id",
                        f"{path}:{line_no}: custom_id {item.custom_id!r} was already used by an earlier line",
                    )
                position.index += 1
                yield item
        except OSError as exc:
            raise InputFileError(f"{path}: read failed: {exc.strerror}") from None


def require_a_request(f: BinaryIO, path: Path) -> None:
    """Refuse a file in which no line is a request: run, it would send nothing and only write an
    error record per line. Reading stops at the first request, the first line of any usable
    file, so this costs one line, not a pass over the file (but for a file it refuses). A file
    with no line at all is not refused: it is a batch of nothing.

    :raises InputFileError: naming the first line and what is wrong with it; for what looks
        like a table, pointing at ``batchrun label``.
    """
    first: LineError | None = None
    first_line = b""
    for line_no, line in jsonl_lines(f):
        item = _item(line, 0, line_no, path, None)
        if isinstance(item, Job):
            return
        if first is None:
            first, first_line = item, line if isinstance(line, bytes) else b""
    if first is None:
        return
    message = f"no line of {path} is a valid request (the first: {first.message}); nothing was sent"
    table = first_line[:1] not in (b"{", b"[") and _TABLE_SEPARATOR.search(first_line)
    if path.suffix.lower() in _TABLE_SUFFIXES or table:
        message += ("; it looks like a CSV/TSV table: did you mean `batchrun label`, which sends a prompt template "
                    "filled from each row?")
    raise InputFileError(message)


def request_id(line: bytes, line_no: int) -> str:
    """The ``custom_id`` `parse_line` gives a stripped, non-blank line, without checking the rest."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return f"line-{line_no}"
    return _custom_id(obj, line_no) if isinstance(obj, dict) else f"line-{line_no}"


def _is_envelope(obj: dict[str, Any]) -> bool:
    """Whether a line is a Batch API envelope (it names a ``custom_id`` or a ``body``) rather than
    a bare body."""
    return "custom_id" in obj or "body" in obj


def _custom_id(obj: dict[str, Any], line_no: int) -> str:
    custom_id = obj.get("custom_id") if _is_envelope(obj) else None
    return custom_id if isinstance(custom_id, str) and custom_id else f"line-{line_no}"


def jsonl_lines(f: BinaryIO, position: Position | None = None,
                limit: int | None = None) -> Iterator[tuple[int, bytes | int]]:
    """The non-blank lines of a JSONL file opened in binary, with their 1-based physical line
    numbers: stripped of surrounding whitespace (a CRLF's CR too), and of a UTF-8 BOM on the
    first line. A line longer than `MAX_LINE_BYTES` comes as its length in bytes instead, read
    past in pieces, so memory stays bounded whatever the file holds (`too_long` words it).

    :param position: go on from there; it follows what is consumed (`read_jobs`).
    :param limit: read no further than this many bytes of the file.
    """
    position = position if position is not None else Position()
    if position.offset:
        f.seek(position.offset)
    for raw in _lines(f, (sys.maxsize if limit is None else limit) - position.offset):
        position.line_no += 1
        if isinstance(raw, int):
            position.offset += raw
            yield position.line_no, raw
            continue
        position.offset += len(raw)
        if line := _request_bytes(raw, position.line_no):
            yield position.line_no, line


def too_long(length: int) -> str:
    """The start of the message for a line `jsonl_lines` gave as its length: "... over the N MiB"."""
    return f"the line is {length / 2**20:,.1f} MiB, over the {MAX_LINE_BYTES // 2**20} MiB"


def _request_bytes(raw: bytes, line_no: int) -> bytes:
    if line_no == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    return raw.strip()


def _lines(f: BinaryIO, limit: int) -> Iterator[bytes | int]:
    """The file's lines within its first ``limit`` bytes; a line longer than `MAX_LINE_BYTES`
    comes as its length instead, read past in pieces so that it never sits in memory whole."""
    while limit > 0 and (raw := f.readline(min(MAX_LINE_BYTES + 1, limit))):
        limit -= len(raw)
        if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield raw
            continue
        length = len(raw)
        while limit > 0 and (rest := f.readline(min(_SKIP_CHUNK, limit))):
            limit -= len(rest)
            length += len(rest)
            if rest.endswith(b"\n"):
                break
        yield length


def _item(line: bytes | int, index: int, line_no: int, path: Path, model: str | None) -> Job | LineError:
    """What a line of `jsonl_lines` is: a request, or why it cannot be sent (one too long to read)."""
    if isinstance(line, int):
        return LineError(index, line_no, f"line-{line_no}", "invalid_request_line",
                         f"{path}:{line_no}: {too_long(line)} a request may have")
    return parse_line(line, index, line_no, str(path), model)


def parse_line(line: bytes, index: int, line_no: int, source: str, model: str | None = None) -> Job | LineError:
    """Turn one stripped, non-blank line into a `Job`, or say precisely what is wrong with it.

    :param model: set as every body's ``model`` (the line is then sent re-encoded, not as read).
    """
    where = f"{source}:{line_no}"
    fallback_id = f"line-{line_no}"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return LineError(index, line_no, fallback_id, "invalid_request_line", f"{where}: not valid JSON: {exc}")
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        return LineError(index, line_no, fallback_id, "invalid_request_line", f"{where}: expected a JSON object, got {kind}")
    if _is_envelope(obj):
        return _parse_envelope(obj, index, line_no, where, fallback_id, model)
    problem = _body_problem(obj)
    if problem:
        return LineError(index, line_no, fallback_id, "invalid_request_line", f"{where}: {problem}")
    if model is not None:
        obj["model"] = model
        encoded = _encode(obj, index, line_no, fallback_id, where)
        if isinstance(encoded, LineError):
            return encoded
        line = encoded
    return Job(index, line_no, fallback_id, DEFAULT_URL, line, _model(obj), max_output(DEFAULT_URL, obj))


def _parse_envelope(obj: dict[str, Any], index: int, line_no: int, where: str, fallback_id: str,
                    model: str | None) -> Job | LineError:
    custom_id = _custom_id(obj, line_no)  # the fallback when it is not a non-empty string
    problem = None
    if not isinstance(given := obj.get("custom_id"), str) or not given:
        problem = "custom_id must be a non-empty string"
    elif obj.get("method", "POST") != "POST":
        problem = f"method must be POST, got {obj.get('method')!r}"
    elif not isinstance(url := obj.get("url", DEFAULT_URL), str) or not url.startswith("/"):
        problem = f"url must be a path starting with '/', got {obj.get('url')!r}"
    elif url_problem := _url_problem(url):
        problem = f"url {url_problem}, got {url!r}"
    elif not isinstance(body := obj.get("body"), dict):
        problem = "body is missing" if "body" not in obj else "body must be a JSON object"
    else:
        problem = _body_problem(body)
    if problem:
        return LineError(index, line_no, custom_id, "invalid_request_line", f"{where}: {problem}")
    assert isinstance(body, dict)  # every other case set a problem
    if model is not None:
        body["model"] = model
    encoded = _encode(body, index, line_no, custom_id, where)
    if isinstance(encoded, LineError):
        return encoded
    return Job(index, line_no, custom_id, url, encoded, _model(body), max_output(url, body))


def _encode(body: dict[str, Any], index: int, line_no: int, custom_id: str, where: str) -> bytes | LineError:
    """The body as sent, or why it cannot be: readable, but nested deeper than orjson writes."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        return LineError(index, line_no, custom_id, "invalid_request_line", f"{where}: body cannot be sent: {exc}")


@functools.lru_cache(maxsize=256)  # a file holds a few urls, each on many lines
def _url_problem(url: str) -> str | None:
    """Why an envelope's ``url`` (which starts with ``/``) cannot be joined to the base URL.

    Whatever passes stays below the base URL's path: no ``//host`` (scheme-relative), no ``.``
    or ``..`` segment (servers and proxies resolve them, also percent-encoded), no encoded slash
    that a server may decode into one, no ``;``: servers that strip ``;`` path parameters before
    resolving dot segments (Tomcat, Jetty, Spring gateways) read ``/v1/..;/admin`` as ``..``.
    """
    if url.startswith("//"):
        return "must be a path, not a '//host' address"
    if (bad := next((c for c in url if c not in _URL_CHARS), None)) is not None:
        return f"has {bad!r}, which a URL cannot hold (percent-encode it)"
    if _BAD_PERCENT.search(url):
        return "has a '%' not followed by two hex digits"
    path = url.partition("?")[0]
    if any(_DOT_SEGMENT.fullmatch(segment) for segment in path.split("/")):
        return "must not have '.' or '..' segments"
    if _ENCODED_SLASH.search(path):
        return "must not have an encoded '/' or '\\' in its path"
    if ";" in path:
        return "must not have ';' in its path (servers read it as path parameters; percent-encode it as %3B)"
    return None


def _body_problem(body: dict[str, Any]) -> str | None:
    # A streamed answer is server-sent events, not JSON: it would be retried as malformed and
    # paid for on every attempt. Only JSON false is safe: servers that read the body leniently
    # (pydantic's lax booleans, as vLLM's) take "true", 1, "yes" or "on" for true.
    if "stream" in body and body["stream"] is not False:
        value = body["stream"]
        given = ("an array" if isinstance(value, list) else "an object" if isinstance(value, dict)
                 else orjson.dumps(value).decode())  # a scalar: never too deep to write
        given = given if len(given) <= 40 else given[:37] + "..."
        return f"stream={given} is not supported in a batch: a streamed answer is not JSON; remove it or set it to false"
    return None


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) else None
