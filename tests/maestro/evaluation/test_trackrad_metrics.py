"""TrackRAD2025 metrics: each pinned on hand-computed cases, and against independent
computations (scipy / scikit-image used directly, the TrackRAD2025 recipe followed
literally on whole images)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist
from skimage.segmentation import find_boundaries

from maestro.evaluation import trackrad_metrics as tm


def _square(shape: tuple[int, int], r0: int, c0: int, size: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[r0 : r0 + size, c0 : c0 + size] = True
    return m


# -- resampling ---------------------------------------------------------------------------
def test_resample_doubles_2mm_pixels() -> None:
    mask = np.array([[True, False], [False, True]])
    out = tm.resample_mask_1mm(mask, (2.0, 2.0))
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(out, expected)


def test_resample_anisotropic_and_rounded_field_of_view() -> None:
    mask = np.zeros((3, 2), dtype=bool)
    mask[1, 1] = True
    out = tm.resample_mask_1mm(mask, (1.5, 2.5))  # 4.5 x 5 mm -> rounds to 4 (half to even) x 5
    assert out.shape == (4, 5)
    # Row centres 0.5, 1.5, 2.5, 3.5 mm fall in source rows 0, 1, 1, 2; col centres 0.5..4.5
    # mm in source cols 0, 0, 1, 1, 1 (2.5 mm is where source col 1 begins).
    expected = np.zeros((4, 5), dtype=bool)
    expected[1:3, 2:5] = True
    np.testing.assert_array_equal(out, expected)


def test_translated_mask_moves_by_whole_mm_and_drops_outside() -> None:
    mask = _square((10, 10), 2, 3, 2)
    out = tm.translated_mask_1mm(mask, (1.0, 1.0), 3.0, -2.0)
    np.testing.assert_array_equal(out, _square((10, 10), 5, 1, 2))
    assert not tm.translated_mask_1mm(mask, (1.0, 1.0), 50.0, 0.0).any()
    assert not tm.translated_mask_1mm(mask, (1.0, 1.0), math.nan, 0.0).any()
    # A sub-mm shift below half a pixel does not move a 1 mm mask; above half it does.
    np.testing.assert_array_equal(tm.translated_mask_1mm(mask, (1.0, 1.0), 0.4, 0.0), mask)
    np.testing.assert_array_equal(tm.translated_mask_1mm(mask, (1.0, 1.0), 0.6, 0.0), _square((10, 10), 3, 3, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_translated_mask_equals_naive_per_pixel_lookup(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((12, 9)) > 0.6
    spacing = (float(rng.uniform(0.7, 3.0)), float(rng.uniform(0.7, 3.0)))
    dr, dc = rng.uniform(-6, 6, size=2)
    out = tm.translated_mask_1mm(mask, spacing, dr, dc)
    h1, w1 = out.shape
    naive = np.zeros((h1, w1), dtype=bool)
    for i in range(h1):
        for j in range(w1):
            r = math.floor((i + 0.5 - dr) / spacing[0])
            c = math.floor((j + 0.5 - dc) / spacing[1])
            if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1]:
                naive[i, j] = mask[r, c]
    np.testing.assert_array_equal(out, naive)


def test_bad_masks_are_refused() -> None:
    with pytest.raises(ValueError, match="mask: must have dtype bool"):
        tm.resample_mask_1mm(np.ones((3, 3), dtype=np.uint8), (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing_mm"):
        tm.resample_mask_1mm(np.ones((3, 3), dtype=bool), (0.0, 1.0))
    with pytest.raises(ValueError, match="pred_1mm: shape"):
        tm.trackrad_frame(np.ones((3, 3), dtype=bool), np.ones((4, 4), dtype=bool))


# -- per-frame TrackRAD metrics, by hand --------------------------------------------------------
def test_single_pixels_three_mm_apart() -> None:
    pred = np.zeros((12, 12), dtype=bool)
    true = np.zeros((12, 12), dtype=bool)
    pred[5, 5] = True
    true[5, 8] = True
    f = tm.trackrad_frame(pred, true)
    assert f is not None
    assert f.dice == 0.0
    assert f.hd95_mm == pytest.approx(3.0)
    assert f.msd_mm == pytest.approx(3.0)
    assert f.centroid_mm == pytest.approx(3.0)
    assert f.shift_mm == (0.0, -3.0)
    assert not f.empty_prediction


def test_three_by_three_squares_one_mm_apart() -> None:
    # Surface = the 8-pixel ring. Prediction surface to label surface: the ring pixels of
    # the column the label lacks and the centre-row pixel that faces the label's interior
    # are 1 mm away, the other four 0: distances 0,0,1 / 1,1 / 0,0,1 -> mean 0.5, p95 1.
    true = _square((11, 11), 4, 4, 3)
    pred = _square((11, 11), 4, 5, 3)
    f = tm.trackrad_frame(pred, true)
    assert f is not None
    assert f.dice == pytest.approx(2 * 6 / 18)
    assert f.msd_mm == pytest.approx(0.5)
    assert f.hd95_mm == pytest.approx(1.0)
    assert f.centroid_mm == pytest.approx(1.0)


def test_hd95_interpolates_the_95th_percentile() -> None:
    # A 1-pixel-wide bar of 21 pixels against the same bar with one end pixel moved 10 mm
    # away: 20 distances of 0 and one of 10 from the prediction; p95 of 21 values is
    # value 19 + 0 * ... -> linear interpolation between sorted[19] = 0 and sorted[20] = 10
    # at 0.95 * 20 = 19.0 -> exactly 0; the label's side has the moved pixel's old place
    # at 1 mm from the bar.
    true = np.zeros((40, 40), dtype=bool)
    true[5, 5:26] = True
    pred = true.copy()
    pred[5, 25] = False
    pred[15, 25] = True
    f = tm.trackrad_frame(pred, true)
    assert f is not None
    d_pred = np.array([0.0] * 20 + [10.0])
    d_true = np.array([0.0] * 20 + [1.0])
    assert f.hd95_mm == pytest.approx(max(np.percentile(d_pred, 95), np.percentile(d_true, 95)))
    assert f.msd_mm == pytest.approx(d_pred.mean())


def test_empty_prediction_and_empty_label_rules() -> None:
    true = _square((30, 50), 4, 4, 3)
    f = tm.trackrad_frame(np.zeros_like(true), true)
    assert f is not None and f.empty_prediction
    assert f.dice == 0.0
    assert f.hd95_mm == f.msd_mm == f.centroid_mm == 50.0
    assert math.isnan(f.shift_mm[0])
    assert tm.trackrad_frame(true, np.zeros_like(true)) is None


def test_case_excludes_frame_zero_and_unlabelled_frames() -> None:
    first = _square((40, 40), 15, 15, 6)
    perfect = tm.trackrad_frame(first, first)
    off = tm.trackrad_frame(_square((40, 40), 15, 17, 6), first)
    assert perfect is not None and off is not None
    bad0 = tm.trackrad_frame(np.zeros_like(first), first)
    case = tm.trackrad_case([bad0, perfect, None, off], first)
    assert case.frames_scored == 2
    assert case.empty_predictions == 0
    assert case.dice == pytest.approx((1.0 + off.dice) / 2)
    assert case.centroid_mm == pytest.approx(1.0)
    empty = tm.trackrad_case([perfect], first)
    assert empty.frames_scored == 0 and math.isnan(empty.dice)


# -- per-frame TrackRAD metrics, independently ---------------------------------------------------
def _independent_frame(pred: np.ndarray, true: np.ndarray) -> tuple[float, float, float, float]:
    """Dice, HD95, MSD, centroid via scikit-image boundaries and brute-force distances."""
    dice = 2 * np.logical_and(pred, true).sum() / (pred.sum() + true.sum())
    bp = np.argwhere(find_boundaries(pred, connectivity=1, mode="inner"))
    bt = np.argwhere(find_boundaries(true, connectivity=1, mode="inner"))
    d = cdist(bp, bt)
    d_pt, d_tp = d.min(axis=1), d.min(axis=0)
    hd95 = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    com = np.linalg.norm(np.subtract(ndimage.center_of_mass(pred), ndimage.center_of_mass(true)))
    return float(dice), float(hd95), float(d_pt.mean()), float(com)


@pytest.mark.parametrize("seed", range(6))
def test_frame_metrics_equal_an_independent_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:80, 0:80]
    def blob(cy: float, cx: float) -> np.ndarray:
        a, b = rng.uniform(6, 14, size=2)
        return ((rr - cy) / a) ** 2 + ((cc - cx) / b) ** 2 + 0.15 * rng.standard_normal((80, 80)) <= 1.0
    true = blob(40, 40)
    pred = blob(40 + rng.uniform(-5, 5), 40 + rng.uniform(-5, 5))
    f = tm.trackrad_frame(pred, true)
    assert f is not None
    dice, hd95, msd, com = _independent_frame(pred, true)
    assert f.dice == pytest.approx(dice, abs=1e-12)
    assert f.hd95_mm == pytest.approx(hd95, abs=1e-9)
    assert f.msd_mm == pytest.approx(msd, abs=1e-9)
    assert f.centroid_mm == pytest.approx(com, abs=1e-9)


# -- dose metric ----------------------------------------------------------------------------
def _challenge_relative_d98(first: np.ndarray, shifts: np.ndarray, sigma: float) -> float:
    """The TrackRAD2025 recipe on the whole image, as the challenge's script runs it."""
    dilated = ndimage.binary_dilation(first, structure=ndimage.generate_binary_structure(2, 1), iterations=3)
    dose = (ndimage.gaussian_filter(dilated.astype(np.float32), sigma=sigma) > 0.25).astype(np.float64)
    total = np.zeros_like(dose)
    for s in shifts:
        if np.all(np.isfinite(s)):
            total += ndimage.shift(dose, s, order=3, mode="nearest")
    total /= len(shifts)
    return float(np.percentile(total[first], 2) / np.percentile(dose[first], 2))


