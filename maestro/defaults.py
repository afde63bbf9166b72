"""The defaults a session starts from, in one place.

:class:`maestro.session.SessionConfig`, :class:`maestro.validation.ValidationSettings` and the
options of ``maestro replay``, ``live``, ``validate`` and ``accuracy`` all take their
defaults from here, so a changed default changes every command together. The tracker's,
the gate's and the uncertainty allowance's own choices stay with the library that explains
them: they are re-exported here under the application's names.
"""

from __future__ import annotations

from gating.gate import GateConfig
from gating.uncertainty import DEFAULT_UNCERTAINTY_MM
from tracking.deformable import RIGID_SHARE as _RIGID_SHARE
from tracking.tracker import DEFAULT_CONTEXT_MM, DEFAULT_SEARCH_MM

__all__ = [
    "CONFIDENCE_FLOOR", "CONTEXT_MM", "MARGIN_MM", "MAX_FRAME_AGE_MS", "RIGID_SHARE", "SEARCH_MM",
    "SWEEP_LATENCIES_MS", "SWEEP_MARGINS_MM", "SWEEP_PREDICT_MS", "SWEEP_THRESHOLDS_PCT", "THRESHOLD_PCT",
    "UNCERTAINTY_MM",
]

#: Gating boundary = reference target + this margin (mm): the MAESTRO protocol's 3 mm.
MARGIN_MM = 3.0
_GATE = GateConfig()  # the gate's own defaults (gating.gate)
#: The beam holds while more than this percentage of the target lies outside the boundary.
THRESHOLD_PCT = _GATE.threshold_pct
#: The beam holds while the tracker's confidence is below this (0-1).
CONFIDENCE_FLOOR = _GATE.confidence_floor
#: A frame older than this when decided is stale and holds the beam (ms): two frame periods
#: at 8 frames/s, one at 4.
MAX_FRAME_AGE_MS = _GATE.max_frame_age_ms
#: Context around the target's bounding box in the template (mm); see
#: :data:`tracking.tracker.DEFAULT_CONTEXT_MM`.
CONTEXT_MM = DEFAULT_CONTEXT_MM
#: Half-width of the search window (mm); see :data:`tracking.tracker.DEFAULT_SEARCH_MM`.
SEARCH_MM = DEFAULT_SEARCH_MM
#: The gate's position-uncertainty allowance (mm); see :mod:`gating.uncertainty`.
UNCERTAINTY_MM = DEFAULT_UNCERTAINTY_MM
#: The deformable mode's share of the rigid match in the target's position (0-1); see
#: :data:`tracking.deformable.RIGID_SHARE`.
RIGID_SHARE = _RIGID_SHARE

# -- what ``maestro validate`` sweeps (each includes the session's own default) ------------
#: Gating margins (mm).
SWEEP_MARGINS_MM: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0)
#: Outside thresholds (%).
SWEEP_THRESHOLDS_PCT: tuple[float, ...] = (5.0, 10.0, 20.0)
#: Simulated beam response delays, applied to hold and release (ms).
SWEEP_LATENCIES_MS: tuple[float, ...] = (0.0, 250.0)
#: Prediction horizons (ms; 0 = the tracked position).
SWEEP_PREDICT_MS: tuple[float, ...] = (0.0,)
