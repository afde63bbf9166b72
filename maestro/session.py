"""The gating loop: source -> tracker -> gate -> beam, with the recording beside it.

Per frame, the hot path is: track the target (Numba ZNCC), compute the percentage of the
tracked target outside the gating boundary, let the gate decide, command the beam. The
latency recorded for a frame runs from its receive time to the moment the beam command
has been issued. Everything else (ground truth, recording, display hand-off) happens
after the command, outside that measurement.

Nothing raises past the gate: a tracker exception, a non-finite result or a faulted
source holds the beam with a reason.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gating.boundary import GatingGeometry
from gating.gate import TRACKING_FAULT, Gate, GateConfig
from hardware import BeamInterface, Frame, FrameSource, InputError
from maestro.recording import FrameRecord, SessionRecorder
from maestro.target import reference_target
from tracking.tracker import TemplateTracker
from gating.warmup import warm_up as warm_up_gating
from tracking.warmup import warm_up as warm_up_tracking

log = logging.getLogger(__name__)

#: The cyclic garbage collector is disabled during a session so that it never runs
#: inside a frame's latency; the loop collects the young generations itself this often.
_GC_EVERY_FRAMES = 1000


@dataclass(frozen=True)
class SessionConfig:
    """Everything that decides how a session tracks and gates.

    Attributes
    ----------
    margin_mm : float
        Gating boundary = reference target expanded by this margin (mm).
    threshold_pct : float
        Beam held while more than this percentage of the tracked target's area lies
        outside the boundary.
    confidence_floor : float
        Beam held while the tracker's confidence is below this (0-1).
    beam_on_delay_ms : float
        Conditions must hold this long (acquisition time) before the beam is released.
    beam_on_delay_frames : int
        ... and for this many consecutive frames.
    max_frame_age_ms : float
        A frame older than this when decided is stale and holds the beam.
    context_mm : float
        Context added around the target's bounding box to make the template (mm).
    search_mm : float
        Half-width of the search window around the predicted position (mm).
    target_box : tuple of int or None
        (row, col, height, width) in pixels of the first frame, used when the recording
        has no first label.
    """

    margin_mm: float = 3.0
    threshold_pct: float = 10.0
    confidence_floor: float = 0.5
    beam_on_delay_ms: float = 0.0
    beam_on_delay_frames: int = 0
    max_frame_age_ms: float = 250.0
    context_mm: float = 10.0
    search_mm: float = 15.0
    target_box: tuple[int, int, int, int] | None = None

    def gate_config(self) -> GateConfig:
        return GateConfig(
            threshold_pct=self.threshold_pct,
            confidence_floor=self.confidence_floor,
            beam_on_delay_ms=self.beam_on_delay_ms,
            beam_on_delay_frames=self.beam_on_delay_frames,
            max_frame_age_ms=self.max_frame_age_ms,
        )


@dataclass
class SessionSummary:
    """What a session did, in figures a physicist reads first."""

    frames: int = 0
    beam_on_frames: int = 0
    hold_frames_by_reason: dict[str, int] = field(default_factory=dict)
    hold_events_by_reason: dict[str, int] = field(default_factory=dict)
    error_mm: dict[str, float] | None = None
    latency_us: dict[str, float] = field(default_factory=dict)
    stopped_by: str = "end of recording"

    @property
    def beam_on_fraction(self) -> float:
        return self.beam_on_frames / self.frames if self.frames else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["beam_on_fraction"] = self.beam_on_fraction
        return d


def _stats(values: list[float], percentiles: dict[str, float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {}
    out = {"mean": float(arr.mean())}
    out.update({name: float(np.percentile(arr, q)) for name, q in percentiles.items()})
    out["max"] = float(arr.max())
    out["n"] = int(arr.size)
    return out


def _centroid_px(mask: np.ndarray) -> tuple[float, float] | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return float(rows.mean()), float(cols.mean())


class GatingSession:
    """Wires one source, tracker, gate and beam for one session.

    Parameters
    ----------
    source : FrameSource
        Where frames come from (replay or live).
    config : SessionConfig
    beam : BeamInterface
        Receives a command for every frame (hold with a reason, or release).
    recorder : SessionRecorder or None
        Writes ``frames.csv``; ``None`` records nothing.
    on_record : callable or None
        Called with each :class:`FrameRecord` after the beam command (e.g. a display's
        queue); must not block.
    """

    def __init__(
        self,
        source: FrameSource,
        config: SessionConfig,
        beam: BeamInterface,
        recorder: SessionRecorder | None = None,
        on_record: Callable[[FrameRecord], None] | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.beam = beam
        self.recorder = recorder
        self.on_record = on_record
        self.gate = Gate(config.gate_config())
        self.tracker: TemplateTracker | None = None
        self.geometry: GatingGeometry | None = None
        self.summary = SessionSummary()
        self._errors_mm: list[float] = []
        self._latencies_us: list[float] = []
        self._ref_label_centroid_px: tuple[float, float] | None = None
        self._shape: tuple[int, int] | None = None
        self._spacing_mm: tuple[float, float] | None = None
        self._last_t_acq_s: float | None = None

    # -- set-up ---------------------------------------------------------------------
    def _set_up(self, first: Frame) -> None:
        """Build tracker and boundary from the reference frame (the first one)."""
        shape = first.pixels.shape
        mask = reference_target(
            self.source.description,
            shape,
            self.source.reference_label if self.source.reference_label is not None else first.label,
            self.config.target_box,
        )
        try:
            self.tracker = TemplateTracker(
                first.pixels,
                mask,
                first.spacing_mm,
                context_mm=self.config.context_mm,
                search_mm=self.config.search_mm,
            )
            self.geometry = GatingGeometry(mask, first.spacing_mm, self.config.margin_mm)
        except ValueError as exc:
            # The reference frame cannot serve: refuse the session before any beam decision.
            raise InputError(self.source.description, "target on the reference frame", str(exc)) from None
        self._shape = shape
        self._spacing_mm = first.spacing_mm
        ref_label = first.label if first.label is not None else self.source.reference_label
        if ref_label is not None:
            self._ref_label_centroid_px = _centroid_px(ref_label)
        log.info(
            "reference set on frame %d: target %d px, template %s, margin %.1f mm",
            first.index,
            int(mask.sum()),
            self.tracker.template_shape,
            self.config.margin_mm,
        )

    # -- per frame --------------------------------------------------------------------
    def process(self, frame: Frame) -> FrameRecord:
        """Decide one frame: track, gate, command the beam, then record.

        Never raises for anything the frame contains.
        """
        tracker = self.tracker
        geometry = self.geometry
        assert tracker is not None and geometry is not None
        fault = self.source.fault
        try:
            if frame.pixels.shape != self._shape or frame.spacing_mm != self._spacing_mm:
                raise ValueError(
                    f"frame geometry changed to {frame.pixels.shape} at "
                    f"{frame.spacing_mm} mm from {self._shape} at {self._spacing_mm} mm"
                )
            result = tracker.track(frame.pixels)
            row_mm, col_mm = result.row_mm, result.col_mm
            confidence, valid = result.confidence, result.valid
            # A peak on the edge of the search window may be the slope of a peak outside
            # it: the position cannot be vouched for, so the gate sees no confidence.
            gate_confidence = 0.0 if result.at_edge else confidence
            peak, sharpness = result.peak_zncc, result.sharpness
            outside = geometry.outside_pct(row_mm, col_mm) if valid else 100.0
            tracking_note = "" if valid else result.reason
        except Exception as exc:  # noqa: BLE001 - the gate, not a traceback, handles it
            row_mm = col_mm = peak = sharpness = outside = math.nan
            confidence, valid, gate_confidence = 0.0, False, 0.0
            tracking_note = f"{type(exc).__name__}: {exc}"
        decision = self.gate.decide(
            t_s=frame.t_acq_s,
            outside_pct=outside,
            confidence=gate_confidence,
            tracking_valid=valid,
            frame_age_s=time.perf_counter() - frame.t_recv_s,
            source_fault=fault,
        )
        if decision.beam_on:
            self.beam.release(t_s=frame.t_acq_s)
        else:
            self.beam.hold(decision.reason, t_s=frame.t_acq_s)
        latency_us = (time.perf_counter() - frame.t_recv_s) * 1e6
        # ---- beam command issued: everything below is bookkeeping -----------------
        self._last_t_acq_s = frame.t_acq_s
        if decision.reason == TRACKING_FAULT and tracking_note:
            log.debug("frame %d: tracking fault: %s", frame.index, tracking_note)
        record = self._record(frame, row_mm, col_mm, confidence, outside, decision, latency_us, peak, sharpness)
        return record

    def _record(self, frame, row_mm, col_mm, confidence, outside, decision, latency_us, peak, sharpness) -> FrameRecord:  # type: ignore[no-untyped-def]
        true_row = true_col = true_out = err = math.nan
        if frame.label is not None and self._ref_label_centroid_px is not None:
            c = _centroid_px(frame.label)
            if c is not None:
                true_row = (c[0] - self._ref_label_centroid_px[0]) * frame.spacing_mm[0]
                true_col = (c[1] - self._ref_label_centroid_px[1]) * frame.spacing_mm[1]
                assert self.geometry is not None
                true_out = self.geometry.outside_pct(true_row, true_col)
                err = math.hypot(row_mm - true_row, col_mm - true_col)
        record = FrameRecord(
            frame=frame.index,
            t_acq_s=frame.t_acq_s,
            row_mm=row_mm,
            col_mm=col_mm,
            confidence=confidence,
            outside_pct=outside,
            beam="on" if decision.beam_on else "hold",
            reason=decision.reason,
            latency_us=latency_us,
            peak_zncc=peak,
            sharpness=sharpness,
            true_row_mm=true_row,
            true_col_mm=true_col,
            true_outside_pct=true_out,
            error_mm=err,
        )
        s = self.summary
        s.frames += 1
        if decision.beam_on:
            s.beam_on_frames += 1
        else:
            s.hold_frames_by_reason[decision.reason] = s.hold_frames_by_reason.get(decision.reason, 0) + 1
        if self.recorder is not None:
            self.recorder.write_frame(record)
        if self.on_record is not None:
            self.on_record(record)
        if s.frames > 1:  # frame 0 is the reference; its latency includes the set-up
            self._latencies_us.append(latency_us)
            self._errors_mm.append(err)
        return record

    # -- whole session ----------------------------------------------------------------
    def run(self, max_frames: int | None = None) -> SessionSummary:
        """Run until the source ends (or ``max_frames``), then hold the beam.

        The beam ends held whatever stops the session (end of data, Ctrl-C, an error).
        """
        # Every kernel compiled or loaded before the first frame is accepted.
        warm_up_tracking()
        warm_up_gating()
        gc_was_enabled = gc.isenabled()
        try:
            for frame in self.source:
                if self.tracker is None:
                    self._set_up(frame)
                    # Keep the collector out of the loop's tail: collect once now, then
                    # only between sessions (the loop allocates only small records).
                    gc.collect()
                    gc.freeze()
                    gc.disable()
                self.process(frame)
                if self.summary.frames % _GC_EVERY_FRAMES == 0:
                    gc.collect(1)  # after the beam command: off the latency path
                if max_frames is not None and self.summary.frames >= max_frames:
                    self.summary.stopped_by = f"frame limit ({max_frames})"
                    break
        except KeyboardInterrupt:
            self.summary.stopped_by = "operator interrupt"
            raise
        finally:
            self.beam.hold("session_end", t_s=self._last_t_acq_s)
            if gc_was_enabled:
                gc.enable()
            gc.unfreeze()
            self._finish_summary()
        return self.summary

    def _finish_summary(self) -> None:
        s = self.summary
        s.latency_us = _stats(self._latencies_us, {"p50": 50, "p99": 99})
        err = _stats(self._errors_mm, {"p95": 95})
        s.error_mm = err or None
        transitions = getattr(self.beam, "transitions", None)
        if transitions is not None:
            events = Counter(t.reason for t in transitions if t.state.value == "hold")
            s.hold_events_by_reason = dict(events)


def session_description(source: FrameSource, config: SessionConfig) -> dict[str, Any]:
    """The configuration part of ``session.json``."""
    from maestro import __version__

    return {
        "software": {"name": "maestro-gating", "version": __version__},
        "source": source.description,
        "frame_period_s": source.frame_period_s,
        "config": asdict(config),
    }
