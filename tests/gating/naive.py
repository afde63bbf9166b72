"""Deliberately slow, obviously correct references for the gating package.

Each function restates a definition directly, by brute force, with no shared code with
the package: distances are minima over every target pixel square, areas are counted on
fine sample grids, and the gate replays its whole history at every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gating.gate import (
    LOW_CONFIDENCE,
    OUTSIDE,
    SOURCE_FAULT,
    STALE_FRAME,
    STARTUP,
    TRACKING_FAULT,
    GateConfig,
)

PRIORITY = (SOURCE_FAULT, STALE_FRAME, TRACKING_FAULT, LOW_CONFIDENCE, OUTSIDE)


def distance_to_squares_mm(
    points_mm: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float]
) -> np.ndarray:
    """Distance in mm from points (row_mm, col_mm) to the union of the mask's pixel squares.

    Pixel (r, c) covers rows [(r - 0.5) sr, (r + 0.5) sr] and columns [(c - 0.5) sc,
    (c + 0.5) sc]; the distance to the union is the smallest distance to any square.
    """
    sr, sc = spacing_mm
    best = np.full(points_mm.shape[0], np.inf)
    for r, c in zip(*np.nonzero(mask)):
        dr = np.maximum(np.abs(points_mm[:, 0] - r * sr) - 0.5 * sr, 0.0)
        dc = np.maximum(np.abs(points_mm[:, 1] - c * sc) - 0.5 * sc, 0.0)
        best = np.minimum(best, np.hypot(dr, dc))
    return best


def outside_pct(
    mask: np.ndarray,
    spacing_mm: tuple[float, float],
    margin_mm: float,
    row_mm: float,
    col_mm: float,
    samples_per_px: int = 24,
) -> tuple[float, float]:
    """Percentage of the translated target farther than margin_mm from the target.

    Midpoint rule on ``samples_per_px`` x ``samples_per_px`` cells per target pixel: each
    sample stands for the same area, so the percentage is the fraction of shifted samples
    whose distance to the unshifted target exceeds the margin.

    Returns
    -------
    pct, bound_pct : float
        The estimate and a guaranteed bound on its error: the distance is 1-Lipschitz,
        so a cell whose centre is farther than its half-diagonal from the level
        ``distance == margin`` lies wholly on one side; only the other cells can be wrong.
    """
    sr, sc = spacing_mm
    offsets = (np.arange(samples_per_px) + 0.5) / samples_per_px - 0.5
    orr, occ = np.meshgrid(offsets, offsets, indexing="ij")
    rows, cols = np.nonzero(mask)
    pts_r = (rows[:, None] + orr.ravel()[None, :]) * sr + row_mm
    pts_c = (cols[:, None] + occ.ravel()[None, :]) * sc + col_mm
    points = np.column_stack([pts_r.ravel(), pts_c.ravel()])
    distance = distance_to_squares_mm(points, mask, spacing_mm)
    half_diagonal_mm = 0.5 * np.hypot(sr / samples_per_px, sc / samples_per_px)
    uncertain = np.abs(distance - margin_mm) <= half_diagonal_mm
    return 100.0 * float(np.mean(distance > margin_mm)), 100.0 * float(np.mean(uncertain))


def boundary_mask(
    mask: np.ndarray, spacing_mm: tuple[float, float], margin_mm: float, tol_mm: float = 1e-9
) -> np.ndarray:
    """Pixels whose centre lies within margin_mm (+ tol_mm) of the target, every pixel."""
    sr, sc = spacing_mm
    rr, cc = np.meshgrid(np.arange(mask.shape[0]), np.arange(mask.shape[1]), indexing="ij")
    points = np.column_stack([rr.ravel() * sr, cc.ravel() * sc]).astype(np.float64)
    distance = distance_to_squares_mm(points, mask, spacing_mm)
    return (distance <= margin_mm + tol_mm).reshape(mask.shape)


def inside_rings_even_odd(points_rc: np.ndarray, rings: Sequence[np.ndarray]) -> np.ndarray:
    """Even-odd point-in-polygon test against all rings together (crossing number)."""
    inside = np.zeros(points_rc.shape[0], dtype=bool)
    y = points_rc[:, 0]
    x = points_rc[:, 1]
    for ring in rings:
        for k in range(ring.shape[0] - 1):
            y0, x0 = ring[k]
            y1, x1 = ring[k + 1]
            if y0 == y1:
                continue
            crosses = (y0 > y) != (y1 > y)
            x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            inside ^= crosses & (x < x_at)
    return inside


# --------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class FrameStep:
    """One call of ``Gate.decide``."""

    t_s: float
    outside_pct: float
    confidence: float
    tracking_valid: object
    frame_age_s: float
    source_fault: object = None


@dataclass(frozen=True)
class WatchdogStep:
    """One call of ``Gate.watchdog``."""

    t_s: float
    reason: str


@dataclass(frozen=True)
class ResetStep:
    """One call of ``Gate.reset`` (no decision)."""


Step = FrameStep | WatchdogStep | ResetStep


def failing_reasons(config: GateConfig, step: FrameStep) -> list[str]:
    """Every condition the frame fails, in no particular order."""

    def finite(x: object) -> bool:
        if isinstance(x, str):
            return False
        try:
            return bool(np.isfinite(float(x)))
        except (TypeError, ValueError):
            return False

    failed = []
    if step.source_fault not in (None, False, ""):
        failed.append(SOURCE_FAULT)
    if not (
        finite(step.t_s)
        and finite(step.frame_age_s)
        and float(step.frame_age_s) <= config.max_frame_age_ms / 1000.0
    ):
        failed.append(STALE_FRAME)
    valid = isinstance(step.tracking_valid, (bool, np.bool_)) and bool(step.tracking_valid)
    if not valid or not finite(step.outside_pct) or not finite(step.confidence):
        failed.append(TRACKING_FAULT)
    else:
        if float(step.confidence) < config.confidence_floor:
            failed.append(LOW_CONFIDENCE)
        if float(step.outside_pct) > config.threshold_pct:
            failed.append(OUTSIDE)
    return failed


def gate_replay(config: GateConfig, steps: Sequence[Step]) -> list[tuple[bool, str] | None]:
    """Decisions for a whole sequence, each recomputed from the full history.

    A failing step holds with its highest-priority reason. A good step is on when, within
    the current run of good frames starting at j, some step k <= i has at least
    ``beam_on_delay_frames`` good frames before it in the run and ``t_k - t_j`` of at least
    ``beam_on_delay_ms`` (1e-6 ms slack). Otherwise it holds with the reason of the last
    failure before the run since the last reset, or ``startup``. Resets give ``None``.
    """
    out: list[tuple[bool, str] | None] = []
    for i, step in enumerate(steps):
        if isinstance(step, ResetStep):
            out.append(None)
            continue
        if isinstance(step, WatchdogStep):
            out.append((False, step.reason))
            continue
        failed = failing_reasons(config, step)
        if failed:
            out.append((False, min(failed, key=PRIORITY.index)))
            continue
        # Start of the current run of good frames, and what ended the previous one.
        j = i
        previous_reason = STARTUP
        while j > 0:
            before = steps[j - 1]
            if isinstance(before, ResetStep):
                break
            if isinstance(before, WatchdogStep):
                previous_reason = before.reason
                break
            failed_before = failing_reasons(config, before)
            if failed_before:
                previous_reason = min(failed_before, key=PRIORITY.index)
                break
            j -= 1
        released = False
        for k in range(j, i + 1):
            frames_before = k - j
            t_k = float(steps[k].t_s)
            t_j = float(steps[j].t_s)
            elapsed_ms = (t_k - t_j) * 1000.0
            if (
                frames_before >= config.beam_on_delay_frames
                and elapsed_ms >= config.beam_on_delay_ms - 1e-6
            ):
                released = True
                break
        out.append((True, "") if released else (False, previous_reason))
    return out
