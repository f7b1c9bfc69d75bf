"""How an amount of US dollars is shown: four decimals, never a non-zero amount as free."""

from __future__ import annotations

import pytest

from batchrun.money import usd


@pytest.mark.parametrize(("value", "shown"), [
    (None, "unknown"),
    (0.0, "$0.0000"),
    (0.00005, "<$0.0001"),
    (0.0001, "$0.0001"),
    (1234.56789, "$1,234.5679"),
])
def test_an_amount_shows_with_four_decimals_and_a_tiny_one_as_below_the_smallest(value: float | None,
                                                                                  shown: str) -> None:
    assert usd(value) == shown
