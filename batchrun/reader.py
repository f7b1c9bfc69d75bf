"""Stream the input JSONL into `Job`s, and bad lines into `LineError`s.

Lines are read one at a time; nothing but the duplicate-id table grows with the file. A bad
line never stops the stream: it becomes a `LineError` in its place, so the output still has
one line per request line.

A resume reads past the lines an earlier start finished with `skip_in_steps` (`skip_requests`
at once), which keeps only their ``custom_id`` values (a later line may repeat one) and says
where to go on (`Position`).
"""

from __future__ import annotations

import functools
import os
import re
import string
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .errors import InputFileError
from .idscan import canonical_ids
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
    :param start: go on from there (`skip_requests`) instead of from the start of the file.
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


def skip_requests(path: Path, count: int, limit: int | None = None) -> Position:
    """Read past the first ``count`` request lines, keeping only what the lines after them need:
    their ``custom_id`` values, for the duplicate check (`skip_in_steps`, all at once).

    :raises InputFileError: when the file cannot be opened or read.
    """
    *_, last = skip_in_steps(path, count, limit)
    return last


def skip_in_steps(path: Path, count: int, limit: int | None = None, origin: Position | None = None, *,
                  valid: bool = False, after: int | None = None) -> Generator[Position, None, None]:
    """`skip_requests` a step at a time: the position so far every `SKIP_STEP` lines or so, the
    last one when done. A resume runs it on the event loop, pausing between steps, since a worker
    thread holding the GIL for seconds starved the loop in turns of up to a quarter of a second
    (``scripts/bench_resume.py``). The loop is `jsonl_lines` and `request_id` written out: it runs
    once per finished line of a resume.

    :param origin: where to start, and the numbers there (a shard's start); its ids are not kept.
    :param valid: every line skipped is known to be a valid request (an earlier start of the
        run read these very bytes, and refused none as ``invalid_request_line``): then the ids of
        lines that start ``{"custom_id":"…"`` are read off a block of them at once
        (`idscan.canonical_ids`), without parsing them; other blocks are parsed line by line.
    :param after: how many request lines follow the skipped ones, up to ``limit``. When they are
        few (`FEW_AFTER`), they are read first (`_later_ids`), and the position keeps only the
        skipped ids that one of them has: all their duplicate check needs, and no table of every
        skipped id to fill. Should more follow than that, every id is kept after all.
    :raises InputFileError: when the file cannot be opened or read.
    """
    offset, line_no, index = (origin.offset, origin.line_no, origin.index) if origin is not None else (0, 0, 0)
    end = sys.maxsize if limit is None else limit
    later = _later_ids(path, offset, end, after) if after is not None and count > 0 else None
    position = Position(offset, line_no, index, IdSet(count if later is None else len(later[1])))
    if count <= 0:
        yield position
        return
    seen, loads, total = position.seen, orjson.loads, count + index
    # orjson refuses a lone surrogate, so every id parsed is UTF-8 encodable.
    wanted = None if later is None else {custom_id.encode() for custom_id in later[1]}
    kept: Callable[[list[str]], Iterable[str]] = (lambda ids: ids) if later is None else later[1].intersection
    parsed: list[str] = []  # ids of lines parsed one by one, kept at the next step
    with open_input(path) as f:
        f.seek(offset)
        try:
            while index < total:
                lines_left = sys.maxsize  # to parse one by one before looking for a block again
                if valid:
                    block = f.read(min(_SKIP_BLOCK, end - offset))
                    cut = block.rfind(b"\n") + 1
                    read = canonical_ids(block, cut)
                    if read is not None and index + len(read) > total:  # the skip ends in this block
                        cut = 0
                        for _ in range(total - index):
                            cut = block.index(b"\n", cut) + 1
                        read = canonical_ids(block, cut)
                    ids = None if read is None else _decoded(read, wanted)
                    if read is not None and ids is not None:
                        seen.add_all(ids)
                        offset, line_no, index = offset + cut, line_no + len(read), index + len(read)
                        f.seek(offset)
                        position.offset, position.line_no, position.index = offset, line_no, index
                        yield position
                        continue
                    f.seek(offset)
                    lines_left = block.count(b"\n", 0, cut) or 1
                for raw in _lines(f, end - offset):
                    line_no += 1
                    lines_left -= 1
                    if isinstance(raw, int):  # a line too long to hold: an input error, counted
                        offset += raw
                        index += 1
                    else:
                        offset += len(raw)
                        line = _request_bytes(raw, line_no)
                        if line:
                            try:
                                obj = loads(line)
                            except orjson.JSONDecodeError:
                                obj = None
                            parsed.append(_custom_id(obj, line_no) if isinstance(obj, dict) else f"line-{line_no}")
                            index += 1
                            if not index % SKIP_STEP:
                                seen.add_all(kept(parsed))
                                parsed.clear()
                                position.offset, position.line_no, position.index = offset, line_no, index
                                yield position
                    if index >= total or not lines_left:
                        break
                else:
                    break  # the end of the file, or of ``limit``
        except OSError as exc:
            raise InputFileError(f"{path}: read failed: {exc.strerror}") from None
    if later is not None and offset <= later[0]:  # more lines follow than `_later_ids` read
        yield from skip_in_steps(path, count, limit, origin, valid=valid)
        return
    seen.add_all(kept(parsed))
    position.offset, position.line_no, position.index = offset, line_no, index
    yield position


