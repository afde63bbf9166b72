"""ReferenceAgreement: hand-computed Dice and centroid distance per frame, csv, summary."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from hardware.frame import Frame
from maestro.evaluation.reference_agreement import CSV_NAME, ReferenceAgreement


def _shift(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    return np.roll(np.roll(mask, dr, axis=0), dc, axis=1)


def test_agreement_per_frame(tmp_path: Path) -> None:
    target = np.zeros((10, 10), bool)
    target[2:4, 2:4] = True  # centroid (2.5, 2.5)
    tracker = SimpleNamespace(
        target_mask=target,
        tracked_mask=lambda result: _shift(target, int(np.rint(result.row_px)), int(np.rint(result.col_px))),
    )
    ref1 = _shift(target, 0, 1)  # the console saw the target one column to the right
    agreement = ReferenceAgreement({0: target, 1: ref1, 2: target})
    session = SimpleNamespace(tracker=tracker)

    def frame(i: int) -> Frame:
        return Frame(i, i * 0.25, 0.0, np.zeros((10, 10), np.float32), (2.0, 3.0))

    def record(row_mm: float, col_mm: float) -> SimpleNamespace:
        return SimpleNamespace(row_mm=row_mm, col_mm=col_mm, peak_zncc=1.0, sharpness=1.0, confidence=1.0)

    agreement.frame_decided(session, frame(0), record(0.0, 0.0))
    agreement.frame_decided(session, frame(1), record(0.0, 0.0))
    agreement.frame_decided(session, frame(2), record(math.nan, math.nan))
    agreement.frame_decided(session, frame(3), record(0.0, 0.0))  # no reference: skipped
    r0, r1, r2 = agreement.rows
    assert (r0.dice, r0.centroid_distance_mm) == (1.0, 0.0)
    assert r1.dice == 0.5 and r1.centroid_distance_mm == 3.0  # 1 column of 3 mm
    assert not r2.tracking_valid and math.isnan(r2.dice)
    s = agreement.summary()
    assert s["frames_compared"] == 3 and s["frames_not_tracked"] == 1
    assert s["dice_mean"] == 0.75 and s["centroid_mm_max"] == 3.0
    path = agreement.write_csv(tmp_path)
    assert path.name == CSV_NAME
    lines = path.read_text().splitlines()
    assert lines[2] == "1,0.250000,1,0.5,3" and lines[3] == "2,0.500000,0,,"
    assert "3 frames compared, 1 not tracked" in agreement.summary_text()


def test_summary_without_frames() -> None:
    assert "no frame" in ReferenceAgreement({}).summary_text()
