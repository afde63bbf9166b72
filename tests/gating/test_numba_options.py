"""Tests of gating._numba_options and of the kernels' compilation (warm-up)."""

from __future__ import annotations

import numpy as np

from gating import boundary
from gating._numba_options import NJIT_OPTIONS


def test_options_are_the_project_wide_set():
    assert NJIT_OPTIONS == dict(
        cache=True,
        nogil=True,
        error_model="numpy",
        fastmath={"nsz", "arcp", "contract", "afn", "reassoc"},
    )
    # NaN and infinity checks inside kernels must keep working.
    assert not {"nnan", "ninf", "fast"} & NJIT_OPTIONS["fastmath"]


def test_kernel_uses_the_options():
    options = boundary._outside_pct_kernel.targetoptions
    assert options["nogil"] is True
    assert options["fastmath"] == NJIT_OPTIONS["fastmath"]
    assert options["error_model"] == "numpy"


def test_constructor_compiles_the_kernel():
    """The geometry warms the kernel up, so the first frame does not pay for compilation."""
    boundary.GatingGeometry(np.ones((2, 2), dtype=bool), (2.4, 2.4), 3.0)
    assert len(boundary._outside_pct_kernel.signatures) >= 1
