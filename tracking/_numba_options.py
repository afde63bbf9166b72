"""The one place where the Numba compilation options of the tracking kernels are set.

``fastmath`` deliberately leaves out ``nnan`` and ``ninf``: the kernels test for NaN and
inf in the image (``math.isfinite``) and those tests must not be optimised away.
``cache=True`` stores compiled kernels next to the sources so a restart loads them
instead of compiling (see :func:`tracking.warmup.warm_up`).
"""

from __future__ import annotations

from typing import Any

NJIT_OPTIONS: dict[str, Any] = dict(
    cache=True,
    nogil=True,
    error_model="numpy",
    fastmath={"nsz", "arcp", "contract", "afn", "reassoc"},
)
