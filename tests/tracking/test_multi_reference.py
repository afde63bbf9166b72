"""Tests of the multi-reference tracker (tracking/multi_reference.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracking.multi_reference import MultiReferenceTracker
from tracking.tracker import TemplateTracker

SHAPE = (96, 64)


def _scene(dy: float, stretch: float = 0.0) -> np.ndarray:
    """A textured target whose centre is at row 30 + dy, stretched along rows by
    ``1 + stretch * dy`` (it deforms as it moves), over a static smooth background."""
    r, c = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float64)
    g = 1.0 + stretch * dy
    y = (r - 30.0 - dy) / g
    x = c - 32.0
    blob = np.exp(-((y / 4.0) ** 2 + (x / 3.0) ** 2))
    dots = sum(
        0.6 * np.exp(-(((y - oy) / 1.3) ** 2 + ((x - ox) / 1.3) ** 2))
        for oy, ox in ((-6.0, 5.0), (5.0, -6.0), (7.0, 7.0), (-7.0, -5.0))
    )
    return 50.0 + 0.3 * c + 100.0 * blob + 80.0 * dots


def _mask(dy: float = 0.0) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    r0 = int(round(30 + dy))
    mask[r0 - 4 : r0 + 5, 29:36] = True
    return mask


def test_one_reference_is_the_fixed_tracker() -> None:
    ref = _scene(0.0)
    multi = MultiReferenceTracker(ref, _mask(), (1.0, 1.0), max_references=1, dtype=np.float64)
    plain = TemplateTracker(ref, _mask(), (1.0, 1.0), dtype=np.float64)
    for dy in np.linspace(0.0, 8.0, 17):
        image = _scene(dy, 0.02)
        a, b = multi.track(image), plain.track(image)
        assert (a.row_mm, a.col_mm, a.peak_zncc) == pytest.approx((b.row_mm, b.col_mm, b.peak_zncc), abs=1e-12)
    assert multi.n_references == 1


def test_references_are_captured_at_new_phases_and_help_a_deforming_target() -> None:
    ref = _scene(0.0)
    multi = MultiReferenceTracker(ref, _mask(), (1.0, 1.0), max_references=3, min_separation_mm=4.0,
                                  min_confidence=0.5, dtype=np.float64)
    plain = TemplateTracker(ref, _mask(), (1.0, 1.0), dtype=np.float64)
    cycle = np.concatenate((np.linspace(0.0, 12.0, 25), np.linspace(12.0, 0.0, 25)[1:]))
    err_multi, err_plain, peak_multi, peak_plain = [], [], [], []
    for n in range(3):
        for dy in cycle:
            image = _scene(dy, 0.03)
            a, b = multi.track(image), plain.track(image)
            if n == 2:  # after the references are in place
                err_multi.append(abs(a.row_mm - dy))
                err_plain.append(abs(b.row_mm - dy))
                peak_multi.append(a.peak_zncc)
                peak_plain.append(b.peak_zncc)
    assert multi.n_references == 3
    offsets = np.array(multi.offsets_mm)
    assert offsets[0].tolist() == [0.0, 0.0]
    for i in range(3):
        for j in range(i):
            assert math.hypot(*(offsets[i] - offsets[j])) >= 4.0
    # Matching a reference from a nearer phase: better peaks, never worse errors.
    assert min(peak_multi) > min(peak_plain)
    assert np.mean(err_multi) <= np.mean(err_plain) + 0.02
    assert max(err_multi) < 0.5


def test_a_reference_is_used_only_when_the_primary_vouches_for_it() -> None:
    ref = _scene(0.0)
    multi = MultiReferenceTracker(ref, _mask(), (1.0, 1.0), max_references=3, min_separation_mm=2.0,
                                  min_confidence=0.999, dtype=np.float64)
    for dy in np.linspace(0.0, 10.0, 21):
        multi.track(_scene(dy, 0.03))  # deformed: the primary's peak stays below 0.999
    assert multi.n_references == 1


def test_untrackable_frame_gives_an_invalid_result() -> None:
    multi = MultiReferenceTracker(_scene(0.0), _mask(), (1.0, 1.0), max_references=2)
    r = multi.track(np.full(SHAPE, np.nan, dtype=np.float32))
    assert not r.valid and r.reason
    r = multi.track(np.zeros((5, 5), dtype=np.float32))
    assert not r.valid
    assert multi.n_references == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_references": 0}, "max_references"),
        ({"max_references": 2.5}, "max_references"),
        ({"max_references": True}, "max_references"),
        ({"min_separation_mm": 0.0}, "min_separation_mm"),
        ({"min_separation_mm": math.inf}, "min_separation_mm"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"min_confidence": math.nan}, "min_confidence"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: must"):
        MultiReferenceTracker(_scene(0.0), _mask(), (1.0, 1.0), **kwargs)


def test_one_reference_loses_and_finds_the_target_as_the_fixed_tracker_does() -> None:
    # Followed in 10-row steps to row 32, back at 0 at once (beyond the re-acquisition
    # window around 32), stays: both trackers flag the return frame, find the target on
    # the next one through the search around the reference position, and agree on every
    # frame.
    ref = _scene(0.0)
    multi = MultiReferenceTracker(ref, _mask(), (1.0, 1.0), max_references=1, dtype=np.float64)
    plain = TemplateTracker(ref, _mask(), (1.0, 1.0), dtype=np.float64)
    assert 32 - plain.reacquire_px[0] > 0
    flagged = []
    for dy in (0.0, 10.0, 20.0, 32.0, 0.0, 0.0, 0.0):
        image = _scene(dy)
        a, b = multi.track(image), plain.track(image)
        assert (a.row_mm, a.col_mm, a.at_edge, a.unconfirmed) == pytest.approx((b.row_mm, b.col_mm, b.at_edge, b.unconfirmed), abs=1e-9)
        flagged.append(a.at_edge or a.unconfirmed or a.confidence < 0.5)
        if not flagged[-1]:
            assert a.row_mm == pytest.approx(dy, abs=0.1)
    assert flagged == [False, False, False, False, True, False, False]
