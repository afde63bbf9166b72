"""TrackRAD2025 tracking metrics of predicted masks against labels.

Pure computation on arrays (numpy/scipy), used by ``maestro validate`` and
``maestro accuracy``.

TrackRAD2025 metrics (``domain.md``; the challenge's ``evaluation/evaluate.py`` and
``monai_metrics.py`` in ``PeterT1000/trackrad2025``)
-----------------------------------------------------------------------------------------
Masks are compared on a 1 x 1 mm grid (:func:`resample_mask_1mm`,
:func:`translated_mask_1mm`), so every distance is in mm. Per frame:

- **Dice** ``2 |P & T| / (|P| + |T|)``.
- **HD95** (symmetric): the surface of a mask is its pixels removed by a binary erosion
  with the 4-connected cross (image border counts as background); for every surface pixel
  of one mask the Euclidean distance to the nearest surface pixel of the other; the 95th
  percentile (linear interpolation) in each direction; the larger of the two.
- **Mean surface distance**: the mean of those distances from the prediction's surface to
  the label's (directed, as the challenge's ``SurfaceDistanceMetric``).
- **Centroid distance**: distance between the centres of mass.
- **Empty prediction**: Dice 0 and every distance ``max(H, W)`` of the 1 mm grid (mm).
  Frames whose label is empty are left out, as in the challenge.

Per case: the mean over frames, frame 0 (whose label is given to the tracker) excluded.

**Relative D98** (dose metric): the first label is dilated by 3 mm (three iterations of
the 4-connected cross on the 1 mm grid, as the challenge does), blurred with a Gaussian
of ``sigma_mm`` (4 mm; 6 mm in lung) and thresholded at 0.25: a binary dose map. For
every frame it is shifted by (predicted - true centroid) with a cubic spline (mode
``nearest``), the shifted maps are averaged, and the D98 of the first label under that
average (the dose at least 98 % of the label's pixels receive: the 2nd percentile,
linear interpolation) is divided by the D98 of the unshifted map. Frame 0 is excluded
like every other per-frame metric; an empty prediction contributes no dose. (The
challenge reads D98 off a DVH binned at 0.1 of the maximum dose and reports the relative
*decrease* in percent; here the exact percentile and the ratio, as ``domain.md`` and the
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy import ndimage

from gating.centroid import mask_centroid_px
from maestro.evaluation.masks import check_bool_mask, check_spacing_mm, dice

#: Dilation of the first label that makes the challenge's dose map, in mm (1 mm pixels).
DOSE_MARGIN_MM = 3
#: Threshold on the blurred dilated label that makes the binary dose map.
DOSE_THRESHOLD = 0.25
#: Gaussian sigma of the dose blur in mm: 4 mm, or 6 mm in lung (TrackRAD2025).
DOSE_SIGMA_MM = 4.0
DOSE_SIGMA_LUNG_MM = 6.0

_CROSS = ndimage.generate_binary_structure(2, 1)


# -- resampling ----------------------------------------------------------------------------
def grid_1mm_shape(shape: tuple[int, int], spacing_mm: tuple[float, float]) -> tuple[int, int]:
    """Shape of the 1 x 1 mm grid covering an image of ``shape`` pixels at ``spacing_mm``.

    The field of view ``H * row_mm`` by ``W * col_mm``, rounded to whole mm (at least 1).
    """
    sr, sc = check_spacing_mm(spacing_mm)
    return max(1, int(round(shape[0] * sr))), max(1, int(round(shape[1] * sc)))


def translated_mask_1mm(
    mask: np.ndarray, spacing_mm: tuple[float, float], row_mm: float = 0.0, col_mm: float = 0.0
) -> np.ndarray:
    """A mask translated by a displacement and sampled on the 1 x 1 mm grid (nearest).

    Pixel ``(r, c)`` of ``mask`` covers ``[r sr, (r + 1) sr) x [c sc, (c + 1) sc)`` mm from
    the image's top-left corner; 1 mm pixel ``(i, j)`` has its centre at
    ``(i + 0.5, j + 0.5)`` mm and takes the value of the source pixel under that centre
    after moving the mask by ``(row_mm, col_mm)``.

    Parameters
    ----------
    mask : (H, W) bool ndarray
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm.
    row_mm, col_mm : float
        Displacement in mm; a non-finite displacement gives an empty mask.

    Returns
    -------
    (H1, W1) bool ndarray
        ``(H1, W1) = grid_1mm_shape(mask.shape, spacing_mm)``.
    """
    mask = check_bool_mask(mask, "mask")
    sr, sc = check_spacing_mm(spacing_mm)
    h1, w1 = grid_1mm_shape(mask.shape, (sr, sc))
    out = np.zeros((h1, w1), dtype=bool)
    dr, dc = float(row_mm), float(col_mm)
    if not (math.isfinite(dr) and math.isfinite(dc)):
        return out
    nz_rows = np.flatnonzero(mask.any(axis=1))
    nz_cols = np.flatnonzero(mask.any(axis=0))
    if nz_rows.size == 0:
        return out
    # Source index under each 1 mm pixel centre: non-decreasing, so the 1 mm pixels that
    # fall on the mask's bounding box form one block, filled from the cropped mask.
    rows = np.floor((np.arange(h1) + 0.5 - dr) / sr).astype(np.int64)
    cols = np.floor((np.arange(w1) + 0.5 - dc) / sc).astype(np.int64)
    i0, i1 = np.searchsorted(rows, [nz_rows[0], nz_rows[-1] + 1])
    j0, j1 = np.searchsorted(cols, [nz_cols[0], nz_cols[-1] + 1])
    if i0 < i1 and j0 < j1:
        out[i0:i1, j0:j1] = mask[rows[i0:i1][:, None], cols[j0:j1][None, :]]
    return out


def resample_mask_1mm(mask: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """A mask sampled on the 1 x 1 mm grid (nearest; see :func:`translated_mask_1mm`)."""
    return translated_mask_1mm(mask, spacing_mm, 0.0, 0.0)


# -- per-frame TrackRAD metrics ------------------------------------------------------------
def _surface(mask: np.ndarray) -> np.ndarray:
    """Surface pixels: the mask minus its erosion by the 4-connected cross."""
    eroded = cast(np.ndarray, ndimage.binary_erosion(mask, structure=_CROSS, border_value=0))  # the stubs' union
    return mask & ~eroded


def _directed_surface_distances_mm(a_surface: np.ndarray, b_surface: np.ndarray) -> np.ndarray:
    """Distance (mm, 1 mm pixels) from every surface pixel of ``a`` to ``b``'s surface."""
    distance = cast(np.ndarray, ndimage.distance_transform_edt(~b_surface))  # the stubs allow None (out=...)
    return distance[a_surface]


