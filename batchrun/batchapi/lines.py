"""A downloaded output or error file's lines, read in chunks: what is held stays bounded whatever
the lines' lengths — a provider's file may hold an answer of any size, or no newline at all.

A line over the cap (online answers' own, `bodies.DEFAULT_MAX_RESPONSE_BYTES`) is never held
whole: only its head is kept, where a provider writes the ``custom_id`` and ``status_code`` of
the answer that follows (OpenAI: ``{"id": …, "custom_id": …, "response": {"status_code": …``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 2**20
HEAD = 2**16  # bytes kept of a line over the cap

_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"(\d+)"')
_STATUS = re.compile(rb'"status_code"\s*:\s*(\d{3})\b')


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a file: where it is, and its bytes.

    :param length: its bytes, its newline included.
    :param data: the whole line (newline included) when `whole`, else its first `HEAD` bytes.
    """

    offset: int
    length: int
    data: bytearray
    whole: bool

    def head_index(self) -> int | None:
        """The ``custom_id`` (an input index) in the head of a line, read without parsing it."""
        found = _CUSTOM_ID.search(self.data)
        return int(found.group(1)) if found else None

    def head_status(self) -> int | None:
        found = _STATUS.search(self.data)
        return int(found.group(1)) if found else None


def read_lines(f: BinaryIO, cap: int, chunk: int = CHUNK) -> Iterator[Line]:
    """Each line of ``f``, from where it is read: whole when it has at most ``cap`` bytes before
    its newline, else its head. At most ``cap`` + ``chunk`` + 1 bytes are held at a time."""
    offset = length = 0
    held = bytearray()
    whole = True
    while block := f.read(chunk):
        view = memoryview(block)
        start = 0
        while start < len(block):
            newline = block.find(b"\n", start)
            end = len(block) if newline < 0 else newline + 1
            if whole and len(held) + (end - start) - (newline >= 0) > cap:
                whole = False  # past the cap: the head only, from now on
                del held[HEAD:]
            if whole:
                held += view[start:end]
            elif len(held) < HEAD:
                held += view[start : min(end, start + HEAD - len(held))]
            length += end - start
            start = end
            if newline >= 0:
                yield Line(offset, length, held, whole)
                offset, length, held, whole = offset + length, 0, bytearray(), True
    if length:
        yield Line(offset, length, held, whole)
