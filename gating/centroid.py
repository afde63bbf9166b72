"""Centroid of a target mask: where the ground truth says the target is."""

from __future__ import annotations

import math

import numba
import numpy as np

from gating._numba_options import NJIT_OPTIONS


@numba.njit(**NJIT_OPTIONS)
def _centroid_kernel(mask: np.ndarray) -> tuple[float, float, int]:
    sum_rows = 0.0
    sum_cols = 0.0
    n = 0
    n_rows, n_cols = mask.shape
    for r in range(n_rows):
        for c in range(n_cols):
            if mask[r, c]:
                sum_rows += r
                sum_cols += c
                n += 1
    return sum_rows, sum_cols, n


def mask_centroid_px(mask: np.ndarray) -> tuple[float, float] | None:
    """Centroid (row, col) of a 2D mask in pixels, or ``None`` when it is empty.

    Parameters
    ----------
    mask : (H, W) bool ndarray
        Pixel-centre mask (other dtypes are compared with zero).

    One pass without temporaries: it runs for every labelled frame of a replay, where
    ``np.nonzero`` cost more than the tracking itself.
    """
    if mask.dtype != np.bool_:
        mask = mask != 0
    sum_rows, sum_cols, n = _centroid_kernel(mask)
    if n == 0:
        return None
    return sum_rows / n, sum_cols / n


def _warm_up() -> None:
    mask = np.zeros((3, 3), dtype=np.bool_)
    mask[1, 1] = True
    assert mask_centroid_px(mask) == (1.0, 1.0)
    assert mask_centroid_px(mask[:, ::-1]) is not None  # non-contiguous layout too
    assert not math.isnan(mask_centroid_px(mask)[0])  # type: ignore[index]
