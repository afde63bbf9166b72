"""maestro.evaluation.ground_truth: the truth columns of a record, by hand and in a session."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from gating.boundary import GatingGeometry
from hardware import Frame, SimulatedBeam
from maestro.evaluation.ground_truth import GroundTruth
from maestro.observer import EachRecord
from maestro.recording import FrameRecord
from maestro.session import GatingSession, SessionConfig
from tests.maestro.sources import ListSource, moving_blob_frames

SPACING_MM = (2.0, 3.0)


def _square(r0: int, c0: int, shape: tuple[int, int] = (20, 20)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[r0 : r0 + 4, c0 : c0 + 4] = True
    return m


def _record(k: int, row_mm: float, col_mm: float) -> FrameRecord:
    return FrameRecord(k, k / 8, row_mm, col_mm, 0.9, 0.0, "on", "", 10.0, 0.9, 0.5)


def test_truth_by_hand() -> None:
    reference = _square(5, 5)
    geometry = GatingGeometry(reference, SPACING_MM, 2.0)
    session = SimpleNamespace(geometry=geometry)
    truth = GroundTruth(reference)
    frames = [Frame(k, k / 8, 0.0, np.zeros((20, 20), np.float32), SPACING_MM, label)
              for k, label in enumerate([reference, _square(7, 4), None])]
    records = [_record(0, 0.0, 0.0), _record(1, 3.0, -3.0), _record(2, 1.0, 1.0)]
    for frame, record in zip(frames, records):
        truth.frame_decided(session, frame, record)
    r0, r1, r2 = records
    assert (r0.true_row_mm, r0.true_col_mm, r0.error_mm) == (0.0, 0.0, 0.0)
    # The label moved 2 rows (4 mm) and -1 column (-3 mm); tracked (3, -3): 1 mm off.
    assert (r1.true_row_mm, r1.true_col_mm) == (4.0, -3.0)
    assert r1.error_mm == pytest.approx(1.0)
    assert r1.true_outside_pct == geometry.outside_pct(4.0, -3.0) > 0.0
    # No label: no truth.
    assert all(math.isnan(v) for v in (r2.true_row_mm, r2.true_col_mm, r2.true_outside_pct, r2.error_mm))
    # The reference frame is left out of the summary; the unlabelled frame counts nothing.
    summary = truth.error_summary()
    assert summary is not None and summary["mean"] == pytest.approx(1.0) and summary["p95"] == pytest.approx(1.0, abs=1e-3)


def test_without_a_reference_label_there_is_no_truth() -> None:
    truth = GroundTruth(None)
    record = _record(0, 1.0, 1.0)
    frame = Frame(0, 0.0, 0.0, np.zeros((20, 20), np.float32), SPACING_MM, _square(5, 5))
    truth.frame_decided(SimpleNamespace(geometry=None), frame, record)
    assert math.isnan(record.error_mm) and truth.error_summary() is None


def test_the_session_writes_the_truth_of_labelled_frames_and_observers_see_it() -> None:
    """Each frame's label is the blob's disk moved with it: the session's records carry the
    truth its ground-truth observer computed, before any other observer is told."""
    frames = moving_blob_frames(12, amplitude_px=2.0)
    rows, cols = np.mgrid[0:96, 0:96]
    labelled = []
    for f in frames:
        # The blob moves along rows by amplitude * sin(2 pi i / 16) px (tests/maestro/sources.py).
        dr = 2.0 * math.sin(2 * math.pi * f.index / 16)
        label = (rows - 48 - round(dr)) ** 2 + (cols - 48) ** 2 <= 25
        labelled.append(Frame(f.index, f.t_acq_s, f.t_recv_s, f.pixels, f.spacing_mm, label))
    seen: list[FrameRecord] = []
    session = GatingSession(ListSource(labelled), SessionConfig(max_frame_age_ms=10_000.0), SimulatedBeam(),
                            observers=[EachRecord(seen.append)])
    summary = session.run()
    assert len(seen) == 12
    for f, r in zip(labelled, seen):
        dr = round(2.0 * math.sin(2 * math.pi * f.index / 16))
        assert r.true_row_mm == pytest.approx(dr * 2.4) and r.true_col_mm == pytest.approx(0.0, abs=1e-12)
        assert r.error_mm == pytest.approx(math.hypot(r.row_mm - r.true_row_mm, r.col_mm))
    errors = [r.error_mm for r in seen[1:]]
    assert summary.error_mm is not None and summary.error_mm["mean"] == pytest.approx(np.mean(errors), abs=1e-3)
