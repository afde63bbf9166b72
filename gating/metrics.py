"""Validation metrics: TrackRAD2025 tracking metrics, gating accuracy, ITV versus gating.

Pure computation on arrays (numpy/scipy), used by ``maestro validate``.

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
challenge's leaderboard figures such as 0.936 give it.)

Gating accuracy
---------------
The beam timeline is given by the times at which the beam actually changed state (after
the simulated response delay) and the state it changed to; it starts held. Frame ``k``
stands for the interval ``[t_k, t_k + period)``, during which the true target is the
frame's label (sample and hold). From them:

- **duty cycle**: beam-on time / session time;
- **false beam-on**: beam-on time while more than ``threshold_pct`` of the true target
  lay outside the boundary / beam-on time;
- **false hold**: beam-held time while the true target was inside (at most
  ``threshold_pct`` outside) / time the true target was inside — the share of the
  available gating window that was lost;
- **residual motion**: distance of the true centroid from its reference position,
  weighted by beam-on time: mean and 95th percentile;
- **interruptions**: hold periods between two beam-on periods: count, mean and longest.

The true ``outside_pct`` of a (possibly deformed) label against the boundary comes from
sub-samples of its pixels (:func:`label_sample_distances_mm`): every label pixel is cut
into ``n x n`` sub-squares, the exact distance from each sub-square's centre to the
reference target is computed once (it does not depend on the margin), and the true
``outside_pct`` for a margin is the percentage of sub-samples farther than the margin.
The label's own shape is used, not the reference shape moved, so deformation counts. The
sub-sampling error is at most half a sub-square (1/8 pixel with the default n = 4).

ITV versus gating
-----------------
The motion envelope of the true target in the sagittal plane (the ITV's cross-section) is
the union of the labels over the session; the gated envelope is the union over the frames
during which the beam was on. Both are given as area and superior-inferior (row) and
anterior-posterior (column) extent. The margin an approach needs is the smallest margin
around the reference target that contains the true target (every sub-sample) in 95 % of
its beam-on time: all the time for an ITV (the beam is never held), the gated beam-on time
for gating.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy import ndimage

from gating.centroid import mask_centroid_px
from gating.masks import dice

log = logging.getLogger(__name__)

#: Dilation of the first label that makes the challenge's dose map, in mm (1 mm pixels).
DOSE_MARGIN_MM = 3
#: Threshold on the blurred dilated label that makes the binary dose map.
DOSE_THRESHOLD = 0.25
#: Gaussian sigma of the dose blur in mm: 4 mm, or 6 mm in lung (TrackRAD2025).
DOSE_SIGMA_MM = 4.0
DOSE_SIGMA_LUNG_MM = 6.0
#: Sub-squares per pixel side used for the true outside percentage of a label.
SAMPLES_PER_PX = 4

_CROSS = ndimage.generate_binary_structure(2, 1)


# -- resampling ----------------------------------------------------------------------------
def _check_mask(mask: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name}: must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        raise ValueError(f"{name}: must have dtype bool, got {arr.dtype}")
    return arr


def _check_spacing(spacing_mm: tuple[float, float]) -> tuple[float, float]:
    try:
        sr, sc = (float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ValueError(f"spacing_mm: must be (row_mm, col_mm), got {spacing_mm!r}") from None
    if not all(math.isfinite(s) and s > 0.0 for s in (sr, sc)):
        raise ValueError(f"spacing_mm: both values must be finite and > 0, got {spacing_mm!r}")
    return sr, sc


def grid_1mm_shape(shape: tuple[int, int], spacing_mm: tuple[float, float]) -> tuple[int, int]:
    """Shape of the 1 x 1 mm grid covering an image of ``shape`` pixels at ``spacing_mm``.

    The field of view ``H * row_mm`` by ``W * col_mm``, rounded to whole mm (at least 1).
    """
    sr, sc = _check_spacing(spacing_mm)
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
    mask = _check_mask(mask, "mask")
    sr, sc = _check_spacing(spacing_mm)
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
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


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
    pred = _check_mask(pred_1mm, "pred_1mm")
    true = _check_mask(true_1mm, "true_1mm")
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
    label = _check_mask(first_label_1mm, "first_label_1mm")
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
    label = _check_mask(first_label_1mm, "first_label_1mm")
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


# -- true outside percentage of a label -------------------------------------------------------
def label_sample_points_px(label: np.ndarray, samples_per_px: int = SAMPLES_PER_PX) -> np.ndarray:
    """Centres of the ``n x n`` sub-squares of every label pixel, in pixel coordinates.

    Returns
    -------
    (N * n * n, 2) float64 ndarray
        (row, col) positions; empty when the label is.
    """
    label = _check_mask(label, "label")
    n = int(samples_per_px)
    if n < 1:
        raise ValueError(f"samples_per_px: must be >= 1, got {samples_per_px!r}")
    rows, cols = np.nonzero(label)
    offsets = (np.arange(n) + 0.5) / n - 0.5
    orr, occ = np.meshgrid(offsets, offsets, indexing="ij")
    pts_r = rows[:, None] + orr.ravel()[None, :]
    pts_c = cols[:, None] + occ.ravel()[None, :]
    return np.column_stack([pts_r.ravel(), pts_c.ravel()]).astype(np.float64)


def outside_pct_from_distances(distances_mm: np.ndarray, margin_mm: float) -> float:
    """Percentage of sub-samples farther than ``margin_mm`` from the reference target.

    NaN when there are no samples (empty label).
    """
    d = np.asarray(distances_mm, dtype=np.float64)
    if d.size == 0:
        return math.nan
    return 100.0 * float(np.count_nonzero(d > margin_mm + 1e-9)) / d.size


# -- beam timeline ---------------------------------------------------------------------------
def _check_timeline(change_times_s: np.ndarray, change_on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(change_times_s, dtype=np.float64).ravel()
    on = np.asarray(change_on, dtype=bool).ravel()
    if t.shape != on.shape:
        raise ValueError(f"change_on: must have the shape of change_times_s {t.shape}, got {on.shape}")
    if t.size and (not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0.0)):
        raise ValueError("change_times_s: must be finite and non-decreasing")
    return t, on


def beam_on_seconds(
    edges_s: np.ndarray, change_times_s: np.ndarray, change_on: np.ndarray
) -> np.ndarray:
    """Beam-on time within each interval ``[edges[k], edges[k + 1])``.

    Parameters
    ----------
    edges_s : (T + 1,) float ndarray
        Increasing interval edges in s.
    change_times_s : (M,) float ndarray
        Times (s, non-decreasing) at which the beam actually changed state; held before
        the first.
    change_on : (M,) bool ndarray
        The state each change led to (True = on).

    Returns
    -------
    (T,) float64 ndarray of seconds
    """
    edges = np.asarray(edges_s, dtype=np.float64).ravel()
    if edges.size < 1 or np.any(np.diff(edges) < 0.0) or not np.all(np.isfinite(edges)):
        raise ValueError("edges_s: must be finite and non-decreasing, at least one edge")
    starts, ends = beam_on_periods(change_times_s, change_on)
    # Cumulative beam-on time up to x is the sum over on-periods of their part before x.
    cum = np.clip(edges[:, None] - starts[None, :], 0.0, (ends - starts)[None, :]).sum(axis=1)
    return np.diff(cum)


def beam_on_periods(change_times_s: np.ndarray, change_on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end times (s) of the beam-on periods of a timeline (end may be inf).

    Repeated commands of the same state are ignored; the beam is held before the first
    change.
    """
    t, on = _check_timeline(change_times_s, change_on)
    starts: list[float] = []
    ends: list[float] = []
    state = False
    for ti, oi in zip(t.tolist(), on.tolist()):
        if oi == state:
            continue
        if oi:
            starts.append(ti)
        else:
            ends.append(ti)
        state = oi
    if len(ends) < len(starts):
        ends.append(math.inf)
    return np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)


