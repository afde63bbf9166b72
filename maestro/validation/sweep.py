"""One case: its tracking pass, then geometry, gate and simulated beam re-run for every
configuration of the sweep on the recorded results, measured against the labels."""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np

from gating.centroid import mask_centroid_px
from gating.uncertainty import away_from_reference_mm
from maestro.validation.results import CaseResult, failed_case
from maestro.validation.settings import CONFIG_KEYS, COVERAGE, ValidationSettings
from maestro.validation.tracking_pass import TrackingPass, track_case

log = logging.getLogger(__name__)


def _read_region(path: Path) -> str | None:
    """The TrackRAD2025 side file ``scanned-region.json`` (for the dose blur), if any."""
    from hardware.trackrad import REGION_FILE

    region_path = path / REGION_FILE
    if not region_path.is_file():
        return None
    try:
        value = json.loads(region_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def _stats(values: np.ndarray, percentiles: dict[str, float]) -> dict[str, float] | None:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None
    out = {"mean": float(arr.mean())}
    out.update({name: float(np.percentile(arr, q)) for name, q in percentiles.items()})
    out["max"] = float(arr.max())
    out["n"] = float(arr.size)
    return out


def _gate_run(
    t_acq_s: np.ndarray,
    outside_pct: np.ndarray,
    gate_confidence: np.ndarray,
    valid: np.ndarray,
    consistent: np.ndarray,
    threshold_pct: float,
    latency_ms: float,
    settings: ValidationSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-run the gate and the simulated beam on recorded tracking results.

    Returns
    -------
    beam_on : (T,) bool ndarray
        The commanded state per frame.
    change_times_s, change_on : (M,) ndarrays
        The beam's actual timeline (after the response delay).
    """
    from gating.gate import Gate, GateConfig
    from hardware import BeamState, SimulatedBeam
    from maestro.decision import GateInputs, decide

    gate = Gate(GateConfig(threshold_pct, settings.confidence_floor, settings.beam_on_delay_ms,
                           settings.beam_on_delay_frames, settings.max_frame_age_ms))
    beam = SimulatedBeam(latency_ms, latency_ms, clock=lambda: 0.0)
    commanded = np.zeros(t_acq_s.size, dtype=bool)
    for k in range(t_acq_s.size):
        inputs = GateInputs(float(outside_pct[k]), float(gate_confidence[k]), bool(valid[k]), bool(consistent[k]))
        commanded[k] = decide(gate, beam, float(t_acq_s[k]), inputs)[0].beam_on
    times = np.array([tr.t_effective_s for tr in beam.transitions], dtype=np.float64)
    on = np.array([tr.state is BeamState.ON for tr in beam.transitions], dtype=bool)
    return commanded, times, on


def _gated_positions(tp: TrackingPass, predict_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """The positions the gate judges: tracked, or predicted ``predict_ms`` ahead (fed the
    valid tracked positions in order, as the session does)."""
    if predict_ms <= 0.0:
        return tp.row_mm, tp.col_mm
    from tracking.predict import RidgeARPredictor

    predictor = RidgeARPredictor(predict_ms / 1000.0, tp.frame_period_s)
    row = tp.row_mm.copy()
    col = tp.col_mm.copy()
    for k in np.flatnonzero(tp.valid):
        row[k], col[k] = predictor.update(float(tp.t_acq_s[k]), float(tp.row_mm[k]), float(tp.col_mm[k]))
    return row, col


def run_case(path: str | Path, settings: ValidationSettings) -> CaseResult:
    """Validate one recording (raises on bad input; see :func:`run_case_safe`)."""
    from gating.boundary import GatingGeometry
    from maestro.evaluation import gating_metrics as gm
    from maestro.evaluation import trackrad_metrics as tm

    wall0 = time.perf_counter()
    path = Path(path)
    tp = track_case(path, settings)
    n = tp.t_acq_s.size
    period = tp.frame_period_s
    edges = np.append(tp.t_acq_s, tp.t_acq_s[-1] + period)
    dt = np.diff(edges)
    sr, sc = tp.spacing_mm
    res = CaseResult(
        name=path.name, path=str(path), ok=True, description=tp.description, n_frames=n,
        fps=1.0 / period, spacing_mm=tp.spacing_mm, has_labels=tp.labels is not None,
    )
    ref_config = settings.reference
    ref_margin = ref_config[0]
    res.reference = dict(zip(CONFIG_KEYS, ref_config))
    res.latency_us = _stats(tp.latency_us[1:], {"p50": 50, "p95": 95, "p99": 99}) or {}

    # -- truth from the labels --
    labels = tp.labels
    true_row = np.full(n, math.nan)
    true_col = np.full(n, math.nan)
    distances: list[np.ndarray] = [np.empty(0)] * n
    needed = np.full(n, math.nan)
    if labels is not None and labels[0].any():
        dist_geometry = GatingGeometry(tp.mask, tp.spacing_mm, 0.0)
        ref_centroid = mask_centroid_px(labels[0])
        assert ref_centroid is not None  # labels[0].any()
        r0, c0 = ref_centroid
        for k in range(n):
            centroid = mask_centroid_px(labels[k])
            if centroid is None:
                continue
            true_row[k] = (centroid[0] - r0) * sr
            true_col[k] = (centroid[1] - c0) * sc
            # Sub-samples of label pixels that are reference pixels lie inside: distance 0.
            outside_px = labels[k] & ~tp.mask
            n_inside = int(np.count_nonzero(labels[k])) - int(np.count_nonzero(outside_px))
            d = np.concatenate([
                np.zeros(n_inside * gm.SAMPLES_PER_PX ** 2),
                dist_geometry.distance_to_target_mm(gm.label_sample_points_px(outside_px)),
            ])
            distances[k] = d
            needed[k] = float(d.max())
    true_offset = np.hypot(true_row, true_col)
    err_row = tp.row_mm - true_row
    err_col = tp.col_mm - true_col
    err = np.hypot(err_row, err_col)
    res.tracking_error_mm = _stats(err[1:], {"p50": 50, "p95": 95}) if labels is not None else None

    # -- TrackRAD2025 metrics --
    if labels is not None and labels[0].any():
        region = _read_region(path)
        sigma = tm.DOSE_SIGMA_LUNG_MM if region == "lung" else tm.DOSE_SIGMA_MM
        frames_tr: list[tm.TrackradFrame | None] = []
        for k in range(n):
            pred = tm.translated_mask_1mm(tp.mask, tp.spacing_mm, tp.row_mm[k], tp.col_mm[k]) if tp.valid[k] \
                else np.zeros(tm.grid_1mm_shape(tp.mask.shape, tp.spacing_mm), dtype=bool)
            frames_tr.append(tm.trackrad_frame(pred, tm.resample_mask_1mm(labels[k], tp.spacing_mm)))
        case_tr = tm.trackrad_case(frames_tr, tm.resample_mask_1mm(labels[0], tp.spacing_mm), sigma)
        res.trackrad = asdict(case_tr)
        res.trackrad["dose_sigma_mm"] = sigma
        res.frames["dice"] = [math.nan if f is None else f.dice for f in frames_tr]
        res.frames["hd95_mm"] = [math.nan if f is None else f.hd95_mm for f in frames_tr]
        res.frames["msd_mm"] = [math.nan if f is None else f.msd_mm for f in frames_tr]
        res.frames["centroid_mm"] = [math.nan if f is None else f.centroid_mm for f in frames_tr]

    # -- sweep: positions per prediction horizon, geometry per margin, gate + beam per
    # threshold and latency --
    positions = {pr: _gated_positions(tp, pr) for pr in settings.predict_ms}
    geometries = {m: GatingGeometry(tp.mask, tp.spacing_mm, m) for m in settings.margins_mm}
    outside_by: dict[tuple[float, float], np.ndarray] = {}
    for pr, (g_row, g_col) in positions.items():
        for margin, geometry in geometries.items():
            outside_by[pr, margin] = np.array(
                [geometry.outside_pct(*away_from_reference_mm(g_row[k], g_col[k], settings.uncertainty_mm))
                 if tp.valid[k] else 100.0 for k in range(n)])
    true_out_by_margin = {m: np.array([gm.outside_pct_from_distances(distances[k], m) for k in range(n)])
                          for m in settings.margins_mm}
    ref_timeline: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for config in settings.configurations():
        margin, threshold, latency, predict = config
        commanded, times, on = _gate_run(tp.t_acq_s, outside_by[predict, margin], tp.gate_confidence, tp.valid,
                                         tp.consistent, threshold, latency, settings)
        row: dict[str, float] = dict(zip(CONFIG_KEYS, config))
        on_s = gm.beam_on_seconds(edges, times, on)
        row["duty_cycle"] = float(on_s.sum() / dt.sum())
        if labels is not None:
            g = gm.gating_metrics(edges, times, on, true_out_by_margin[margin], threshold, true_offset)
            row.update({k: float(v) for k, v in asdict(g).items()})
            row["gated_margin95_mm"] = gm.required_margin_mm(needed, on_s, COVERAGE)
        res.sweep.append(row)
        if config == ref_config:
            ref_timeline = (commanded, times, on)
    assert ref_timeline is not None
    commanded, times, on = ref_timeline
    on_s = gm.beam_on_seconds(edges, times, on)

    # -- ITV versus gating (reference configuration) --
    if labels is not None and labels[0].any():
        known = np.array([d.size > 0 for d in distances])
        itv_env, itv_union = gm.motion_envelope(labels, known, tp.spacing_mm)
        gated_env, gated_union = gm.motion_envelope(labels, known & (on_s > 0.0), tp.spacing_mm)
        res.itv = {
            "itv_area_mm2": itv_env.area_mm2, "itv_si_mm": itv_env.si_extent_mm, "itv_ap_mm": itv_env.ap_extent_mm,
            "gated_area_mm2": gated_env.area_mm2, "gated_si_mm": gated_env.si_extent_mm,
            "gated_ap_mm": gated_env.ap_extent_mm,
            "target_area_mm2": float(tp.mask.sum()) * sr * sc,
            "itv_margin95_mm": gm.required_margin_mm(needed, dt, COVERAGE),
            "gated_margin95_mm": gm.required_margin_mm(needed, on_s, COVERAGE),
        }
    else:
        itv_union = gated_union = None

    res.frames.update({
        "t_acq_s": tp.t_acq_s.tolist(),
        "row_mm": tp.row_mm.tolist(), "col_mm": tp.col_mm.tolist(),
        "true_row_mm": true_row.tolist(), "true_col_mm": true_col.tolist(),
        "confidence": tp.confidence.tolist(),
        "outside_pct": outside_by[ref_config[3], ref_margin].tolist(),
        "true_outside_pct": true_out_by_margin[ref_margin].tolist(),
        "beam_commanded": commanded.astype(float).tolist(),
        "beam_live": tp.beam_on.astype(float).tolist(),
        "beam_on_s": on_s.tolist(),
        "latency_us": tp.latency_us.tolist(),
        "error_mm": err.tolist(),
    })
    if settings.figures:
        from maestro.validation import report_plots

        res.figures = report_plots.case_figures(res, times, on, tp.mask, itv_union, gated_union)
    res.seconds = time.perf_counter() - wall0
    return res


def run_case_safe(path: str | Path, settings: ValidationSettings) -> CaseResult:
    """:func:`run_case`, with any failure turned into a result that names it."""
    wall0 = time.perf_counter()
    try:
        return run_case(path, settings)
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop a cohort
        log.warning("case %s failed: %s", path, exc)
        log.debug("%s", traceback.format_exc())
        return failed_case(path, f"{type(exc).__name__}: {exc}", time.perf_counter() - wall0)
