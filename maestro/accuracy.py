"""``maestro accuracy``: tracking, prediction and gating accuracy on trace-driven phantoms.

For every recorded trajectory (the KIM liver traces by default) and both MRIdian cine
modes, a phantom session is rendered frame by frame (:class:`maestro.phantom.TracePhantom`)
and tracked from its first frame with the session's tracker. Against the known lesion
position and mask it measures:

* centroid error (mean, p95; frames after the first), and its maximum over the frames
  the tracker does *not* flag as low confidence;
* of the frames with an error above 2 mm, the share the tracker flags (an invalid
  result, a peak on the edge of the search window, or confidence below the floor: the
  frames on which the gate holds the beam whatever the position says);
* Dice of the tracked mask (the reference mask moved by the tracked displacement)
  against the true mask, for lesions of at least 2 cm.

Prediction: on the traces resampled to 4 and 8 fps, the RMSE at the horizon (the system
latency) of no prediction, of constant-velocity extrapolation and of the adaptive ridge
AR predictor. Gating: on the tracked positions, with the beam responding one latency
after each decision, the share of beam-on time during which the true target was outside
the boundary beyond the threshold, and the duty cycle, without and with prediction.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gating.uncertainty import away_from_reference_mm
from maestro import defaults

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TRACES",
    "GatingAccuracy",
    "PredictionAccuracy",
    "TrackingAccuracy",
    "add_parser",
    "evaluate_gating",
    "evaluate_prediction",
    "evaluate_tracking",
]

#: Where the KIM liver trajectories are kept, seen from the project root.
DEFAULT_TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "motion" / "kim-liver"
#: Error above which a frame must be flagged by the tracker, mm (the issue's target).
LARGE_ERROR_MM = 2.0
#: Lesions at least this large are scored by Dice, mm.
DICE_MIN_DIAMETER_MM = 20.0


@dataclass(frozen=True)
class TrackingAccuracy:
    """Tracking accuracy of one trace-driven session (frames after the first).

    Attributes
    ----------
    trace, geometry : str
    lesion_mm : float
        Lesion diameter, mm.
    frames : int
        Frames scored (the first, the reference, is not).
    mode : str
        ``deformable`` (replay's default) or ``rigid``.
    mean_mm, p95_mm : float
        Centroid error over every scored frame (an invalid frame counts as infinite).
    max_unflagged_mm : float
        Largest error on a frame the tracker did not flag (0 when all were flagged).
    large : int
        Frames with error > 2 mm.
    large_flagged_pct : float
        Share of those the tracker flagged, %; 100 when there are none.
    flagged_pct : float
        Share of all scored frames flagged, %.
    dice_mean : float
        Mean Dice of tracked vs true mask; NaN for lesions under 2 cm.
    tracked_mm : (T, 2) ndarray
        Tracked displacement per frame (frame 0 is 0), NaN where invalid.
    true_mm : (T, 2) ndarray
        True displacement per frame.
    flagged : (T,) bool ndarray
        Per-frame flag (frame 0 False): the gate's confidence below the floor, or a
        failed registration.
    gate_confidence : (T,) float ndarray
        The confidence the gate may use per frame
        (:attr:`tracking.tracker.TrackResult.gate_confidence`; frame 0, the reference, 1).
    registered : (T,) bool ndarray
        False where the deformable mode's registration failed (the session holds as
        inconsistent); True elsewhere and in the rigid mode.
    confidence_floor : float
        The floor the flags were set with (the gate's).
    """

    trace: str
    geometry: str
    lesion_mm: float
    frames: int
    mean_mm: float
    p95_mm: float
    max_unflagged_mm: float
    large: int
    large_flagged_pct: float
    flagged_pct: float
    dice_mean: float
    mode: str
    tracked_mm: np.ndarray
    true_mm: np.ndarray
    flagged: np.ndarray
    gate_confidence: np.ndarray
    registered: np.ndarray
    confidence_floor: float


def _trace_xyz(trace) -> np.ndarray:
    return np.stack((trace.si_mm, trace.ap_mm, trace.lr_mm), axis=1)


def _registered_mm(registration, pixels: np.ndarray, row_px: float, col_px: float,
                   spacing_mm: tuple[float, float],
                   rigid_share: float) -> tuple[float, float, np.ndarray] | None:
    """The deformable mode's step, as the session takes it (``GatingSession._register``):
    the registration started at the rigid match (px) and fused with it
    (:func:`tracking.deformable.fused_affine`), then the displacement of the propagated
    target's centroid (row_mm, col_mm) and the fused affine; ``None`` when the
    registration fails (the session holds)."""
    from tracking.deformable import fused_affine, propagated_centroid_px

    if registration.register(pixels, row_px, col_px) != 0:
        return None
    c0 = registration.reference_centroid_px
    affine = fused_affine(registration.affine, c0, (row_px, col_px), rigid_share)
    c = propagated_centroid_px(c0, affine)
    return (c[0] - c0[0]) * spacing_mm[0], (c[1] - c0[1]) * spacing_mm[1], affine


def evaluate_tracking(
    trace,
    geometry: str,
    seconds: float | None = 60.0,
    seed: int = 1,
    lesion_diameter_mm: float | None = None,
    confidence_floor: float = defaults.CONFIDENCE_FLOOR,
    loop: bool = False,
    context_mm: float = defaults.CONTEXT_MM,
    search_mm: float = defaults.SEARCH_MM,
    max_references: int = 1,
    strain_per_mm: float | None = None,
    reacquire_mm: float | None = None,
    excursions: object = (),
    slide: float = 0.0,
    tracker_options: dict | None = None,
    deformable: bool = True,
    rigid_share: float = defaults.RIGID_SHARE,
) -> TrackingAccuracy:
    """Render a trace-driven session frame by frame and score the tracker on it.

    Parameters
    ----------
    trace : hardware.motion_trace.MotionTrace
    geometry : str
        ``"mridian-8fps"`` or ``"mridian-4fps"``.
    seconds : float or None
        Session length (``None``: the whole trace); clipped to the trace unless ``loop``.
    seed, lesion_diameter_mm, loop
        As for :class:`maestro.phantom.TracePhantom`.
    confidence_floor : float
        Confidence below which a frame counts as flagged (the gate's floor).
    context_mm, search_mm : float
        Tracker settings (``maestro replay``'s defaults; see
        :data:`tracking.tracker.DEFAULT_CONTEXT_MM`).
    max_references : int
        1: the fixed reference (:class:`tracking.tracker.TemplateTracker`); more: up to
        that many references from different breathing phases
        (:class:`tracking.multi_reference.MultiReferenceTracker`).
    strain_per_mm : float or None
        Lesion deformation of the phantom; ``None`` for the phantom's default.
    reacquire_mm : float or None
        The tracker's re-acquisition window (:class:`tracking.tracker.TemplateTracker`);
        ``None`` for its default, twice ``search_mm``.
    excursions : sequence of (start_s, duration_s, si_mm, ap_mm)
        Sudden whole-liver shifts added to the trace (see
        :func:`maestro.phantom.excursions_for`).
    deformable : bool
        Replay's default mode: the position is the centroid of the reference target
        propagated by the affine registration started at the rigid match and fused with
        it (:func:`tracking.deformable.fused_affine`), a failed
        registration is flagged (the session holds), and Dice is that of the propagated
        target. ``False``: the rigid mode (``--rigid``).
    rigid_share : float
        The deformable mode's share of the rigid match in the position, in [0, 1]
        (:data:`tracking.deformable.RIGID_SHARE`, as replay; 0: the propagated centroid
        alone).
    """

    from maestro.evaluation.masks import dice as mask_dice
    from maestro.evaluation.masks import moved_mask
    from maestro.phantom import TRACE_STRAIN_PER_MM, TracePhantom
    from tracking.deformable import AffineRegistration, propagate_mask
    from tracking.multi_reference import MultiReferenceTracker
    from tracking.tracker import TemplateTracker

    if seconds is not None and not loop:
        seconds = min(seconds, trace.duration_s)
    phantom = TracePhantom(
        trace.times_s, _trace_xyz(trace), geometry, seconds, seed, lesion_diameter_mm, loop=loop,
        strain_per_mm=TRACE_STRAIN_PER_MM if strain_per_mm is None else strain_per_mm,
        excursions=excursions, slide=slide,
    )
    n = phantom.n_frames
    tracked = np.full((n, 2), np.nan)
    flagged = np.zeros(n, dtype=bool)
    gate_confidence = np.ones(n)
    registration_ok = np.ones(n, dtype=bool)
    dice = []
    score_dice = phantom.lesion.diameter_mm >= DICE_MIN_DIAMETER_MM
    tracker = registration = None
    ref_fraction = None
    for f in phantom.frames():
        pixels = f.pixels.astype(np.float32)
        if tracker is None:
            ref_fraction = f.label_fraction.astype(np.float64)
            if deformable:
                registration = AffineRegistration(pixels, ref_fraction >= 0.5, phantom.spacing_mm)
            if max_references > 1:
                tracker = MultiReferenceTracker(
                    pixels, ref_fraction >= 0.5, phantom.spacing_mm,
                    context_mm=context_mm, search_mm=search_mm, max_references=max_references,
                    trust_floor=confidence_floor, reacquire_mm=reacquire_mm, **(tracker_options or {}),
                )
            else:
                tracker = TemplateTracker(
                    pixels, ref_fraction >= 0.5, phantom.spacing_mm,
                    context_mm=context_mm, search_mm=search_mm, trust_floor=confidence_floor,
                    reacquire_mm=reacquire_mm, **(tracker_options or {}),
                )
            tracked[0] = 0.0
            continue
        r = tracker.track(pixels)
        assert ref_fraction is not None  # set on frame 0
        moved: np.ndarray | None = None  # the tracked target, when tracked
        gate_confidence[f.index] = r.gate_confidence
        flagged[f.index] = r.gate_confidence < confidence_floor
        if r.valid and registration is not None:
            registered = _registered_mm(registration, pixels, r.row_px, r.col_px, phantom.spacing_mm, rigid_share)
            if registered is None:
                # The session holds on a failed registration; its rigid match is scored.
                flagged[f.index] = True
                registration_ok[f.index] = False
                tracked[f.index] = (r.row_mm, r.col_mm)
                moved = moved_mask(ref_fraction, r.row_px, r.col_px)
            else:
                tracked[f.index] = registered[:2]
                moved = propagate_mask(ref_fraction, registered[2])
        elif r.valid:
            tracked[f.index] = (r.row_mm, r.col_mm)
            moved = moved_mask(ref_fraction, r.row_px, r.col_px)
        if score_dice:
            if r.valid:
                assert moved is not None
                truth = f.label_fraction >= 0.5
                dice.append(mask_dice(moved, truth))
            else:
                dice.append(0.0)
    truth = np.asarray(phantom.trajectory_mm)
    err = np.hypot(*(tracked[1:] - truth[1:]).T)
    err = np.where(np.isfinite(err), err, np.inf)
    flags = flagged[1:]
    large = err > LARGE_ERROR_MM
    unflagged = err[~flags]
    return TrackingAccuracy(
        trace=trace.name,
        geometry=geometry,
        lesion_mm=phantom.lesion.diameter_mm,
        frames=int(err.size),
        mean_mm=float(err.mean()),
        p95_mm=float(np.percentile(err, 95)),
        max_unflagged_mm=float(unflagged.max()) if unflagged.size else 0.0,
        large=int(large.sum()),
        large_flagged_pct=100.0 * float(flags[large].mean()) if large.any() else 100.0,
        flagged_pct=100.0 * float(flags.mean()),
        dice_mean=float(np.mean(dice)) if dice else math.nan,
        mode="deformable" if deformable else "rigid",
        tracked_mm=tracked,
        true_mm=truth,
        flagged=flagged,
        gate_confidence=gate_confidence,
        registered=registration_ok,
        confidence_floor=confidence_floor,
    )


@dataclass(frozen=True)
class PredictionAccuracy:
    """RMSE (mm, 2D) of the position ``horizon_ms`` ahead on one trace at one frame rate.

    ``none_mm`` uses the current position as the prediction. Scored after the first
    ``warmup_s`` seconds (the adaptive model's learning time).
    """

    trace: str
    fps: float
    horizon_ms: float
    none_mm: float
    velocity_mm: float
    ridge_ar_mm: float

    @property
    def gain_pct(self) -> float:
        """How much lower the ridge AR RMSE is than no prediction, %."""
        return 100.0 * (1.0 - self.ridge_ar_mm / self.none_mm) if self.none_mm > 0 else 0.0


def evaluate_prediction(
    trace, fps: float, horizon_ms: float = 250.0, warmup_s: float = 20.0
) -> PredictionAccuracy:
    """Resample a trace at ``fps`` and score the predictors at ``horizon_ms``."""
    from maestro.phantom import trace_displacement_mm
    from tracking.predict import ConstantVelocityPredictor, RidgeARPredictor

    h = horizon_ms / 1000.0
    n = int(math.floor((trace.duration_s - h) * fps))
    t = np.arange(n) / fps
    xyz = _trace_xyz(trace)
    now = trace_displacement_mm(trace.times_s, xyz, t)[:, :2]
    future = trace_displacement_mm(trace.times_s, xyz, t + h)[:, :2]
    cv = ConstantVelocityPredictor(h, 1.0 / fps)
    ar = RidgeARPredictor(h, 1.0 / fps)
    p_cv = np.array([cv.update(ti, *x) for ti, x in zip(t, now)])
    p_ar = np.array([ar.update(ti, *x) for ti, x in zip(t, now)])
    scored = slice(int(round(warmup_s * fps)), None)

    def rmse(p: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.sum((p[scored] - future[scored]) ** 2, axis=1))))

    return PredictionAccuracy(trace.name, fps, horizon_ms, rmse(now), rmse(p_cv), rmse(p_ar))


@dataclass(frozen=True)
class GatingAccuracy:
    """Gating under a beam latency, on tracked positions, without and with prediction.

    Attributes
    ----------
    wrong_on_pct, wrong_on_pred_pct : float
        Share of beam-on time with the true target outside the boundary beyond the
        threshold, %, without / with prediction.
    duty_pct, duty_pred_pct : float
        Beam-on share of the session, %, without / with prediction.
    ideal_duty_pct : float
        Share of the session during which the true target was within the threshold.
    """

    trace: str
    geometry: str
    latency_ms: float
    wrong_on_pct: float
    wrong_on_pred_pct: float
    duty_pct: float
    duty_pred_pct: float
    ideal_duty_pct: float


def evaluate_gating(
    acc: TrackingAccuracy,
    trace,
    reference_mask: np.ndarray,
    spacing_mm: tuple[float, float],
    fps: float,
    latency_ms: float = 250.0,
    margin_mm: float = defaults.MARGIN_MM,
    threshold_pct: float = defaults.THRESHOLD_PCT,
    excursions: object = (),
    uncertainty_mm: float = defaults.UNCERTAINTY_MM,
) -> GatingAccuracy:
    """Replay the gate's decisions on tracked positions with the beam one latency late.

    The decision taken on frame k (position tracked on it, or predicted ``latency_ms``
    ahead) holds for the beam from ``t_k + latency`` to ``t_{k+1} + latency``; it is
    scored against the true position at ``t_k + latency`` (from the trace). Each frame
    is decided by the session's decision step (:func:`maestro.decision.decide`, the gate
    without release delay), so flagged frames hold the beam. ``excursions`` as given to
    :func:`evaluate_tracking`.
    """
    from gating.boundary import GatingGeometry
    from gating.gate import Gate, GateConfig
    from maestro.decision import GateInputs, decide
    from maestro.phantom import excursion_offsets_mm, trace_displacement_mm
    from tracking.predict import RidgeARPredictor

    geometry = GatingGeometry(reference_mask, spacing_mm, margin_mm)
    h = latency_ms / 1000.0
    n = acc.tracked_mm.shape[0]
    t = np.arange(n) / fps
    keep = t + h <= trace.duration_s
    t = t[keep]
    xyz = _trace_xyz(trace)
    absolute = trace_displacement_mm(trace.times_s, xyz, t + h)[:, :2]
    truth_late = absolute - trace_displacement_mm(trace.times_s, xyz, np.zeros(1))[0, :2]
    truth_late += excursion_offsets_mm(excursions, t + h)
    predictor = RidgeARPredictor(h, 1.0 / fps)
    # The session's gate (no release delay), one on tracked and one on predicted positions.
    gate, gate_pred = Gate(GateConfig(threshold_pct, acc.confidence_floor)), Gate(GateConfig(threshold_pct, acc.confidence_floor))
    on, on_pred, truly_in = [], [], []
    for k in range(t.size):
        pos = acc.tracked_mm[k]
        valid = bool(np.isfinite(pos).all())
        true_in = geometry.outside_pct(*truth_late[k]) <= threshold_pct
        truly_in.append(true_in)
        outside = outside_pred = 100.0
        if valid and not acc.flagged[k]:
            pred = predictor.update(t[k], *pos)  # fed the positions the gate may use, as the session
            outside = geometry.outside_pct(*away_from_reference_mm(pos[0], pos[1], uncertainty_mm))
            outside_pred = geometry.outside_pct(*away_from_reference_mm(*pred, uncertainty_mm))
        confidence, registration_ok = float(acc.gate_confidence[k]), bool(acc.registered[k])
        inputs = GateInputs(outside, confidence, valid, registration_ok)
        on.append(decide(gate, None, float(t[k]), inputs)[0].beam_on)
        on_pred.append(decide(gate_pred, None, float(t[k]), dataclasses.replace(inputs, outside_pct=outside_pred))[0].beam_on)
    on_a, pred_a, in_a = (np.asarray(v)[1:] for v in (on, on_pred, truly_in))

    def wrong(beam: np.ndarray) -> float:
        return 100.0 * float(np.mean(~in_a[beam])) if beam.any() else 0.0

    return GatingAccuracy(
        trace=acc.trace,
        geometry=acc.geometry,
        latency_ms=latency_ms,
        wrong_on_pct=wrong(on_a),
        wrong_on_pred_pct=wrong(pred_a),
        duty_pct=100.0 * float(on_a.mean()),
        duty_pred_pct=100.0 * float(pred_a.mean()),
        ideal_duty_pct=100.0 * float(in_a.mean()),
    )


@dataclass(frozen=True)
class RealisticAccuracy:
    """Tracking of one realistic case (a lesion in a real volunteer's motion field,
    :mod:`maestro.phantom.motion`) in one mode, frames after the first.

    Attributes
    ----------
    case, role, geometry, mode : str
        ``role`` is ``tuning`` or ``held-out``; ``mode`` ``rigid`` or ``deformable``.
    lesion_mm : float
    frames : int
    mean_mm, p95_mm, max_unflagged_mm : float
        Centroid error over unflagged frames (mean, p95) and its maximum; flagged frames
        are held and reported apart.
    large, large_flagged_pct, flagged_pct
        As in :class:`TrackingAccuracy` (over every frame).
    dice, hd95_mm, msd_mm : float
        TrackRAD2025 metrics of the tracked mask (the reference moved, or propagated in
        the deformable mode) against the true mask (label fraction >= 0.5), on 1 mm
        grids, mean over unflagged frames. The reference is frame 0's label fraction, as
        a planning contour gives it (:func:`maestro.target.structure_target`).
    relative_d98 : float
        TrackRAD2025's dose metric (:func:`maestro.evaluation.trackrad_metrics.relative_d98`): the D98 of the
        reference target under a dose that follows the tracked mask's centroid over the
        unflagged frames, relative to a perfectly placed one (1 = no loss).
    dice_mask_ref : float
        ``dice`` with a binary reference (frame 0's label >= 0.5), as a label image
        gives it: its edge moves in whole pixels where a contour's moves by fractions.
    wrong_on_2_pct : float
        Share of beam-on frames (3 mm / 10 %, no latency) with the true target more than
        the threshold + 2 points outside; truth from the exact warped lesion.
    wrong_on_5 : int
        Beam-on frames with the true target more than the threshold + 5 points outside.
    bound_on_2_pct : float
        ``wrong_on_2_pct`` of a perfect rigid tracker without the uncertainty allowance:
        the gate fed the lesion's true centroid displacement. What remains there is the
        gate's model of the target (the reference mask, moved rigidly) against the true,
        deforming lesion, which no tracker removes.
    duty_pct : float
        Share of frames with the beam on (%): what the gate, with its allowance, delivers.
    ideal_duty_pct : float
        Share of frames with the true target within the threshold (%): the duty cycle of
        a gate that knew the truth.
    """

    case: str
    role: str
    geometry: str
    mode: str
    lesion_mm: float
    frames: int
    mean_mm: float
    p95_mm: float
    max_unflagged_mm: float
    large: int
    large_flagged_pct: float
    flagged_pct: float
    dice: float
    hd95_mm: float
    msd_mm: float
    relative_d98: float
    dice_mask_ref: float
    wrong_on_2_pct: float
    wrong_on_5: int
    bound_on_2_pct: float
    duty_pct: float
    ideal_duty_pct: float


def evaluate_realistic(
    case_name: str,
    geometry: str,
    seconds: float = 40.0,
    seed: int = 1,
    deformable: bool = False,
    series_folder: Path | None = None,
    confidence_floor: float = defaults.CONFIDENCE_FLOOR,
    margin_mm: float = defaults.MARGIN_MM,
    threshold_pct: float = defaults.THRESHOLD_PCT,
    uncertainty_mm: float = defaults.UNCERTAINTY_MM,
    rigid_share: float = defaults.RIGID_SHARE,
) -> RealisticAccuracy:
    """Track one realistic case with replay's defaults and score it against its truth.

    The gate's inputs are computed as the session does (outside_pct of the translated,
    or with ``deformable`` the propagated, reference target, moved ``uncertainty_mm``
    further from the reference as the session's allowance does), and the beam is decided
    by the session's decision step (:func:`maestro.decision.decide`); the truth's outside_pct
    is that of the exact warped lesion (the phantom's 5 x 5 sub-samples per pixel
    inside it, :meth:`MotionPhantom.lesion_sample_points_px`) against the gating
    boundary of the reference target.
    """
    from gating.boundary import GatingGeometry
    from gating.deformed_outside import DeformedOutside
    from gating.gate import Gate, GateConfig
    from maestro.decision import GateInputs, decide
    from maestro.evaluation.gating_metrics import outside_pct_from_distances
    from maestro.evaluation.masks import moved_mask
    from maestro.evaluation.trackrad_metrics import relative_d98, resample_mask_1mm, trackrad_frame
    from maestro.phantom.motion import motion_case, motion_case_phantom
    from tracking.deformable import AffineRegistration, propagate_mask
    from tracking.tracker import TemplateTracker

    case = motion_case(case_name)
    phantom = motion_case_phantom(case_name, geometry, seconds, seed, series_folder)
    spacing = phantom.spacing_mm
    errors, flagged, dice, hd95, msd, dice_mask, on, true_out, perfect_on = [], [], [], [], [], [], [], [], []
    shifts_mm = []
    tracker = registration = geometry_ref = deformed = gate = None
    ref = ref_fraction = None
    for f in phantom.frames():
        pixels = f.pixels.astype(np.float32)
        truth = f.label_fraction >= 0.5
        if tracker is None:
            ref = truth
            ref_fraction = f.label_fraction.astype(np.float64)
            tracker = TemplateTracker(pixels, ref, spacing, trust_floor=confidence_floor)
            geometry_ref = GatingGeometry(ref, spacing, margin_mm)
            gate = Gate(GateConfig(threshold_pct, confidence_floor))  # the session's, no release delay
            if deformable:
                registration = AffineRegistration(pixels, ref, spacing)
                deformed = DeformedOutside(ref, spacing, margin_mm)
            continue
        r = tracker.track(pixels)
        assert ref is not None and ref_fraction is not None and geometry_ref is not None  # set on frame 0
        flag = r.gate_confidence < confidence_floor
        row_mm, col_mm, mask, mask_binary_ref, outside = r.row_mm, r.col_mm, None, None, 100.0
        registration_ok = True
        if r.valid and not flag:
            if registration is not None:
                registered = _registered_mm(registration, pixels, r.row_px, r.col_px, spacing, rigid_share)
                if registered is not None:
                    assert deformed is not None  # made with the registration, on frame 0
                    row_mm, col_mm, affine = registered
                    mask = propagate_mask(ref_fraction, affine)
                    mask_binary_ref = propagate_mask(ref, affine)
                    far_row, far_col = away_from_reference_mm(row_mm, col_mm, uncertainty_mm)
                    judged = affine.copy()
                    judged[0, 2] += (far_row - row_mm) / spacing[0]
                    judged[1, 2] += (far_col - col_mm) / spacing[1]
                    outside = deformed.outside_pct(judged)
                else:
                    flag = True
                    registration_ok = False
            else:
                mask = moved_mask(ref_fraction, r.row_px, r.col_px)
                mask_binary_ref = moved_mask(ref, r.row_px, r.col_px)
                outside = geometry_ref.outside_pct(*away_from_reference_mm(row_mm, col_mm, uncertainty_mm))
        k = f.index
        assert gate is not None  # made on frame 0
        err = math.hypot(row_mm - phantom.trajectory_mm[k, 0], col_mm - phantom.trajectory_mm[k, 1]) if r.valid else math.inf
        errors.append(err)
        flagged.append(flag)
        if mask is not None and mask_binary_ref is not None and not flag:
            truth_1mm = resample_mask_1mm(truth, spacing)
            m = trackrad_frame(resample_mask_1mm(mask, spacing), truth_1mm)
            if m is not None:
                dice.append(m.dice)
                hd95.append(m.hd95_mm)
                msd.append(m.msd_mm)
                shifts_mm.append(m.shift_mm)
            m = trackrad_frame(resample_mask_1mm(mask_binary_ref, spacing), truth_1mm)
            if m is not None:
                dice_mask.append(m.dice)
        on.append(decide(gate, None, float(phantom.times_s[k]), GateInputs.of(r, outside, registration_ok))[0].beam_on)
        # The exact warped lesion (its 5 x 5 sub-samples per pixel), not its label
        # thresholded at half a pixel: at 3.5 mm a thresholded edge moves in 3.5 mm steps.
        points = phantom.lesion_sample_points_px(k)
        true_out.append(outside_pct_from_distances(geometry_ref.distance_to_target_mm(points), margin_mm))
        perfect_on.append(geometry_ref.outside_pct(*phantom.trajectory_mm[k]) <= threshold_pct)
    err = np.asarray(errors)
    flags = np.asarray(flagged)
    on_a = np.asarray(on)
    true_a = np.asarray(true_out)
    perfect_a = np.asarray(perfect_on, dtype=bool)
    good = err[~flags]
    large = err > LARGE_ERROR_MM
    n_on = int(on_a.sum())
    return RealisticAccuracy(
        case=case.name, role=case.role, geometry=geometry, mode="deformable" if deformable else "rigid",
        lesion_mm=float(phantom.lesion_diameter_mm), frames=int(err.size),
        mean_mm=float(good.mean()) if good.size else math.nan,
        p95_mm=float(np.percentile(good, 95)) if good.size else math.nan,
        max_unflagged_mm=float(good.max()) if good.size else 0.0,
        large=int(large.sum()),
        large_flagged_pct=100.0 * float(flags[large].mean()) if large.any() else 100.0,
        flagged_pct=100.0 * float(flags.mean()),
        dice=float(np.mean(dice)) if dice else math.nan,
        hd95_mm=float(np.mean(hd95)) if hd95 else math.nan,
        msd_mm=float(np.mean(msd)) if msd else math.nan,
        relative_d98=relative_d98(resample_mask_1mm(ref, spacing), np.asarray(shifts_mm)) if shifts_mm and ref is not None else math.nan,
        dice_mask_ref=float(np.mean(dice_mask)) if dice_mask else math.nan,
        wrong_on_2_pct=100.0 * float(np.mean(true_a[on_a] > threshold_pct + 2.0)) if n_on else 0.0,
        wrong_on_5=int(np.count_nonzero(true_a[on_a] > threshold_pct + 5.0)),
        bound_on_2_pct=100.0 * float(np.mean(true_a[perfect_a] > threshold_pct + 2.0)) if perfect_a.any() else 0.0,
        duty_pct=100.0 * float(on_a.mean()),
        ideal_duty_pct=100.0 * float(np.mean(true_a <= threshold_pct)),
    )


def format_realistic_table(rows: list[RealisticAccuracy]) -> str:
    head = (
        f"{'case':<18} {'role':<8} {'geometry':<13} {'mode':<10} {'lesion':>6} {'mean':>5} {'p95':>5} {'max*':>5} "
        f"{'>2mm':>4} {'flag%':>6} {'held%':>6} {'dice':>5} {'dice*':>5} {'hd95':>5} {'msd':>5} {'rD98':>5} "
        f"{'on>+2':>6} {'on>+5':>5} {'bound':>6} {'duty':>6} {'ideal':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.case:<18} {r.role:<8} {r.geometry:<13} {r.mode:<10} {r.lesion_mm:6.1f} {r.mean_mm:5.2f} {r.p95_mm:5.2f} "
            f"{r.max_unflagged_mm:5.2f} {r.large:4d} {r.large_flagged_pct:6.1f} {r.flagged_pct:6.1f} {r.dice:5.3f} {r.dice_mask_ref:5.3f} "
            f"{r.hd95_mm:5.2f} {r.msd_mm:5.2f} {r.relative_d98:5.3f} {r.wrong_on_2_pct:5.1f}% {r.wrong_on_5:5d} "
            f"{r.bound_on_2_pct:5.1f}% {r.duty_pct:5.1f}% {r.ideal_duty_pct:5.1f}%"
        )
    lines.append(
        "errors in mm over frames not held (mean, p95, max*); >2mm over every frame; flag% = share of those held; "
        "held% = frames held by the tracker's flags; dice/hd95/msd (TrackRAD2025, 1 mm grid) of the reference moved or "
        "propagated from a contour's partial volume (as --target-rtstruct gives it); dice* = from a binary mask (a "
        "label image); rD98 = TrackRAD2025's relative D98 (the target's D98 under a dose following the tracked "
        "centroid / under a perfectly placed one); on>+2 = share of "
        "beam-on frames with the true target > threshold + 2 points outside, on>+5 = such frames > + 5 points "
        "(3 mm / 10 %, truth from the exact warped lesion); bound = on>+2 of a perfect rigid tracker (the gate fed "
        "the true displacement, no allowance): what the rigid gate's model of the target leaves; duty = share of "
        "frames with the beam on (with the uncertainty allowance); ideal = share with the true target within the "
        "threshold"
    )
    return "\n".join(lines)


# -- tables ------------------------------------------------------------------------------
def format_tracking_table(rows: list[TrackingAccuracy]) -> str:
    head = (
        f"{'trace':<34} {'geometry':<13} {'lesion':>6} {'frames':>6} {'mean':>5} {'p95':>5} "
        f"{'max*':>5} {'>2mm':>4} {'flag%':>6} {'dice':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        dice = "  -  " if math.isnan(r.dice_mean) else f"{r.dice_mean:5.3f}"
        lines.append(
            f"{r.trace:<34} {r.geometry:<13} {r.lesion_mm:6.1f} {r.frames:6d} {r.mean_mm:5.2f} "
            f"{r.p95_mm:5.2f} {r.max_unflagged_mm:5.2f} {r.large:4d} {r.large_flagged_pct:6.1f} {dice}"
        )
    lines.append(
        "lesion diameter and errors in mm; max* = over frames not flagged low-confidence; "
        "flag% = share of the >2 mm frames flagged; dice for lesions >= 2 cm"
    )
    return "\n".join(lines)


def format_prediction_table(rows: list[PredictionAccuracy]) -> str:
    head = f"{'trace':<34} {'fps':>4} {'none':>6} {'const-v':>7} {'ridge-AR':>8} {'gain':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.trace:<34} {r.fps:4g} {r.none_mm:6.2f} {r.velocity_mm:7.2f} {r.ridge_ar_mm:8.2f} "
            f"{r.gain_pct:5.0f}%"
        )
    if rows:
        lines.append(f"RMSE in mm of the position {rows[0].horizon_ms:g} ms ahead; gain = ridge-AR vs none")
    return "\n".join(lines)


def format_gating_table(rows: list[GatingAccuracy]) -> str:
    head = (
        f"{'trace':<34} {'geometry':<13} {'wrong-on':>8} {'w/ pred':>8} {'duty':>6} {'w/ pred':>8} "
        f"{'ideal':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.trace:<34} {r.geometry:<13} {r.wrong_on_pct:7.1f}% {r.wrong_on_pred_pct:7.1f}% "
            f"{r.duty_pct:5.1f}% {r.duty_pred_pct:7.1f}% {r.ideal_duty_pct:5.1f}%"
        )
    if rows:
        lines.append(
            f"beam latency {rows[0].latency_ms:g} ms; wrong-on = share of beam-on time with the true "
            "target outside beyond the threshold"
        )
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------
def add_parser(subparsers) -> None:
    """Register ``maestro accuracy``."""
    from maestro.cli_args import count, number

    ap = subparsers.add_parser(
        "accuracy",
        help="tracking, prediction and gating accuracy on phantoms driven by recorded motion",
        description=(
            "Render a phantom session driven by each recorded trajectory (KIM liver traces) "
            "in both MRIdian cine modes, track it, and print the tracking-accuracy table; "
            "then the prediction table (RMSE at the latency horizon) and the gating table "
            "(beam-on while the target is out, without and with prediction)."
        ),
    )
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES, metavar="DIR",
                    help="folder of KIM trajectory .txt files (default: ../shared/data/motion/kim-liver)")
    ap.add_argument("--seconds", type=number(0.0, low_inclusive=False), default=60.0,
                    help="length of each tracked session, s (default 60)")
    ap.add_argument("--geometry", choices=["mridian-8fps", "mridian-4fps", "both"], default="both")
    ap.add_argument("--seed", type=count, default=1, help="phantom seed of the first trace; +1 per trace")
    ap.add_argument("--lesion-mm", type=number(10.0, high=40.0), default=None,
                    help="lesion diameter (mm; default drawn from each seed)")
    ap.add_argument("--latency-ms", type=number(0.0, low_inclusive=False, high=2000.0), default=250.0,
                    help="system latency = prediction horizon (ms, default 250)")
    ap.add_argument("--confidence-floor", type=number(0.0, high=1.0), default=defaults.CONFIDENCE_FLOOR)
    ap.add_argument("--context-mm", type=number(0.0), default=defaults.CONTEXT_MM,
                    help=f"tracker template context (mm, default {defaults.CONTEXT_MM:g}, as replay)")
    ap.add_argument("--search-mm", type=number(0.0, low_inclusive=False), default=defaults.SEARCH_MM,
                    help=f"tracker search half-width (mm, default {defaults.SEARCH_MM:g})")
    ap.add_argument("--references", type=count, default=1,
                    help="reference templates from different breathing phases (default 1 = the fixed reference)")
    ap.add_argument("--margin-mm", type=number(0.0), default=defaults.MARGIN_MM)
    ap.add_argument("--uncertainty-mm", type=number(0.0, high=10.0), default=defaults.UNCERTAINTY_MM,
                    help=f"the gate's position-uncertainty allowance (mm, default {defaults.UNCERTAINTY_MM:g}, "
                         "as maestro replay)")
    ap.add_argument("--excursion-mm", type=number(0.0, high=60.0), default=0.0,
                    help="stress test: add two sudden SI shifts of this size (held 1.5 s, then back) "
                         "to every session, to see the tracker lose the target, flag it and find it again")
    ap.add_argument("--threshold-pct", type=number(0.0, high=100.0), default=defaults.THRESHOLD_PCT)
    ap.add_argument("--slide-pct", type=number(-50.0, high=50.0), default=0.0,
                    help="the lesion moves this much more (%%) than the anatomy around it (sliding; default 0 = rigid)")
    ap.add_argument("--rigid", action="store_true",
                    help="the trace tables in the rigid mode (default: replay's default, the deformable mode); "
                         "--realistic shows both modes")
    ap.add_argument("--rigid-share", type=number(0.0, high=1.0), default=defaults.RIGID_SHARE,
                    help="the deformable mode's share of the rigid match in the position (default "
                         f"{defaults.RIGID_SHARE:g}, as replay; 0 = the propagated centroid alone)")
    ap.add_argument("--realistic", type=Path, default=None, metavar="SERIES",
                    help="instead of the trace tables: the realistic cases (a lesion in the motion field of this "
                         "real cine series, e.g. ../shared/data/cine/liver-3T-volunteer-KS81), rigid and deformable "
                         "modes, both geometries, with TrackRAD metrics and gating against the exact warped lesion")
    ap.set_defaults(func=cmd_accuracy)


def cmd_accuracy(args: argparse.Namespace) -> int:
    from hardware.motion_trace import find_trace_files, read_kim_trace
    from maestro.phantom import EXCURSION_AT, EXCURSION_S, GEOMETRIES, TracePhantom, excursions_for

    if args.realistic is not None:
        from hardware import InputError
        from maestro.phantom.motion import MOTION_CASES

        if not args.realistic.is_dir():
            raise InputError(args.realistic, "--realistic", "must be a folder holding one DICOM cine series")
        geos = ["mridian-8fps", "mridian-4fps"] if args.geometry == "both" else [args.geometry]
        seconds = min(args.seconds, 80.0)
        rows = [
            evaluate_realistic(case.name, geo, seconds, args.seed, deformable, args.realistic,
                               args.confidence_floor, args.margin_mm, args.threshold_pct, args.uncertainty_mm,
                               args.rigid_share)
            for case in MOTION_CASES for geo in geos for deformable in (False, True)
        ]
        print(f"Realistic cases (lesions in the motion field of {args.realistic.name}, {seconds:g} s each, "
              "replay's defaults; tuning cases chose the defaults, held-out cases did not)")
        print(format_realistic_table(rows))
        return 0

    traces = [read_kim_trace(p) for p in find_trace_files(args.traces)]
    geometries = ["mridian-8fps", "mridian-4fps"] if args.geometry == "both" else [args.geometry]
    tracking_rows, gating_rows = [], []
    for i, trace in enumerate(traces):
        for geo in geometries:
            seconds = min(args.seconds, trace.duration_s)
            excursions = excursions_for(trace, seconds, args.excursion_mm)
            acc = evaluate_tracking(
                trace, geo, args.seconds, args.seed + i, args.lesion_mm, args.confidence_floor,
                context_mm=args.context_mm, search_mm=args.search_mm,
                max_references=max(args.references, 1), excursions=excursions, slide=args.slide_pct / 100.0,
                deformable=not args.rigid, rigid_share=args.rigid_share,
            )
            tracking_rows.append(acc)
            ref = TracePhantom(
                trace.times_s, _trace_xyz(trace), geo, 1.0, args.seed + i, args.lesion_mm
            ).label_fraction(0) >= 0.5
            spacing = (GEOMETRIES[geo].spacing_mm, GEOMETRIES[geo].spacing_mm)
            gating_rows.append(
                evaluate_gating(acc, trace, ref, spacing, GEOMETRIES[geo].fps, args.latency_ms,
                                args.margin_mm, args.threshold_pct, excursions, args.uncertainty_mm)
            )
            log.info("%s %s: mean %.2f mm", trace.name, geo, acc.mean_mm)
    print(
        f"Tracking accuracy (trace-driven phantoms, {args.seconds:g} s each, frames after the first; "
        f"{'rigid' if args.rigid else 'deformable'} mode, context {args.context_mm:g} mm, search {args.search_mm:g} mm, confidence floor "
        f"{args.confidence_floor:g}, {max(args.references, 1)} reference(s)"
        + (f"; the lesion slides: it moves {args.slide_pct:g} % more than its surroundings" if args.slide_pct else "")
        + ")"
    )
    if args.excursion_mm:
        print(
            f"Stress: two sudden SI shifts of {args.excursion_mm:g} mm per session, at "
            f"{' and '.join(f'{100 * f:g} %' for f in EXCURSION_AT)} of it, each held {EXCURSION_S:g} s "
            "then back, towards the middle of the trace's SI range"
        )
    print(format_tracking_table(tracking_rows))
    print()
    print("Prediction at the latency horizon (traces resampled to the frame rate)")
    print(format_prediction_table(
        [evaluate_prediction(t, fps, args.latency_ms) for t in traces for fps in (4.0, 8.0)]
    ))
    print()
    print("Gating under beam latency (tracked positions)")
    print(format_gating_table(gating_rows))
    return 0
