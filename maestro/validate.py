"""``maestro validate``: gating validation on recorded cine data, for physicists.

One recording or a folder of recordings (a cohort) is replayed through the real
components — :class:`hardware.replay.ReplaySource`, :class:`tracking.tracker.TemplateTracker`,
:class:`gating.boundary.GatingGeometry`, :class:`gating.gate.Gate` and
:class:`hardware.beam.SimulatedBeam` — and measured against the labels:

- TrackRAD2025 tracking metrics (:mod:`gating.metrics`);
- gating accuracy for every configuration of a sweep (margin x threshold x beam latency),
  with the simulated beam's response delay applied on acquisition time;
- ITV versus gating: the motion envelope of the true target and the margin each approach
  needs to cover it in 95 % of its beam-on time.

Tracking does not depend on margin, threshold or beam latency, so each case is tracked
once (one pass through the loop with the reference configuration, timed as the live loop
is); the sweep then re-runs geometry, gate and simulated beam per configuration on the
recorded displacements and confidences. A test checks that the re-run of the reference
configuration reproduces the live pass's decisions. The sweep moves the reference target
rigidly, so validation runs the rigid mode (``maestro replay --rigid``), not replay's
default deformable mode: re-gating propagated targets per margin is not built yet.

The re-run gate sees every frame as fresh (frame age 0): the sweep assesses geometry,
threshold and beam latency, not the host's scheduling; the live pass's processing times
are reported as the latency histogram.

Cases run in parallel in a process pool, or on a Dask distributed cluster with
``--scheduler`` (:mod:`maestro.validate_cluster`); a case that fails is reported in the
summary and the others complete.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from gating.uncertainty import away_from_reference_mm
from maestro import defaults

log = logging.getLogger(__name__)

#: The clinically used settings marked on the sweep plots (margin mm, threshold %):
#: 3 mm / 5 % at WashU, 3 mm / 10 % at UCLA (see ``domain.md``).
CLINICAL_SETTINGS: tuple[tuple[float, float], ...] = ((3.0, 5.0), (3.0, 10.0))
#: Coverage used for the margin each approach needs (share of its beam-on time).
COVERAGE = 0.95


@dataclass(frozen=True)
class ValidationSettings:
    """What a validation run sweeps and how it tracks.

    Attributes
    ----------
    margins_mm, thresholds_pct, latencies_ms, predict_ms : tuple of float
        The sweep: every combination is gated. Latency is the simulated beam's response
        delay to both hold and release commands (ms). ``predict_ms`` > 0 gates on the
        position :class:`tracking.predict.RidgeARPredictor` predicts that far ahead (as
        ``maestro replay --predict-ms`` does); 0 gates on the tracked position.
    confidence_floor, beam_on_delay_ms, beam_on_delay_frames, max_frame_age_ms :
        Gate settings shared by every configuration (see ``maestro replay``).
    uncertainty_mm : float
        The gate's position-uncertainty allowance (mm, see :mod:`gating.uncertainty`),
        shared by every configuration.
    context_mm, search_mm : float
        Tracker settings.
    target_box : (int, int, int, int) or None
        Target on the first frame for recordings without a label.
    target_rtstruct, roi : str or None
        The target from an RT Structure Set's ROI, cut by each recording's plane (see
        :class:`maestro.session.SessionConfig`); every case of the cohort uses it.
    fps, spacing_mm :
        For recordings whose files lack frame times or spacing.
    figures : bool
        Render the report's figures (PNG, base64) with the case.
    """

    margins_mm: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0)
    thresholds_pct: tuple[float, ...] = (5.0, 10.0, 20.0)
    latencies_ms: tuple[float, ...] = (0.0, 250.0)
    predict_ms: tuple[float, ...] = (0.0,)
    confidence_floor: float = defaults.CONFIDENCE_FLOOR
    beam_on_delay_ms: float = 0.0
    beam_on_delay_frames: int = 0
    max_frame_age_ms: float = defaults.MAX_FRAME_AGE_MS
    uncertainty_mm: float = defaults.UNCERTAINTY_MM
    context_mm: float = defaults.CONTEXT_MM
    search_mm: float = defaults.SEARCH_MM
    target_box: tuple[int, int, int, int] | None = None
    target_rtstruct: str | None = None
    roi: str | None = None
    fps: float | None = None
    spacing_mm: tuple[float, float] | None = None
    figures: bool = True

    def __post_init__(self) -> None:
        for name in ("margins_mm", "thresholds_pct", "latencies_ms", "predict_ms"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}: must hold at least one value")
            if not all(math.isfinite(v) and v >= 0.0 for v in values):
                raise ValueError(f"{name}: values must be finite and >= 0, got {values!r}")
        if any(v > 100.0 for v in self.thresholds_pct):
            raise ValueError(f"thresholds_pct: values must be <= 100, got {self.thresholds_pct!r}")

    @property
    def reference(self) -> tuple[float, float, float, float]:
        """The configuration shown in the traces: the session's default margin and
        threshold (3 mm / 10 %) when swept (else the first margin / threshold), at the first
        latency and prediction horizon."""
        margin = defaults.MARGIN_MM if defaults.MARGIN_MM in self.margins_mm else self.margins_mm[0]
        threshold = defaults.THRESHOLD_PCT if defaults.THRESHOLD_PCT in self.thresholds_pct else self.thresholds_pct[0]
        return margin, threshold, self.latencies_ms[0], self.predict_ms[0]

    def configurations(self) -> list[tuple[float, float, float, float]]:
        """Every (margin_mm, threshold_pct, latency_ms, predict_ms) of the sweep."""
        return [(m, t, lat, pr) for pr in self.predict_ms for lat in self.latencies_ms
                for m in self.margins_mm for t in self.thresholds_pct]


@dataclass
class CaseResult:
    """Everything measured on one case (picklable, so it crosses the process pool)."""

    name: str
    path: str
    ok: bool
    error: str = ""
    description: str = ""
    n_frames: int = 0
    fps: float = math.nan
    spacing_mm: tuple[float, float] = (math.nan, math.nan)
    has_labels: bool = False
    seconds: float = 0.0  # wall time spent on the case
    reference: dict[str, float] = field(default_factory=dict)
    trackrad: dict[str, float] | None = None
    tracking_error_mm: dict[str, float] | None = None
    latency_us: dict[str, float] = field(default_factory=dict)
    sweep: list[dict[str, float]] = field(default_factory=list)
    itv: dict[str, float] | None = None
    frames: dict[str, list[float]] = field(default_factory=dict)  # reference config, per frame
    figures: dict[str, str] = field(default_factory=dict)  # name -> base64 PNG


# -- finding cases ---------------------------------------------------------------------------
def find_cases(source: Path) -> list[Path]:
    """The recordings under SOURCE: itself when it is one, else its sub-folders.

    Raises
    ------
    InputError
        SOURCE does not exist or holds neither a recording nor folders.
    """
    from hardware import InputError

    source = Path(source)
    if not source.exists():
        raise InputError(source, "source", "does not exist")
    if not source.is_dir():
        raise InputError(source, "source", "is a file; pass a recording folder or a folder of recordings")
    if (source / "images").is_dir():
        return [source]
    subdirs = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        return subdirs
    return [source]  # a DICOM series folder (the reader checks it)


# -- one case -------------------------------------------------------------------------------
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


@dataclass
class _TrackingPass:
    """What the live pass recorded per frame."""

    t_acq_s: np.ndarray
    row_mm: np.ndarray
    col_mm: np.ndarray
    confidence: np.ndarray
    gate_confidence: np.ndarray
    valid: np.ndarray
    latency_us: np.ndarray
    beam_on: np.ndarray  # reference configuration, as decided live
    labels: np.ndarray | None  # (T, H, W) bool
    mask: np.ndarray
    spacing_mm: tuple[float, float]
    frame_period_s: float
    description: str


def _track(path: Path, settings: ValidationSettings) -> _TrackingPass:
    """Replay one recording through :class:`maestro.session.GatingSession` itself, in the
    reference configuration, and keep what it decided for every frame.

    The session's own per-frame path (tracker, boundary, prediction, gate, simulated
    beam, and its handling of geometry changes, out-of-order frames and tracker
    failures) is what is validated; the sweep over other configurations then re-runs
    only the gate on these tracked positions. No watchdog: the analysing machine's
    pauses (several cases run in parallel) are not the scanner's.
    """
    from hardware import SimulatedBeam
    from hardware.frame import Frame
    from hardware.replay import ReplaySource
    from maestro.recording import FrameRecord
    from maestro.session import GatingSession, SessionConfig

    margin, threshold, latency, predict = settings.reference
    config = SessionConfig(
        margin_mm=margin, threshold_pct=threshold, confidence_floor=settings.confidence_floor,
        beam_on_delay_ms=settings.beam_on_delay_ms, beam_on_delay_frames=settings.beam_on_delay_frames,
        max_frame_age_ms=settings.max_frame_age_ms, context_mm=settings.context_mm,
        search_mm=settings.search_mm, target_box=settings.target_box, predict_ms=predict,
        target_rtstruct=Path(settings.target_rtstruct) if settings.target_rtstruct is not None else None,
        roi=settings.roi,
        # Offline: neither a pause nor the load of the analysing machine is the scanner's
        # (the sweep below re-gates with every frame fresh, as these are).
        uncertainty_mm=settings.uncertainty_mm, watchdog_periods=None, check_frame_age=False,
        # The sweep re-gates translated targets (one GatingGeometry per margin): the
        # rigid mode, whatever replay's default.
        deformable=False,
    )
    source = ReplaySource(path, fps=settings.fps, spacing_mm=settings.spacing_mm)
    try:
        n = source.n_frames
        t_acq = np.empty(n)
        row = np.full(n, math.nan)
        col = np.full(n, math.nan)
        conf = np.zeros(n)
        gconf = np.zeros(n)
        valid = np.zeros(n, dtype=bool)
        lat = np.full(n, math.nan)
        beam_on = np.zeros(n, dtype=bool)
        labels = np.zeros((n, *source.shape), dtype=bool) if source.has_labels else None
        decided = 0

        def keep(frame: Frame, record: FrameRecord) -> None:
            nonlocal decided
            k = decided
            decided += 1
            track = session.last_track
            ok = track is not None and track.valid
            t_acq[k] = frame.t_acq_s
            row[k], col[k] = record.row_mm, record.col_mm
            valid[k] = ok
            conf[k] = track.confidence if ok else 0.0  # type: ignore[union-attr]
            # A result the tracker cannot vouch for (edge, unconfirmed, inconsistent) holds
            # the beam whatever the configuration: the gate saw no confidence.
            gconf[k] = track.gate_confidence if ok else 0.0  # type: ignore[union-attr]
            lat[k] = record.latency_us
            beam_on[k] = record.beam == "on"
            if labels is not None and frame.label is not None:
                labels[k] = frame.label

        session = GatingSession(source, config, SimulatedBeam(latency, latency), None, on_frame=keep)
        session.run()
        if decided != n or session.tracker is None:
            raise RuntimeError(f"{source.description}: the session decided {decided} of {n} frames")
        return _TrackingPass(t_acq, row, col, conf, gconf, valid, lat, beam_on, labels,
                             np.array(session.tracker.target_mask), source.spacing_mm,
                             source.frame_period_s, source.description)
    finally:
        source.close()


def _gate_run(
    t_acq_s: np.ndarray,
    outside_pct: np.ndarray,
    gate_confidence: np.ndarray,
    valid: np.ndarray,
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
        inputs = GateInputs(float(outside_pct[k]), float(gate_confidence[k]), bool(valid[k]))
        commanded[k] = decide(gate, beam, float(t_acq_s[k]), inputs)[0].beam_on
    times = np.array([tr.t_effective_s for tr in beam.transitions], dtype=np.float64)
    on = np.array([tr.state is BeamState.ON for tr in beam.transitions], dtype=bool)
    return commanded, times, on


_CONFIG_KEYS = ("margin_mm", "threshold_pct", "latency_ms", "predict_ms")


def config_of(row: dict[str, float]) -> tuple[float, float, float, float]:
    """The (margin_mm, threshold_pct, latency_ms, predict_ms) of a sweep row."""
    return tuple(float(row[k]) for k in _CONFIG_KEYS)  # type: ignore[return-value]


def _gated_positions(tp: _TrackingPass, predict_ms: float) -> tuple[np.ndarray, np.ndarray]:
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
    from gating import metrics as gm
    from gating.boundary import GatingGeometry

    wall0 = time.perf_counter()
    path = Path(path)
    tp = _track(path, settings)
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
    res.reference = dict(zip(_CONFIG_KEYS, ref_config))
    res.latency_us = _stats(tp.latency_us[1:], {"p50": 50, "p95": 95, "p99": 99}) or {}

    # -- truth from the labels --
    labels = tp.labels
    true_row = np.full(n, math.nan)
    true_col = np.full(n, math.nan)
    distances: list[np.ndarray] = [np.empty(0)] * n
    needed = np.full(n, math.nan)
    if labels is not None and labels[0].any():
        dist_geometry = GatingGeometry(tp.mask, tp.spacing_mm, 0.0)
        ref_rows, ref_cols = np.nonzero(labels[0])
        r0, c0 = ref_rows.mean(), ref_cols.mean()
        for k in range(n):
            if not labels[k].any():
                continue
            rr, cc = np.nonzero(labels[k])
            true_row[k] = (rr.mean() - r0) * sr
            true_col[k] = (cc.mean() - c0) * sc
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
        sigma = gm.DOSE_SIGMA_LUNG_MM if region == "lung" else gm.DOSE_SIGMA_MM
        frames_tr: list[gm.TrackradFrame | None] = []
        for k in range(n):
            pred = gm.translated_mask_1mm(tp.mask, tp.spacing_mm, tp.row_mm[k], tp.col_mm[k]) if tp.valid[k] \
                else np.zeros(gm.grid_1mm_shape(tp.mask.shape, tp.spacing_mm), dtype=bool)
            frames_tr.append(gm.trackrad_frame(pred, gm.resample_mask_1mm(labels[k], tp.spacing_mm)))
        case_tr = gm.trackrad_case(frames_tr, gm.resample_mask_1mm(labels[0], tp.spacing_mm), sigma)
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
                                         threshold, latency, settings)
        row: dict[str, float] = dict(zip(_CONFIG_KEYS, config))
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
        from maestro import report_plots

        res.figures = report_plots.case_figures(res, times, on, tp.mask, itv_union, gated_union)
    res.seconds = time.perf_counter() - wall0
    return res


def failed_case(path: str | Path, error: str, seconds: float = 0.0) -> CaseResult:
    """The result of a case that could not be validated: its name and why."""
    return CaseResult(name=Path(path).name, path=str(path), ok=False, error=error, seconds=seconds)


def run_case_safe(path: str | Path, settings: ValidationSettings) -> CaseResult:
    """:func:`run_case`, with any failure turned into a result that names it."""
    wall0 = time.perf_counter()
    try:
        return run_case(path, settings)
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop a cohort
        log.warning("case %s failed: %s", path, exc)
        log.debug("%s", traceback.format_exc())
        return failed_case(path, f"{type(exc).__name__}: {exc}", time.perf_counter() - wall0)


# -- a cohort --------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on a stream: cases done, frames/s, time left."""

    def __init__(self, total: int, stream: TextIO | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total = total
        self.stream = stream
        self.clock = clock
        self.t0 = clock()
        self.done = 0
        self.failed = 0
        self.frames = 0

    def update(self, result: CaseResult) -> None:
        self.done += 1
        self.failed += 0 if result.ok else 1
        self.frames += result.n_frames
        if self.stream is None:
            return
        elapsed = max(self.clock() - self.t0, 1e-9)
        left = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(round(width * self.done / self.total))
        bar = "#" * filled + "." * (width - filled)
        failed = f", {self.failed} failed" if self.failed else ""
        end = "\n" if self.done == self.total else ""
        self.stream.write(
            f"\rvalidate [{bar}] {self.done}/{self.total} cases{failed}, "
            f"{self.frames / elapsed:.0f} frames/s, {left:.0f} s left {end}"
        )
        self.stream.flush()


def run_cohort(
    paths: Sequence[Path],
    settings: ValidationSettings,
    workers: int = 2,
    progress: TextIO | None = sys.stderr,
) -> list[CaseResult]:
    """Validate several recordings in a process pool; results in the order of ``paths``."""
    bar = Progress(len(paths), progress)
    results: dict[int, CaseResult] = {}
    if workers <= 1 or len(paths) == 1:
        for i, p in enumerate(paths):
            results[i] = run_case_safe(p, settings)
            bar.update(results[i])
    else:
        # spawn: a fresh interpreter per worker (no fork of a process holding threads).
        with ProcessPoolExecutor(max_workers=min(workers, len(paths)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_case_safe, p, settings): i for i, p in enumerate(paths)}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                    results[i] = failed_case(paths[i], f"{type(exc).__name__}: {exc}")
                bar.update(results[i])
    return [results[i] for i in range(len(paths))]


# -- writing ---------------------------------------------------------------------------------
SUMMARY_COLUMNS = (
    ("frames", "frames"), ("dice", "Dice"), ("hd95_mm", "HD95 mm"), ("msd_mm", "MSD mm"),
    ("centroid_mm", "centroid mm"), ("relative_d98", "rel. D98"), ("duty_cycle", "duty cycle"),
    ("false_beam_on", "false beam-on"), ("false_hold", "false hold"), ("residual_p95_mm", "residual p95 mm"),
    ("interruptions", "interruptions"), ("itv_margin95_mm", "ITV margin95 mm"),
    ("gated_margin95_mm", "gated margin95 mm"), ("itv_area_mm2", "ITV area mm2"),
    ("gated_area_mm2", "gated area mm2"), ("latency_p99_us", "latency p99 us"),
)


def summary_row(result: CaseResult) -> dict[str, float]:
    """The headline figures of one case at the reference configuration."""
    row: dict[str, float] = {"frames": float(result.n_frames)}
    if result.trackrad:
        row.update({k: result.trackrad[k] for k in ("dice", "hd95_mm", "msd_mm", "centroid_mm", "relative_d98")})
    if not result.ok:
        return row
    ref = config_of(result.reference)
    for s in result.sweep:
        if config_of(s) == ref:
            for key in ("duty_cycle", "false_beam_on", "false_hold", "residual_p95_mm", "interruptions"):
                if key in s:
                    row[key] = s[key]
    if result.itv:
        row.update({k: result.itv[k] for k in ("itv_margin95_mm", "gated_margin95_mm", "itv_area_mm2",
                                               "gated_area_mm2")})
    if result.latency_us:
        row["latency_p99_us"] = result.latency_us["p99"]
    return row


def cohort_sweep(results: Sequence[CaseResult]) -> list[dict[str, float]]:
    """Mean over the successful cases of every sweep configuration's figures."""
    ok = [r for r in results if r.ok and r.sweep]
    if not ok:
        return []
    out = []
    for i, base in enumerate(ok[0].sweep):
        row = {k: base[k] for k in _CONFIG_KEYS}
        for key in base:
            if key in row:
                continue
            vals = np.array([r.sweep[i].get(key, math.nan) for r in ok], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            row[key] = float(vals.mean()) if vals.size else math.nan
        out.append(row)
    return out


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_outputs(report_dir: Path, results: Sequence[CaseResult], settings: ValidationSettings,
                  meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``summary.json``, the CSV tables and ``report.html`` into ``report_dir``."""
    from maestro import report_html

    report_dir.mkdir(parents=True, exist_ok=True)
    cases_dir = report_dir / "cases"
    cases_dir.mkdir(exist_ok=True)
    sweep = cohort_sweep(results)
    summary = {
        **meta,
        "settings": asdict(settings) | {"reference": settings.reference},
        "cases": [
            {k: v for k, v in asdict(r).items() if k not in ("frames", "figures")} | {"summary": summary_row(r)}
            for r in results
        ],
        "cohort_sweep": sweep,
    }
    paths = {"summary": report_dir / "summary.json", "cases_csv": report_dir / "cases.csv",
             "sweep_csv": report_dir / "sweep.csv", "cohort_sweep_csv": report_dir / "cohort_sweep.csv",
             "html": report_dir / "report.html"}
    paths["summary"].write_text(json.dumps(_json_safe(summary), indent=2), encoding="utf-8")
    _write_csv(paths["cases_csv"], [{"case": r.name, "ok": r.ok, "error": r.error, **summary_row(r)}
                                    for r in results])
    _write_csv(paths["sweep_csv"], [{"case": r.name, **s} for r in results for s in r.sweep])
    _write_csv(paths["cohort_sweep_csv"], sweep)
    for r in results:
        if r.frames:
            n = len(r.frames["t_acq_s"])
            rows = [{"frame": k, **{key: vals[k] for key, vals in r.frames.items()}} for k in range(n)]
            _write_csv(cases_dir / f"{r.name}_frames.csv", rows)
    paths["html"].write_text(report_html.render(results, settings, sweep, meta), encoding="utf-8")
    return paths


# -- the command -----------------------------------------------------------------------------
def _float_list(low: float = 0.0, high: float | None = None):
    def parse(text: str) -> tuple[float, ...]:
        values = []
        for part in text.split(","):
            try:
                v = float(part)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{part!r} is not a number (give a comma-separated list)") from None
            if not math.isfinite(v) or v < low or (high is not None and v > high):
                rng = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
                raise argparse.ArgumentTypeError(f"{part!r} must be finite and {rng}")
            values.append(v)
        return tuple(dict.fromkeys(values))

    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``maestro validate``."""
    from maestro.cli_args import box, count, number, positive_count, spacing

    p = subparsers.add_parser(
        "validate",
        help="validate tracking and gating on labelled recordings: metrics, sweeps, ITV vs gating, HTML report",
        description=(
            "Replay one recording, or every recording in a folder (a cohort, run in parallel), through "
            "tracking, gating and a simulated beam; measure tracking (TrackRAD2025 metrics) and gating "
            "(duty cycle, false beam-on, false hold, residual motion, interruptions) against the labels for "
            "every margin x threshold x beam latency, compare the ITV with gating, and write DIR/report.html, "
            "DIR/summary.json and CSV tables."
        ),
    )
    p.add_argument("source", type=Path, metavar="SOURCE",
                   help="a recording (TrackRAD2025 case folder or DICOM series folder) or a folder of them")
    p.add_argument("--report", type=Path, required=True, metavar="DIR", help="folder to write the report into")
    p.add_argument("--margins-mm", type=_float_list(), default=(2.0, 3.0, 4.0, 5.0), metavar="MM,...",
                   help="gating margins to sweep (default 2,3,4,5)")
    p.add_argument("--thresholds-pct", type=_float_list(0.0, 100.0), default=(5.0, 10.0, 20.0), metavar="PCT,...",
                   help="outside thresholds to sweep (default 5,10,20)")
    p.add_argument("--latency-ms", type=_float_list(), default=(0.0, 250.0), metavar="MS,...",
                   help="simulated beam response delays to sweep, applied to hold and release (default 0,250)")
    p.add_argument("--predict-ms", type=_float_list(), default=(0.0,), metavar="MS,...",
                   help="prediction horizons to sweep: gate on the position predicted this far ahead "
                        "(0 = the tracked position; default 0)")
    p.add_argument("--workers", type=positive_count, default=None,
                   help="cases run in parallel on this machine (default: 2 or the number of CPUs if fewer; "
                        "not with --scheduler)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cases on the Dask distributed cluster whose scheduler is at ADDRESS "
                        "(tcp://HOST:8786, or the file 'dask scheduler --scheduler-file' wrote); the workers "
                        "read the recordings from the same path, which they must share. Needs the cluster "
                        "extra (pip install 'maestro-gating[cluster]')")
    p.add_argument("--target-box", type=box, default=None, metavar="ROW,COL,HEIGHT,WIDTH",
                   help="target on the first frame for recordings without a label")
    p.add_argument("--target-rtstruct", default=None, metavar="FILE",
                   help="the target from planning: ROI --roi of this DICOM RT Structure Set, cut by each "
                        "recording's plane (see maestro replay --help)")
    p.add_argument("--roi", default=None, metavar="NAME", help="the ROIName of the target in --target-rtstruct")
    p.add_argument("--confidence-floor", type=number(0.0, high=1.0), default=defaults.CONFIDENCE_FLOOR)
    p.add_argument("--beam-on-delay-ms", type=number(0.0), default=0.0)
    p.add_argument("--beam-on-delay-frames", type=count, default=0)
    p.add_argument("--uncertainty-mm", type=number(0.0, high=10.0), default=defaults.UNCERTAINTY_MM,
                   help=f"the gate's position-uncertainty allowance (mm, default {defaults.UNCERTAINTY_MM:g}; "
                        "see maestro replay --help)")
    p.add_argument("--context-mm", type=number(0.0), default=defaults.CONTEXT_MM)
    p.add_argument("--search-mm", type=number(0.0, low_inclusive=False), default=defaults.SEARCH_MM)
    p.add_argument("--fps", type=number(0.0, low_inclusive=False), default=None)
    p.add_argument("--spacing-mm", type=spacing, default=None, metavar="MM[,MM]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_validate)


def _prepare_report_dir(report: Path) -> None:
    """Create the report folder, refusing one that cannot be written (one line, exit 2)."""
    from hardware import InputError

    try:
        report.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(report, "--report", f"cannot create the report folder ({exc.strerror or exc})") from None
    if not os.access(report, os.W_OK | os.X_OK):
        raise InputError(report, "--report", "the report folder is not writable")


def cmd_validate(args: argparse.Namespace) -> int:
    """Run ``maestro validate``; exit 0 when every case validated, 1 when some failed."""
    from hardware import InputError
    from maestro import __version__
    from maestro.target import check_target_options

    check_target_options(args.target_box, args.target_rtstruct, args.roi)
    if args.scheduler is not None and args.workers is not None:
        raise InputError("--workers", str(args.workers), "cannot be given with --scheduler: the cluster's "
                         "workers run the cases")
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    settings = ValidationSettings(
        margins_mm=args.margins_mm, thresholds_pct=args.thresholds_pct, latencies_ms=args.latency_ms,
        predict_ms=args.predict_ms,
        confidence_floor=args.confidence_floor, beam_on_delay_ms=args.beam_on_delay_ms,
        beam_on_delay_frames=args.beam_on_delay_frames, context_mm=args.context_mm, search_mm=args.search_mm,
        target_box=args.target_box, fps=args.fps, spacing_mm=args.spacing_mm, uncertainty_mm=args.uncertainty_mm,
        target_rtstruct=args.target_rtstruct, roi=args.roi,
    )
    cases = find_cases(args.source)
    one_recording = len(cases) == 1 and cases[0] == args.source
    # Absolute: a cluster's workers do not share our working folder, and a case is
    # described the same way wherever it ran.
    cases = [c.absolute() for c in cases]
    _prepare_report_dir(args.report)  # before any case runs: a bad --report must not cost a cohort
    t0 = time.perf_counter()
    progress = None if args.quiet else sys.stderr
    ran_on: dict[str, Any] = {"workers": workers}
    if args.scheduler is not None:
        from maestro.validate_cluster import run_cohort_on_cluster

        results, cluster = run_cohort_on_cluster(cases, settings, args.scheduler, progress)
        ran_on = {"workers": cluster["cluster_workers"], "scheduler": args.scheduler}
    elif one_recording:
        # One recording: bad input is refused on one line (exit 2), like maestro replay.
        results = [run_case(cases[0], settings)]
    else:
        results = run_cohort(cases, settings, workers=workers, progress=progress)
    elapsed = time.perf_counter() - t0
    meta = {"software": {"name": "maestro-gating", "version": __version__}, "source": str(args.source),
            "elapsed_s": elapsed, **ran_on}
    paths = write_outputs(args.report, results, settings, meta)
    ok = [r for r in results if r.ok]
    print(f"validated {len(ok)}/{len(results)} cases ({sum(r.n_frames for r in ok)} frames, "
          f"{len(settings.configurations())} configurations) in {elapsed:.1f} s")
    for r in results:
        if not r.ok:
            print(f"  FAILED {r.name}: {r.error}")
    print(f"report: {paths['html']}")
    return 0 if len(ok) == len(results) else 1


def png_base64(png: bytes) -> str:
    """PNG bytes as the base64 text an ``<img src="data:...">`` embeds."""
    return base64.b64encode(png).decode("ascii")
