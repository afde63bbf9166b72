"""One frame's decision: the gate's inputs, the gate, then the beam command.

Every place that decides the beam on a frame takes this step, so they cannot drift
apart:

- the session (:class:`maestro.session.GatingSession`), live and in replay;
- ``maestro validate``'s sweep, re-gating recorded tracking results per configuration;
- ``maestro accuracy``'s gating tables;
- the gate benchmark (``benchmarks/test_steps.py``).

What comes before it differs on purpose (the outside percentage of a translated, a
propagated or a predicted target, from a live tracker or from recorded results), and so
does what the caller does around it (the session's lock against its watchdog). The
inputs come from the tracking result through :meth:`GateInputs.of`, which gives the gate
the confidence it may use (:attr:`tracking.tracker.TrackResult.gate_confidence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gating.gate import BEAM_FAULT, Gate, GateDecision

if TYPE_CHECKING:
    from hardware.beam import BeamInterface
    from tracking.tracker import TrackResult

__all__ = ["GateInputs", "decide"]


@dataclass(frozen=True, slots=True)
class GateInputs:
    """What the gate reads about the target on one frame.

    Attributes
    ----------
    outside_pct : float
        Share of the tracked target outside the gating boundary, %.
    confidence : float
        The confidence the gate may use (0 when the result is not vouched for).
    valid : bool
        Whether the tracker found a position at all.
    consistent : bool
        False when the position's estimates disagree (the tracker's own check, or a
        failed deformable registration).
    """

    outside_pct: float
    confidence: float
    valid: bool
    consistent: bool = True

    @classmethod
    def of(cls, result: TrackResult, outside_pct: float, registered: bool = True) -> GateInputs:
        """The inputs of a tracking result whose target is ``outside_pct`` % outside;
        ``registered`` False when the deformable mode's registration failed."""
        return cls(outside_pct, result.gate_confidence, result.valid, registered and not result.inconsistent)


def decide(
    gate: Gate,
    beam: BeamInterface | None,
    t_s: float,
    inputs: GateInputs,
    frame_age_s: float = 0.0,
    source_fault: str | None = None,
) -> tuple[GateDecision, Exception | None]:
    """Let the gate decide one frame, then command the beam.

    Parameters
    ----------
    gate : gating.gate.Gate
    beam : hardware.beam.BeamInterface or None
        Commanded with the decision (released, or held with its reason); ``None`` when
        only the decisions are wanted (offline scoring).
    t_s : float
        The frame's acquisition time, s.
    inputs : GateInputs
    frame_age_s : float
        Age of the frame when decided, s (0 offline: a recording's age measures the
        analysing machine, not the scanner).
    source_fault : str or None
        The frame source's fault, if any.

    Returns
    -------
    decision : gating.gate.GateDecision
        The gate's decision; a ``beam_fault`` hold (the release delay restarts) when the
        beam command raised.
    beam_error : Exception or None
        What the beam command raised: the caller holds the beam by another way and
        reports it.
    """
    decision = gate.decide(
        t_s=t_s,
        outside_pct=inputs.outside_pct,
        confidence=inputs.confidence,
        tracking_valid=inputs.valid,
        frame_age_s=frame_age_s,
        source_fault=source_fault,
        consistent=inputs.consistent,
    )
    if beam is None:
        return decision, None
    try:
        if decision.beam_on:
            beam.release(t_s=t_s)
        else:
            beam.hold(decision.reason, t_s=t_s)
    except Exception as exc:  # noqa: BLE001 - a failing beam command must end in a hold
        return gate.watchdog(t_s, BEAM_FAULT), exc
    return decision, None

