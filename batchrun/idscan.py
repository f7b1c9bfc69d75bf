"""Reading the ``custom_id`` of many request lines at once, off their starts, without parsing them:
what a resume does for the lines an earlier start finished (`skip.skip_in_steps`)."""

from __future__ import annotations

import re

# A line starting with its id, the id without escapes (a key or value written with one is parsed),
# with JSON's whitespace where it may be (`json.dumps` writes a space after the colon).
_FIRST = re.compile(rb'[ \t\r]*\{[ \t\r]*"custom_id"[ \t\r]*:[ \t\r]*"([^"\\\n]+)"')
_NEXT = re.compile(rb"\n" + _FIRST.pattern)
# An escape of a letter of custom_id (c d i m o s t u _): another way to spell that key.
_KEY_ESCAPE = re.compile(rb"\\u00(?:6[349dDfF]|7[345]|5[fF])")


def canonical_ids(block: bytes, end: int) -> list[bytes] | None:
    """The ``custom_id`` of every line of ``block[:end]`` (whole lines, each ending in a newline),
    in UTF-8, if each line is known valid JSON and starts ``{"custom_id":"…"``, as most files
    write them: what parsing the line would give, since ``"custom_id"`` appears once in the line
    (no other key of that name, spelled plainly or with an escape) and its value holds no escape.
    ``None``: some line is not like that, and must be parsed. Nothing of ``block`` is copied.
    """
    lines = block.count(b"\n", 0, end)
    if not lines or block.count(b'"custom_id"', 0, end) != lines:
        return None
    if block.find(b"\\", 0, end) >= 0 and _KEY_ESCAPE.search(block, 0, end):
        return None
    first = _FIRST.match(block, 0, end)
    if first is None:
        return None
    # Each match holds one newline, that of the line before its own: every line has one.
    found = _NEXT.findall(block, 0, end)
    if len(found) != lines - 1:
        return None
    found.insert(0, first.group(1))
    return found
