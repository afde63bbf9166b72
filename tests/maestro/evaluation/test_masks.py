"""maestro.evaluation.masks: Dice, the agreement of two masks and a mask moved by a sub-pixel
displacement, against hand-computed cases and naive implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maestro.evaluation.masks import dice, mask_agreement, moved_mask


def _square(shape: tuple[int, int] = (20, 20)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[5:9, 6:10] = True
    return m


def _naive_dice(a: np.ndarray, b: np.ndarray) -> float:
    both = either_a = either_b = 0
    for x, y in zip(a.ravel().tolist(), b.ravel().tolist()):
        both += x and y
        either_a += x
        either_b += y
    return 2.0 * both / (either_a + either_b) if either_a + either_b else math.nan


def _naive_moved(mask: np.ndarray, row_px: float, col_px: float) -> np.ndarray:
    """Bilinear interpolation written out: out(r, c) = in(r - row_px, c - col_px), 0 outside."""
    h, w = mask.shape
    src = mask.astype(float)
    out = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            y, x = r - row_px, c - col_px
            y0, x0 = math.floor(y), math.floor(x)
            fy, fx = y - y0, x - x0
            value = 0.0
            for dy, wy in ((0, 1.0 - fy), (1, fy)):
                for dx, wx in ((0, 1.0 - fx), (1, fx)):
                    yy, xx = y0 + dy, x0 + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        value += wy * wx * src[yy, xx]
            out[r, c] = value
    return out >= 0.5


def test_dice_hand_computed() -> None:
    a = np.zeros((6, 6), bool)
    b = np.zeros((6, 6), bool)
    a[1:3, 1:3] = True
    b[1:3, 2:4] = True
    assert dice(a, b) == 2 * 2 / 8
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))
    with pytest.raises(ValueError, match="same shape"):
        dice(a, a[:3])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_dice_matches_a_naive_count(seed: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random((7, 9)) < density
    b = rng.random((7, 9)) < density
    expected = _naive_dice(a, b)
    assert (math.isnan(expected) and math.isnan(dice(a, b))) or dice(a, b) == expected


def test_agreement_hand_computed() -> None:
    a = np.zeros((6, 6), bool)
    b = np.zeros((6, 6), bool)
    a[1:3, 1:3] = True
    b[1:3, 2:4] = True
    agr = mask_agreement(a, b, (2.0, 3.0))
    assert agr.dice == pytest.approx(2 * 2 / 8)
    assert agr.centroid_distance_mm == pytest.approx(3.0)
    empty = mask_agreement(np.zeros((2, 2), bool), np.zeros((2, 2), bool), (1.0, 1.0))
    assert math.isnan(empty.dice) and math.isnan(empty.centroid_distance_mm)
    assert mask_agreement(a, b, (1.0, 1.0), tracked_centroid_px=(1.5, 2.5)).centroid_distance_mm == 0.0


def test_moved_mask_hand_computed() -> None:
    m = _square()
    np.testing.assert_array_equal(moved_mask(m, 0.0, 0.0), m)
    np.testing.assert_array_equal(moved_mask(m, 3.0, -2.0), np.roll(np.roll(m, 3, 0), -2, 1))
    # 0.4 px: each pixel keeps >= 0.6 of its own value, the next gets 0.4 -> unchanged
    np.testing.assert_array_equal(moved_mask(m, 0.4, 0.0), m)
    # 0.6 px: the first row drops to 0.4, a new row below reaches 0.6 -> moved by one
    np.testing.assert_array_equal(moved_mask(m, 0.6, 0.0), np.roll(m, 1, 0))
    assert not moved_mask(m, math.nan, 0.0).any()
    assert not moved_mask(m, 30.0, 0.0).any()  # moved out of the image
    with pytest.raises(ValueError, match="^mask: must"):
        moved_mask(np.zeros(4, dtype=bool), 0.0, 0.0)


@settings(max_examples=40, deadline=None)
@given(st.floats(-6.0, 6.0), st.floats(-6.0, 6.0))
def test_moved_mask_matches_naive_bilinear(row_px: float, col_px: float) -> None:
    m = _square((14, 16))
    got = moved_mask(m, row_px, col_px)
    want = _naive_moved(m, row_px, col_px)
    # Only a pixel whose interpolated value is within rounding of the 0.5 threshold may differ.
    h, w = m.shape
    near = np.zeros_like(got)
    for r in range(h):
        for c in range(w):
            y, x = r - row_px, c - col_px
            near[r, c] = abs((y % 1.0) - 0.5) < 1e-9 or abs((x % 1.0) - 0.5) < 1e-9
    assert not ((got != want) & ~near).any()
