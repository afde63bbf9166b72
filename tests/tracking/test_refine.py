"""Tests of the Gauss-Newton sub-pixel refinement (tracking/refine.py) and its use by the
tracker. The naive reference below re-implements the same steps with plain Python loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.tracking.naive import keys_kernel_naive, keys_warp_naive
from tracking.refine import (
    _REFINE_DIVERGED,
    _REFINE_NONFINITE,
    _REFINE_OK,
    _REFINE_OUTSIDE,
    REFINE_MAX_ITER,
    REFINE_TOL_PX,
    keys_weights,
    prepare_refinement,
)
from tracking.tracker import TemplateTracker


def _scene(shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    """An asymmetric, band-limited scene: an elliptical blob, a smaller bright dot on one
    side and a soft edge, all evaluated analytically at the pixel centres."""
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    y, x = r - centre[0], c - centre[1]
    blob = np.exp(-((y / 3.0) ** 2 + (x / 2.2) ** 2))
    dot = 0.7 * np.exp(-(((y - 2.5) / 1.2) ** 2 + ((x + 4.0) / 1.2) ** 2))
    edge = 0.5 * (1.0 + np.tanh((x - 6.0) / 1.5))
    return 100.0 + 80.0 * blob + 60.0 * dot + 40.0 * edge


def _refine_naive(image, tmpl, grad_r, grad_c, row0, col0, d_row, d_col):
    h, w = tmpl.shape
    tz = tmpl - tmpl.mean()
    hess = np.array([[np.sum(grad_r * grad_r), np.sum(grad_r * grad_c)],
                     [np.sum(grad_r * grad_c), np.sum(grad_c * grad_c)]])
    hinv = np.linalg.inv(hess)
    for _ in range(REFINE_MAX_ITER):
        pr, pc = row0 + d_row, col0 + d_col
        warped = keys_warp_naive(image, pr, pc, (h, w))
        wz = warped - warped.mean()
        gain = np.sum(wz * tz) / np.sum(tz * tz)
        e = wz - gain * tz
        step = hinv @ np.array([np.sum(grad_r * e), np.sum(grad_c * e)]) / gain
        d_row -= step[0]
        d_col -= step[1]
        if abs(step[0]) < REFINE_TOL_PX and abs(step[1]) < REFINE_TOL_PX:
            break
    return d_row, d_col


def test_keys_weights_hand_computed() -> None:
    np.testing.assert_allclose(keys_weights(0.0), [0.0, 1.0, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(keys_weights(0.5), [-0.0625, 0.5625, 0.5625, -0.0625], atol=1e-15)


@pytest.mark.parametrize("t", np.linspace(0.0, 0.999, 17))
def test_keys_weights_match_the_kernel_and_sum_to_one(t: float) -> None:
    expected = [keys_kernel_naive(t + 1.0), keys_kernel_naive(t), keys_kernel_naive(1.0 - t), keys_kernel_naive(2.0 - t)]
    np.testing.assert_allclose(keys_weights(t), expected, atol=1e-14)
    assert keys_weights(t).sum() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("t", [-0.1, 1.0, math.nan])
def test_keys_weights_reject_offsets_outside_0_1(t: float) -> None:
    with pytest.raises(ValueError, match="^t: must"):
        keys_weights(t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [(0.3, -0.45), (-0.2, 0.1), (1.35, 0.7), (0.0, 0.0)])
def test_kernel_matches_the_naive_reference(dtype: type, shift: tuple[float, float]) -> None:
    ref = _scene((40, 40), (20.0, 20.0))
    image = _scene((40, 40), (20.0 + shift[0], 20.0 + shift[1])).astype(dtype)
    origin, shape = (12, 11), (16, 18)
    rt = prepare_refinement(ref, origin, shape)
    assert rt is not None
    start = (round(shift[0]), round(shift[1]))
    assert rt.refine(image, *start) == _REFINE_OK
    naive = _refine_naive(image, ref[12:28, 11:29], rt.grad_r, rt.grad_c, 12, 11, *start)
    np.testing.assert_allclose(rt.result[:2], naive, atol=1e-7)
    # and it recovers the shift of the band-limited scene closely
    np.testing.assert_allclose(rt.result[:2], shift, atol=0.02)


def test_refinement_reduces_the_parabolic_bias() -> None:
    """On a noise-free asymmetric scene the refined tracker is more accurate. (The large
    gain, a quarter pixel of bias removed, shows on the noisy, textured phantom: see
    tests/maestro/test_accuracy_system.py.)"""
    ref = _scene((48, 48), (24.0, 24.0))
    mask = np.zeros(ref.shape, dtype=bool)
    mask[21:28, 22:27] = True
    errors: dict[bool, list[float]] = {True: [], False: []}
    for refine in (True, False):
        tracker = TemplateTracker(ref, mask, (1.0, 1.0), context_mm=4.0, search_mm=4.0,
                                  dtype=np.float64, refine=refine)
        for dy in np.linspace(-1.0, 1.0, 9):
            for dx in np.linspace(-1.0, 1.0, 9):
                r = tracker.track(_scene((48, 48), (24.0 + dy, 24.0 + dx)), predicted_mm=(0.0, 0.0))
                errors[refine].append(math.hypot(r.row_px - dy, r.col_px - dx))
    assert max(errors[True]) < 0.02
    assert np.mean(errors[True]) < 0.7 * np.mean(errors[False])


def test_nonfinite_and_outside_give_a_status_not_an_exception() -> None:
    ref = _scene((40, 40), (20.0, 20.0))
    rt = prepare_refinement(ref, (12, 11), (16, 18))
    assert rt is not None
    bad = ref.copy()
    bad[20, 20] = np.nan
    assert rt.refine(bad, 0.0, 0.0) == _REFINE_NONFINITE
    assert rt.refine(ref, -11.5, 0.0) == _REFINE_OUTSIDE
    assert rt.refine(ref, 0.0, 12.0) == _REFINE_OUTSIDE
    # an unrelated image cannot pull the answer further than a pixel unnoticed
    noise = np.random.default_rng(0).normal(100.0, 10.0, ref.shape)
    assert rt.refine(noise, 0.0, 0.0) in (_REFINE_OK, _REFINE_DIVERGED, 3)
    if rt.refine(noise, 0.0, 0.0) == _REFINE_OK:
        assert np.all(np.abs(rt.result[:2]) <= 1.0)


def test_tracker_keeps_the_zncc_answer_when_refinement_cannot_run() -> None:
    """A template touching the image's top row: the cubic taps would need row -1, so the
    refinement reports OUTSIDE and the tracker returns the ZNCC answer unchanged."""
    ref = _scene((40, 40), (3.0, 20.0))
    mask = np.zeros(ref.shape, dtype=bool)
    mask[0:6, 17:23] = True
    image = _scene((40, 40), (3.2, 19.7))
    refined = TemplateTracker(ref, mask, (1.0, 1.0), context_mm=3.0, search_mm=3.0, dtype=np.float64)
    plain = TemplateTracker(ref, mask, (1.0, 1.0), context_mm=3.0, search_mm=3.0, dtype=np.float64,
                            refine=False)
    assert refined.template_origin_px[0] == 0
    a, b = refined.track(image), plain.track(image)
    assert a.valid and b.valid
    assert (a.row_px, a.col_px) == (b.row_px, b.col_px)


def test_prepare_refinement_rejects_flat_and_one_dimensional_templates() -> None:
    flat = np.full((20, 20), 5.0)
    assert prepare_refinement(flat, (5, 5), (8, 8)) is None
    ramp_rows = np.repeat(np.linspace(0.0, 10.0, 20)[:, None], 20, axis=1)  # no column gradient
    assert prepare_refinement(ramp_rows, (5, 5), (8, 8)) is None
    with pytest.raises(ValueError, match="origin_px, shape"):
        prepare_refinement(flat, (15, 15), (8, 8))
    with pytest.raises(ValueError, match="origin_px, shape"):
        prepare_refinement(flat, (0, 0), (1, 8))


def test_nonfinite_context_falls_back_to_the_template_gradient() -> None:
    ref = _scene((40, 40), (20.0, 20.0))
    ref[11, :] = np.nan  # the row just above the template
    rt = prepare_refinement(ref, (12, 11), (16, 18))
    assert rt is not None and np.isfinite(rt.grad_r).all()
    ref[15, 15] = np.inf  # inside the template
    assert prepare_refinement(ref, (12, 11), (16, 18)) is None


def _weighted_refine_naive(image, tmpl, grad_r, grad_c, weight, row0, col0, d_row, d_col):
    """Weighted Gauss-Newton, written from its definition: minimise
    sum(w (W - m - g T')^2) with m, g the weighted mean and gain."""
    h, w = tmpl.shape
    sw = weight.sum()
    tz = tmpl - (weight * tmpl).sum() / sw
    hess = np.array([[np.sum(weight * grad_r * grad_r), np.sum(weight * grad_r * grad_c)],
                     [np.sum(weight * grad_r * grad_c), np.sum(weight * grad_c * grad_c)]])
    hinv = np.linalg.inv(hess)
    for _ in range(REFINE_MAX_ITER):
        pr, pc = row0 + d_row, col0 + d_col
        warped = keys_warp_naive(image, pr, pc, (h, w))
        m = (weight * warped).sum() / sw
        gain = np.sum(weight * (warped - m) * tz) / np.sum(weight * tz * tz)
        e = warped - m - gain * tz
        step = hinv @ np.array([np.sum(weight * grad_r * e), np.sum(weight * grad_c * e)]) / gain
        d_row -= step[0]
        d_col -= step[1]
        if abs(step[0]) < REFINE_TOL_PX and abs(step[1]) < REFINE_TOL_PX:
            break
    return d_row, d_col


@pytest.mark.parametrize("shift", [(0.3, -0.45), (1.35, 0.7)])
def test_weighted_kernel_matches_the_naive_weighted_reference(shift: tuple[float, float]) -> None:
    ref = _scene((40, 40), (20.0, 20.0))
    image = _scene((40, 40), (20.0 + shift[0], 20.0 + shift[1]))
    origin, shape = (12, 11), (16, 18)
    r, c = np.mgrid[0:16, 0:18]
    weight = np.exp(-(((r - 8.0) / 5.0) ** 2 + ((c - 9.0) / 4.0) ** 2))
    rt = prepare_refinement(ref, origin, shape, max_move_px=2.0, weight=weight)
    unweighted = prepare_refinement(ref, origin, shape, max_move_px=2.0)
    assert rt is not None and unweighted is not None
    start = (round(shift[0]), round(shift[1]))
    assert rt.refine(image, *start) == _REFINE_OK
    naive = _weighted_refine_naive(image, ref[12:28, 11:29], unweighted.grad_r, unweighted.grad_c, weight, 12, 11, *start)
    np.testing.assert_allclose(rt.result[:2], naive, atol=1e-7)
    np.testing.assert_allclose(rt.result[:2], shift, atol=0.02)
    # aligned: the (weighted) ZNCC of template and patch is close to 1
    assert rt.zncc > 0.999


def test_uniform_weights_give_the_unweighted_alignment_to_the_bit() -> None:
    ref = _scene((40, 40), (20.0, 20.0))
    image = _scene((40, 40), (20.4, 19.7))
    a = prepare_refinement(ref, (12, 11), (16, 18))
    b = prepare_refinement(ref, (12, 11), (16, 18), weight=np.ones((16, 18)))
    assert a is not None and b is not None
    assert a.refine(image, 0.0, 0.0) == b.refine(image, 0.0, 0.0) == _REFINE_OK
    assert a.result.tobytes() == b.result.tobytes()


def test_max_move_bounds_the_alignment() -> None:
    """The target-focused alignment is allowed further than the default pixel."""
    ref = _scene((40, 40), (20.0, 20.0))
    image = _scene((40, 40), (21.6, 20.0))
    tight = prepare_refinement(ref, (12, 11), (16, 18))
    loose = prepare_refinement(ref, (12, 11), (16, 18), max_move_px=2.5)
    assert tight is not None and loose is not None
    assert tight.refine(image, 0.0, 0.0) == _REFINE_DIVERGED
    assert loose.refine(image, 0.0, 0.0) == _REFINE_OK
    np.testing.assert_allclose(loose.result[:2], (1.6, 0.0), atol=0.02)


def test_bad_weights_are_refused() -> None:
    ref = _scene((40, 40), (20.0, 20.0))
    for weight in (np.ones((3, 3)), -np.ones((16, 18)), np.zeros((16, 18)), np.full((16, 18), np.nan)):
        with pytest.raises(ValueError, match="^weight: must"):
            prepare_refinement(ref, (12, 11), (16, 18), weight=weight)
