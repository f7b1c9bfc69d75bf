"""`batchrun.label.formulas`: which cells a spreadsheet would run, and how they are kept as text."""

from __future__ import annotations

import pytest

from batchrun.label.formulas import defuse, is_formula


@pytest.mark.parametrize("text", ["=1+1", "+cmd", "-cmd|' /C calc'!A0", "@SUM(A1)", "\t=1", "\r=1", "＝1", "＋x",
                                  "－x", "＠x", "-", "+", "=", "-1-1", "-x"])
def test_formulas_get_a_quote_in_front(text: str) -> None:
    assert is_formula(text)
    assert defuse(text) == "'" + text


@pytest.mark.parametrize("text", ["", "positive", "-1", "+2.5", "-3e4", "-.5", "1-1", " =1", "'=1", "a=b"])
def test_other_cells_and_plain_numbers_are_left_alone(text: str) -> None:
    assert not is_formula(text)
    assert defuse(text) == text
