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

import copy
import dataclasses
import gc
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gating.boundary import GatingGeometry
from gating.gate import BEAM_FAULT, SOURCE_FAULT, STALE_FRAME, TRACKING_FAULT, Gate, GateConfig
from gating.uncertainty import away_from_reference_mm
from gating.warmup import warm_up as warm_up_gating
from hardware import BeamInterface, Frame, FrameSource, InputError
from maestro import defaults
from maestro.decision import GateInputs, decide
from maestro.evaluation.ground_truth import GroundTruth
from maestro.observer import SessionObserver
from maestro.recording import FrameRecord, SessionRecorder
from maestro.stats import StreamingHistogram
from maestro.target import reference_target, structure_target
from maestro.watchdog import Watchdog
from tracking.deformable import fused_affine, propagated_centroid_px
from tracking.predict import RidgeARPredictor
from tracking.tracker import DEFAULT_TARGET_CONTEXT_MM, TemplateTracker, TrackResult
from tracking.warmup import warm_up as warm_up_tracking

log = logging.getLogger(__name__)

#: The cyclic garbage collector is disabled during a session so that it never runs
#: inside a frame's latency; the loop collects the young generations itself this often.
_GC_EVERY_FRAMES = 1000
#: A keep-warm rehearsal longer than this many frame periods switches keeping warm off.
_MAX_REHEARSAL_PERIODS = 0.25


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
    check_frame_age : bool
        Judge each frame's age (reception to decision, on this machine's clock) against
        ``max_frame_age_ms``. ``False`` only for offline analysis of a recording
        (``maestro validate``): there the frames are handed over as fast as the analysing
        machine reads them, so their age measures that machine's load (a cold worker
        building the tracker on frame 0), not the scanner's timing, and must not change
        the decisions; no command sets it. A frame out of order is stale either way.
    context_mm : float
        Context added around the target's bounding box to make the template (mm); see
        :data:`tracking.tracker.DEFAULT_CONTEXT_MM` for why the default is 20.
    search_mm : float
        Half-width of the search window around the last confidently tracked position
        (mm); twice that while re-acquiring a lost target (see
        :class:`tracking.tracker.TemplateTracker`).
    target_box : tuple of int or None
        (row, col, height, width) in pixels of the first frame, used when the recording
        has no first label.
    target_rtstruct, roi : Path or None, str or None
        The target from planning: ROI ``roi`` of the DICOM RT Structure Set
        ``target_rtstruct``, cut by the reference frame's plane
        (:func:`maestro.target.structure_target`). It takes precedence over the
        recording's first label, which then serves as ground truth only. Both or neither
        (:func:`maestro.target.check_target_options`).
    watchdog_periods : float or None
        The beam is held (``stale_frame``, or ``source_fault`` when the source reports
        one) when no frame has been decided for this many nominal frame periods, even if
        no frame ever arrives again. ``None`` runs no watchdog: only for offline analysis
        of a recording (``maestro validate``), where a pause of the analysing machine is
        not the scanner's and must not change the decisions; no command sets it.
    predict_ms : float
        When > 0, the gate decides on the target position predicted this far ahead (the
        system latency, ms) by :class:`tracking.predict.RidgeARPredictor` from the
        tracked positions, instead of the position tracked on the frame; 0 = no
        prediction. ``outside_pct`` is then that of the predicted position.
    uncertainty_mm : float
        The position-uncertainty allowance (mm): the gate judges the target at its
        displacement (tracked, propagated or predicted) moved this much further from the
        reference (:mod:`gating.uncertainty`). ``outside_pct`` is that of the moved target.
    keep_warm : bool
        Between frames of a live source (on its ``None`` ticks, which
        :class:`hardware.mridian_source.MRIdianSource` yields as the next frame falls
        due), rehearse the decision on the last frame on a copy of the session's tracker
        and gate, whose result goes nowhere: the frame that follows then finds the
        loop's code and data in the caches instead of paying for an idle machine's
        cold start (measured in ``benchmarks/test_live.py``). Then a beam with a link
        (``ping()``, as :class:`hardware.beam_tcp.TcpBeam`) sends a heartbeat, so that the
        frame's command finds the send path and the endpoint awake. The real tracker and
        gate are not touched, and a heartbeat changes no beam state, so no decision
        depends on it.
    deformable : bool
        The deformable mode, for targets that change shape: after the rigid match, the
        reference target is propagated by an affine registration of the region around
        it (:class:`tracking.deformable.AffineRegistration`), ``outside_pct`` is that of
        the propagated target (:class:`gating.deformed_outside.DeformedOutside`) and the
        displacement that of its centroid, moved ``rigid_share`` of the way to the
        rigid match (:func:`tracking.deformable.fused_affine`). A registration that
        fails holds the beam (``inconsistent``).
    rigid_share : float
        Deformable mode: the rigid match's share of the position, in [0, 1]
        (:data:`tracking.deformable.RIGID_SHARE`; 0 = the propagated centroid alone).
        No command sets it; ``maestro accuracy --rigid-share`` measures it.
    """

    margin_mm: float = defaults.MARGIN_MM
    threshold_pct: float = defaults.THRESHOLD_PCT
    confidence_floor: float = defaults.CONFIDENCE_FLOOR
    beam_on_delay_ms: float = 0.0
    beam_on_delay_frames: int = 0
    max_frame_age_ms: float = defaults.MAX_FRAME_AGE_MS
    check_frame_age: bool = True
    context_mm: float = defaults.CONTEXT_MM
    search_mm: float = defaults.SEARCH_MM
    target_box: tuple[int, int, int, int] | None = None
    target_rtstruct: Path | None = None
    roi: str | None = None
    watchdog_periods: float | None = 2.0
    predict_ms: float = 0.0
    uncertainty_mm: float = defaults.UNCERTAINTY_MM
    keep_warm: bool = True
    deformable: bool = True
    rigid_share: float = defaults.RIGID_SHARE

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
    def status(self) -> str:
        """``session.json`` status: ``complete``, ``interrupted`` or ``failed``."""
        return {
            "operator stop": "interrupted",
            "display closed": "interrupted",
            "recording fault": "failed",
            "error": "failed",
        }.get(self.stopped_by, "complete")

    @property
    def beam_on_fraction(self) -> float:
        return self.beam_on_frames / self.frames if self.frames else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["beam_on_fraction"] = self.beam_on_fraction
        return d


class RecordingFault(Exception):
    """The record of delivery could not be kept: the beam was held and the session ended."""


class OperatorStop(Exception):
    """The operator (or the system, e.g. SIGTERM) asked the session to stop."""


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
    observers : sequence of SessionObserver
        Told of each frame after its beam command and its record
        (:mod:`maestro.observer`), in order: a display, the tracked masks, validation;
        more can be appended to :attr:`observers` before the session runs. Ground truth
        (:class:`maestro.evaluation.ground_truth.GroundTruth`) is the session's own first
        observer, before the record is written.
    """

    def __init__(
        self,
        source: FrameSource,
        config: SessionConfig,
        beam: BeamInterface,
        recorder: SessionRecorder | None = None,
        *,
        observers: Sequence[SessionObserver] = (),
    ) -> None:
        self.source = source
        self.config = config
        self.beam = beam
        self.recorder = recorder
        self.observers: list[SessionObserver] = list(observers)
        #: The truth columns of each record, from the frames' labels (set up with the
        #: reference frame; none before).
        self.ground_truth = GroundTruth(None)
        self.gate = Gate(config.gate_config())
        self.tracker: TemplateTracker | None = None
        self.predictor = (
            RidgeARPredictor(config.predict_ms / 1000.0, source.frame_period_s)
            if config.predict_ms > 0.0
            else None
        )
        self.geometry: GatingGeometry | None = None
        self.summary = SessionSummary()
        # Constant memory however long the session: binned as they arrive.
        self._latencies_us = StreamingHistogram(bin_width=1.0, max_value=100_000.0)
        self._shape: tuple[int, int] | None = None
        self._spacing_mm: tuple[float, float] | None = None
        self._last_t_acq_s: float | None = None
        self._last_index: int | None = None
        self._beam_on = False
        self._last_fault: str | None = None
        # Beam commands come from the loop and from the watchdog thread.
        self._beam_lock = threading.Lock()
        self._watchdog: Watchdog | None = None
        self._t0 = time.perf_counter()
        #: The tracker's result for the frame being decided (``None`` when it could not be
        #: tracked at all): what observers that re-analyse decisions need beyond the
        #: record (``maestro validate``).
        self.last_track: TrackResult | None = None
        #: Deformable mode: the registration, the outside percentage of the propagated
        #: target, and the last frame's affine (reference px -> frame px; None when the
        #: frame was not registered).
        self.registration: Any = None
        self.deformed_outside: Any = None
        self.last_affine: np.ndarray | None = None
        #: The target on the reference frame as the share of each pixel inside it (H, W,
        #: 0 to 1): a planning contour's partial volume, or the target mask as 0 / 1. What
        #: ``--labels-out`` moves or propagates (set up on the first frame).
        self.reference_fraction: np.ndarray | None = None
        #: keep_warm: the copy that rehearses decisions between frames, and the last
        #: frame decided (what it rehearses on).
        self._rehearsal: GatingSession | None = None
        self._last_frame: Frame | None = None
        self._rehearsed_frame: Frame | None = None
        self.n_rehearsals = 0
        self._keep_warm = config.keep_warm
        self._check_frame_age = config.check_frame_age  # read once, not per frame
        #: A beam interface with housekeeping (TcpBeam: acknowledgements, timeouts).
        self._beam_poll: Callable[[], None] | None = getattr(beam, "poll", None)

    # -- set-up ---------------------------------------------------------------------
    def _set_up(self, first: Frame) -> None:
        """Build tracker and boundary from the reference frame (the first one)."""
        shape = first.pixels.shape
        label = self.source.reference_label if self.source.reference_label is not None else first.label
        from_label = label is not None
        if self.config.target_rtstruct is not None:
            assert self.config.roi is not None  # check_target_options
            fraction = structure_target(self.source.description, getattr(self.source, "geometry", None),
                                        self.config.target_rtstruct, self.config.roi)
            mask = fraction >= 0.5
            if mask.shape != shape:
                raise InputError(self.source.description, "geometry", f"is {mask.shape} px but the frames are {shape}")
            if label is not None:
                log.warning("%s: the target is ROI %r of %s; the recording's first label serves as ground truth only",
                            self.source.description, self.config.roi, self.config.target_rtstruct)
            from_label = True  # a planning contour is a target contour
        else:
            mask = reference_target(self.source.description, shape, label, self.config.target_box)
            fraction = mask.astype(np.float64)
        try:
            self.tracker = TemplateTracker(
                first.pixels,
                mask,
                first.spacing_mm,
                context_mm=self.config.context_mm,
                search_mm=self.config.search_mm,
                # A match the gate would hold on never moves the search window.
                trust_floor=self.config.confidence_floor,
                # A box (--target-box) is not a target contour: weighting it over its
                # surroundings tells nothing about what moves, so the target-focused
                # alignment runs only on a labelled target.
                target_context_mm=DEFAULT_TARGET_CONTEXT_MM if from_label else None,
            )
            self.geometry = GatingGeometry(mask, first.spacing_mm, self.config.margin_mm)
            if self.config.deformable:
                from gating.deformed_outside import DeformedOutside
                from tracking.deformable import AffineRegistration

                self.registration = AffineRegistration(first.pixels, mask, first.spacing_mm)
                self.deformed_outside = DeformedOutside(mask, first.spacing_mm, self.config.margin_mm)
        except ValueError as exc:
            # The reference frame cannot serve: refuse the session before any beam decision.
            raise InputError(self.source.description, "target on the reference frame", str(exc)) from None
        self.reference_fraction = fraction
        self._shape = shape
        self._spacing_mm = first.spacing_mm
        ref_label = first.label if first.label is not None else self.source.reference_label
        self.ground_truth = GroundTruth(ref_label)
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
        # A frame that is not newer than the last one decided (duplicate, out of order,
        # clock gone backwards) says nothing about the target now: treat it as stale.
        in_order = self._last_index is None or (
            frame.index > self._last_index and frame.t_acq_s > self._last_t_acq_s  # type: ignore[operator]
        )
        self.last_track = None
        try:
            if frame.pixels.shape != self._shape or frame.spacing_mm != self._spacing_mm:
                raise ValueError(
                    f"frame geometry changed to {frame.pixels.shape} at "
                    f"{frame.spacing_mm} mm from {self._shape} at {self._spacing_mm} mm"
                )
            result = self.last_track = tracker.track(frame.pixels)
            row_mm, col_mm = result.row_mm, result.col_mm
            confidence, valid = result.confidence, result.valid
            # A peak on the edge of the search window may be the slope of a peak outside
            # it, a weak match found while re-acquiring a lost target may be a look-alike,
            # and a match whose two estimates disagree may be off the target: the position
            # cannot be vouched for, so the gate sees no confidence (and, for the last,
            # holds as inconsistent).
            gate_confidence = result.gate_confidence
            consistent = not result.inconsistent
            peak, sharpness = result.peak_zncc, result.sharpness
            self.last_affine = None
            note = ""  # the registration's reason, when it ran and failed
            if self.registration is not None and valid and result.vouched:
                row_mm, col_mm, consistent, note = self._register(frame, result)
            if valid and self.predictor is not None:
                # Decide on where the target will be when the beam responds.
                pred_row_mm, pred_col_mm = self.predictor.update(frame.t_acq_s, row_mm, col_mm)
                outside = self._outside_pct(geometry, pred_row_mm - row_mm, pred_col_mm - col_mm, pred_row_mm, pred_col_mm)
            else:
                outside = self._outside_pct(geometry, 0.0, 0.0, row_mm, col_mm) if valid else 100.0
            tracking_note = "" if valid else result.reason
            if self.registration is not None and not consistent and not result.inconsistent:
                tracking_note = note
            if result.inconsistent:
                tracking_note = (
                    f"target-focused alignment {result.disagreement_mm:.2f} mm from the context match's "
                    f"usual relation, target ZNCC {result.target_zncc:.2f}"
                )
        except Exception as exc:  # noqa: BLE001 - the gate, not a traceback, handles it
            row_mm = col_mm = peak = sharpness = math.nan
            outside = 100.0
            confidence, valid, gate_confidence, consistent = 0.0, False, 0.0, True
            tracking_note = f"{type(exc).__name__}: {exc}"
        inputs = GateInputs(outside, gate_confidence, valid, consistent)
        # The gate and the beam change together under one lock: a watchdog hold between
        # the decision and the command (or during tracking) also resets the gate, so the
        # beam-on delay always restarts after it.
        with self._beam_lock:
            frame_age_s = (time.perf_counter() - frame.t_recv_s if self._check_frame_age else 0.0) if in_order else math.inf
            decision, beam_error = decide(self.gate, self.beam, frame.t_acq_s, inputs, frame_age_s, fault)
            if beam_error is not None:
                # The gate has held with beam_fault (its release delay restarts); hold the
                # beam by every other way.
                self._guarded_hold(BEAM_FAULT, self._last_t_acq_s)
        latency_us = (time.perf_counter() - frame.t_recv_s) * 1e6
        # ---- beam command issued: everything below is bookkeeping -----------------
        if self._beam_poll is not None:
            # A beam link reads its acknowledgements now, after the command.
            with self._beam_lock:
                try:
                    self._beam_poll()
                except Exception:  # a link that fails here fails safe on its own
                    log.warning("beam interface poll failed", exc_info=True)
        if self._watchdog is not None:
            self._watchdog.kick()
        if in_order or frame.index > self._last_index:  # type: ignore[operator]
            # A newer frame whose time went backwards is held once, then the timeline is
            # re-anchored on it (a scanner restarting its clock must not hold forever).
            self._last_t_acq_s = frame.t_acq_s
            self._last_index = frame.index
        if not in_order:
            self._event("frame_out_of_order", "stale_frame", f"frame {frame.index} at {frame.t_acq_s:.3f} s")
        if fault != self._last_fault:
            # The reason column holds a hold reason; what the source reported is the detail.
            self._event("source_fault" if fault else "source_recovered", SOURCE_FAULT if fault else "",
                        fault or f"was: {self._last_fault}")
            self._last_fault = fault
        if beam_error is not None:
            log.error("frame %d: beam command failed (%s): holding", frame.index, beam_error)
            self._event("beam_fault", BEAM_FAULT, f"{type(beam_error).__name__}: {beam_error}")
        if decision.beam_on != self._beam_on:
            self._beam_on = decision.beam_on
            self._event("beam_release" if decision.beam_on else "beam_hold", decision.reason, tracking_note)
        if decision.reason == TRACKING_FAULT and tracking_note:
            log.debug("frame %d: tracking fault: %s", frame.index, tracking_note)
        record = self._record(frame, row_mm, col_mm, confidence, outside, decision, latency_us, peak, sharpness)
        self._last_frame = frame
        return record

    # -- keeping the hot path warm between frames -------------------------------------------
    def _make_rehearsal(self) -> GatingSession:
        """A copy of the decision state (tracker, boundary, registration) with a beam of
        its own and nothing recording: what :meth:`rehearse` runs."""
        from hardware import SimulatedBeam

        shadow = GatingSession(self.source, dataclasses.replace(self.config, watchdog_periods=None, keep_warm=False),
                               SimulatedBeam())
        shadow.tracker = _copy_keeping_readonly(self.tracker)
        shadow.geometry = _copy_keeping_readonly(self.geometry)
        shadow.registration = _copy_keeping_readonly(self.registration)
        shadow.deformed_outside = _copy_keeping_readonly(self.deformed_outside)
        shadow._shape, shadow._spacing_mm = self._shape, self._spacing_mm
        return shadow

    def rehearse(self) -> None:
        """Run the last frame's decision again on the rehearsal copy (keep_warm), once
        per frame decided.

        Off the decision path: called between frames; its tracker, gate and beam are the
        copy's own, so nothing the session decides depends on it. Never raises.
        """
        last = self._last_frame
        if last is None or self.tracker is None or last is self._rehearsed_frame:
            return  # once per frame: a source that ticks through a stall gets no more
        self._rehearsed_frame = last
        t0_s = time.perf_counter()
        try:
            if self._rehearsal is None:
                self._rehearsal = self._make_rehearsal()
            shadow = self._rehearsal
            k = self.n_rehearsals + 1
            # A newer index and time for the copy's own timeline; received now.
            shadow.process(Frame(k, k * self.source.frame_period_s, time.perf_counter(), last.pixels,
                                 last.spacing_mm, None))
            self.n_rehearsals = k
        except Exception:  # a rehearsal must never disturb the session
            log.warning("keep-warm rehearsal failed: switched off for this session", exc_info=True)
            self._keep_warm = False
            self._rehearsal = None
            return
        took_s = time.perf_counter() - t0_s
        if took_s > _MAX_REHEARSAL_PERIODS * self.source.frame_period_s:
            # It would delay the next frame more than it could save (a compilation, a
            # loaded machine): keeping warm is not worth it in this session.
            log.warning("keep-warm rehearsal took %.0f ms: switched off for this session", took_s * 1e3)
            self._keep_warm = False
            self._rehearsal = None

    def _warm_beam_link(self) -> None:
        """keep_warm, after the rehearsal: a beam with a link (``ping()``, as
        :class:`hardware.beam_tcp.TcpBeam`) sends a heartbeat now, so that the command
        after the frame about to arrive does not pay for waking the link. Never raises."""
        ping = getattr(self.beam, "ping", None)
        if ping is None:
            return
        try:
            ping()
        except Exception:  # keeping warm must never disturb the session
            log.warning("keep-warm beam ping failed: switched off for this session", exc_info=True)
            self._keep_warm = False

    def _register(self, frame: Frame, result: TrackResult) -> tuple[float, float, bool, str]:
        """Deformable mode: propagate the target by an affine registration started at the
        rigid match. Returns the propagated centroid's displacement (mm), whether the
        registration succeeded, and why not."""
        reg = self.registration
        status = reg.register(frame.pixels, result.row_px, result.col_px)
        if status != 0:
            return result.row_mm, result.col_mm, False, f"deformable registration: {reg.status_text(status)}"
        c0 = reg.reference_centroid_px
        affine = self.last_affine = fused_affine(reg.affine, c0, (result.row_px, result.col_px), self.config.rigid_share)
        row_px, col_px = propagated_centroid_px(c0, affine)
        return (row_px - c0[0]) * frame.spacing_mm[0], (col_px - c0[1]) * frame.spacing_mm[1], True, ""

    def _outside_pct(self, geometry: GatingGeometry, extra_row_mm: float, extra_col_mm: float, row_mm: float, col_mm: float) -> float:
        """Outside percentage of the tracked target: translated (rigid), or propagated by
        the last affine moved by (extra_row_mm, extra_col_mm) (deformable: the
        prediction's offset), after the uncertainty allowance moved it further away."""
        far_row_mm, far_col_mm = away_from_reference_mm(row_mm, col_mm, self.config.uncertainty_mm)
        extra_row_mm += far_row_mm - row_mm
        extra_col_mm += far_col_mm - col_mm
        row_mm, col_mm = far_row_mm, far_col_mm
        affine = self.last_affine
        if affine is None:
            return geometry.outside_pct(row_mm, col_mm)
        if extra_row_mm or extra_col_mm:
            affine = affine.copy()
            affine[0, 2] += extra_row_mm / self._spacing_mm[0]  # type: ignore[index]
            affine[1, 2] += extra_col_mm / self._spacing_mm[1]  # type: ignore[index]
        return float(self.deformed_outside.outside_pct(affine))

    # -- events and faults that are not frames -----------------------------------------
    def _event(self, event: str, reason: str = "", detail: str = "") -> None:
        if self.recorder is None:
            return
        try:
            self.recorder.write_event(
                time.perf_counter() - self._t0,
                self._last_index,
                event,
                "on" if self._beam_on else "hold",
                reason,
                detail,
            )
        except OSError as exc:
            self._recording_failed(exc)

    def _hold_for_source_fault(self) -> None:
        """Between frames, the source reports a fault: hold the beam at once (loop thread)."""
        fault = self.source.fault
        t_s = self._last_t_acq_s
        with self._beam_lock:
            self.gate.watchdog(math.nan if t_s is None else t_s, SOURCE_FAULT)  # release delay restarts
            self._guarded_hold(SOURCE_FAULT, t_s)
            was_on, self._beam_on = self._beam_on, False
        if fault != self._last_fault:
            self._event("source_fault", SOURCE_FAULT, f"{fault}; beam was {'on' if was_on else 'held'}")
            self._last_fault = fault

    def _watchdog_reason(self) -> str:
        return SOURCE_FAULT if self.source.fault else STALE_FRAME

    def _on_watchdog(self, silence_s: float) -> None:
        """Watchdog thread: no frame decided for too long: hold the beam now."""
        reason = self._watchdog_reason()
        t_s = None if self._last_t_acq_s is None else self._last_t_acq_s + silence_s
        with self._beam_lock:
            self.gate.watchdog(math.nan if t_s is None else t_s, reason)  # the release delay restarts
            self._guarded_hold(reason, t_s)
            was_on, self._beam_on = self._beam_on, False
        log.warning("watchdog: no frame for %.0f ms: beam held (%s)", silence_s * 1e3, reason)
        self._event("watchdog", reason, f"no frame decided for {silence_s * 1e3:.0f} ms; beam was {'on' if was_on else 'held'}")

    def _guarded_hold(self, reason: str, t_s: float | None) -> None:
        """Command a hold that never raises; if the interface refuses it, say so loudly.

        Called with the beam lock held. A beam interface that cannot take commands must
        fail safe on its own (TcpBeam and the MAESTRO-BEAM/1 endpoint hold when the link
        breaks); here the session makes sure a failing hold never hides the fault that
        asked for it.
        """
        try:
            self.beam.hold(reason, t_s=t_s)
        except Exception:
            log.critical("beam interface refused a hold (%s): it must fail safe on its own", reason, exc_info=True)

    def _recording_failed(self, exc: OSError) -> None:
        """The record of delivery cannot be kept: hold the beam and end the session."""
        with self._beam_lock:
            self._guarded_hold("recording_fault", self._last_t_acq_s)
            self._beam_on = False
        log.error("recording failed (%s): beam held, session ends", exc)
        where = self.recorder.out_dir if self.recorder else ""
        raise RecordingFault(f"{where}: recording: {exc.strerror or exc}: beam held, session stopped") from exc

    def _record(self, frame, row_mm, col_mm, confidence, outside, decision, latency_us, peak, sharpness) -> FrameRecord:
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
        )
        self.ground_truth.frame_decided(self, frame, record)
        s = self.summary
        s.frames += 1
        if decision.beam_on:
            s.beam_on_frames += 1
        else:
            s.hold_frames_by_reason[decision.reason] = s.hold_frames_by_reason.get(decision.reason, 0) + 1
        if self.recorder is not None:
            try:
                self.recorder.write_frame(record)
            except OSError as exc:
                self._recording_failed(exc)
        for observer in self.observers:
            observer.frame_decided(self, frame, record)
        if s.frames > 1:  # frame 0 is the reference; its latency includes the set-up
            self._latencies_us.add(latency_us)
        return record

    # -- whole session ----------------------------------------------------------------
    def run(self, max_frames: int | None = None) -> SessionSummary:
        """Run until the source ends (or ``max_frames``), then hold the beam.

        The beam ends held whatever stops the session (end of data, Ctrl-C, an error).
        """
        # Every kernel compiled or loaded before the first frame is accepted.
        # float32 only: the session's tracker works in float32 (other frames are converted).
        warm_up_tracking(dtypes=(np.float32,), map_functions=False)
        warm_up_gating()
        gc_was_enabled = gc.isenabled()
        # Keep the collector out of the loop's tail: collect once now, before any frame
        # is waiting, then only every _GC_EVERY_FRAMES frames, after a beam command.
        gc.collect()
        gc.freeze()
        gc.disable()
        self._t0 = time.perf_counter()
        try:
            self._event("session_start", "startup", self.source.description)
            for frame in self.source:
                if frame is None:
                    # A live source's heartbeat: no frame this period. A fault the source
                    # reports holds the beam now; mere silence is the watchdog's to judge.
                    if self.source.fault:
                        self._hold_for_source_fault()
                    elif self._keep_warm:
                        self.rehearse()  # a frame is due: have its code and data warm
                        self._warm_beam_link()
                    continue
                if self.tracker is None:
                    self._set_up(frame)
                self.process(frame)
                if self._watchdog is None and self.config.watchdog_periods is not None:
                    self._watchdog = Watchdog(
                        self.config.watchdog_periods * self.source.frame_period_s,
                        self._on_watchdog,
                        # A paused replay stops its session clock: pausing is not silence.
                        clock=getattr(self.source, "session_clock", time.perf_counter),
                    )
                    self._watchdog.start()
                if self.summary.frames % _GC_EVERY_FRAMES == 0:
                    gc.collect(1)  # after the beam command: off the latency path
                if max_frames is not None and self.summary.frames >= max_frames:
                    self.summary.stopped_by = f"frame limit ({max_frames})"
                    break
        except (KeyboardInterrupt, OperatorStop) as exc:
            self.summary.stopped_by = "operator stop"
            self._event("operator_stop", "session_end", type(exc).__name__)
            raise
        except RecordingFault as exc:
            self.summary.stopped_by = "recording fault"
            self._event("recording_fault", "recording_fault", str(exc))
            raise
        except BaseException:
            self.summary.stopped_by = "error"
            raise
        finally:
            # The hold comes first and cannot raise: nothing below may stand between the
            # end of a session and a held beam.
            with self._beam_lock:
                self._guarded_hold("session_end", self._last_t_acq_s)
                self._beam_on = False
            try:
                if self._watchdog is not None:
                    self._watchdog.stop()
            finally:
                if gc_was_enabled:
                    gc.enable()
                gc.unfreeze()
                self._finish_summary()
                try:
                    self._event("session_end", "session_end", self.summary.stopped_by)
                except RecordingFault:
                    pass  # already holding; the session is over either way
        return self.summary

    def _finish_summary(self) -> None:
        s = self.summary
        s.latency_us = self._latencies_us.summary({"p50": 50, "p99": 99})
        s.error_mm = self.ground_truth.error_summary()
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


