"""Take the credentials out of what a server sends back, before anything of it is kept or shown.

A server may quote the Authorization header anywhere: a response header, an error message, an
answer. It may quote it whole or cut, with its prefix or without, and in a JSON string each
character may be escaped (``\\/``, ``\\u0073``). What counts as the secret showing: the secret
itself, or any run of `RUN` of its characters — ``sk-proj-`` alone is in every OpenAI key and
says nothing, twelve characters of the random part are a part of the key given away. Secrets
shorter than `MIN_SECRET` (``EMPTY``, ``ollama``: placeholders for local servers) are not looked
for: they would match ordinary text and tell an attacker nothing.

Answers are the product, so nearly all of them must pass untouched and at almost no cost: the
parsed strings of a body are walked only when `Scrubber.suspect` finds, in its raw bytes, an escape
of a secret's character (which could hide a run), or a stretch of a secret's characters as long as
a run that holds one of the secret's blocks (every run holds one). A 1.5 KB chat answer costs a few
microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

RUN = 12
MIN_SECRET = 8
MASK = "***"
# Stretches looked at in a body whose strings cannot be told from the rest (a body of numbers, an
# embedding, has one per number) before it counts as suspect anyway: then its strings are walked.
_STRETCHES = 32
# Stretches known to hold no block, remembered: every answer repeats the same names (``completion_tokens``).
_CLEAN_STRETCHES = 4096


class Scrubber:
    """Replaces every run of `RUN` characters of any of ``secrets`` (the whole of a shorter one)
    with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        grams: set[str] = set()
        blocks: set[str] = set()
        units: set[str] = set()  # the UTF-16 code units of a secret's characters, in hex
        escapes: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET:
                continue
            n = min(RUN, len(secret))
            grams.update(secret[i : i + n] for i in range(len(secret) - n + 1))
            # Every run of n characters holds one of these whole.
            step = n // 2
            blocks.update(secret[i : i + step] for i in range(0, len(secret) - step + 1, step))
            for char in set(secret):
                utf16 = char.encode("utf-16-be")  # one \uXXXX escape, or a surrogate pair of them
                units.update(utf16[i : i + 2].hex() for i in range(0, len(utf16), 2))
                if char in '/"\\':
                    escapes.add(re.escape(char))
        # One alternative per first three hex digits, so that an escape of another character fails
        # at once; the cases are spelled out, since re.IGNORECASE would apply to the whole pattern.
        last_digits: dict[str, set[str]] = {}
        for unit in units:
            last_digits.setdefault(unit[:3], set()).update({unit[3], unit[3].upper()})
        escapes.update("u" + "".join(map(_either_case, head)) + f"[{''.join(sorted(last))}]"
                       for head, last in last_digits.items())
        # Each byte of a secret's characters → "a", any other → " ": runs of "a" are where a secret may be.
        alphabet = set("".join(grams).encode())
        self._table = bytes(0x61 if byte in alphabet else 0x20 for byte in range(256))
        self._marker = b"a" * min((len(gram.encode()) for gram in grams), default=1)
        self._separator = bytes([self._table.index(b" ")])
        self._clean: set[bytes] = set()
        self._blocks = re.compile("|".join(re.escape(block) for block in sorted(blocks)).encode())
        self._escaped = re.compile(rb"\\(?:" + "|".join(sorted(escapes)).encode() + rb")")
        # Every place where a run starts (a lookahead, so that overlapping runs are all found).
        longest_first = sorted(grams, key=len, reverse=True)
        self._grams = re.compile("(?=(" + "|".join(map(re.escape, longest_first)) + "))") if grams else None

    def suspect(self, content: bytes) -> bool:
        """Whether JSON ``content`` may hold a secret in some string: when not, it certainly holds none."""
        if self._grams is None:
            return False
        if b"\\" in content:
            if self._escaped.search(content) is not None:
                return True
            if b'\\"' in content:  # the quotes do not tell the strings from the rest
                return self._holds_run(content, _STRETCHES) is not False
        # Between every other pair of quotes: the strings, without the numbers around them.
        return self._holds_run(self._separator.join(content.split(b'"')[1::2]), len(content)) is not False

    def text(self, text: str) -> str:
        """``text`` with every run of a secret masked."""
        data = text.encode("utf-8", "surrogatepass")
        if self._grams is None or self._holds_run(data, len(data)) is False:
            return text
        spans: list[list[int]] = []
        for match in self._grams.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        parts, done = [], 0
        for start, end in spans:
            parts += [text[done:start], MASK]
            done = end
        parts.append(text[done:])
        return "".join(parts)

    def json(self, value: Any) -> Any:
        """A parsed JSON value with every string in it (object keys too) scrubbed."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, dict):
            return {self.text(key): self.json(item) for key, item in value.items()}
        return value

    def _holds_run(self, data: bytes, budget: int) -> bool | None:
        """Whether ``data`` may hold, unescaped, a run of a secret: one of its blocks in a stretch
        of its characters as long as a run. ``None``: more than ``budget`` stretches to look at."""
        shape = data.translate(self._table)
        marker, blocks, clean = self._marker, self._blocks, self._clean
        start = shape.find(marker)
        while start >= 0:
            if budget == 0:
                return None
            budget -= 1
            end = shape.find(b" ", start)
            if end < 0:
                end = len(data)
            stretch = data[start:end]
            if stretch not in clean:
                if blocks.search(stretch):
                    return True
                if len(clean) < _CLEAN_STRETCHES:
                    clean.add(stretch)
            start = shape.find(marker, end)
        return False


def _either_case(digit: str) -> str:
    return f"[{digit}{digit.upper()}]" if digit.isalpha() else digit
