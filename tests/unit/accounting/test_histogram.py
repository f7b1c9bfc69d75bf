"""Percentiles in bounded memory alone: within the relative error of the exact nearest rank,
whatever the values' number and order; merged and restored exactly."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.accounting.histogram import LogHistogram


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e7, allow_nan=False), min_size=1, max_size=300),
       st.floats(min_value=0.001, max_value=1.0))
def test_histogram_quantiles_are_within_the_stated_relative_error(values: list[float], q: float) -> None:
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    for quantile in (q, 0.5, 0.95, 0.99, 1.0):
        exact = nearest_rank(values, quantile)
        estimate = histogram.quantile(quantile)
        assert estimate is not None
        assert abs(estimate - exact) <= histogram.relative_error * exact * (1 + 1e-9) + 1e-9


def test_histogram_memory_is_bounded_by_the_range_not_the_count() -> None:
    histogram = LogHistogram()
    value = 0.001
    for _ in range(200_000):  # geometric sweep over 10 decades, many values per bucket
        histogram.add(value)
        value = value * 1.000_115 if value < 1e7 else 0.001
    bound = math.log(1e10) / math.log(histogram._gamma) + 2
    assert histogram.count == 200_000
    assert histogram.buckets <= bound < 2400


def test_histogram_ignores_what_is_not_a_latency_and_merges() -> None:
    a, b = LogHistogram(), LogHistogram()
    for value in (10.0, -1.0, float("nan"), float("inf")):
        a.add(value)
    b.add(30.0)
    a.merge(b)
    assert a.count == 2 and a.max == 30.0 and a.quantile(1.0) == pytest.approx(30.0, rel=0.005)
    assert LogHistogram().quantile(0.5) is None


def test_zeros_are_counted_apart_and_min_max_mean_are_exact() -> None:
    histogram = LogHistogram()
    for value in (0.0, 0.0, 3.0, 5.0):
        histogram.add(value)
    assert (histogram.zeros, histogram.min, histogram.max, histogram.mean) == (2, 0.0, 5.0, 2.0)
    assert histogram.quantile(0.5) == 0.0
    assert histogram.quantile(1.0) == pytest.approx(5.0, rel=histogram.relative_error)


def test_merged_parts_answer_as_one_histogram_of_every_value_and_a_state_restores_exactly() -> None:
    rng = random.Random(5)
    values = [0.0] * 300 + [rng.expovariate(2.0) for _ in range(2000)]
    whole, first, second = LogHistogram(), LogHistogram(), LogHistogram()
    for i, value in enumerate(values):
        whole.add(value)
        (first if i % 2 else second).add(value)
    first.merge(second)
    restored = LogHistogram.restore(first.state())
    for q in (0.1, 0.5, 0.99):
        assert first.quantile(q) == whole.quantile(q) == restored.quantile(q)
    assert restored.state() == first.state()
    assert LogHistogram.restore(LogHistogram().state()).state() == LogHistogram().state()


def test_histograms_of_different_errors_do_not_merge_and_odd_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="different relative errors"):
        LogHistogram(0.01).merge(LogHistogram(0.02))
    with pytest.raises(ValueError, match="relative_error"):
        LogHistogram(1.0)
    with pytest.raises(ValueError, match="q must be"):
        LogHistogram().quantile(0.0)
