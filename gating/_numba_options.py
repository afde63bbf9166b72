"""Numba compilation options for every kernel in :mod:`gating` (the one place they live).

Identical to ``tracking/_numba_options.py``; duplicated because the two packages may not
import each other.
"""

from __future__ import annotations

from typing import Any

#: Options passed to every ``@numba.njit`` in this package. The fastmath set leaves out
#: ``nnan`` and ``ninf`` so that NaN and infinity checks inside kernels keep working.
NJIT_OPTIONS: dict[str, Any] = dict(
    cache=True,
    nogil=True,
    error_model="numpy",
    fastmath={"nsz", "arcp", "contract", "afn", "reassoc"},
)
