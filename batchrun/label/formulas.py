"""Cells that a spreadsheet would run as formulas, written as text instead.

A spreadsheet opening a CSV or TSV file evaluates a cell that starts with ``=``, ``+``, ``-``
or ``@`` (some also after a leading tab or carriage return): ``=HYPERLINK(…)`` or ``=cmd|…``
in a labeled file can leak the sheet's data or run a command when someone opens it. Model
answers can be steered by the data they read, and the data may come from anyone, so `defuse`
puts a ``'`` in front of such a cell, the usual mark of text in a spreadsheet; the csv module
then quotes the cell as it would any other. The fullwidth ``＝ ＋ － ＠`` count too: some
spreadsheets read them as their ASCII forms, and the cost is a ``'`` on rare text.

A cell that is a plain decimal number (``-1``, ``+2.5``, ``-3e4``) is left alone: it is
evaluated to that number and nothing else, and a ``'`` would turn every negative amount into
text that no longer sums.
"""

from __future__ import annotations

import re

_STARTS = frozenset("=+-@\t\r＝＋－＠")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def is_formula(text: str) -> bool:
    """Whether a spreadsheet could run ``text`` as a formula."""
    return bool(text) and text[0] in _STARTS and _NUMBER.fullmatch(text) is None


def defuse(text: str) -> str:
    """``text``, with a ``'`` in front when it `is_formula`."""
    return "'" + text if is_formula(text) else text
