"""Gating metrics: the true outside percentage of a label, the beam timeline, gating
accuracy, and ITV versus gating.

Pure computation on arrays (numpy/scipy), used by ``maestro validate``.

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

import math
from dataclasses import dataclass

import numpy as np

from maestro.evaluation.masks import check_bool_mask, check_spacing_mm

#: Sub-squares per pixel side used for the true outside percentage of a label.
SAMPLES_PER_PX = 4


# -- true outside percentage of a label -------------------------------------------------------
def label_sample_points_px(label: np.ndarray, samples_per_px: int = SAMPLES_PER_PX) -> np.ndarray:
    """Centres of the ``n x n`` sub-squares of every label pixel, in pixel coordinates.

    Returns
    -------
    (N * n * n, 2) float64 ndarray
        (row, col) positions; empty when the label is.
    """
    label = check_bool_mask(label, "label")
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
    sr, sc = check_spacing_mm(spacing_mm)
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
