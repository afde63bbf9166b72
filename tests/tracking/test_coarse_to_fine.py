"""The coarse-to-fine search finds the same peak as scoring every position.

It is not exact by construction (a coarse grid can step over a narrow peak), so these
tests hold it to the exhaustive search where it matters: on every frame of real cine and
of phantoms driven by real liver motion, with the largest window the issue names
(+-30 mm), and on constructed cases aimed at its weak points (two similar peaks, a
white-noise template whose correlation peak is one pixel wide, a decoy that looks like
the target at half resolution, a frame without the target).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardware.dicom_series import read_series
from hardware.motion_trace import read_kim_trace
from maestro.phantom import generate_trace_session
from maestro.target import box_mask
from tracking.tracker import TemplateTracker
from tracking.zncc import COARSE_MIN_POSITIONS, COARSE_TRUST_SCORE

SEARCH_MM = 30.0


def _pair(reference: np.ndarray, mask: np.ndarray, spacing_mm, **kwargs) -> tuple[TemplateTracker, TemplateTracker]:
    return tuple(
        TemplateTracker(reference, mask, spacing_mm, coarse_to_fine=c2f, **kwargs) for c2f in (True, False)
    )


def _compare(frames, mask, spacing_mm, **kwargs) -> tuple[int, float, float]:
    """Track every frame both ways (each tracker centring on its own last position);
    return the frames whose results differ, the largest sharpness difference, and the
    mean fraction of positions the coarse-to-fine search scored.

    "Differ" allows float32 rounding only: the two paths sum a position's numerator in
    a different order (1e-7 on a score, 1e-8 px after the sub-pixel fit and refinement);
    a different peak would move the result by a pixel or more."""
    fast, full = _pair(frames[0], mask, spacing_mm, **kwargs)
    n_differ = 0
    d_sharp = 0.0
    scored = []
    for frame in frames:
        a = fast.track(frame)
        b = full.track(frame)
        n_window = np.prod(full.last_search_window_px[2:])
        assert n_window > COARSE_MIN_POSITIONS  # the coarse-to-fine path was taken
        scored.append(fast.last_positions_scored / n_window)
        same = (
            a.valid == b.valid
            and a.at_edge == b.at_edge
            and np.allclose((a.row_px, a.col_px, a.peak_zncc), (b.row_px, b.col_px, b.peak_zncc), rtol=0, atol=1e-5)
        )
        n_differ += 0 if same else 1
        d_sharp = max(d_sharp, abs(a.sharpness - b.sharpness))
    return n_differ, d_sharp, float(np.mean(scored))


@pytest.mark.parametrize("target_box", [(84, 73, 13, 10), (44, 70, 18, 30)], ids=["vessel", "dome"])
def test_same_result_on_every_frame_of_real_cine(shared_data: Path, target_box) -> None:
    series = read_series(shared_data / "cine" / "liver-3T-volunteer-KS81")
    mask = box_mask(series.frames[0].shape, target_box)
    n_differ, d_sharp, scored = _compare(series.frames, mask, series.spacing_mm, search_mm=SEARCH_MM)
    assert n_differ == 0
    # Sharpness is a mean over the scored positions outside the peak: a sample of the
    # same population as the exhaustive one.
    assert d_sharp < 0.05
    assert scored < 0.5


@pytest.mark.parametrize("geometry", ["mridian-8fps", "mridian-4fps"])
@pytest.mark.parametrize("trace", ["Erratic70s", "LargeSIandAP70s"])
def test_same_result_on_phantoms_driven_by_liver_motion(shared_data: Path, geometry: str, trace: str) -> None:
    t = read_kim_trace(shared_data / "motion" / "kim-liver" / f"LiverTraj_{trace}_robot.txt")
    session = generate_trace_session(
        t.times_s, np.stack((t.si_mm, t.ap_mm, t.lr_mm), axis=1), geometry, seconds=30.0, seed=3
    )
    frames = [f.astype(np.float32) for f in session.frames]
    n_differ, d_sharp, scored = _compare(frames, session.labels[0] > 0, session.spacing_mm, search_mm=SEARCH_MM)
    assert n_differ == 0
    assert d_sharp < 0.05
    assert scored < 0.5


def _two_blobs(first_gain: float, second_gain: float) -> np.ndarray:
    rows, cols = np.mgrid[0:120, 0:120].astype(np.float64)
    image = np.full((120, 120), 10.0)
    for (r, c), gain in (((40, 40), first_gain), ((80, 83), second_gain)):
        image += gain * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 18.0)
    return image


def test_the_higher_of_two_similar_peaks_wins() -> None:
    """A second, slightly better match far from the first is found: every coarse local
    maximum near the best is climbed, not only the best coarse sample."""
    reference = _two_blobs(100.0, 0.0)
    mask = np.zeros(reference.shape, dtype=bool)
    mask[36:45, 36:45] = True
    rng = np.random.default_rng(4)
    # The same blob at (40, 40) and a sharper copy at (80, 83): equal ZNCC up to noise,
    # so perturb the first one to make the second the true best.
    frame = _two_blobs(100.0, 100.0)
    frame[38:43, 38:43] += rng.normal(0.0, 3.0, (5, 5))
    fast, full = _pair(reference, mask, (1.0, 1.0), context_mm=4.0, search_mm=50.0)
    a, b = fast.track(frame, (0.0, 0.0)), full.track(frame, (0.0, 0.0))
    assert (round(b.row_px), round(b.col_px)) == (40, 43)  # the exhaustive search's choice
    np.testing.assert_allclose((a.row_px, a.col_px, a.peak_zncc), (b.row_px, b.col_px, b.peak_zncc), atol=1e-5)
    assert fast.last_positions_scored < full.last_positions_scored


def test_a_one_pixel_wide_peak_is_found() -> None:
    """White noise decorrelates within a pixel; the target sits at an odd offset along
    both axes, between the coarse grid's positions."""
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(100, 100)).astype(np.float32)
    mask = np.zeros(reference.shape, dtype=bool)
    mask[45:55, 45:55] = True
    frame = np.roll(reference, (7, -5), axis=(0, 1))
    fast, full = _pair(reference, mask, (1.0, 1.0), context_mm=0.0, search_mm=20.0)
    a, b = fast.track(frame, (0.0, 0.0)), full.track(frame, (0.0, 0.0))
    assert (a.row_px, a.col_px) == pytest.approx((7.0, -5.0), abs=1e-6)
    np.testing.assert_allclose((a.row_px, a.col_px, a.peak_zncc), (b.row_px, b.col_px, b.peak_zncc), atol=1e-6)