def _copy_keeping_readonly(obj: Any) -> Any:
    """``copy.deepcopy(obj)``, with every array that is read-only in ``obj`` read-only in
    the copy too.

    A deep copy makes arrays writeable, and Numba compiles a separate specialisation for
    a writeable array where it had a read-only one: the copy's first call would compile
    (seconds on an empty cache) instead of running warm.
    """
    clone = copy.deepcopy(obj)
    _match_readonly(obj, clone, set())
    return clone


def _match_readonly(original: Any, clone: Any, seen: set[int]) -> None:
    if id(original) in seen:
        return
    seen.add(id(original))
    if isinstance(original, np.ndarray):
        if not original.flags.writeable and isinstance(clone, np.ndarray):
            clone.flags.writeable = False
        return
    if isinstance(original, (list, tuple)):
        for a, b in zip(original, clone):
            _match_readonly(a, b, seen)
    elif isinstance(original, dict):
        for key, value in original.items():
            _match_readonly(value, clone.get(key), seen)
    else:
        names = list(getattr(original, "__dict__", {}))
        for cls in type(original).__mro__:
            slots = getattr(cls, "__slots__", ())
            names += [n for n in ((slots,) if isinstance(slots, str) else slots) if hasattr(original, n)]
        for key in names:
            _match_readonly(getattr(original, key), getattr(clone, key, None), seen)