def hold_gaps_s(change_times_s: np.ndarray, change_on: np.ndarray, t_end_s: float) -> np.ndarray:
    """Lengths (s) of the holds between two beam-on periods (interruptions).

    A hold that lasts to ``t_end_s`` (the end of the session) is not an interruption.
    """
    t, on = _check_timeline(change_times_s, change_on)
    gaps = []
    hold_start = math.nan
    seen_on = False
    state = False
    for ti, oi in zip(t, on):
        if ti >= t_end_s:
            break
        if oi == state:
            continue
        if oi:
            if seen_on and math.isfinite(hold_start) and ti > hold_start:
                gaps.append(ti - hold_start)
            seen_on = True
        else:
            hold_start = ti
        state = bool(oi)
    return np.asarray(gaps, dtype=np.float64)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Smallest value whose cumulative weight reaches ``q`` of the total (0 < q <= 1).

    NaN values and their weights are ignored; NaN when no weight remains.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if v.shape != w.shape:
        raise ValueError(f"weights: must have the shape of values {v.shape}, got {w.shape}")
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q: must be in (0, 1], got {q!r}")
    keep = np.isfinite(v) & (w > 0.0)
    v, w = v[keep], w[keep]
    if v.size == 0:
        return math.nan
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    i = int(np.searchsorted(cum, q * cum[-1] * (1.0 - 1e-12), side="left"))
    return float(v[order][min(i, v.size - 1)])


