"""Tests of gating._numba_options and of the kernels' compilation (warm-up)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from gating import boundary
from gating._numba_options import NJIT_OPTIONS

#: These inspect the compiled dispatcher, which NUMBA_DISABLE_JIT=1 (the coverage run of
#: the kernels' Python source) replaces by the plain function.
needs_jit = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="inspects the compiled kernel; NUMBA_DISABLE_JIT is set")


def test_options_are_the_project_wide_set():
    assert NJIT_OPTIONS == dict(
        cache=True,
        nogil=True,
        error_model="numpy",
        fastmath={"nsz", "arcp", "contract", "afn", "reassoc"},
    )
    # NaN and infinity checks inside kernels must keep working.
    assert not {"nnan", "ninf", "fast"} & NJIT_OPTIONS["fastmath"]


@needs_jit
def test_kernel_uses_the_options():
    options = boundary._outside_pct_kernel.targetoptions
    assert options["nogil"] is True
    assert options["fastmath"] == NJIT_OPTIONS["fastmath"]
    assert options["error_model"] == "numpy"


@needs_jit
def test_constructor_compiles_the_kernel():
    """The geometry warms the kernel up, so the first frame does not pay for compilation."""
    boundary.GatingGeometry(np.ones((2, 2), dtype=bool), (2.4, 2.4), 3.0)
    assert len(boundary._outside_pct_kernel.signatures) >= 1
