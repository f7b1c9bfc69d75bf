"""Counts with their noun, in the number it takes: ``1 request``, ``2 requests``."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with thousands separators and ``noun``, or ``plural`` (``noun`` + "s" when not
    given) unless ``n`` is 1."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
