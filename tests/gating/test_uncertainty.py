"""The position-uncertainty allowance against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from gating.uncertainty import away_from_reference_mm


@pytest.mark.parametrize("row, col, u, expected", [
    (3.0, 4.0, 1.0, (3.6, 4.8)),       # |d| 5 -> 6 along (0.6, 0.8)
    (-2.0, 0.0, 0.5, (-2.5, 0.0)),
    (0.0, 0.0, 1.0, (0.0, 0.0)),       # no direction at the reference
    (3.0, 4.0, 0.0, (3.0, 4.0)),       # no allowance
])
def test_by_hand(row: float, col: float, u: float, expected: tuple[float, float]) -> None:
    assert away_from_reference_mm(row, col, u) == pytest.approx(expected)


def test_nan_stays_nan() -> None:
    r, c = away_from_reference_mm(math.nan, 1.0, 1.0)
    assert math.isnan(r)
