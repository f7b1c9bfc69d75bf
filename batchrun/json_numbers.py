"""Numbers read from JSON (input lines, answers, output files, price tables): a JSON ``true``
parses to Python's ``True``, which is an ``int``, and is no count, status or price."""

from __future__ import annotations

from typing import TypeGuard


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer: an ``int`` that is not a bool."""
    return type(value) is int


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number: an ``int`` or a ``float``, not a bool."""
    return type(value) is int or type(value) is float