@dataclass(frozen=True)
class GatingMetrics:
    """Gating accuracy of one configuration against the ground truth.

    Attributes
    ----------
    duty_cycle : float
        Beam-on time / session time.
    false_beam_on : float
        Share of beam-on time with the true target outside beyond the threshold.
    false_hold : float
        Share of the time the true target was inside during which the beam was held.
    residual_mean_mm, residual_p95_mm : float
        Distance of the true centroid from its reference during beam-on (time-weighted).
    interruptions : int
        Holds between two beam-on periods.
    interruption_mean_s, interruption_max_s : float
        Their mean and longest length (0 when none).
    beam_on_s, session_s : float
    """

    duty_cycle: float
    false_beam_on: float
    false_hold: float
    residual_mean_mm: float
    residual_p95_mm: float
    interruptions: int
    interruption_mean_s: float
    interruption_max_s: float
    beam_on_s: float
    session_s: float


def gating_metrics(
    edges_s: np.ndarray,
    change_times_s: np.ndarray,
    change_on: np.ndarray,
    true_outside_pct: np.ndarray,
    threshold_pct: float,
    true_offset_mm: np.ndarray,
) -> GatingMetrics:
    """Gating metrics of a beam timeline against per-frame truth.

    Parameters
    ----------
    edges_s : (T + 1,) float ndarray
        Frame intervals: frame k covers ``[edges[k], edges[k + 1])`` (s).
    change_times_s, change_on : (M,) ndarrays
        The beam timeline (see :func:`beam_on_seconds`).
    true_outside_pct : (T,) float ndarray
        True percentage outside the boundary per frame; NaN where unknown (left out of
        the truth-based shares).
    threshold_pct : float
        The gate's threshold.
    true_offset_mm : (T,) float ndarray
        Distance of the true centroid from its reference per frame (NaN where unknown).
    """
    on_s = beam_on_seconds(edges_s, change_times_s, change_on)
    dt = np.diff(np.asarray(edges_s, dtype=np.float64).ravel())
    truth = np.asarray(true_outside_pct, dtype=np.float64).ravel()
    offset = np.asarray(true_offset_mm, dtype=np.float64).ravel()
    if truth.shape != on_s.shape or offset.shape != on_s.shape:
        raise ValueError(
            f"true_outside_pct, true_offset_mm: must have one value per frame ({on_s.size})"
        )
    known = np.isfinite(truth)
    outside = known & (truth > threshold_pct)
    inside = known & ~outside
    session_s = float(dt.sum())
    beam_on_s = float(on_s.sum())
    on_known = float(on_s[known].sum())
    inside_s = float(dt[inside].sum())
    held_inside_s = float((dt - on_s)[inside].sum())
    gaps = hold_gaps_s(change_times_s, change_on, float(np.asarray(edges_s)[-1]))
    with np.errstate(invalid="ignore"):
        on_off = offset[np.isfinite(offset)]
        w_off = on_s[np.isfinite(offset)]
    return GatingMetrics(
        duty_cycle=beam_on_s / session_s if session_s > 0 else math.nan,
        false_beam_on=float(on_s[outside].sum()) / on_known if on_known > 0 else math.nan,
        false_hold=held_inside_s / inside_s if inside_s > 0 else math.nan,
        residual_mean_mm=float(np.sum(on_off * w_off) / w_off.sum()) if w_off.sum() > 0 else math.nan,
        residual_p95_mm=weighted_quantile(on_off, w_off, 0.95),
        interruptions=int(gaps.size),
        interruption_mean_s=float(gaps.mean()) if gaps.size else 0.0,
        interruption_max_s=float(gaps.max()) if gaps.size else 0.0,
        beam_on_s=beam_on_s,
        session_s=session_s,
    )


