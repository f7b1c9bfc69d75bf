"""The journal: every finished line, appended in completion order, so a crash loses none.

One record per line: ``<index> <ok> <crc32> <output line>\\n``, where the output line is exactly
what goes into the ordered output. The CRC catches what a crash or power loss leaves at the
tail — a half-written record, zeros the filesystem allocated but never wrote — and `scan`
stops at the first record that does not check out: everything before it is intact, because
records are only ever appended.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True, slots=True)
class Entry:
    """A finished line as the journal holds it."""

    index: int
    ok: bool
    line: bytes


def encode(index: int, ok: bool, line: bytes) -> bytes:
    return b"%d %d %08x " % (index, ok, zlib.crc32(line)) + line


def scan(f: BinaryIO) -> Iterator[Entry]:
    """Yield the intact records from the start of ``f``; stop before the first torn one."""
    for raw in f:
        entry = _decode(raw)
        if entry is None:
            return
        yield entry


def _decode(raw: bytes) -> Entry | None:
    if not raw.endswith(b"\n"):
        return None
    parts = raw.split(b" ", 3)
    if len(parts) != 4:
        return None
    index, ok, crc, line = parts
    try:
        entry = Entry(int(index), ok == b"1", line)
        return entry if int(crc, 16) == zlib.crc32(line) and ok in (b"0", b"1") and entry.index >= 0 else None
    except ValueError:
        return None
