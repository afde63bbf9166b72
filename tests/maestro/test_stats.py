"""StreamingHistogram against numpy on the same values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maestro.stats import StreamingHistogram


def test_hand_computed() -> None:
    h = StreamingHistogram(1.0, 100.0)
    for v in (1.2, 2.7, 3.1, 50.0, math.nan, -1.0):
        h.add(v)
    assert h.n == 4
    assert h.mean == pytest.approx((1.2 + 2.7 + 3.1 + 50.0) / 4)
    assert h.max == 50.0
    assert h.percentile(0) == 1.5  # centre of bin [1, 2)
    assert h.percentile(100) == 50.0  # capped at the exact max


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 500.0), min_size=1, max_size=300), st.floats(0.0, 100.0))
def test_percentiles_within_one_bin_of_numpy(values: list[float], q: float) -> None:
    h = StreamingHistogram(0.5, 1000.0)
    for v in values:
        h.add(v)
    exact = np.percentile(values, q, method="lower"), np.percentile(values, q, method="higher")
    assert min(exact) - 0.5 <= h.percentile(q) <= max(exact) + 0.5
    assert h.max == max(values)


def test_values_beyond_the_range_keep_an_exact_max() -> None:
    h = StreamingHistogram(1.0, 10.0)
    h.add(5.0)
    h.add(1e6)
    assert h.max == 1e6 and h.percentile(100) == 1e6
    assert h.percentile(0) == 5.5
    assert h.summary({"p50": 50})["n"] == 2
