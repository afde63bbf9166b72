"""Target masks compared and moved: Dice, the agreement of two masks, and a mask moved by
a sub-pixel displacement. One definition of each, used by the session's outputs, the
reference-contour agreement, the TrackRAD metrics and the accuracy tables."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gating.centroid import mask_centroid_px

__all__ = ["Agreement", "check_bool_mask", "check_spacing_mm", "dice", "mask_agreement", "moved_mask"]


def check_bool_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """``mask`` as an array, checked to be a 2-D bool (H, W) mask; ``name`` is the
    argument named in the error."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name}: must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        raise ValueError(f"{name}: must have dtype bool, got {arr.dtype}")
    return arr


def check_spacing_mm(spacing_mm: tuple[float, float]) -> tuple[float, float]:
    """A pixel spacing (row_mm, col_mm), checked to be two finite numbers > 0."""
    try:
        sr, sc = (float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ValueError(f"spacing_mm: must be (row_mm, col_mm), got {spacing_mm!r}") from None
    if not all(math.isfinite(s) and s > 0.0 for s in (sr, sc)):
        raise ValueError(f"spacing_mm: both values must be finite and > 0, got {spacing_mm!r}")
    return sr, sc


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2 |A & B| / (|A| + |B|)`` of two masks of one shape.

    Parameters
    ----------
    a, b : (H, W) bool ndarray
        Masks (other dtypes are compared with zero).

    Returns
    -------
    float
        In [0, 1]; NaN when both masks are empty.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of shapes {a.shape} and {b.shape}: must have the same shape")
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 2.0 * int(np.count_nonzero(a & b)) / total if total else math.nan


def moved_mask(mask: np.ndarray, row_px: float, col_px: float) -> np.ndarray:
    """``mask`` moved by (row_px, col_px) pixels: bilinear interpolation of the mask (or of
    a partial-volume fraction) with zero outside the image, then thresholded at 0.5.

    Parameters
    ----------
    mask : (H, W) bool or float ndarray
        A mask, or the target's pixel fraction in [0, 1].
    row_px, col_px : float
        Displacement, pixels (sub-pixel).

    Returns
    -------
    (H, W) bool ndarray
        All False when a displacement is not finite.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask: must be 2D, got {mask.ndim}D")
    if not (math.isfinite(row_px) and math.isfinite(col_px)):
        return np.zeros(mask.shape, dtype=bool)
    moved = ndimage.shift(mask.astype(np.float64), (row_px, col_px), order=1, mode="constant", cval=0.0)
    return moved >= 0.5


@dataclass(frozen=True)
class Agreement:
    """How a tracked target agrees with a reference contour on one frame.

    Attributes
    ----------
    dice : float
        2 |A & B| / (|A| + |B|); NaN when both are empty.
    centroid_distance_mm : float
        Distance between the centroids in mm; NaN when either is empty.
    """

    dice: float
    centroid_distance_mm: float


def mask_agreement(tracked: np.ndarray, reference: np.ndarray, spacing_mm: tuple[float, float],
                   tracked_centroid_px: tuple[float, float] | None = None) -> Agreement:
    """Dice and centroid distance between two (H, W) bool masks.

    ``tracked_centroid_px`` overrides the tracked mask's centroid (e.g. the sub-pixel
    tracked position, where the mask is shifted by whole pixels).
    """
    tracked = np.asarray(tracked, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if tracked.shape != reference.shape:
        raise ValueError(f"tracked {tracked.shape} and reference {reference.shape} must have the same shape")
    a = tracked_centroid_px if tracked_centroid_px is not None else mask_centroid_px(tracked)
    b = mask_centroid_px(reference)
    if a is None or b is None:
        distance = math.nan
    else:
        distance = math.hypot((a[0] - b[0]) * spacing_mm[0], (a[1] - b[1]) * spacing_mm[1])
    return Agreement(dice(tracked, reference), distance)
