"""The gate: per-frame beam-on / hold decision with a release delay.

Pure logic. Times come in as arguments (the caller's session clock); nothing here reads a
clock, so a recorded session replays to the same decisions.

Rules
-----
The beam is allowed on a frame when all of these hold:

- no source fault,
- the frame is fresh: ``frame_age_s <= max_frame_age_ms / 1000`` (and ``t_s`` is finite),
- the tracking result is valid and finite (``outside_pct`` and ``confidence``),
- the tracking result is consistent (its estimates of the position agree),
- ``confidence >= confidence_floor``,
- ``outside_pct <= threshold_pct``.

Any failing condition holds the beam at once, with the reason of highest priority:
``source_fault > stale_frame > tracking_fault > inconsistent > low_confidence > outside``. After a hold the
beam is released only once every condition has held on consecutive frames for at least
``beam_on_delay_ms`` of ``t_s`` and ``beam_on_delay_frames`` frames, both counted from the
first good frame (so with both delays at 0 the first good frame releases). While it waits
the beam stays held under the reason of the hold it is recovering from; before anything
has failed in the session (or since :meth:`Gate.reset`) that reason is ``startup``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Too much of the tracked target lies outside the gating boundary.
OUTSIDE = "outside"
#: The tracker's confidence is below the floor.
LOW_CONFIDENCE = "low_confidence"
#: The frame is too old, its age is unknown, or no frame arrived in time.
STALE_FRAME = "stale_frame"
#: The frame source reported a fault.
SOURCE_FAULT = "source_fault"
#: Waiting for the first release of the session.
STARTUP = "startup"
#: The tracker's result is invalid or not finite.
TRACKING_FAULT = "tracking_fault"
#: The tracker's two estimates of the position disagree (the match may be off the target).
INCONSISTENT = "inconsistent"
#: A command to the beam interface failed (only through :meth:`Gate.watchdog`).
BEAM_FAULT = "beam_fault"

#: Every reason a hold can carry, highest priority first (``startup`` only while waiting).
HOLD_REASONS: tuple[str, ...] = (
    SOURCE_FAULT,
    STALE_FRAME,
    TRACKING_FAULT,
    INCONSISTENT,
    LOW_CONFIDENCE,
    OUTSIDE,
    BEAM_FAULT,
    STARTUP,
)

# Slack when comparing elapsed time with the delay: t_s differences of sums of frame
# periods land a few ulps short of the delay they were meant to equal.
_DELAY_TOL_MS = 1e-6


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Gate thresholds and release delay.

    Parameters
    ----------
    threshold_pct : float
        Largest percentage of the target area allowed outside the boundary with the beam
        on, in [0, 100].
    confidence_floor : float
        Smallest tracking confidence allowed with the beam on (finite).
    beam_on_delay_ms : float
        Time in ms that all conditions must have held before the beam is released, >= 0.
    beam_on_delay_frames : int
        Frames after the first good frame that must also be good before release, >= 0.
    max_frame_age_ms : float
        Largest ``frame_age_s`` (as passed to :meth:`Gate.decide`, here in ms) that may
        keep the beam on, > 0.
    """

    threshold_pct: float = 10.0
    confidence_floor: float = 0.5
    beam_on_delay_ms: float = 0.0
    beam_on_delay_frames: int = 0
    max_frame_age_ms: float = 250.0

    def __post_init__(self) -> None:
        if not (_is_real(self.threshold_pct) and 0.0 <= self.threshold_pct <= 100.0):
            raise ValueError(f"threshold_pct: must be within [0, 100], got {self.threshold_pct!r}")
        if not _is_real(self.confidence_floor):
            raise ValueError(f"confidence_floor: must be finite, got {self.confidence_floor!r}")
        if not (_is_real(self.beam_on_delay_ms) and self.beam_on_delay_ms >= 0.0):
            raise ValueError(
                f"beam_on_delay_ms: must be finite and >= 0, got {self.beam_on_delay_ms!r}"
            )
        frames = self.beam_on_delay_frames
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 0:
            raise ValueError(f"beam_on_delay_frames: must be an int >= 0, got {frames!r}")
        if not (_is_real(self.max_frame_age_ms) and self.max_frame_age_ms > 0.0):
            raise ValueError(
                f"max_frame_age_ms: must be finite and > 0, got {self.max_frame_age_ms!r}"
            )


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What the gate decided for one frame (or one watchdog tick).

    Attributes
    ----------
    beam_on : bool
        True when the beam may be on.
    reason : str
        Why the beam is held (one of :data:`HOLD_REASONS`); ``""`` when it is on.
    """

    beam_on: bool
    reason: str


# Decisions are immutable, so the loop gets shared instances rather than new objects.
_BEAM_ON = GateDecision(True, "")
_HOLD = {reason: GateDecision(False, reason) for reason in HOLD_REASONS}


class Gate:
    """Per-frame beam gate with a release delay (see the module docstring for the rules).

    Parameters
    ----------
    config : GateConfig, optional
        Thresholds and delays; the defaults of :class:`GateConfig` if omitted.
    """

    def __init__(self, config: GateConfig | None = None) -> None:
        self._config = GateConfig() if config is None else config
        if not isinstance(self._config, GateConfig):
            raise ValueError(f"config: must be a GateConfig, got {type(config).__name__}")
        self._max_age_s = self._config.max_frame_age_ms / 1000.0
        self.reset()

    @property
    def config(self) -> GateConfig:
        """The configuration in use."""
        return self._config

    @property
    def beam_on(self) -> bool:
        """Whether the last decision let the beam on."""
        return self._beam_on

    @property
    def hold_reason(self) -> str:
        """Reason of the current (or, with the beam on, the last) hold."""
        return self._hold_reason

    def reset(self) -> None:
        """Back to the start of a session: beam held for ``startup``, delay restarted."""
        self._beam_on = False
        self._hold_reason = STARTUP
        self._good_since_s = math.nan
        self._good_frames = 0

    def decide(
        self,
        t_s: float,
        outside_pct: float,
        confidence: float,
        tracking_valid: bool,
        frame_age_s: float,
        source_fault: str | None = None,
        consistent: bool = True,
    ) -> GateDecision:
        """Decide the beam state for one frame.

        Parameters
        ----------
        t_s : float
            Session time of the decision in seconds (any monotonic origin); the release
            delay is measured on it.
        outside_pct : float
            Percentage of the tracked target outside the gating boundary.
        confidence : float
            Tracking confidence of this frame.
        tracking_valid : bool
            True (Python or numpy bool) when the tracker's result is valid; anything
            else is a tracking fault.
        frame_age_s : float
            Age of the frame in seconds when the decision is made.
        source_fault : str or None
            Description of a fault of the frame source; ``None``, ``""`` or ``False``
            when healthy, anything else is a fault.
        consistent : bool
            False when the tracker's estimates of the position disagree
            (:attr:`tracking.tracker.TrackResult.inconsistent`); only a real True passes.

        Returns
        -------
        GateDecision
            Never raises on bad values: NaN, inf or non-numbers fail their condition.
        """
        reason = self._failed_condition(
            t_s, outside_pct, confidence, tracking_valid, frame_age_s, source_fault, consistent
        )
        if reason:
            return self._hold(t_s, reason)
        if self._beam_on:
            return _BEAM_ON
        t = float(t_s)
        if self._good_frames == 0:
            self._good_since_s = t
        self._good_frames += 1
        elapsed_ms = (t - self._good_since_s) * 1000.0
        if (
            self._good_frames - 1 >= self._config.beam_on_delay_frames
            and elapsed_ms >= self._config.beam_on_delay_ms - _DELAY_TOL_MS
        ):
            self._beam_on = True
            log.debug("beam released at t=%.3f s after %s", t, self._hold_reason)
            return _BEAM_ON
        return _HOLD[self._hold_reason]

    def watchdog(self, t_s: float, reason: str = STALE_FRAME) -> GateDecision:
        """Hold the beam when the loop has no frame to decide on (e.g. none arrived in time).

        Parameters
        ----------
        t_s : float
            Session time in seconds (for the log only).
        reason : str
            Hold reason, one of :data:`HOLD_REASONS` except ``startup``.

        Returns
        -------
        GateDecision
            Always a hold with ``reason``; the release delay restarts.
        """
        if reason not in _HOLD or reason == STARTUP:
            raise ValueError(
                f"reason: must be one of {HOLD_REASONS[:-1]} for a watchdog hold, got {reason!r}"
            )
        return self._hold(t_s, reason)

    def _hold(self, t_s: float, reason: str) -> GateDecision:
        if self._beam_on:
            log.debug("beam held at t=%s s: %s", t_s, reason)
        self._beam_on = False
        self._hold_reason = reason
        self._good_frames = 0
        self._good_since_s = math.nan
        return _HOLD[reason]

    def _failed_condition(
        self,
        t_s: float,
        outside_pct: float,
        confidence: float,
        tracking_valid: bool,
        frame_age_s: float,
        source_fault: str | None,
        consistent: bool = True,
    ) -> str:
        """Highest-priority failing condition, or ``""`` when all hold."""
        healthy = source_fault is None or source_fault is False
        if not healthy and not (isinstance(source_fault, str) and source_fault == ""):
            return SOURCE_FAULT
        age_s = _as_float(frame_age_s)
        fresh = math.isfinite(age_s) and age_s <= self._max_age_s
        if not (fresh and math.isfinite(_as_float(t_s))):
            return STALE_FRAME
        outside = _as_float(outside_pct)
        conf = _as_float(confidence)
        # Only a real True counts: a NaN or a stray float must not pass as "valid".
        if not (type(tracking_valid) in (bool, np.bool_) and tracking_valid):
            return TRACKING_FAULT
        if not (math.isfinite(outside) and math.isfinite(conf)):
            return TRACKING_FAULT
        if not (type(consistent) in (bool, np.bool_) and consistent):
            return INCONSISTENT
        if conf < self._config.confidence_floor:
            return LOW_CONFIDENCE
        if outside > self._config.threshold_pct:
            return OUTSIDE
        return ""


def _as_float(value: object) -> float:
    """``float(value)``, or NaN for anything that is not a real number."""
    if isinstance(value, (str, bytes)):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _is_real(value: object) -> bool:
    return not isinstance(value, bool) and math.isfinite(_as_float(value))
