"""The one decision step (maestro/decision.py): the gate's inputs from a tracking result,
the gate, then the beam; a failing beam command ends in a beam_fault hold."""

from __future__ import annotations

import math

import pytest

from gating.gate import BEAM_FAULT, INCONSISTENT, LOW_CONFIDENCE, OUTSIDE, TRACKING_FAULT, Gate, GateConfig
from hardware import BeamState, SimulatedBeam
from maestro.decision import GateInputs, decide
from tracking.tracker import TrackResult


def _result(confidence: float = 0.9, valid: bool = True, at_edge: bool = False, inconsistent: bool = False) -> TrackResult:
    return TrackResult(1.0, 2.0, 0.5, 1.0, confidence, 0.3, confidence, at_edge, valid, "",
                       inconsistent=inconsistent)


@pytest.mark.parametrize(("result", "registered", "want"), [
    (_result(), True, GateInputs(4.0, 0.9, True, True)),
    (_result(at_edge=True), True, GateInputs(4.0, 0.0, True, True)),  # not vouched: no confidence
    (_result(inconsistent=True), True, GateInputs(4.0, 0.0, True, False)),
    (_result(), False, GateInputs(4.0, 0.9, True, False)),  # a failed registration
    (TrackResult.invalid("no match"), True, GateInputs(4.0, 0.0, False, True)),
])
def test_inputs_of_a_tracking_result(result: TrackResult, registered: bool, want: GateInputs) -> None:
    assert GateInputs.of(result, 4.0, registered) == want


@pytest.mark.parametrize(("inputs", "reason"), [
    (GateInputs(4.0, 0.9, True), ""),
    (GateInputs(10.0, 0.9, True), ""),  # at the threshold: on
    (GateInputs(10.5, 0.9, True), OUTSIDE),
    (GateInputs(4.0, 0.4, True), LOW_CONFIDENCE),
    (GateInputs(4.0, 0.9, True, consistent=False), INCONSISTENT),
    (GateInputs(math.nan, 0.9, True), TRACKING_FAULT),
    (GateInputs(100.0, 0.0, False), TRACKING_FAULT),  # what the session passes for an untrackable frame
])
def test_the_step_decides_as_the_gate_and_commands_the_beam(inputs: GateInputs, reason: str) -> None:
    gate, reference = Gate(GateConfig(10.0, 0.5)), Gate(GateConfig(10.0, 0.5))
    beam = SimulatedBeam(0.0, 0.0)
    decision, error = decide(gate, beam, 1.0, inputs)
    assert error is None
    assert decision == reference.decide(1.0, inputs.outside_pct, inputs.confidence, inputs.valid, 0.0,
                                        consistent=inputs.consistent)
    assert decision.reason == reason
    assert beam.commanded is (BeamState.ON if reason == "" else BeamState.HOLD)
    # Without a beam, the same decision and nothing commanded.
    assert decide(Gate(GateConfig(10.0, 0.5)), None, 1.0, inputs) == (decision, None)


def test_a_stale_frame_or_a_source_fault_holds() -> None:
    ok = GateInputs(4.0, 0.9, True)
    assert decide(Gate(), None, 1.0, ok, frame_age_s=1.0)[0].reason == "stale_frame"
    assert decide(Gate(), None, 1.0, ok, source_fault="link down")[0].reason == "source_fault"


class _FailingBeam(SimulatedBeam):
    def release(self, t_s: float | None = None) -> None:
        raise OSError("interlock link lost")


def test_a_failing_beam_command_ends_in_a_beam_fault_hold_and_restarts_the_delay() -> None:
    gate = Gate(GateConfig(10.0, 0.5, beam_on_delay_frames=1))
    beam = _FailingBeam(0.0, 0.0)
    ok = GateInputs(4.0, 0.9, True)
    assert decide(gate, beam, 0.0, ok)[0].reason == "startup"  # the delay: held, no release tried
    decision, error = decide(gate, beam, 0.1, ok)  # released: the command fails
    assert isinstance(error, OSError)
    assert not decision.beam_on and decision.reason == BEAM_FAULT
    assert not gate.beam_on and gate.hold_reason == BEAM_FAULT
    # The release delay restarted: the next good frame is held again.
    assert decide(gate, SimulatedBeam(0.0, 0.0), 0.2, ok)[0].reason == BEAM_FAULT
