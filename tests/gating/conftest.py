"""Shared fixtures for the gating tests: naive references, lesion masks, exact geometry."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
import shapely
from shapely import affinity
from shapely.geometry import box

from tests.gating import naive as naive_module


@pytest.fixture(scope="session")
def naive() -> ModuleType:
    """The naive reference module (tests/gating/naive.py)."""
    return naive_module


def _canvas(extent_mm: float, spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (mm, relative to the canvas centre) of a canvas that holds a
    shape of the given extent with a few pixels to spare on every side."""
    shape = tuple(int(math.ceil(extent_mm / s)) + 8 for s in spacing_mm)
    rr, cc = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    # An off-centre origin so that rasterised disks are not perfectly symmetric.
    return (rr - shape[0] / 2 + 0.31) * spacing_mm[0], (cc - shape[1] / 2 - 0.17) * spacing_mm[1]


def lesion_mask(kind: str, spacing_mm: tuple[float, float]) -> np.ndarray:
    """A rasterised lesion: pixels whose centre lies inside the shape.

    Kinds: ``diskN`` (disk of N mm diameter), ``blob`` (irregular, concave star shape of
    about 25 mm, fixed seed), ``ring`` (annulus 30 mm / 14 mm: a hole and two runs per
    column), ``two_parts`` (two disks 6 mm apart), ``pixel`` (one pixel).
    """
    if kind.startswith("disk"):
        diameter_mm = float(kind[4:])
        y, x = _canvas(diameter_mm, spacing_mm)
        return np.hypot(y, x) <= diameter_mm / 2
    if kind == "blob":
        rng = np.random.default_rng(20240517)
        y, x = _canvas(40.0, spacing_mm)
        theta = np.arctan2(y, x)
        radius = np.full_like(theta, 12.0)
        for k in range(2, 6):
            radius += 12.0 * rng.uniform(0.03, 0.15) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        return np.hypot(y, x) <= radius
    if kind == "ring":
        y, x = _canvas(30.0, spacing_mm)
        r = np.hypot(y, x)
        return (r <= 15.0) & (r >= 7.0)
    if kind == "two_parts":
        y, x = _canvas(34.0, spacing_mm)
        return (np.hypot(y, x + 8.0) <= 5.0) | (np.hypot(y - 2.0, x - 8.0) <= 6.0)
    if kind == "pixel":
        mask = np.zeros((5, 6), dtype=bool)
        mask[2, 3] = True
        return mask
    raise ValueError(f"kind: unknown lesion kind {kind!r}")


@pytest.fixture(scope="session")
def make_lesion() -> Callable[[str, tuple[float, float]], np.ndarray]:
    """Builder of rasterised lesion masks (see :func:`lesion_mask`)."""
    return lesion_mask


class ExactOutside:
    """Exact outside percentage with shapely: union of pixel squares in mm, buffered.

    Arcs of the buffer are polygons of 256 segments per quarter circle, which makes the
    boundary smaller by a relative area of about 1e-6 of a disk of the margin's radius.
    """

    def __init__(self, mask: np.ndarray, spacing_mm: tuple[float, float], margin_mm: float):
        sr, sc = spacing_mm
        squares = [
            box((c - 0.5) * sc, (r - 0.5) * sr, (c + 0.5) * sc, (r + 0.5) * sr)
            for r, c in zip(*np.nonzero(mask))
        ]
        # x = column mm, y = row mm.
        self.target = shapely.union_all(squares)
        self.boundary = (
            self.target.buffer(margin_mm, quad_segs=256) if margin_mm > 0 else self.target
        )

    def outside_pct(self, row_mm: float, col_mm: float) -> float:
        moved = affinity.translate(self.target, xoff=col_mm, yoff=row_mm)
        return 100.0 * moved.difference(self.boundary).area / moved.area


@pytest.fixture(scope="session")
def exact_outside() -> type[ExactOutside]:
    """The shapely reference class (see :class:`ExactOutside`)."""
    return ExactOutside
