"""Compile (or load from Numba's cache) every gating kernel before the first frame."""

from __future__ import annotations

import numpy as np

from gating.boundary import GatingGeometry
from gating.centroid import _warm_up as _warm_up_centroid
from gating.deformed_outside import DeformedOutside


def warm_up() -> None:
    """Run the boundary kernels once on a tiny target so no frame pays for compilation:
    the rigid boundary's, the centroid's and the deformable mode's
    (:class:`DeformedOutside`, whose constructor runs its one kernel signature)."""
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 2] = True
    geometry = GatingGeometry(mask, (1.0, 1.0), 1.0)
    geometry.outside_pct(0.25, -0.25)
    DeformedOutside(mask, (1.0, 1.0), 1.0)
    _warm_up_centroid()
