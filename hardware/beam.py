"""Beam control: the protocol the gating loop drives, and a simulated linac.

A real beam responds to a command after a delay (the MRIdian's measured beam-off
latency is 47-302 ms at 8 frames/s, see ``domain.md``). :class:`SimulatedBeam` models
those response delays so that the loop's decisions can be turned into the beam
timeline that would really have been delivered.
"""

from __future__ import annotations

import bisect
import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


class BeamState(enum.Enum):
    """Beam state as recorded: ``on`` (radiation allowed) or ``hold``."""

    ON = "on"
    HOLD = "hold"


@runtime_checkable
class BeamInterface(Protocol):
    """What the gating loop needs from a beam.

    ``hold`` and ``release`` are idempotent and may be called every frame: repeating
    the current command is a heartbeat, not a transition.
    """

    def hold(self, reason: str, t_s: float | None = None) -> None:
        """Command the beam off, naming why."""

    def release(self, t_s: float | None = None) -> None:
        """Command the beam on."""

    @property
    def state(self) -> BeamState:
        """The beam's actual state now."""
        ...


@dataclass(frozen=True, slots=True)
class BeamTransition:
    """One change of the commanded beam state.

    Attributes
    ----------
    t_command_s : float
        When the command was issued (session clock, s).
    t_effective_s : float
        When the beam actually changed (command time + response delay, s).
    state : BeamState
        The state commanded.
    reason : str
        Why the beam was held; empty for a release.
    """

    t_command_s: float
    t_effective_s: float
    state: BeamState
    reason: str


class SimulatedBeam:
    """A beam that obeys commands after configurable response delays.

    Starts held (reason ``startup``), as a linac does before gating has vouched for the
    target.

    Parameters
    ----------
    beam_on_delay_ms : float
        Time from a release command to radiation on.
    beam_off_delay_ms : float
        Time from a hold command to radiation off.
    clock : callable returning float seconds, optional
        Used when a command carries no explicit time; defaults to ``time.perf_counter``.
    """

    def __init__(
        self,
        beam_on_delay_ms: float = 0.0,
        beam_off_delay_ms: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not all(math.isfinite(d) and d >= 0.0 for d in (beam_on_delay_ms, beam_off_delay_ms)):
            raise ValueError("beam response delays must be finite and >= 0 ms")
        self.beam_on_delay_s = beam_on_delay_ms / 1000.0
        self.beam_off_delay_s = beam_off_delay_ms / 1000.0
        self._clock = clock
        self._commanded = BeamState.HOLD
        self._reason = "startup"
        self.transitions: list[BeamTransition] = []
        # Effective times, kept sorted, for state look-ups by time.
        self._effective_times: list[float] = []

    @property
    def commanded(self) -> BeamState:
        """The last state commanded."""
        return self._commanded

    @property
    def reason(self) -> str:
        """Why the beam is commanded held; empty when commanded on."""
        return self._reason

    def hold(self, reason: str, t_s: float | None = None) -> None:
        if self._commanded is BeamState.HOLD:
            self._reason = reason
            return
        self._command(BeamState.HOLD, reason, t_s, self.beam_off_delay_s)

    def release(self, t_s: float | None = None) -> None:
        if self._commanded is BeamState.ON:
            return
        self._command(BeamState.ON, "", t_s, self.beam_on_delay_s)

    def _command(self, state: BeamState, reason: str, t_s: float | None, delay_s: float) -> None:
        t = self._clock() if t_s is None else t_s
        t_eff = t + delay_s
        # A hold issued while a release is still pending cancels it at once: radiation
        # never starts. Effective times therefore stay non-decreasing.
        if self._effective_times and t_eff < self._effective_times[-1]:
            t_eff = self._effective_times[-1]
        self._commanded = state
        self._reason = reason
        self.transitions.append(BeamTransition(t, t_eff, state, reason))
        self._effective_times.append(t_eff)
        log.info("beam %s commanded at %.3f s (%s)", state.value, t, reason or "release")

    def state_at(self, t_s: float) -> BeamState:
        """The actual beam state at time ``t_s`` (session clock, s)."""
        i = bisect.bisect_right(self._effective_times, t_s)
        return BeamState.HOLD if i == 0 else self.transitions[i - 1].state

    @property
    def state(self) -> BeamState:
        return self.state_at(self._clock())