# -- ITV versus gating ----------------------------------------------------------------------
@dataclass(frozen=True)
class Envelope:
    """Sagittal-plane motion envelope: the union of the true target over some frames.

    Attributes
    ----------
    area_mm2 : float
    si_extent_mm, ap_extent_mm : float
        Extent along rows (superior-inferior) and columns (anterior-posterior).
    frames : int
        Frames in the union.
    """

    area_mm2: float
    si_extent_mm: float
    ap_extent_mm: float
    frames: int


def motion_envelope(
    labels: np.ndarray, selected: np.ndarray, spacing_mm: tuple[float, float]
) -> tuple[Envelope, np.ndarray]:
    """Union of the selected frames' labels, and its size.

    Parameters
    ----------
    labels : (T, H, W) bool ndarray
    selected : (T,) bool ndarray
    spacing_mm : (float, float)

    Returns
    -------
    Envelope, (H, W) bool ndarray
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype != np.bool_:
        raise ValueError(f"labels: must be a (T, H, W) bool array, got {labels.dtype} {labels.shape}")
    sel = np.asarray(selected, dtype=bool).ravel()
    if sel.shape != (labels.shape[0],):
        raise ValueError(f"selected: must have one entry per frame ({labels.shape[0]}), got {sel.shape}")
    sr, sc = _check_spacing(spacing_mm)
    union = np.any(labels[sel], axis=0) if sel.any() else np.zeros(labels.shape[1:], dtype=bool)
    if not union.any():
        return Envelope(0.0, 0.0, 0.0, int(sel.sum())), union
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    env = Envelope(
        area_mm2=float(np.count_nonzero(union)) * sr * sc,
        si_extent_mm=float(rows[-1] - rows[0] + 1) * sr,
        ap_extent_mm=float(cols[-1] - cols[0] + 1) * sc,
        frames=int(sel.sum()),
    )
    return env, union


def required_margin_mm(needed_mm: np.ndarray, weights: np.ndarray, coverage: float = 0.95) -> float:
    """Smallest margin that covers the target for ``coverage`` of the weighted time.

    Parameters
    ----------
    needed_mm : (T,) float ndarray
        Margin each frame needs (the farthest sub-sample of its label from the reference
        target); NaN where unknown.
    weights : (T,) float ndarray
        Time each frame counts for (its interval for an ITV, its beam-on time for gating).
    coverage : float
        Share of the time to cover, in (0, 1].
    """
    return weighted_quantile(needed_mm, weights, coverage)
