"""The prefix snapshot: what a resume needs to skip the ordered prefix without reading it.

Counting a million carried-over lines back into the report took seconds. So, after each
periodic fsync, the run saves ``prefix.json`` in the checkpoint: the prefix's length, the sizes
of the ordered output and errors file at its end, the ``custom_id`` of its last line, and the
report's counters over it (`Report.state`). The bytes it describes were fsynced before it was
written, and the files are only appended to, so a snapshot stays true of them; a resume
restores the counters and reads only the lines written after it.

A snapshot is used only when it checks out: its CRC, and the files being at least as long as it
says, the output's byte before its end being a newline and the line ending there carrying its
``custom_id``. Otherwise — none yet, torn, or describing files replaced since — the resume reads
the whole prefix, as without one.

File format (JSON, one object): ``{"format": 1, "crc": <crc32 of the rest, as encoded>, "snapshot":
{"lines", "output_bytes", "errors_bytes", "last_custom_id", "report"}}``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..records import Result
from .publish import private_opener

FORMAT = 1
_BACK = 1 << 16  # bytes read back at a time to find the line that ends the prefix


@dataclass(frozen=True)
class Snapshot:
    """The ordered prefix as of one moment (module docstring)."""

    lines: int
    output_bytes: int
    errors_bytes: int
    last_custom_id: str | None
    report: dict[str, Any]


def encode(snapshot: Snapshot) -> bytes:
    # Not `dataclasses.asdict`: it deep-copies the report's state, every second of a run.
    body = orjson.dumps({"lines": snapshot.lines, "output_bytes": snapshot.output_bytes,
                         "errors_bytes": snapshot.errors_bytes, "last_custom_id": snapshot.last_custom_id,
                         "report": snapshot.report})
    return b'{"format":%d,"crc":%d,"snapshot":%s}' % (FORMAT, zlib.crc32(body), body)


def load(path: Path, output: Path, errors: Path, dir_fd: int) -> Snapshot | None:
    """The snapshot at ``path`` if it checks out against ``output`` and ``errors`` (module
    docstring): files of the checkpoint held open as ``dir_fd``, reached by their names."""
    opener = private_opener(dir_fd)
    try:
        with open(path.name, "rb", opener=opener) as f:
            data = f.read()
        doc = orjson.loads(data)
        start = data.index(b'"snapshot":') + len(b'"snapshot":')
        if doc.get("format") != FORMAT or doc.get("crc") != zlib.crc32(data[start:-1]):
            return None
        snapshot = Snapshot(**doc["snapshot"])
        if (_size(output, dir_fd) < snapshot.output_bytes or _size(errors, dir_fd) < snapshot.errors_bytes):
            return None
        if (snapshot.lines == 0) != (snapshot.output_bytes == 0):
            return None
        if snapshot.lines and _last_custom_id(output, snapshot, opener) != snapshot.last_custom_id:
            return None
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None
    return snapshot


def _size(path: Path, dir_fd: int) -> int:
    return os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False).st_size


def _last_custom_id(output: Path, snapshot: Snapshot, opener: Callable[[str, int], int]) -> str | None:
    """The custom_id of the line that ends at the snapshot's end of the output, if a line does.

    :raises ValueError: that line is not an output record.
    """
    end = snapshot.output_bytes
    with open(output.name, "rb", opener=opener) as f:
        f.seek(end - 1)
        if f.read(1) != b"\n":
            return None
        line_start, pos = 0, end - 1
        while pos > 0:  # back to the newline before it, a block at a time (answers can be long)
            step = min(_BACK, pos)
            f.seek(pos - step)
            newline = f.read(step).rfind(b"\n")
            if newline >= 0:
                line_start = pos - step + newline + 1
                break
            pos -= step
        f.seek(line_start)
        line = f.read(end - line_start)
    return Result.from_line(snapshot.lines - 1, line).custom_id
