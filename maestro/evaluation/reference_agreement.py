"""Per-frame agreement between the project's tracking and reference contours.

For ``maestro replay REC --reference-contours ROI``: the console's own tracker drew a
contour on each cine frame (see :mod:`hardware.roi_contours`); this compares the target
as the project tracked it with those contours, frame by frame, so a physicist can see
where the two trackers differ.

Per frame with a reference contour:

- ``dice``: 2 |T & R| / (|T| + |R|), where T is the reference-frame target mask moved
  by the tracked displacement rounded to whole pixels
  (:meth:`tracking.tracker.TemplateTracker.tracked_mask`) and R the contour rasterised
  with the pixel-centre rule;
- ``centroid_distance_mm``: the distance between the tracked centroid (the target
  mask's centroid moved by the sub-pixel displacement) and R's centroid, in mm.

Both are NaN on frames the project could not track (``tracking_valid`` false), which
the summary counts separately. The rows go to ``reference_agreement.csv`` next to
``frames.csv``.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gating.centroid import mask_centroid_px
from maestro.evaluation.masks import mask_agreement
from tracking.tracker import TrackResult

if TYPE_CHECKING:
    from hardware.frame import Frame
    from maestro.observer import DecidedSession
    from maestro.recording import FrameRecord

log = logging.getLogger(__name__)

CSV_NAME = "reference_agreement.csv"
COLUMNS = ("frame", "t_acq_s", "tracking_valid", "dice", "centroid_distance_mm")


@dataclass(frozen=True)
class AgreementRow:
    """Agreement on one frame (see the module doc)."""

    frame: int
    t_acq_s: float
    tracking_valid: bool
    dice: float
    centroid_distance_mm: float


class ReferenceAgreement:
    """A session observer: collects the agreement of each frame with its reference contour.

    Parameters
    ----------
    reference_masks : dict of int to (H, W) bool ndarray
        Reference mask per frame index (e.g. ``ReplaySource.reference_masks``).

    Notes
    -----
    Pass it among the session's observers: the work happens after the beam command, off
    the decision path.
    """

    def __init__(self, reference_masks: dict[int, np.ndarray]) -> None:
        self.reference_masks = reference_masks
        self.rows: list[AgreementRow] = []
        self._target_centroid_px: tuple[float, float] | None = None

    def frame_decided(self, session: DecidedSession, frame: Frame, record: FrameRecord) -> None:
        """Compare one frame's tracked target with its reference contour, if it has one."""
        reference = self.reference_masks.get(frame.index)
        if reference is None or session.tracker is None:
            return
        tracker = session.tracker
        if self._target_centroid_px is None:
            self._target_centroid_px = mask_centroid_px(tracker.target_mask)
        row_mm, col_mm = float(record.row_mm), float(record.col_mm)
        valid = math.isfinite(row_mm) and math.isfinite(col_mm) and self._target_centroid_px is not None
        if not valid:
            self.rows.append(AgreementRow(frame.index, frame.t_acq_s, False, math.nan, math.nan))
            return
        row_px, col_px = row_mm / frame.spacing_mm[0], col_mm / frame.spacing_mm[1]
        result = TrackResult(
            row_mm=row_mm, col_mm=col_mm, row_px=row_px, col_px=col_px,
            peak_zncc=float(record.peak_zncc), sharpness=float(record.sharpness),
            confidence=float(record.confidence), at_edge=False, valid=True, reason="",
        )
        tracked = tracker.tracked_mask(result)
        c = self._target_centroid_px
        assert c is not None
        agreement = mask_agreement(tracked, reference, frame.spacing_mm, (c[0] + row_px, c[1] + col_px))
        self.rows.append(AgreementRow(frame.index, frame.t_acq_s, True, agreement.dice,
                                      agreement.centroid_distance_mm))

    def write_csv(self, out_dir: Path) -> Path:
        """Write ``out_dir/reference_agreement.csv`` (one row per compared frame)."""
        path = Path(out_dir) / CSV_NAME
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for r in self.rows:
                writer.writerow([r.frame, f"{r.t_acq_s:.6f}", int(r.tracking_valid), _fmt(r.dice),
                                 _fmt(r.centroid_distance_mm)])
        return path

    def summary(self) -> dict[str, float | int]:
        """Frames compared, frames not tracked, and Dice / centroid-distance statistics."""
        valid = [r for r in self.rows if r.tracking_valid]
        dice = np.array([r.dice for r in valid if math.isfinite(r.dice)], dtype=np.float64)
        dist = np.array([r.centroid_distance_mm for r in valid if math.isfinite(r.centroid_distance_mm)])
        out: dict[str, float | int] = {"frames_compared": len(self.rows), "frames_not_tracked": len(self.rows) - len(valid)}
        if dice.size:
            out.update(dice_mean=float(dice.mean()), dice_median=float(np.median(dice)),
                       dice_p5=float(np.percentile(dice, 5)), dice_min=float(dice.min()))
        if dist.size:
            out.update(centroid_mm_mean=float(dist.mean()), centroid_mm_p95=float(np.percentile(dist, 95)),
                       centroid_mm_max=float(dist.max()))
        return out

    def summary_text(self) -> str:
        """Lines appended to the printed replay summary."""
        s = self.summary()
        if not s["frames_compared"]:
            return "reference contours  no frame of the replay had a reference contour"
        lines = [f"reference contours  {s['frames_compared']} frames compared, {s['frames_not_tracked']} not tracked"]
        if "dice_mean" in s:
            lines.append(f"  Dice              mean {s['dice_mean']:.3f}  median {s['dice_median']:.3f}  "
                         f"p5 {s['dice_p5']:.3f}  min {s['dice_min']:.3f}")
        if "centroid_mm_mean" in s:
            lines.append(f"  centroid distance mean {s['centroid_mm_mean']:.2f} mm  p95 {s['centroid_mm_p95']:.2f} mm  "
                         f"max {s['centroid_mm_max']:.2f} mm")
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6g}"
