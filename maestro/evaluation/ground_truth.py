"""Ground truth of a session: where each frame's label says the target was.

For a recording with per-frame labels (a phantom, a TrackRAD case), the true
displacement is the label's centroid relative to the reference label's, and the true
outside percentage is that of the reference target translated by it. This observer
writes them, and the tracking error, into each frame's record after the beam command;
nothing the session decides reads them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gating.centroid import mask_centroid_px
from maestro.stats import StreamingHistogram

if TYPE_CHECKING:
    from hardware.frame import Frame
    from maestro.observer import DecidedSession
    from maestro.recording import FrameRecord

__all__ = ["GroundTruth"]


class GroundTruth:
    """Fills the ``true_*`` and ``error_mm`` fields of each record from the frame's label.

    Parameters
    ----------
    reference_label : (H, W) bool ndarray or None
        The label of the reference frame; None: no truth (the fields stay NaN).

    Notes
    -----
    The session calls it first of its observers, before the record is written, so that
    ``frames.csv`` carries the truth. The error of every frame but the first (the
    reference) is binned in constant memory for :meth:`error_summary`.
    """

    def __init__(self, reference_label: np.ndarray | None) -> None:
        self._reference_centroid_px = None if reference_label is None else mask_centroid_px(reference_label)
        self._errors_mm = StreamingHistogram(bin_width=0.001, max_value=50.0)
        self._frames = 0

    def frame_decided(self, session: DecidedSession, frame: Frame, record: FrameRecord) -> None:
        """Write the frame's truth into ``record`` (NaN without a label)."""
        ref = self._reference_centroid_px
        if frame.label is not None and ref is not None:
            c = mask_centroid_px(frame.label)
            if c is not None:
                true_row = (c[0] - ref[0]) * frame.spacing_mm[0]
                true_col = (c[1] - ref[1]) * frame.spacing_mm[1]
                geometry = session.geometry
                assert geometry is not None  # set up with the reference frame
                record.true_row_mm, record.true_col_mm = true_row, true_col
                record.true_outside_pct = geometry.outside_pct(true_row, true_col)
                record.error_mm = math.hypot(record.row_mm - true_row, record.col_mm - true_col)
        self._frames += 1
        if self._frames > 1:  # frame 0 is the reference: its error says nothing
            self._errors_mm.add(record.error_mm)

    def error_summary(self) -> dict[str, float] | None:
        """Mean and p95 of the tracking error (mm) over the frames after the first; None
        when no frame had a label."""
        return self._errors_mm.summary({"p95": 95}) or None
