"""Tests of tracking.zncc: the ZNCC kernel against a naive reference and OpenCV, and the
sub-pixel peak against a naive least-squares fit and known shifts."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

from tests.tracking.naive import subpixel_peak_naive, zncc_naive
from tracking.zncc import (
    FLAT_VARIANCE_RATIO,
    SHARPNESS_EXCLUSION_PX,
    _vector_step_floats,
    _zncc_kernel,
    pad_template,
    prepare_template,
    subpixel_peak,
    window_buffers,
    zncc_map,
)

DTYPES = (np.float32, np.float64)


def _smooth_texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma)


def _structured_image(
    rng: np.random.Generator, shape: tuple[int, int], offset: float = 300.0
) -> np.ndarray:
    """Anatomy-like: smooth texture, a bright disk, a gradient, a little noise, an offset."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    disk = ((rows - shape[0] * 0.45) ** 2 + (cols - shape[1] * 0.55) ** 2) < (shape[0] * 0.12) ** 2
    image = (
        offset
        + 40.0 * _smooth_texture(rng, shape, 2.5)
        + 60.0 * ndimage.gaussian_filter(disk.astype(float), 1.0)
        + 0.2 * cols
        + 2.0 * rng.normal(size=shape)
    )
    return image


def _images(
    kind: str, dtype: type[np.floating], seed: int, offset: float = 300.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        image = rng.normal(size=(41, 53))
        template = image[9:22, 17:33].copy()
    else:
        image = _structured_image(rng, (64, 72), offset)
        template = image[20:43, 28:51].copy()
    return image.astype(dtype), template.astype(dtype)


#: Agreement with the float64 naive reference: the kernel sums its numerators in float32
#: (tracking/zncc.py), ~1e-7 relative per sum, so scores agree to ~1e-7; 1e-6 leaves a
#: margin and still fails on any real indexing or running-sum error (those give >= 1e-3).
SCORE_ATOL = 1e-6


def _opencv(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """OpenCV's TM_CCOEFF_NORMED map; OpenCV accepts only 8-bit or float32 input, so
    float64 data is compared through its float32 rounding."""
    return cv2.matchTemplate(
        image.astype(np.float32), template.astype(np.float32), cv2.TM_CCOEFF_NORMED
    )


# --------------------------------------------------------------------------- kernel


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_zncc_map_matches_naive(kind: str, dtype: type[np.floating]) -> None:
    image, template = _images(kind, dtype, seed=1)
    scores = zncc_map(image, template)
    expected = zncc_naive(image, template)
    assert scores.shape == expected.shape == (
        image.shape[0] - template.shape[0] + 1,
        image.shape[1] - template.shape[1] + 1,
    )
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, rtol=0, atol=SCORE_ATOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_zncc_map_matches_opencv(kind: str, dtype: type[np.floating]) -> None:
    """OpenCV correlates through a float32 DFT, which loses ~1e-4 to a large intensity
    offset (see test_large_intensity_offset_keeps_float32_accurate); the images here
    have a small one so that OpenCV itself is accurate to 1e-4."""
    image, template = _images(kind, dtype, seed=2, offset=10.0)
    scores = zncc_map(image, template)
    reference = _opencv(image, template)
    assert reference.shape == scores.shape
    assert np.unravel_index(np.argmax(scores), scores.shape) == np.unravel_index(
        np.argmax(reference), reference.shape
    )
    np.testing.assert_allclose(scores, reference, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zncc_map_matches_opencv_on_shifted_target(dtype: type[np.floating]) -> None:
    """The integer peak found in a second frame agrees with OpenCV's."""
    rng = np.random.default_rng(3)
    frame0 = _structured_image(rng, (80, 80), offset=10.0)
    frame1 = ndimage.shift(frame0, (3.4, -2.2), order=3, mode="nearest")
    template = frame0[25:50, 30:52].astype(dtype)
    image = frame1.astype(dtype)
    scores = zncc_map(image, template)
    reference = _opencv(image, template)
    peak = np.unravel_index(np.argmax(scores), scores.shape)
    assert peak == np.unravel_index(np.argmax(reference), reference.shape)
    assert peak == (28, 28)
    np.testing.assert_allclose(scores, reference, rtol=0, atol=1e-4)


def test_float32_agrees_with_float64() -> None:
    image, template = _images("structured", np.float64, seed=4)
    scores64 = zncc_map(image, template)
    scores32 = zncc_map(image.astype(np.float32), template.astype(np.float32))
    assert np.abs(scores32 - scores64).max() < 1e-4


def test_large_intensity_offset_keeps_float32_accurate() -> None:
    """Regression: variance from sum of squares cancels catastrophically when the image
    has an offset much larger than its contrast, unless sums are shifted and float64."""
    image, template = _images("structured", np.float64, seed=5)
    offset = 20000.0
    expected = zncc_naive(image + offset, template + offset)
    scores32 = zncc_map((image + offset).astype(np.float32), (template + offset).astype(np.float32))
    # float32 storage of values near 2e4 has a resolution of 2e-3 (noise std 2): the
    # remaining error is the storage rounding, not the arithmetic.
    assert np.abs(scores32 - expected).max() < 1e-4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("row0", "col0", "n_rows", "n_cols"),
    [(0, 0, 1, 1), (0, 0, 3, 3), (1, 2, 3, 4), (3, 5, 7, 5), (0, 3, 5, 6), (2, 1, 9, 8),
     (4, 0, 8, 11), (2, 2, 4, 12), (1, 1, 6, 13), (5, 4, 6, 17), (0, 0, 19, 30)],
)
def test_kernel_window_offsets_match_naive(
    dtype: type[np.floating], row0: int, col0: int, n_rows: int, n_cols: int
) -> None:
    """The kernel reads a window of the full image by offsets (no copy), for windows
    narrower than a 4-wide block (scalar path), and wider: 4- and 8-wide blocks, with
    tails of 1-7 positions taken by overlapping blocks."""
    rng = np.random.default_rng(6)
    image = _structured_image(rng, (40, 48)).astype(dtype)
    template = image[10:20, 12:30]
    tmpl_zm, tmpl_ssd, mean = prepare_template(template)
    h, w = template.shape
    out = np.full((n_rows + 2, n_cols + 3), -7.0)
    # scratch full of NaN: the kernel must not read anything it did not write
    win, integ, integ2 = (np.full_like(b, np.nan) for b in window_buffers(n_rows, n_cols, (h, w)))
    _zncc_kernel(
        image, tmpl_zm, pad_template(tmpl_zm), tmpl_ssd, mean, row0, col0, n_rows, n_cols,
        win, integ, integ2, out,
    )
    window = image[row0 : row0 + n_rows + h - 1, col0 : col0 + n_cols + w - 1]
    np.testing.assert_allclose(out[:n_rows, :n_cols], zncc_naive(window, template), atol=SCORE_ATOL)
    # nothing outside the requested block is touched
    assert (out[n_rows:, :] == -7.0).all() and (out[:, n_cols:] == -7.0).all()


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("tmpl_w", [5, 8, 13, 16, 21, 24, 31, 33])
def test_template_padding_of_either_vector_step_matches_naive(
    monkeypatch: pytest.MonkeyPatch, lanes: int, tmpl_w: int
) -> None:
    """Both paddings the host may choose (8 columns, 16 on AVX-512) give the naive
    scores, for widths below, at and above each multiple."""
    import tracking.zncc as zncc

    monkeypatch.setattr(zncc, "_LANES", lanes)
    rng = np.random.default_rng(tmpl_w)
    image = _structured_image(rng, (40, 60))
    template = image[8:29, 10 : 10 + tmpl_w]
    tmpl_zm, tmpl_ssd, mean = prepare_template(template)
    tmpl_pad = pad_template(tmpl_zm)
    assert tmpl_pad.shape[1] % lanes == 0 and tmpl_pad.shape[1] - tmpl_w < lanes
    h, w = template.shape
    n_rows, n_cols = 11, 60 - w - 2
    out = np.empty((n_rows, n_cols))
    _zncc_kernel(image, tmpl_zm, tmpl_pad, tmpl_ssd, mean, 2, 1, n_rows, n_cols,
                 *window_buffers(n_rows, n_cols, (h, w)), out)
    window = image[2 : 2 + n_rows + h - 1, 1 : 1 + n_cols + w - 1]
    np.testing.assert_allclose(out, zncc_naive(window, template), atol=SCORE_ATOL)


@pytest.mark.parametrize(
    ("features", "step"),
    [("+avx2,+fma,-avx512f", 8), ("+avx2,+avx512f,+avx512bw", 16), ("+sse4.2", 8), ("", 8)],
)
def test_vector_step_follows_the_target_features(features: str, step: int) -> None:
    assert _vector_step_floats(features) == step


def test_hand_computed_scores() -> None:
    """Affine copies of the template score +1 or -1; an orthogonal pattern scores 0."""
    template = np.array([[0.0, 1.0], [2.0, 3.0]])
    image = np.zeros((2, 6))
    image[:, 0:2] = 5.0 + 2.0 * template  # gain and offset: +1
    image[:, 2:4] = 7.0 - 3.0 * template  # inverted: -1
    image[:, 4:6] = [[1.0, 0.0], [0.0, 1.0]]  # deviations (+-1) orthogonal to the template's
    scores = zncc_map(image, template)
    assert scores.shape == (1, 5)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert scores[0, 2] == pytest.approx(-1.0, abs=1e-12)
    assert scores[0, 4] == pytest.approx(0.0, abs=1e-12)
    # straddling position (columns 1..2): patch [[7, 7], [11, 1]], mean 6.5, by hand:
    # t' = [-1.5, -0.5, 0.5, 1.5], p' = [0.5, 0.5, 4.5, -5.5]
    # sum t'p' = -0.75 - 0.25 + 2.25 - 8.25 = -7; |t'|^2 = 5; |p'|^2 = 51
    assert scores[0, 1] == pytest.approx(-7.0 / math.sqrt(5.0 * 51.0), abs=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flat_patches_score_zero(dtype: type[np.floating]) -> None:
    rng = np.random.default_rng(7)
    image = rng.normal(size=(30, 30))
    image[5:20, 8:25] = 0.25  # flat region
    image = image.astype(dtype)
    template = image[0:6, 0:6].copy()
    scores = zncc_map(image, template)
    expected = zncc_naive(image, template)
    flat = np.zeros(scores.shape, dtype=bool)
    flat[5:15, 8:20] = True  # positions whose 6 x 6 patch lies inside the flat region
    assert (scores[flat] == 0.0).all()
    assert (expected[flat] == 0.0).all()
    np.testing.assert_allclose(scores, expected, atol=SCORE_ATOL)
    # OpenCV also scores perfectly flat patches 0; elsewhere the maps agree
    reference = _opencv(image, template)
    np.testing.assert_allclose(scores[~flat], reference[~flat], atol=1e-4)


def test_flat_threshold_is_relative_to_template() -> None:
    """A patch is flat when its variance falls to FLAT_VARIANCE_RATIO of the template's,
    whatever the absolute scale."""
    template = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    above = 1.0 + template * math.sqrt(FLAT_VARIANCE_RATIO) * 10.0  # variance ratio 100 x eps
    below = 1.0 + template * math.sqrt(FLAT_VARIANCE_RATIO) * 0.1  # variance ratio 0.01 x eps
    for scale in (1e-6, 1.0, 1e6):
        image = np.hstack([above, below]) * scale
        scores = zncc_map(image, template * scale)
        # 1e-4, not 1e-6: this patch's deviations are 1e-3 of its offset from the
        # template mean, and the float32 window copy keeps ~7 digits of that offset.
        assert scores[0, 0] == pytest.approx(1.0, abs=1e-4)
        assert scores[0, 3] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_pixels_only_affect_their_patches(dtype: type[np.floating], bad: float) -> None:
    image, template = _images("structured", dtype, seed=8)
    image = image.copy()
    image[30, 40] = bad
    image[5, 3] = bad
    scores = zncc_map(image, template)
    expected = zncc_naive(image, template)
    nan_expected = np.isnan(expected)
    assert nan_expected.sum() > 0
    np.testing.assert_array_equal(np.isnan(scores), nan_expected)
    np.testing.assert_allclose(scores[~nan_expected], expected[~nan_expected], atol=SCORE_ATOL)


def test_all_nan_image_does_not_crash() -> None:
    image = np.full((20, 20), np.nan, dtype=np.float32)
    scores = zncc_map(image, np.arange(16.0).reshape(4, 4))
    assert np.isnan(scores).all()
    row, col, peak, sharpness, at_edge = subpixel_peak(scores)
    assert math.isnan(row) and math.isnan(col) and math.isnan(peak) and math.isnan(sharpness)
    assert at_edge is False


def test_out_buffer_is_used_and_readonly_noncontiguous_images_accepted() -> None:
    image, template = _images("random", np.float32, seed=9)
    out = np.empty((image.shape[0] - template.shape[0] + 1, image.shape[1] - template.shape[1] + 1))
    readonly = image.copy()
    readonly.flags.writeable = False
    assert zncc_map(readonly, template, out=out) is out
    np.testing.assert_allclose(out, zncc_naive(image, template), atol=SCORE_ATOL)
    strided = np.asfortranarray(image)
    np.testing.assert_allclose(zncc_map(strided, template), out, atol=1e-12)


@pytest.mark.parametrize(
    ("image", "template", "out", "match"),
    [
        (np.zeros((4, 4, 2), np.float32), np.eye(2), None, "image: must be a 2D"),
        (np.zeros((4, 4), np.int16), np.eye(2), None, "image: dtype must be float32 or float64"),
        ([[0.0, 1.0], [2.0, 3.0]], np.eye(2), None, "image: must be a 2D numpy array"),
        (np.zeros((4, 4)), np.eye(5), None, "template: shape"),
        (np.zeros((4, 4)), np.ones((2, 2)), None, "template: must not be constant"),
        (np.zeros((4, 4)), np.array([[0.0, np.nan]]), None, "template: must be finite"),
        (np.zeros((4, 4)), np.zeros((0, 2)), None, "template: must not be empty"),
        (np.zeros((4, 4)), np.arange(3.0), None, "template: must be a 2D"),
        (np.zeros((4, 4)), np.eye(2), np.zeros((3, 2)), "out: must be"),
        (np.zeros((4, 4)), np.eye(2), np.zeros((3, 3), np.float32), "out: must be"),
    ],
)
def test_zncc_map_rejects_bad_arguments(
    image: object, template: np.ndarray, out: np.ndarray | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        zncc_map(image, template, out=out)


# --------------------------------------------------------------------------- sub-pixel peak


def _gaussian_scene(
    shape: tuple[int, int], centre: tuple[float, float], sigma: float
) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shift_px",
    [
        (0.0, 0.0),
        (0.3, -0.2),
        (-0.45, 0.45),
        (0.45, 0.25),  # oblique correlation ridge: needs the 2D fit's cross term
        (0.25, 0.45),
        (1.25, 2.7),
        (-3.6, 0.1),
        (0.5, -1.5),
    ],
)
def test_subpixel_peak_recovers_known_shift(
    dtype: type[np.floating], shift_px: tuple[float, float]
) -> None:
    """A smooth pattern shifted by scipy.ndimage.shift is found within 0.1 px."""
    rng = np.random.default_rng(10)
    base = (
        _gaussian_scene((64, 64), (31.0, 33.0), 4.0)
        + 0.5 * _gaussian_scene((64, 64), (24.0, 40.0), 3.0)
        + 0.3 * _smooth_texture(rng, (64, 64), 3.0)
    )
    shifted = ndimage.shift(base, shift_px, order=3, mode="nearest")
    t_row, t_col = 20, 22
    template = base[t_row : t_row + 24, t_col : t_col + 22]
    scores = zncc_map(shifted.astype(dtype), template.astype(dtype))
    row, col, peak, sharpness, at_edge = subpixel_peak(scores)
    assert not at_edge
    assert row - t_row == pytest.approx(shift_px[0], abs=0.1)
    assert col - t_col == pytest.approx(shift_px[1], abs=0.1)
    assert 0.98 < peak <= 1.0
    assert sharpness > 0.5


@pytest.mark.parametrize("seed", range(6))
def test_subpixel_peak_matches_naive_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = ndimage.gaussian_filter(rng.normal(size=(13, 17)), 1.5)
    if seed % 2:
        scores[rng.integers(0, 13, 5), rng.integers(0, 17, 5)] = np.nan
    got = subpixel_peak(scores)
    expected = subpixel_peak_naive(scores)
    assert got[4] == expected[4]
    np.testing.assert_allclose(got[:4], expected[:4], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("vertex", "hessian"),
    [
        ((0.3, -0.2), ((-2.0, 0.5), (0.5, -1.0))),
        ((-0.45, 0.1), ((-1.0, -0.7), (-0.7, -3.0))),
        ((0.0, 0.49), ((-0.2, 0.0), (0.0, -5.0))),
    ],
)
def test_subpixel_peak_is_exact_on_a_quadratic(
    vertex: tuple[float, float], hessian: tuple[tuple[float, float], tuple[float, float]]
) -> None:
    """On a concave quadratic surface the 3 x 3 least-squares fit is the surface itself,
    so the vertex (including the cross term) comes back exactly."""
    rows, cols = np.mgrid[0:9, 0:11].astype(float)
    u = rows - (4 + vertex[0])
    v = cols - (5 + vertex[1])
    (a, b), (_, c) = hessian
    scores = 0.9 + 0.5 * (a * u * u + 2 * b * u * v + c * v * v) * 0.01
    row, col, peak, _, at_edge = subpixel_peak(scores)
    assert (row, col) == pytest.approx((4 + vertex[0], 5 + vertex[1]), abs=1e-9)
    assert peak == scores.max()
    assert not at_edge


def test_subpixel_peak_on_edge_takes_no_step_across_the_edge() -> None:
    rows, cols = np.mgrid[0:7, 0:9].astype(float)
    scores = 1.0 - 0.05 * ((rows + 0.7) ** 2 + (cols - 4.3) ** 2)  # true peak above row 0
    row, col, peak, _, at_edge = subpixel_peak(scores)
    assert at_edge
    assert row == 0.0  # no step across the border
    assert col == pytest.approx(4.3, abs=1e-9)  # a 1D parabola along the border is exact
    assert peak == scores[0, 4]
    corner = 1.0 - 0.05 * ((rows + 0.3) ** 2 + (cols + 0.2) ** 2)  # true peak off a corner
    row, col, peak, _, at_edge = subpixel_peak(corner)
    assert at_edge
    assert (row, col) == (0.0, 0.0)
    assert peak == corner[0, 0]


def test_sharpness_hand_computed() -> None:
    assert SHARPNESS_EXCLUSION_PX == 2
    scores = np.full((11, 11), 0.2)
    scores[4:7, 4:7] = 0.6
    scores[3, 3] = 0.5  # inside the 5 x 5 exclusion zone: ignored
    scores[5, 5] = 0.9
    scores[0, 10] = 0.8  # outside the zone: counted
    _, _, peak, sharpness, _ = subpixel_peak(scores)
    assert peak == 0.9
    n_outside = 11 * 11 - 25
    assert sharpness == pytest.approx(0.9 - (0.2 * (n_outside - 1) + 0.8) / n_outside, abs=1e-12)
    flat = np.full((9, 9), 0.5)
    assert subpixel_peak(flat)[3] == 0.0  # a flat map has no distinct peak
    small = np.full((3, 3), 0.5)
    small[1, 1] = 0.9
    assert subpixel_peak(small)[3] == 0.0  # no score outside the zone
