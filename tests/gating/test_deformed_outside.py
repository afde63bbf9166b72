"""Tests of the outside percentage of an affinely propagated target
(gating/deformed_outside.py): against the exact translation result of GatingGeometry and
against exact polygon areas (shapely) for affine maps."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely import affinity
from shapely.geometry import box

from gating.boundary import GatingGeometry
from gating.deformed_outside import DeformedOutside


def _random_target(rng: np.random.Generator, shape: tuple[int, int], spacing: tuple[float, float]) -> np.ndarray:
    """A union of one to three random ellipses, 10-35 mm across, near the image centre."""
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    mask = np.zeros(shape, dtype=bool)
    centre = np.array(shape) / 2.0
    for _ in range(int(rng.integers(1, 4))):
        cr, cc = centre + rng.uniform(-3.0, 3.0, 2)
        a, b = rng.uniform(5.0, 17.5, 2)
        th = rng.uniform(0.0, np.pi)
        y, x = (r - cr) * spacing[0], (c - cc) * spacing[1]
        u = y * np.cos(th) + x * np.sin(th)
        v = -y * np.sin(th) + x * np.cos(th)
        mask |= (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return mask


SPACINGS = [(2.4, 2.4), (3.5, 3.5), (1.5, 2.7)]


@pytest.mark.parametrize("spacing", SPACINGS)
def test_translations_agree_with_gating_geometry(spacing: tuple[float, float]) -> None:
    rng = np.random.default_rng(int(spacing[0] * 10))
    worst = 0.0
    for _ in range(6):
        mask = _random_target(rng, (80, 80), spacing)
        margin = float(rng.uniform(2.0, 6.0))
        exact = GatingGeometry(mask, spacing, margin)
        ours = DeformedOutside(mask, spacing, margin)
        for _ in range(60):
            d_mm = rng.uniform(-12.0, 12.0, 2)
            affine = np.array([[1.0, 0.0, d_mm[0] / spacing[0]], [0.0, 1.0, d_mm[1] / spacing[1]]])
            worst = max(worst, abs(ours.outside_pct(affine) - exact.outside_pct(*d_mm)))
    # Measured: under 0.06 percentage points (second-order quadrature).
    assert worst < 0.5, worst


def _outside_pct_shapely(mask: np.ndarray, spacing: tuple[float, float], margin: float, affine: np.ndarray) -> float:
    """Exact area of the mapped target outside the buffered reference target, in mm."""
    sr, sc = spacing
    squares = [box((c - 0.5) * sc, (r - 0.5) * sr, (c + 0.5) * sc, (r + 0.5) * sr) for r, c in zip(*np.nonzero(mask))]
    target = shapely.unary_union(squares)  # x = col mm, y = row mm
    boundary = target.buffer(margin, quad_segs=256) if margin > 0 else target
    # The affine in mm: row' = a00 row + a01 col + t0 (px) -> mm with the spacing.
    a, b, t0 = affine[0]
    c_, d, t1 = affine[1]
    # shapely's affine_transform: x' = A x + B y + xoff, y' = D x + E y + yoff; x = col mm, y = row mm.
    mapped = affinity.affine_transform(target, [d, c_ * sc / sr, b * sr / sc, a, t1 * sc, t0 * sr])
    return 100.0 * mapped.difference(boundary).area / mapped.area


@pytest.mark.parametrize("spacing", SPACINGS)
def test_affine_maps_agree_with_exact_polygons(spacing: tuple[float, float]) -> None:
    rng = np.random.default_rng(17 + int(spacing[1] * 10))
    errors = []
    for _ in range(4):
        mask = _random_target(rng, (64, 64), spacing)
        margin = float(rng.uniform(2.0, 5.0))
        ours = DeformedOutside(mask, spacing, margin)
        for _ in range(8):
            lin = np.eye(2) + rng.uniform(-0.15, 0.15, (2, 2))
            centre = np.argwhere(mask).mean(axis=0)
            shift_px = rng.uniform(-8.0, 8.0, 2) / np.asarray(spacing)
            affine = np.column_stack([lin, centre + shift_px - lin @ centre])
            errors.append(ours.outside_pct(affine) - _outside_pct_shapely(mask, spacing, margin, affine))
    assert np.abs(errors).max() < 0.3, np.abs(errors).max()


def test_small_margins_fall_back_to_point_counting() -> None:
    """Margin 0 (the boundary is the target) and margins under a sub-square's half-width:
    each sub-square is decided by its centre; still close to the exact value."""
    rng = np.random.default_rng(5)
    spacing = (2.4, 2.4)
    mask = _random_target(rng, (64, 64), spacing)
    for margin in (0.0, 0.3):
        exact = GatingGeometry(mask, spacing, margin)
        ours = DeformedOutside(mask, spacing, margin, samples_per_px=8)
        for _ in range(30):
            d_mm = rng.uniform(-6.0, 6.0, 2)
            affine = np.array([[1.0, 0.0, d_mm[0] / spacing[0]], [0.0, 1.0, d_mm[1] / spacing[1]]])
            assert ours.outside_pct(affine) == pytest.approx(exact.outside_pct(*d_mm), abs=2.0)


def test_fail_safe_and_exact_values() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[15:25, 12:22] = True
    ours = DeformedOutside(mask, (2.4, 2.4), 3.0)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert ours.outside_pct(identity) == 0.0
    for bad in (np.full((2, 3), np.nan), np.array([[1.0, 0.0, np.inf], [0.0, 1.0, 0.0]]),
                np.array([[-1.0, 0.0, 40.0], [0.0, 1.0, 0.0]]),  # reflection: det < 0
                np.zeros((2, 3)), np.eye(3), "not an affine"):
        assert ours.outside_pct(bad) == 100.0
    assert ours.outside_pct(np.array([[1.0, 0.0, 1e300], [0.0, 1.0, -1e300]])) == 100.0
    assert ours.outside_pct(np.array([[1.0, 0.0, 30.0], [0.0, 1.0, 0.0]])) == 100.0
    # A shrunk target about its centre stays inside.
    centre = np.array([19.5, 16.5])
    lin = 0.8 * np.eye(2)
    assert ours.outside_pct(np.column_stack([lin, centre - lin @ centre])) == 0.0
    # float32 and non-contiguous affines are accepted.
    wide = np.zeros((2, 6))
    wide[:, ::2] = identity
    assert ours.outside_pct(wide[:, ::2]) == 0.0
    assert ours.outside_pct(identity.astype(np.float32)) == 0.0


def test_rejects_bad_construction() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    with pytest.raises(ValueError, match="target_mask"):
        DeformedOutside(mask, (1.0, 1.0), 3.0)
    mask[4, 4] = True
    with pytest.raises(ValueError, match="spacing_mm"):
        DeformedOutside(mask, (1.0, -1.0), 3.0)
    with pytest.raises(ValueError, match="margin_mm"):
        DeformedOutside(mask, (1.0, 1.0), np.nan)
    with pytest.raises(ValueError, match="samples_per_px"):
        DeformedOutside(mask, (1.0, 1.0), 3.0, samples_per_px=0)
