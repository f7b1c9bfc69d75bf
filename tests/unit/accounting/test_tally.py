"""The per-model counters the report and the estimate share."""

from __future__ import annotations

import pytest

from batchrun.accounting.report import ModelTally
from batchrun.accounting.tally import PerModel, priced_total


def test_of_creates_a_models_counters_once_and_a_plain_lookup_never_does() -> None:
    models = PerModel(ModelTally)
    models.of("a").requests += 1
    models.of("a").requests += 1
    assert models["a"].requests == 2 and list(models) == ["a"]
    with pytest.raises(KeyError):
        models["never counted"]
    assert list(models) == ["a"]


@pytest.mark.parametrize(("costs", "expected"), [
    ([], (0.0, 0.0)),
    ([0.25, 0.5], (0.75, 0.75)),
    ([0.25, None, 0.5], (None, 0.75)),  # one model without a price: the total is unknown
])
def test_a_total_is_unknown_when_one_model_has_no_price(costs: list[float | None],
                                                         expected: tuple[float | None, float]) -> None:
    assert priced_total(costs) == expected
