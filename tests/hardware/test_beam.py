"""SimulatedBeam: response delays, pending commands, heartbeats, state look-ups."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.beam import BeamInterface, BeamState, BeamTransition, SimulatedBeam
from hardware.clock import ManualClock

ON, HOLD = BeamState.ON, BeamState.HOLD


def naive_state_at(transitions: list[BeamTransition], t_s: float) -> BeamState:
    """The state of the last transition in effect by ``t_s``; held before any."""
    state = HOLD
    for tr in transitions:
        if tr.t_effective_s <= t_s:
            state = tr.state
    return state


def test_starts_held_for_startup() -> None:
    beam = SimulatedBeam(clock=ManualClock(5.0))
    assert isinstance(beam, BeamInterface)
    assert beam.state is HOLD and beam.commanded is HOLD and beam.reason == "startup"
    assert beam.transitions == []
    assert beam.state_at(-1e9) is HOLD and beam.state_at(1e9) is HOLD


def test_release_takes_effect_after_the_on_delay() -> None:
    beam = SimulatedBeam(beam_on_delay_ms=200.0, beam_off_delay_ms=50.0)
    beam.release(t_s=1.0)
    assert beam.commanded is ON and beam.reason == ""
    assert beam.transitions == [BeamTransition(1.0, 1.2, ON, "")]
    assert beam.state_at(1.0) is HOLD and beam.state_at(1.1999) is HOLD
    assert beam.state_at(1.2) is ON and beam.state_at(5.0) is ON


def test_hold_takes_effect_after_the_off_delay() -> None:
    beam = SimulatedBeam(beam_on_delay_ms=0.0, beam_off_delay_ms=150.0)
    beam.release(t_s=1.0)
    beam.hold("outside boundary", t_s=2.0)
    assert beam.transitions[-1] == BeamTransition(2.0, 2.15, HOLD, "outside boundary")
    assert beam.state_at(2.1) is ON and beam.state_at(2.15) is HOLD
    assert beam.reason == "outside boundary"


def test_hold_during_pending_release_never_lets_radiation_start() -> None:
    beam = SimulatedBeam(beam_on_delay_ms=300.0, beam_off_delay_ms=50.0)
    beam.release(t_s=1.0)  # would be on at 1.3
    beam.hold("low confidence", t_s=1.1)  # would be off at 1.15, before the release lands
    effective = [tr.t_effective_s for tr in beam.transitions]
    assert effective == sorted(effective)
    for k in range(0, 301):
        t = 0.9 + k * 0.002
        assert beam.state_at(t) is HOLD, t
    assert beam.state_at(10.0) is HOLD


def test_release_during_pending_hold_keeps_beam_on() -> None:
    """Pins the symmetric case: a release issued before a pending hold lands cancels it."""
    beam = SimulatedBeam(beam_on_delay_ms=50.0, beam_off_delay_ms=200.0)
    beam.release(t_s=0.0)
    beam.hold("outside boundary", t_s=1.0)  # would be off at 1.2
    beam.release(t_s=1.1)  # would be on at 1.15
    assert [tr.t_effective_s for tr in beam.transitions] == pytest.approx([0.05, 1.2, 1.2])
    assert all(beam.state_at(0.05 + 0.01 * k) is ON for k in range(200))


def test_heartbeat_commands_record_no_transition() -> None:
    beam = SimulatedBeam(beam_on_delay_ms=10.0, beam_off_delay_ms=10.0)
    beam.hold("startup", t_s=0.0)
    beam.hold("no target yet", t_s=0.1)
    assert beam.transitions == [] and beam.reason == "no target yet"
    beam.release(t_s=0.2)
    beam.release(t_s=0.3)
    beam.release(t_s=0.4)
    assert len(beam.transitions) == 1
    beam.hold("outside boundary", t_s=0.5)
    beam.hold("low confidence", t_s=0.6)
    assert len(beam.transitions) == 2
    assert beam.transitions[-1].reason == "outside boundary"  # the transition keeps its cause
    assert beam.reason == "low confidence"  # the current reason follows the heartbeat


def test_commands_without_time_use_the_clock() -> None:
    clock = ManualClock(10.0)
    beam = SimulatedBeam(beam_on_delay_ms=100.0, beam_off_delay_ms=100.0, clock=clock)
    beam.release()
    assert beam.transitions[0].t_command_s == 10.0
    assert beam.state is HOLD
    clock.advance(0.1)
    assert beam.state is ON
    beam.hold("test")
    clock.advance(0.05)
    assert beam.state is ON
    clock.advance(0.05)
    assert beam.state is HOLD


@pytest.mark.parametrize("delays", [(-1.0, 0.0), (0.0, -0.1), (math.nan, 0.0), (0.0, math.inf)])
def test_invalid_delays(delays: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="delay"):
        SimulatedBeam(*delays)


@settings(max_examples=200, deadline=None)
@given(
    on_ms=st.floats(0.0, 500.0),
    off_ms=st.floats(0.0, 500.0),
    commands=st.lists(st.tuples(st.booleans(), st.floats(0.0, 0.3)), max_size=30),
)
def test_random_command_sequences(on_ms: float, off_ms: float, commands: list[tuple[bool, float]]) -> None:
    """Invariants for any command sequence at non-decreasing times."""
    beam = SimulatedBeam(on_ms, off_ms)
    t = 0.0
    for release, dt in commands:
        t += dt
        before = len(beam.transitions)
        was = beam.commanded
        if release:
            beam.release(t_s=t)
        else:
            beam.hold("reason", t_s=t)
        assert beam.commanded is (ON if release else HOLD)
        assert len(beam.transitions) == before + (beam.commanded is not was)
    trs = beam.transitions
    effective = [tr.t_effective_s for tr in trs]
    assert effective == sorted(effective)
    for tr in trs:
        delay_s = (on_ms if tr.state is ON else off_ms) / 1000.0
        assert tr.t_effective_s >= tr.t_command_s + delay_s - 1e-12
    # Transitions alternate, starting with a release (the beam starts held).
    assert all(tr.state is (ON if i % 2 == 0 else HOLD) for i, tr in enumerate(trs))
    probes = [tr.t_effective_s + d for tr in trs for d in (-1e-6, 0.0, 1e-6)] + [-1.0, t + 10.0]
    for p in probes:
        assert beam.state_at(p) is naive_state_at(trs, p)
    assert beam.state_at(t + 10.0) is beam.commanded
