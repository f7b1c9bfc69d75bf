"""Reading past the request lines an earlier start finished, as a resume does before it reads on
(`reader.read_jobs` from the `Position` this gives). Of those lines only ``custom_id`` values
are kept, for the duplicate check of the lines after them: every one, or when few lines are
left, only those the lines left repeat.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterable
from pathlib import Path

from .errors import InputFileError
from .idscan import canonical_ids
from .idset import IdSet
from .reader import Position, jsonl_lines, open_input, request_id

SKIP_STEP = 5_000  # lines parsed between pauses of a resume's skip: about 15 ms of work
_SKIP_BLOCK = 1 << 17  # bytes of lines whose ids `canonical_ids` reads at once: under a millisecond of work
# Lines after a skip whose ids `_later_ids` holds instead of every skipped one: reading them is
# about 25 ms of work before the skip's first pause (65,536 were 300 ms).
FEW_AFTER = 1 << 13
_AFTER_WINDOW = 1 << 16  # bytes it reads back for them first, then four times as many, and so on
_AFTER_BYTES = 1 << 24  # but no more than this


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
    (``scripts/bench_resume.py``).

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
    start = origin if origin is not None else Position()
    end = sys.maxsize if limit is None else limit
    later = _later_ids(path, start.offset, end, after) if after is not None and count > 0 else None
    position = Position(start.offset, start.line_no, start.index, IdSet(count if later is None else len(later[1])))
    if count <= 0:
        yield position
        return
    seen, total = position.seen, count + start.index
    # orjson refuses a lone surrogate, so every id parsed is UTF-8 encodable.
    wanted = None if later is None else {custom_id.encode() for custom_id in later[1]}
    kept: Callable[[list[str]], Iterable[str]] = (lambda ids: ids) if later is None else later[1].intersection
    parsed: list[str] = []  # ids of lines parsed one by one, kept at the next step
    with open_input(path) as f:
        try:
            while position.index < total:
                f.seek(position.offset)
                stop = sys.maxsize  # the line after which to look for a block again
                if valid:
                    block = f.read(min(_SKIP_BLOCK, end - position.offset))
                    cut = block.rfind(b"\n") + 1
                    read = canonical_ids(block, cut)
                    if read is not None and position.index + len(read) > total:  # the skip ends in this block
                        cut = 0
                        for _ in range(total - position.index):
                            cut = block.index(b"\n", cut) + 1
                        read = canonical_ids(block, cut)
                    ids = None if read is None else _decoded(read, wanted)
                    if read is not None and ids is not None:
                        seen.add_all(ids)
                        position.offset += cut
                        position.line_no += len(read)
                        position.index += len(read)
                        yield position
                        continue
                    f.seek(position.offset)
                    stop = position.line_no + (block.count(b"\n", 0, cut) or 1)
                for line_no, line in jsonl_lines(f, position, end):
                    if isinstance(line, bytes):  # not one too long to read, which has no id (`read_jobs`)
                        parsed.append(request_id(line, line_no))
                    position.index += 1
                    if not position.index % SKIP_STEP:
                        seen.add_all(kept(parsed))
                        parsed.clear()
                        yield position
                    if position.index >= total or line_no >= stop:
                        break
                else:
                    break  # the end of the file, or of ``limit``
        except OSError as exc:
            raise InputFileError(f"{path}: read failed: {exc.strerror}") from None
    if later is not None and position.offset <= later[0]:  # more lines follow than `_later_ids` read
        yield from skip_in_steps(path, count, limit, origin, valid=valid)
        return
    seen.add_all(kept(parsed))
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
