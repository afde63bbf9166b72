"""Template tracking of the target on 2D cine-MR frames: pure computation on arrays.

Public API
----------
TemplateTracker, TrackResult
    ZNCC template tracker of one target, and its per-frame result.
zncc_map, subpixel_peak
    The ZNCC score map of a template over an image, and its sub-pixel peak.
warm_up
    Compile (or load from cache) every kernel before the first frame.
"""

from tracking.tracker import DEFAULT_CONTEXT_MM, DEFAULT_SEARCH_MM, TemplateTracker, TrackResult
from tracking.warmup import warm_up
from tracking.zncc import FLAT_VARIANCE_RATIO, SHARPNESS_EXCLUSION_PX, subpixel_peak, zncc_map

__all__ = [
    "DEFAULT_CONTEXT_MM",
    "DEFAULT_SEARCH_MM",
    "FLAT_VARIANCE_RATIO",
    "SHARPNESS_EXCLUSION_PX",
    "TemplateTracker",
    "TrackResult",
    "subpixel_peak",
    "warm_up",
    "zncc_map",
]
