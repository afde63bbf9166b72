"""Collect a session's tracked displacements and turn them into per-frame target masks.

The tracked mask of a frame is the reference target mask moved by the tracked
displacement: resampled with bilinear interpolation at the sub-pixel displacement and
thresholded at one half (so a half-pixel move is not rounded away), empty when the frame
could not be tracked. Used by ``maestro replay --labels-out`` to write the masks in the
TrackRAD2025 layout for the challenge's evaluation code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from maestro.evaluation.masks import moved_mask

if TYPE_CHECKING:
    from hardware.frame import Frame
    from maestro.observer import DecidedSession
    from maestro.recording import FrameRecord

__all__ = ["TrackedLabels"]


class TrackedLabels:
    """A session observer: collects (frame, row_mm, col_mm) from the session's records (it
    only appends), then builds the masks.

    With ``deformable``, each frame's affine (``session.last_affine``) is kept too, and
    the mask is the reference target propagated by it
    (:func:`tracking.deformable.propagate_mask`), empty where the frame was not
    registered."""

    def __init__(self, deformable: bool = False) -> None:
        self._rows: list[tuple[int, float, float]] = []
        self._affines: list[np.ndarray | None] = []
        self.deformable = deformable

    def frame_decided(self, session: DecidedSession, frame: Frame, record: FrameRecord) -> None:
        """Keep one frame's displacement, and its affine in the deformable mode."""
        self._rows.append((record.frame, record.row_mm, record.col_mm))
        if self.deformable:
            self._affines.append(session.last_affine)

    def __len__(self) -> int:
        return len(self._rows)

    def masks(self, reference: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
        """(T, H, W) bool tracked masks, in the order the frames were decided.

        Parameters
        ----------
        reference : (H, W) bool or float ndarray
            The target on the reference frame: its mask, or the share of each pixel
            inside it (the session's ``reference_fraction``), moved or propagated with
            bilinear interpolation and thresholded at one half.
        spacing_mm : (float, float)
            Pixel spacing (row, col), mm.
        """
        ref = np.asarray(reference)
        if ref.dtype != np.bool_:
            ref = ref.astype(np.float64)
        out = np.zeros((len(self._rows), *ref.shape), dtype=bool)
        sr, sc = spacing_mm
        if self.deformable:
            from tracking.deformable import propagate_mask

            for k, affine in enumerate(self._affines):
                if affine is not None:
                    out[k] = propagate_mask(ref, affine)
            return out
        for k, (_, row_mm, col_mm) in enumerate(self._rows):
            out[k] = moved_mask(ref, row_mm / sr, col_mm / sc)
        return out
