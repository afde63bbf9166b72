"""Gating decisions: boundary geometry, outside percentage and the gate state machine.

Pure decision logic: no I/O, no clocks (times are passed in).

- :class:`GatingGeometry` — reference target, gating boundary (target expanded by a
  margin in mm) and the percentage of a translated target outside it.
- :class:`Gate` — per-frame beam-on / hold decision with reasons and a release delay,
  configured by :class:`GateConfig`, answering :class:`GateDecision`.
"""

from gating.boundary import GatingGeometry
from gating.contours import iso_contour_rings, pixel_outline_rings, polygon_area
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

__all__ = [
    "HOLD_REASONS",
    "INCONSISTENT",
    "LOW_CONFIDENCE",
    "OUTSIDE",
    "SOURCE_FAULT",
    "STALE_FRAME",
    "STARTUP",
    "TRACKING_FAULT",
    "Gate",
    "GateConfig",
    "GateDecision",
    "GatingGeometry",
    "iso_contour_rings",
    "pixel_outline_rings",
    "polygon_area",
]
