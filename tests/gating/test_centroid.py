"""mask_centroid_px against np.nonzero on the same masks."""

from __future__ import annotations

import numpy as np
import pytest

from gating.centroid import mask_centroid_px


@pytest.mark.parametrize("seed", range(5))
def test_matches_nonzero(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((37, 53)) < 0.2
    rows, cols = np.nonzero(mask)
    assert mask_centroid_px(mask) == pytest.approx((rows.mean(), cols.mean()), abs=1e-12)
    assert mask_centroid_px(mask.astype(np.uint8)) == pytest.approx((rows.mean(), cols.mean()), abs=1e-12)
    view = mask[::2, ::-1]
    rows, cols = np.nonzero(view)
    assert mask_centroid_px(view) == pytest.approx((rows.mean(), cols.mean()), abs=1e-12)


def test_hand_computed_and_empty() -> None:
    mask = np.zeros((4, 5), dtype=bool)
    assert mask_centroid_px(mask) is None
    mask[1, 1] = mask[3, 4] = True
    assert mask_centroid_px(mask) == (2.0, 2.5)
