"""Tests of gating.gate: conditions, priority, NaN handling, release delay, watchdog."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gating.gate import (
    HOLD_REASONS,
    INCONSISTENT,
    LOW_CONFIDENCE,
    OUTSIDE,
    SOURCE_FAULT,
    STALE_FRAME,
    STARTUP,
    TRACKING_FAULT,
    Gate,
    GateConfig,
    GateDecision,
)

ON = (True, "")

# A frame that passes every condition of the default config.
GOOD = dict(outside_pct=2.0, confidence=0.9, tracking_valid=True, frame_age_s=0.05)


def frame(t_s: float, **overrides) -> dict:
    """Arguments of one ``Gate.decide`` call: a good frame at t_s, with overrides."""
    args = dict(GOOD, t_s=t_s)
    args.update(overrides)
    return args


def run(gate: Gate, steps: list) -> list[tuple[bool, str]]:
    """Feed steps (frame dicts, ("watchdog", t, reason) or "reset") and collect decisions."""
    out = []
    for step in steps:
        if step == "reset":
            gate.reset()
            continue
        if isinstance(step, tuple):
            decision = gate.watchdog(step[1], step[2])
        else:
            decision = gate.decide(**step)
        assert isinstance(decision, GateDecision)
        assert decision.beam_on == (decision.reason == "")
        out.append((decision.beam_on, decision.reason))
    return out


def test_reason_constants():
    assert (OUTSIDE, LOW_CONFIDENCE, STALE_FRAME, SOURCE_FAULT, STARTUP, TRACKING_FAULT) == (
        "outside",
        "low_confidence",
        "stale_frame",
        "source_fault",
        "startup",
        "tracking_fault",
    )
    assert HOLD_REASONS[:6] == (SOURCE_FAULT, STALE_FRAME, TRACKING_FAULT, INCONSISTENT, LOW_CONFIDENCE, OUTSIDE)


def test_an_inconsistent_result_holds_after_tracking_fault_and_before_low_confidence():
    """A result whose two position estimates disagree holds the beam with its own reason,
    whatever its confidence and outside percentage; only a real True passes."""
    gate = Gate()
    good = dict(t_s=0.0, outside_pct=0.0, confidence=0.9, tracking_valid=True, frame_age_s=0.0)
    assert gate.decide(**good).beam_on
    assert gate.decide(**{**good, "t_s": 0.1}, consistent=False).reason == INCONSISTENT
    assert gate.decide(**{**good, "t_s": 0.2, "confidence": 0.1}, consistent=False).reason == INCONSISTENT
    assert gate.decide(**{**good, "t_s": 0.3, "tracking_valid": False}, consistent=False).reason == TRACKING_FAULT
    assert gate.decide(**{**good, "t_s": 0.4}, consistent=np.float64(1.0)).reason == INCONSISTENT
    assert gate.decide(**{**good, "t_s": 0.5}, consistent=np.bool_(True)).beam_on


# --------------------------------------------------------------------------- config


def test_config_defaults():
    config = GateConfig()
    assert (
        config.threshold_pct,
        config.confidence_floor,
        config.beam_on_delay_ms,
        config.beam_on_delay_frames,
        config.max_frame_age_ms,
    ) == (10.0, 0.5, 0.0, 0, 250.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.threshold_pct = 5.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(threshold_pct=-0.1), "threshold_pct"),
        (dict(threshold_pct=100.1), "threshold_pct"),
        (dict(threshold_pct=math.nan), "threshold_pct"),
        (dict(confidence_floor=math.nan), "confidence_floor"),
        (dict(confidence_floor=math.inf), "confidence_floor"),
        (dict(beam_on_delay_ms=-1.0), "beam_on_delay_ms"),
        (dict(beam_on_delay_ms=math.inf), "beam_on_delay_ms"),
        (dict(beam_on_delay_frames=-1), "beam_on_delay_frames"),
        (dict(beam_on_delay_frames=1.5), "beam_on_delay_frames"),
        (dict(beam_on_delay_frames=True), "beam_on_delay_frames"),
        (dict(max_frame_age_ms=0.0), "max_frame_age_ms"),
        (dict(max_frame_age_ms=math.nan), "max_frame_age_ms"),
        (dict(threshold_pct="10"), "threshold_pct"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GateConfig(**kwargs)


def test_config_accepts_numpy_integers_and_edges():
    GateConfig(threshold_pct=0.0, beam_on_delay_frames=np.int64(3))
    GateConfig(threshold_pct=100.0, confidence_floor=-1.0, beam_on_delay_ms=0.0)


def test_gate_rejects_a_non_config():
    with pytest.raises(ValueError, match="config"):
        Gate({"threshold_pct": 10.0})


def test_decision_is_frozen_with_slots():
    decision = Gate().decide(**frame(0.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.beam_on = False
    assert not hasattr(decision, "__dict__")


# --------------------------------------------------------------------------- sequences

SEQUENCES = {
    "good frame releases at once without delay": (
        {},
        [frame(0.0), frame(0.125)],
        [ON, ON],
    ),
    "outside above the threshold holds, at the threshold passes": (
        {},
        [frame(0.0, outside_pct=10.01), frame(0.1, outside_pct=10.0), frame(0.2, outside_pct=50.0)],
        [(False, OUTSIDE), ON, (False, OUTSIDE)],
    ),
    "confidence below the floor holds, at the floor passes": (
        {},
        [frame(0.0, confidence=0.49), frame(0.1, confidence=0.5)],
        [(False, LOW_CONFIDENCE), ON],
    ),
    "frame older than the limit holds, at the limit passes": (
        {},
        [frame(0.0, frame_age_s=0.2501), frame(0.1, frame_age_s=0.25)],
        [(False, STALE_FRAME), ON],
    ),
    "invalid tracking holds": (
        {},
        [frame(0.0, tracking_valid=False), frame(0.1)],
        [(False, TRACKING_FAULT), ON],
    ),
    "source fault holds; None, empty and False are healthy": (
        {},
        [
            frame(0.0, source_fault="scanner stopped"),
            frame(0.1, source_fault=None),
            frame(0.2, source_fault=""),
            frame(0.3, source_fault=False),
            frame(0.4, source_fault=True),
        ],
        [(False, SOURCE_FAULT), ON, ON, ON, (False, SOURCE_FAULT)],
    ),
    "a failure holds at once while on, whatever the delay": (
        dict(beam_on_delay_ms=500.0, beam_on_delay_frames=3),
        [frame(0.0), frame(0.2), frame(0.4), frame(0.6), frame(0.7, outside_pct=11.0)],
        [(False, STARTUP)] * 3 + [ON, (False, OUTSIDE)],
    ),
    "release after the delay in ms, waiting under the hold's reason": (
        dict(beam_on_delay_ms=250.0),
        [
            frame(0.000),
            frame(0.125),
            frame(0.250),
            frame(0.375, confidence=0.1),
            frame(0.500),
            frame(0.625),
            frame(0.750),
        ],
        [
            (False, STARTUP),
            (False, STARTUP),
            ON,
            (False, LOW_CONFIDENCE),
            (False, LOW_CONFIDENCE),
            (False, LOW_CONFIDENCE),
            ON,
        ],
    ),
    "release after the delay in frames, irrespective of time": (
        dict(beam_on_delay_frames=2),
        [frame(0.0), frame(0.001), frame(0.002), frame(0.003, tracking_valid=False), frame(5.0),
         frame(5.0), frame(5.0)],
        [(False, STARTUP), (False, STARTUP), ON, (False, TRACKING_FAULT),
         (False, TRACKING_FAULT), (False, TRACKING_FAULT), ON],
    ),
    "both delays: frames dominate": (
        dict(beam_on_delay_ms=200.0, beam_on_delay_frames=3),
        [frame(0.0), frame(0.125), frame(0.25), frame(0.375)],
        [(False, STARTUP)] * 3 + [ON],
    ),
    "both delays: time dominates": (
        dict(beam_on_delay_ms=300.0, beam_on_delay_frames=1),
        [frame(0.0), frame(0.125), frame(0.25), frame(0.375)],
        [(False, STARTUP)] * 3 + [ON],
    ),
    "a failure during the wait restarts the delay": (
        dict(beam_on_delay_ms=250.0),
        [frame(0.0), frame(0.2), frame(0.3, outside_pct=20.0), frame(0.4), frame(0.6), frame(0.65)],
        [(False, STARTUP), (False, STARTUP), (False, OUTSIDE), (False, OUTSIDE), (False, OUTSIDE),
         ON],
    ),
    "the delay is measured from the first good frame with float slack": (
        # 0.7 - 0.4 == 0.29999999999999993 s, a rounding short of the 300 ms delay.
        dict(beam_on_delay_ms=300.0),
        [frame(0.3, outside_pct=99.0), frame(0.4), frame(0.7)],
        [(False, OUTSIDE), (False, OUTSIDE), ON],
    ),
    "time running backwards does not release early": (
        dict(beam_on_delay_ms=100.0),
        [frame(1.0), frame(0.95), frame(1.05), frame(1.1)],
        [(False, STARTUP), (False, STARTUP), (False, STARTUP), ON],
    ),
    "the beam stays on without a new delay while conditions hold": (
        dict(beam_on_delay_frames=1),
        [frame(0.0), frame(0.1), frame(0.2), frame(0.3)],
        [(False, STARTUP), ON, ON, ON],
    ),
    "watchdog holds at once and restarts the delay": (
        dict(beam_on_delay_frames=1),
        [frame(0.0), frame(0.1), ("watchdog", 0.4, STALE_FRAME), frame(0.5), frame(0.6)],
        [(False, STARTUP), ON, (False, STALE_FRAME), (False, STALE_FRAME), ON],
    ),
    "watchdog with a source fault reason": (
        {},
        [frame(0.0), ("watchdog", 0.3, SOURCE_FAULT), frame(0.4)],
        [ON, (False, SOURCE_FAULT), ON],
    ),
    "watchdog during the startup wait replaces the startup reason": (
        dict(beam_on_delay_frames=1),
        [frame(0.0), ("watchdog", 0.3, STALE_FRAME), frame(0.4), frame(0.5)],
        [(False, STARTUP), (False, STALE_FRAME), (False, STALE_FRAME), ON],
    ),
    "reset returns to startup and restarts the delay": (
        dict(beam_on_delay_frames=1),
        [frame(0.0), frame(0.1), "reset", frame(0.2), frame(0.3)],
        [(False, STARTUP), ON, (False, STARTUP), ON],
    ),
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_hand_built_sequences(name, naive):
    config_kwargs, steps, expected = SEQUENCES[name]
    config = GateConfig(**config_kwargs)
    assert run(Gate(config), steps) == expected
    # The naive replay agrees on the same table.
    naive_steps = []
    for step in steps:
        if step == "reset":
            naive_steps.append(naive.ResetStep())
        elif isinstance(step, tuple):
            naive_steps.append(naive.WatchdogStep(step[1], step[2]))
        else:
            naive_steps.append(naive.FrameStep(**step))
    replayed = [d for d in naive.gate_replay(config, naive_steps) if d is not None]
    assert replayed == expected


# --------------------------------------------------------------------------- priority

FAILURES = {
    SOURCE_FAULT: dict(source_fault="link lost"),
    STALE_FRAME: dict(frame_age_s=1.0),
    TRACKING_FAULT: dict(tracking_valid=False),
    LOW_CONFIDENCE: dict(confidence=0.1),
    OUTSIDE: dict(outside_pct=60.0),
}
PRIORITY = (SOURCE_FAULT, STALE_FRAME, TRACKING_FAULT, LOW_CONFIDENCE, OUTSIDE)


@pytest.mark.parametrize(
    "failing",
    [c for r in range(1, 6) for c in itertools.combinations(PRIORITY, r)],
    ids=lambda c: "+".join(c),
)
def test_priority_of_every_combination(failing):
    """Every one of the 31 combinations of failing conditions: the highest-priority wins,
    both from a held and from a released beam."""
    overrides = {}
    for reason in failing:
        overrides.update(FAILURES[reason])
    want = (False, min(failing, key=PRIORITY.index))
    assert run(Gate(), [frame(0.0, **overrides)]) == [want]
    assert run(Gate(), [frame(0.0), frame(0.1, **overrides)]) == [ON, want]


# --------------------------------------------------------------------------- NaN and types


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        (dict(outside_pct=math.nan), TRACKING_FAULT),
        (dict(outside_pct=math.inf), TRACKING_FAULT),
        (dict(outside_pct=-math.inf), TRACKING_FAULT),
        (dict(confidence=math.nan), TRACKING_FAULT),
        (dict(confidence=math.inf), TRACKING_FAULT),
        (dict(confidence=-math.inf), TRACKING_FAULT),
        (dict(frame_age_s=math.nan), STALE_FRAME),
        (dict(frame_age_s=math.inf), STALE_FRAME),
        (dict(t_s=math.nan), STALE_FRAME),
        (dict(t_s=math.inf), STALE_FRAME),
        (dict(outside_pct=None), TRACKING_FAULT),
        (dict(confidence="0.9"), TRACKING_FAULT),
        (dict(frame_age_s=None), STALE_FRAME),
        (dict(tracking_valid=math.nan), TRACKING_FAULT),
        (dict(tracking_valid=1.0), TRACKING_FAULT),
        (dict(tracking_valid=None), TRACKING_FAULT),
        (dict(tracking_valid=np.bool_(False)), TRACKING_FAULT),
        (dict(outside_pct=np.float32(np.nan)), TRACKING_FAULT),
        (dict(source_fault=math.nan), SOURCE_FAULT),
    ],
)
def test_non_finite_and_bad_values_fail_their_condition(override, reason):
    override = dict(override)
    t_s = override.pop("t_s", 0.0)
    assert run(Gate(), [frame(t_s, **override)]) == [(False, reason)]
    # And they never leave the beam on after a release.
    gate = Gate()
    gate.decide(**frame(0.0))
    assert gate.beam_on
    assert run(gate, [frame(t_s, **override)]) == [(False, reason)]
    assert not gate.beam_on and gate.hold_reason == reason


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_numpy_scalars_are_accepted(dtype):
    decision = Gate().decide(
        t_s=dtype(1.5),
        outside_pct=dtype(3.0),
        confidence=dtype(0.8),
        tracking_valid=np.bool_(True),
        frame_age_s=dtype(0.1),
    )
    assert decision == GateDecision(True, "")


def test_negative_frame_age_counts_as_fresh():
    """Clock skew can make a frame look a little younger than zero; that is not stale."""
    assert run(Gate(), [frame(0.0, frame_age_s=-0.01)]) == [ON]


# --------------------------------------------------------------------------- watchdog, state


@pytest.mark.parametrize("reason", ["", "startup", "nope", None])
def test_watchdog_rejects_unknown_reasons(reason):
    with pytest.raises(ValueError, match="reason"):
        Gate().watchdog(0.0, reason)


def test_watchdog_default_reason_is_stale_frame():
    gate = Gate()
    gate.decide(**frame(0.0))
    assert gate.watchdog(0.5) == GateDecision(False, STALE_FRAME)


def test_state_properties():
    gate = Gate(GateConfig(beam_on_delay_frames=1))
    assert not gate.beam_on and gate.hold_reason == STARTUP
    gate.decide(**frame(0.0, outside_pct=50.0))
    assert not gate.beam_on and gate.hold_reason == OUTSIDE
    gate.decide(**frame(0.1))
    gate.decide(**frame(0.2))
    assert gate.beam_on
    gate.reset()
    assert not gate.beam_on and gate.hold_reason == STARTUP
    assert gate.config.beam_on_delay_frames == 1


# --------------------------------------------------------------------------- against naive

_reasons_for_watchdog = st.sampled_from(PRIORITY)


@st.composite
def _sequences(draw):
    """Random configs and step sequences: mostly good frames, random failures, NaNs,
    watchdog ticks and resets, with time usually advancing by a jittered frame period."""
    config = GateConfig(
        threshold_pct=draw(st.sampled_from([5.0, 10.0])),
        confidence_floor=draw(st.sampled_from([0.3, 0.5])),
        beam_on_delay_ms=draw(st.sampled_from([0.0, 100.0, 250.0, 333.3])),
        beam_on_delay_frames=draw(st.integers(0, 4)),
        max_frame_age_ms=draw(st.sampled_from([100.0, 250.0])),
    )
    steps = []
    t = draw(st.floats(0.0, 10.0))
    for _ in range(draw(st.integers(1, 40))):
        t += draw(st.sampled_from([0.125, 0.25, 0.1, 0.0, -0.05, 0.3]))
        kind = draw(st.sampled_from(["good"] * 6 + ["random", "watchdog", "reset"]))
        if kind == "reset":
            steps.append("reset")
        elif kind == "watchdog":
            steps.append(("watchdog", t, draw(_reasons_for_watchdog)))
        elif kind == "good":
            steps.append(frame(t))
        else:
            number = st.sampled_from([math.nan, math.inf, -1.0, 0.0, 0.05, 0.4, 0.5, 0.9, 5.0,
                                      10.0, 10.5, 99.0])
            steps.append(
                dict(
                    t_s=draw(st.sampled_from([t, t, t, math.nan])),
                    outside_pct=draw(number),
                    confidence=draw(number),
                    tracking_valid=draw(st.sampled_from([True, True, False, np.bool_(True)])),
                    frame_age_s=draw(st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3, math.nan])),
                    source_fault=draw(st.sampled_from([None, None, None, "", "fault"])),
                )
            )
    return config, steps


@settings(derandomize=True, deadline=None, max_examples=300)
@given(case=_sequences())
def test_gate_matches_naive_replay(case, naive):
    config, steps = case
    naive_steps = []
    for step in steps:
        if step == "reset":
            naive_steps.append(naive.ResetStep())
        elif isinstance(step, tuple):
            naive_steps.append(naive.WatchdogStep(step[1], step[2]))
        else:
            naive_steps.append(naive.FrameStep(**step))
    want = [d for d in naive.gate_replay(config, naive_steps) if d is not None]
    assert run(Gate(config), steps) == want
