"""Gating metrics: the beam timeline, gating accuracy, the true outside percentage and
ITV versus gating, each pinned on hand-computed cases (and the truth against the exact
boundary geometry)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gating.boundary import GatingGeometry
from maestro.evaluation import gating_metrics as gm


def _square(shape: tuple[int, int], r0: int, c0: int, size: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[r0 : r0 + size, c0 : c0 + size] = True
    return m


# -- beam timeline ---------------------------------------------------------------------------
def test_beam_on_seconds_by_hand() -> None:
    edges = np.arange(11, dtype=np.float64)
    on = gm.beam_on_seconds(edges, [2.5, 4.0, 4.0, 6.0], [True, False, False, True])
    np.testing.assert_allclose(on, [0, 0, 0.5, 1, 0, 0, 1, 1, 1, 1])
    assert gm.beam_on_seconds(edges, [], []).sum() == 0.0


def test_beam_on_periods_and_gaps_by_hand() -> None:
    starts, ends = gm.beam_on_periods([1.0, 2.0, 2.0, 3.5, 5.0], [True, False, False, True, False])
    np.testing.assert_array_equal(starts, [1.0, 3.5])
    np.testing.assert_array_equal(ends, [2.0, 5.0])
    # Hold 2.0-3.5 is an interruption; the hold from 5.0 to the end is not.
    np.testing.assert_allclose(gm.hold_gaps_s([1.0, 2.0, 3.5, 5.0], [True, False, True, False], 8.0), [1.5])
    np.testing.assert_allclose(gm.hold_gaps_s([1.0, 2.0, 3.0, 4.0, 6.0], [True, False, True, False, True], 8.0),
                               [1.0, 2.0])
    with pytest.raises(ValueError, match="change_times_s"):
        gm.beam_on_periods([2.0, 1.0], [True, False])


def test_weighted_quantile_by_hand() -> None:
    assert gm.weighted_quantile([3.0, 1.0, 2.0], [1.0, 1.0, 1.0], 0.5) == 2.0
    assert gm.weighted_quantile([3.0, 1.0, 2.0], [1.0, 1.0, 1.0], 1.0) == 3.0
    assert gm.weighted_quantile([1.0, 2.0], [19.0, 1.0], 0.95) == 1.0
    assert gm.weighted_quantile([1.0, 2.0], [18.0, 2.0], 0.95) == 2.0
    assert gm.weighted_quantile([1.0, math.nan, 5.0], [1.0, 5.0, 0.0], 0.95) == 1.0
    assert math.isnan(gm.weighted_quantile([1.0], [0.0], 0.5))


def test_gating_metrics_by_hand() -> None:
    # Four 1-s frames; beam on from 1.0 s to 3.0 s; the true target is out (50 %) in frame 1.
    edges = np.arange(5, dtype=np.float64)
    g = gm.gating_metrics(edges, [1.0, 3.0], [True, False], [0.0, 50.0, 0.0, 0.0], 10.0, [0.0, 2.0, 1.0, 3.0])
    assert g.duty_cycle == 0.5
    assert g.false_beam_on == 0.5  # 1 s of the 2 s on with the target out
    assert g.false_hold == pytest.approx(2.0 / 3.0)  # frames 0 and 3 held while inside
    assert g.residual_mean_mm == 1.5
    assert g.residual_p95_mm == 2.0
    assert g.interruptions == 0 and g.interruption_max_s == 0.0
    # Unknown truth (NaN) is left out of the truth-based shares.
    g2 = gm.gating_metrics(edges, [0.0, 1.5, 2.0], [True, False, True], [0.0, math.nan, 20.0, 0.0], 10.0,
                           [0.0, math.nan, 1.0, 1.0])
    assert g2.duty_cycle == pytest.approx(3.5 / 4)
    assert g2.false_beam_on == pytest.approx(1.0 / 3.0)
    assert g2.false_hold == 0.0
    assert g2.interruptions == 1 and g2.interruption_mean_s == pytest.approx(0.5)


# -- truth against the boundary -----------------------------------------------------------------
def test_label_sub_samples_against_the_boundary_by_hand() -> None:
    ref = np.zeros((9, 9), dtype=bool)
    ref[4, 4] = True
    geometry = GatingGeometry(ref, (1.0, 1.0), 0.0)
    label = np.zeros_like(ref)
    label[4, 5] = True  # one pixel to the right: sub-sample centres 0.125..0.875 mm away
    pts = gm.label_sample_points_px(label)
    assert pts.shape == (16, 2)
    d = geometry.distance_to_target_mm(pts)
    np.testing.assert_allclose(np.unique(np.round(d, 12)), [0.125, 0.375, 0.625, 0.875])
    assert gm.outside_pct_from_distances(d, 0.0) == 100.0
    assert gm.outside_pct_from_distances(d, 0.5) == 50.0
    assert gm.outside_pct_from_distances(d, 1.0) == 0.0
    assert math.isnan(gm.outside_pct_from_distances(np.empty(0), 1.0))
    # The label itself: every sub-sample inside, 0 % at any margin.
    assert gm.outside_pct_from_distances(geometry.distance_to_target_mm(gm.label_sample_points_px(ref)), 0.0) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outside_from_distances_accepts_float32_and_float64(dtype: type) -> None:
    d = np.array([0.0, 1.0, 2.0, 3.0], dtype=dtype)
    assert gm.outside_pct_from_distances(d, 1.5) == 50.0


def test_rigid_label_truth_agrees_with_the_exact_outside_pct() -> None:
    # For a label that is the reference moved by whole pixels, the sub-sample estimate
    # must agree with GatingGeometry.outside_pct's exact area within the sub-sampling error.
    rr, cc = np.mgrid[0:40, 0:40]
    ref = ((rr - 20) / 5.2) ** 2 + ((cc - 19) / 4.1) ** 2 <= 1.0
    spacing = (2.4, 2.4)
    for margin in (2.0, 3.0, 5.0):
        geometry = GatingGeometry(ref, spacing, margin)
        for shift in ((1, 0), (2, 1), (3, -2)):
            label = np.roll(ref, shift, axis=(0, 1))
            est = gm.outside_pct_from_distances(
                geometry.distance_to_target_mm(gm.label_sample_points_px(label, 8)), margin)
            exact = geometry.outside_pct(shift[0] * spacing[0], shift[1] * spacing[1])
            assert est == pytest.approx(exact, abs=4.0)


# -- ITV versus gating -------------------------------------------------------------------------
def test_motion_envelope_by_hand() -> None:
    labels = np.zeros((3, 10, 10), dtype=bool)
    labels[0, 2:4, 2:4] = True
    labels[1, 5:7, 2:4] = True
    labels[2, 2:4, 6:8] = True
    env, union = gm.motion_envelope(labels, [True, True, True], (2.0, 1.5))
    assert env.area_mm2 == 12 * 3.0
    assert env.si_extent_mm == 5 * 2.0
    assert env.ap_extent_mm == 6 * 1.5
    assert union.sum() == 12
    env2, _ = gm.motion_envelope(labels, [True, True, False], (2.0, 1.5))
    assert (env2.area_mm2, env2.si_extent_mm, env2.ap_extent_mm, env2.frames) == (24.0, 10.0, 3.0, 2)
    env3, _ = gm.motion_envelope(labels, [False, False, False], (2.0, 1.5))
    assert env3.area_mm2 == 0.0
    with pytest.raises(ValueError, match="selected"):
        gm.motion_envelope(labels, [True], (1.0, 1.0))


def test_required_margin_covers_the_share_of_time() -> None:
    needed = np.array([0.0, 1.0, 2.0, 10.0])
    assert gm.required_margin_mm(needed, np.ones(4), 0.75) == 2.0
    assert gm.required_margin_mm(needed, np.ones(4), 0.95) == 10.0
    # Gating: no beam-on time in the frame that needs 10 mm.
    assert gm.required_margin_mm(needed, np.array([1.0, 1.0, 1.0, 0.0]), 0.95) == 2.0
