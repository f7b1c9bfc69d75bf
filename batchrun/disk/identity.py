"""What makes two starts the same run: the input (its size and digest, read in one pass) and the
options that shape requests. A checkpoint records it (`checkpoint.py`), and so does the report of
a finished run; a start whose identity differs is another run, refused unless ``--restart``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError
from ..reader import BOM, require_a_request

# The options of a run's identity that only say where requests go: a checkpoint in which no line
# was sent takes another start's (`Checkpoint._unpin`).
ENDPOINT_OPTIONS = ("base_url",)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputScan:
    """One pass over the input: its identity, and its request lines (those not blank, as the
    reader counts them) for the progress total and the report."""

    size: int
    digest: str
    lines: int


_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*(?=\n)")  # a newline, and the blank line after it
_INK = re.compile(rb"[^ \t\n\r\x0b\x0c]")  # what makes a line not blank


def scan_input(path: Path, span: tuple[int, int] | None = None) -> InputScan:
    """:param span: scan only these bytes, ``[start, end)`` at line starts (a `Span`'s): the
        digest and lines are theirs, the size the whole file's; no request is required in them.
    :raises InputFileError: no line of the input is a request (`require_a_request`).
    """
    digest = hashlib.blake2b(digest_size=16)
    size = lines = blank = 0
    blank_so_far = True  # the line that goes on into the next chunk
    with path.open("rb") as f:
        if span is None:
            require_a_request(f, path)
        begin, end = span if span is not None else (0, sys.maxsize)
        f.seek(begin)
        size = begin
        while size < end and (chunk := f.read(min(_CHUNK, end - size))):
            digest.update(chunk)
            start = len(BOM) if not size and chunk.startswith(BOM) else 0
            size += len(chunk)
            first = chunk.find(b"\n", start)
            if first < 0:
                blank_so_far = blank_so_far and not _INK.search(chunk, start)
                continue
            blank += blank_so_far and not _INK.search(chunk, start, first)
            blank += len(_BLANK_LINE.findall(chunk, first))
            lines += chunk.count(b"\n")
            blank_so_far = not _INK.search(chunk, chunk.rfind(b"\n") + 1)
        if span is not None:
            size = os.fstat(f.fileno()).st_size
    return InputScan(size, digest.hexdigest(), lines - blank + (not blank_so_far))


def identity(scan: InputScan, config: RunConfig, via: str | None = None) -> dict[str, Any]:
    """What makes two starts the same run: the input (its size and digest), the options that shape
    requests. A checkpoint records it, and so does the report of a finished run.

    :param via: the route the lines go by besides online (``"batch"``: the provider's Batch API),
        so that one route never resumes another's run; an online run's has no such option.
    """
    given: dict[str, Any] = {"size": scan.size, "digest": scan.digest}
    if (span := config.span) is not None:  # its digest is of these bytes alone
        given["span"] = {"start": span.start, "end": span.end}
    options = config.request_options()
    if via is not None:
        options["via"] = via
    return {"input": given, "options": options}


def check_same_run(saved: dict, current: dict, where: str, restart: str) -> None:  # type: ignore[type-arg]
    """:raises ConfigError: ``saved`` is the `identity` of another run: ``where``, what changed, and ``restart``."""
    old, new = saved.get("input", {}), current["input"]
    if old.get("size") != new["size"]:
        raise ConfigError(f"{where}: the input file changed (size {old.get('size', 0):,} → {new['size']:,} bytes); "
                          f"restore the original input, or {restart}")
    if _bytes(old) != _bytes(new):
        raise ConfigError(f"{where}: it holds another part of the input ({_part(old)} → {_part(new)}); {restart}")
    if old.get("digest") != new["digest"]:
        raise ConfigError(f"{where}: the input file's content changed (same size); restore it, or {restart}")
    # An option set on one side only (--model) is a change too.
    before, now = saved.get("options", {}), current["options"]
    changed = [f"{name} {before.get(name)!r} → {now.get(name)!r}"
               for name in {**before, **now} if now.get(name) != before.get(name)]
    if changed:
        raise ConfigError(f"{where}: options changed ({'; '.join(changed)}); use the original options, or {restart}")


def _bytes(given: dict[str, Any]) -> tuple[int, int] | None:
    """The bytes of the input a run read (``None``: all of them). An earlier version recorded
    them as ``shard``, with the shard's number and count, which the part's path already says."""
    span = given.get("span", given.get("shard"))
    return (span["start"], span["end"]) if isinstance(span, dict) else None


def _part(given: dict[str, Any]) -> str:
    span = _bytes(given)
    return "all of it" if span is None else f"bytes {span[0]:,} to {span[1]:,}"