def _decoded(ids: list[bytes], wanted: set[bytes] | None) -> list[str] | None:
    """Which of the ids read off lines (`canonical_ids`) to keep: all, or those ``wanted``.
    ``None``: one is not UTF-8 (not a line `skip_in_steps` is told is valid), to be parsed."""
    if wanted is not None:
        return [custom_id.decode() for custom_id in wanted.intersection(ids)]
    try:
        return list(map(bytes.decode, ids))
    except UnicodeDecodeError:
        return None


SKIP_STEP = 5_000  # lines parsed between pauses of a resume's skip: about 15 ms of work
_SKIP_BLOCK = 1 << 17  # bytes of lines whose ids `canonical_ids` reads at once: under a millisecond of work
FEW_AFTER = 1 << 16  # lines after a skip whose ids `_later_ids` holds (a few MB) instead of every skipped one
_AFTER_WINDOW = 1 << 16  # bytes it reads back for them first, then four times as many, and so on
_AFTER_BYTES = 1 << 26  # but no more than this


def _later_ids(path: Path, start: int, end: int, lines: int) -> tuple[int, set[str]] | None:
    """The ids of the last ``lines`` request lines before ``end`` (none before ``start``), and
    where the request line before them starts (``-1``: none does): a skip that ended past that
    line's start has only these after it. They are read in a window back from ``end``, which
    grows until it holds one line more, or reaches ``start``.

    :returns: ``None`` when that is more than `FEW_AFTER` lines or `_AFTER_BYTES`, or one of
        them has no id of its own (the id it gets is its line number, not known from here).
    :raises InputFileError: when the file cannot be read.
    """
    if not 0 <= lines <= FEW_AFTER:
        return None
    size = _AFTER_WINDOW
    with open_input(path) as f:
        try:
            end = min(end, os.fstat(f.fileno()).st_size)
            while True:
                begin = max(start, end - size)
                f.seek(begin)
                found: list[tuple[int, bytes]] = []  # where each line the window holds whole starts, stripped
                at = begin
                for number, part in enumerate(f.read(end - begin).split(b"\n")):
                    # The first part may be the end of a line before the window.
                    if (number or begin == start) and (line := part.strip()):
                        found.append((at, line))
                    at += len(part) + 1
                if len(found) > lines or begin == start:
                    break
                if size >= _AFTER_BYTES:
                    return None
                size *= 4
        except OSError as exc:
            raise InputFileError(f"{path}: read failed: {exc.strerror}") from None
    ids = {request_id(line, 0) for _, line in found[max(0, len(found) - lines):]}
    return None if "line-0" in ids else (found[-lines - 1][0] if len(found) > lines else -1, ids)


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
