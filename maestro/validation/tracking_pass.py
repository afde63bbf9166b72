"""The one pass of a case through the session loop, at the reference configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maestro.validation.settings import ValidationSettings


@dataclass
class TrackingPass:
    """What the live pass recorded per frame."""

    t_acq_s: np.ndarray
    row_mm: np.ndarray
    col_mm: np.ndarray
    confidence: np.ndarray
    gate_confidence: np.ndarray
    valid: np.ndarray
    consistent: np.ndarray  # False where the tracker's two estimates disagreed
    latency_us: np.ndarray
    beam_on: np.ndarray  # reference configuration, as decided live
    labels: np.ndarray | None  # (T, H, W) bool
    mask: np.ndarray
    spacing_mm: tuple[float, float]
    frame_period_s: float
    description: str


def track_case(path: Path, settings: ValidationSettings) -> TrackingPass:
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
    from maestro.observer import DecidedSession, EachFrame
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
        consistent = np.ones(n, dtype=bool)
        lat = np.full(n, math.nan)
        beam_on = np.zeros(n, dtype=bool)
        labels = np.zeros((n, *source.shape), dtype=bool) if source.has_labels else None
        decided = 0

        def keep(session: DecidedSession, frame: Frame, record: FrameRecord) -> None:
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
            # ... and an inconsistent one holds as inconsistent, the session's reason.
            consistent[k] = not (ok and track.inconsistent)  # type: ignore[union-attr]
            lat[k] = record.latency_us
            beam_on[k] = record.beam == "on"
            if labels is not None and frame.label is not None:
                labels[k] = frame.label

        session = GatingSession(source, config, SimulatedBeam(latency, latency), None, observers=[EachFrame(keep)])
        session.run()
        if decided != n or session.tracker is None:
            raise RuntimeError(f"{source.description}: the session decided {decided} of {n} frames")
        return TrackingPass(t_acq, row, col, conf, gconf, valid, consistent, lat, beam_on, labels,
                             np.array(session.tracker.target_mask), source.spacing_mm,
                             source.frame_period_s, source.description)
    finally:
        source.close()
