"""Tests of tracked masks (maestro.evaluation.tracked_labels) and `maestro replay --labels-out`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from maestro.cli import main
from maestro.evaluation.tracked_labels import TrackedLabels
from maestro.recording import FrameRecord


def _square(shape: tuple[int, int] = (20, 20)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[5:9, 6:10] = True
    return m


def test_collector_builds_one_mask_per_record() -> None:
    labels = TrackedLabels()
    for k, (r, c) in enumerate([(0.0, 0.0), (2.4, -4.8), (math.nan, math.nan)]):
        record = FrameRecord(k, k / 8, r, c, 0.9, 0.0, "on", "", 10.0, 0.9, 0.5)
        labels.frame_decided(None, None, record)  # the rigid mode reads neither
    masks = labels.masks(_square(), (2.4, 2.4))
    assert len(labels) == 3 and masks.shape == (3, 20, 20)
    np.testing.assert_array_equal(masks[0], _square())
    np.testing.assert_array_equal(masks[1], np.roll(np.roll(_square(), 1, 0), -2, 1))
    assert not masks[2].any()


def test_replay_writes_tracked_masks_that_match_the_truth(tmp_path: Path, capsys) -> None:
    """End to end: a trace-driven phantom case in, TrackRAD labels out, Dice vs truth."""
    t = np.arange(0.0, 20.0 + 1e-9, 0.2)
    phase = np.sin(np.pi * t / 4.0) ** 2
    rows = np.column_stack((t, 0.5 * np.sin(t), -10.0 * phase, 3.0 * phase, np.zeros((t.size, 3))))
    trace = tmp_path / "trace.txt"
    np.savetxt(trace, rows, fmt="%.6f")
    case = tmp_path / "case7"
    assert main(["phantom", str(case), "--trace", str(trace), "--seconds", "6", "--seed", "3",
                 "--lesion-mm", "25", "--geometry", "mridian-4fps"]) == 0
    out = tmp_path / "pred"
    assert main(["replay", str(case), "--labels-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tracked masks" in printed
    pred = np.moveaxis(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "targets" / "case7_labels.mha"))), -1, 0)
    truth = np.moveaxis(sitk.GetArrayFromImage(sitk.ReadImage(str(case / "targets" / "case7_labels.mha"))), -1, 0)
    assert pred.shape == truth.shape == (24, 100, 100)
    dice = [2.0 * np.sum(p & g) / (p.sum() + g.sum()) for p, g in zip(pred.astype(bool), truth.astype(bool))]
    assert min(dice) >= 0.85 and np.mean(dice) >= 0.9, dice
