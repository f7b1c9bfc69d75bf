"""What a terminal shows for what a program wrote to it: the escapes batchrun's progress
display uses, and nothing else."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\x1b\[(\d*)([AK])|\r\n|[\r\n]|[^\r\n\x1b]")


def screen(output: str) -> list[str]:
    """The rows a terminal shows after ``output``: ``\\r`` goes back to the row's start, ``\\n``
    down a row, ``ESC[nA`` up n rows, ``ESC[K`` clears to the row's end; what is written
    overwrites what was there. No wrapping: a row is as long as what was written on it."""
    rows: list[list[str]] = [[]]
    row = column = 0
    for match in _TOKEN.finditer(output):
        token = match.group(0)
        if match.group(2) == "A":
            row = max(0, row - int(match.group(1) or 1))
        elif match.group(2) == "K":
            del rows[row][column:]
        elif token == "\r":
            column = 0
        elif token in ("\n", "\r\n"):
            row, column = row + 1, 0
            if row == len(rows):
                rows.append([])
        else:
            line = rows[row]
            line.extend(" " * (column - len(line)))
            if column < len(line):
                line[column] = token
            else:
                line.append(token)
            column += 1
    return ["".join(line).rstrip() for line in rows]