def test_relative_d98_is_one_without_error_and_zero_when_always_missed() -> None:
    first = _square((120, 120), 50, 50, 12)
    assert tm.relative_d98(first, np.zeros((5, 2))) == pytest.approx(1.0, abs=1e-12)
    assert tm.relative_d98(first, np.full((5, 2), 60.0)) == pytest.approx(0.0, abs=1e-9)
    # Empty predictions contribute no dose: half of the frames empty halves the dose.
    half = np.array([[0.0, 0.0], [math.nan, math.nan]])
    assert tm.relative_d98(first, half) == pytest.approx(0.5, abs=1e-9)
    assert math.isnan(tm.relative_d98(first, np.empty((0, 2))))


@pytest.mark.parametrize(("seed", "sigma"), [(0, 4.0), (1, 6.0), (2, 4.0)])
def test_relative_d98_equals_the_challenge_recipe_on_whole_images(seed: int, sigma: float) -> None:
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:140, 0:140]
    first = ((rr - 70) / 11.0) ** 2 + ((cc - 66) / 8.0) ** 2 <= 1.0
    shifts = rng.normal(0.0, 3.0, size=(25, 2))
    shifts[3] = (math.nan, math.nan)
    shifts[7] = (40.0, -35.0)
    assert tm.relative_d98(first, shifts, sigma) == pytest.approx(
        _challenge_relative_d98(first, shifts, sigma), abs=1e-9
    )