def _crop_union(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Both masks cropped to their union's bounding box plus one background pixel, and
    the crop's origin.

    Equivalent for the surface distances: erosion treats the image border as background,
    and the nearest surface pixel of either mask always lies inside the box.
    """
    rows = np.flatnonzero((pred | true).any(axis=1))
    cols = np.flatnonzero((pred | true).any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, pred.shape[0])
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, pred.shape[1])
    return pred[r0:r1, c0:c1], true[r0:r1, c0:c1], (int(r0), int(c0))


@dataclass(frozen=True, slots=True)
class TrackradFrame:
    """TrackRAD2025 metrics of one frame (1 x 1 mm grid).

    Attributes
    ----------
    dice : float
        Dice coefficient, 0-1.
    hd95_mm, msd_mm, centroid_mm : float
        Symmetric 95th-percentile Hausdorff distance, mean surface distance (prediction
        to label) and centroid distance, in mm.
    empty_prediction : bool
        The prediction was empty (the penalties apply).
    shift_mm : (float, float)
        Predicted minus true centroid (row, col) in mm; NaN for an empty prediction.
    """

    dice: float
    hd95_mm: float
    msd_mm: float
    centroid_mm: float
    empty_prediction: bool
    shift_mm: tuple[float, float]


def trackrad_frame(pred_1mm: np.ndarray, true_1mm: np.ndarray) -> TrackradFrame | None:
    """TrackRAD2025 metrics of one frame, on 1 x 1 mm masks.

    Parameters
    ----------
    pred_1mm, true_1mm : (H1, W1) bool ndarray
        Predicted and labelled target on the 1 mm grid.

    Returns
    -------
    TrackradFrame or None
        ``None`` when the label is empty (the frame is not scored).
    """
    pred = check_bool_mask(pred_1mm, "pred_1mm")
    true = check_bool_mask(true_1mm, "true_1mm")
    if pred.shape != true.shape:
        raise ValueError(f"pred_1mm: shape {pred.shape} must equal true_1mm's {true.shape}")
    if not true.any():
        return None
    if not pred.any():
        penalty = float(max(pred.shape))
        return TrackradFrame(0.0, penalty, penalty, penalty, True, (math.nan, math.nan))
    # Everything below happens in the union's bounding box (plus one background pixel).
    p, t, _ = _crop_union(pred, true)
    overlap = dice(p, t)
    ps, ts = _surface(p), _surface(t)
    d_pt = _directed_surface_distances_mm(ps, ts)
    d_tp = _directed_surface_distances_mm(ts, ps)
    hd95 = max(_percentile(d_pt, 95.0), _percentile(d_tp, 95.0))
    msd = float(d_pt.mean())
    cp, ct = mask_centroid_px(p), mask_centroid_px(t)
    assert cp is not None and ct is not None  # both masks are non-empty (returned above)
    shift = (cp[0] - ct[0], cp[1] - ct[1])
    return TrackradFrame(overlap, hd95, msd, math.hypot(*shift), False, shift)


# -- dose metric -----------------------------------------------------------------------------
def dose_map(first_label_1mm: np.ndarray, sigma_mm: float = DOSE_SIGMA_MM) -> np.ndarray:
    """The challenge's binary dose map: first label + 3 mm, blurred, thresholded at 0.25.

    Returns
    -------
    (H1, W1) float64 ndarray of 0.0 and 1.0
    """
    label = check_bool_mask(first_label_1mm, "first_label_1mm")
    if not (math.isfinite(sigma_mm) and sigma_mm > 0.0):
        raise ValueError(f"sigma_mm: must be finite and > 0, got {sigma_mm!r}")
    dilated = ndimage.binary_dilation(label, structure=_CROSS, iterations=DOSE_MARGIN_MM)
    blurred = ndimage.gaussian_filter(dilated.astype(np.float32), sigma=sigma_mm)
    return (blurred > DOSE_THRESHOLD).astype(np.float64)


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) without its per-call overhead."""
    v = np.sort(values, axis=None)
    pos = (v.size - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, v.size - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def _d98(dose_values: np.ndarray) -> float:
    return _percentile(dose_values, 2.0)


def relative_d98(
    first_label_1mm: np.ndarray, shifts_mm: np.ndarray, sigma_mm: float = DOSE_SIGMA_MM
) -> float:
    """D98 of the first label under the averaged shifted dose / D98 unshifted.

    Parameters
    ----------
    first_label_1mm : (H1, W1) bool ndarray
        The first frame's label on the 1 mm grid; not empty.
    shifts_mm : (N, 2) float ndarray
        Predicted minus true centroid (row, col) in mm per scored frame; a NaN row is an
        empty prediction and contributes no dose.
    sigma_mm : float
        Dose blur: 4 mm, or 6 mm in lung.

    Returns
    -------
    float
        1.0 for perfect tracking; NaN when there are no frames.
    """
    label = check_bool_mask(first_label_1mm, "first_label_1mm")
    if not label.any():
        raise ValueError("first_label_1mm: must contain at least one pixel")
    shifts = np.asarray(shifts_mm, dtype=np.float64).reshape(-1, 2)
    dose = dose_map(label, sigma_mm)
    d98_ref = _d98(dose[label])
    if shifts.shape[0] == 0 or d98_ref <= 0.0:
        return math.nan
    # Only the dose at the label's pixels matters: interpolate the map there, for every
    # frame at once, exactly as ``ndimage.shift(dose, s, order=3, mode="nearest")`` does
    # (output(x) = spline(x - s); one spline prefilter instead of one per frame).
    rows, cols = np.nonzero(label)
    good = np.all(np.isfinite(shifts), axis=1)  # an empty prediction: no dose
    if not good.any():
        return 0.0
    coords = np.stack([
        (rows[None, :] - shifts[good, 0:1]).ravel(),
        (cols[None, :] - shifts[good, 1:2]).ravel(),
    ])
    sampled = ndimage.map_coordinates(dose, coords, order=3, mode="nearest").reshape(int(good.sum()), rows.size)
    total = sampled.sum(axis=0) / shifts.shape[0]
    return _d98(total) / d98_ref


@dataclass(frozen=True)
class TrackradCaseMetrics:
    """Per-case TrackRAD2025 metrics: means over the scored frames (frame 0 excluded)."""

    dice: float
    hd95_mm: float
    msd_mm: float
    centroid_mm: float
    relative_d98: float
    frames_scored: int
    empty_predictions: int


def trackrad_case(
    frames: list[TrackradFrame | None], first_label_1mm: np.ndarray, sigma_mm: float = DOSE_SIGMA_MM
) -> TrackradCaseMetrics:
    """Aggregate per-frame metrics of a case; ``frames[0]`` (frame 0) is excluded.

    Parameters
    ----------
    frames : list of TrackradFrame or None
        One entry per frame in order; ``None`` for frames with an empty label.
    first_label_1mm : (H1, W1) bool ndarray
        Frame 0's label on the 1 mm grid (the dose metric's target).
    sigma_mm : float
        Dose blur (4 mm; 6 mm in lung).
    """
    scored = [f for f in frames[1:] if f is not None]
    if not scored:
        nan = math.nan
        return TrackradCaseMetrics(nan, nan, nan, nan, nan, 0, 0)
    shifts = np.array([f.shift_mm for f in scored], dtype=np.float64)
    return TrackradCaseMetrics(
        dice=float(np.mean([f.dice for f in scored])),
        hd95_mm=float(np.mean([f.hd95_mm for f in scored])),
        msd_mm=float(np.mean([f.msd_mm for f in scored])),
        centroid_mm=float(np.mean([f.centroid_mm for f in scored])),
        relative_d98=relative_d98(first_label_1mm, shifts, sigma_mm),
        frames_scored=len(scored),
        empty_predictions=sum(f.empty_prediction for f in scored),
    )