def test_every_position_is_scored_when_nothing_matches_well() -> None:
    """A frame without the target: the best match found is below COARSE_TRUST_SCORE, so
    the search falls back to scoring every position (the exhaustive result)."""
    rng = np.random.default_rng(6)
    reference = rng.normal(size=(100, 100)).astype(np.float32)
    mask = np.zeros(reference.shape, dtype=bool)
    mask[45:55, 45:55] = True
    frame = rng.normal(size=(100, 100)).astype(np.float32)
    fast, full = _pair(reference, mask, (1.0, 1.0), context_mm=0.0, search_mm=20.0)
    a, b = fast.track(frame, (0.0, 0.0)), full.track(frame, (0.0, 0.0))
    assert b.peak_zncc < COARSE_TRUST_SCORE
    assert fast.last_positions_scored == full.last_positions_scored == 41 * 41
    assert (a.row_px, a.col_px, a.peak_zncc, a.sharpness) == (b.row_px, b.col_px, b.peak_zncc, b.sharpness)


@pytest.mark.parametrize("decoy", ["other texture", "noisy copy"])
@pytest.mark.parametrize("offset", [(1, 1), (1, -1), (-1, 1), (0, 1)])
def test_a_decoy_that_wins_at_half_resolution_does_not_win(offset: tuple[int, int], decoy: str) -> None:
    """The target is a blob with a fine white-noise texture, at an odd offset (between
    half-resolution positions, where its fine texture no longer lines up); 26 px away,
    at an even offset, sits the same blob with another texture or a noisy copy of the
    target. At half resolution the decoy scores best; the coarse margin measured on the
    reference (a fine texture loses much of its score between coarse positions) makes
    the target a candidate too, and at full resolution only the target matches. (A
    review found the noisy copy fooling an earlier coarse stage with a fixed margin.)"""
    rng = np.random.default_rng(5)
    size = 160
    rows, cols = np.mgrid[0:size, 0:size]
    texture = rng.normal(0.0, 60.0, (size, size))

    def blob(r: int, c: int, tex: np.ndarray) -> np.ndarray:
        d = np.hypot(rows - r, cols - c)
        return 100.0 * np.exp(-(d**2) / 72.0) + np.roll(tex, (r - 60, c - 60), (0, 1)) * (d < 12)

    reference = 200.0 + blob(60, 60, texture)
    mask = np.hypot(rows - 60, cols - 60) < 6
    if decoy == "other texture":
        decoy_image = blob(86, 60, rng.normal(0.0, 60.0, (size, size)))
    else:
        decoy_image = blob(86, 60, texture) + rng.normal(0.0, 40.0, (size, size)) * (np.hypot(rows - 86, cols - 60) < 12)
    frame = 200.0 + blob(60 + offset[0], 60 + offset[1], texture) + decoy_image
    fast, full = _pair(reference, mask, (1.0, 1.0), context_mm=8.0, search_mm=30.0, refine=False)
    a, b = fast.track(frame.astype(np.float32)), full.track(frame.astype(np.float32))
    assert (round(b.row_px), round(b.col_px)) == offset
    np.testing.assert_allclose((a.row_px, a.col_px, a.peak_zncc), (b.row_px, b.col_px, b.peak_zncc), atol=1e-5)
    assert fast.last_positions_scored < full.last_positions_scored


def test_small_windows_are_searched_exhaustively() -> None:
    reference = _two_blobs(100.0, 0.0)
    mask = np.zeros(reference.shape, dtype=bool)
    mask[36:45, 36:45] = True
    tracker = TemplateTracker(reference, mask, (1.0, 1.0), context_mm=4.0, search_mm=7.0)
    tracker.track(reference)
    assert tracker.last_positions_scored == 15 * 15 <= COARSE_MIN_POSITIONS
