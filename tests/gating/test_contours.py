"""Tests of gating.contours: pixel outlines, marching squares, shoelace area."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gating.contours import iso_contour_rings, pixel_outline_rings, polygon_area


def test_single_pixel_outline_hand_computed():
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 2] = True
    (ring,) = pixel_outline_rings(mask)
    assert ring.shape == (5, 2)
    np.testing.assert_array_equal(ring[0], ring[-1])
    corners = {tuple(v) for v in ring[:-1]}
    assert corners == {(0.5, 1.5), (0.5, 2.5), (1.5, 2.5), (1.5, 1.5)}
    assert polygon_area(ring) == 1.0


def test_rectangle_outline_drops_collinear_vertices():
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:4, 2:6] = True
    (ring,) = pixel_outline_rings(mask)
    assert ring.shape == (5, 2)
    assert polygon_area(ring) == 12.0


def test_hole_is_a_negative_ring():
    mask = np.ones((4, 4), dtype=bool)
    mask[1:3, 1:3] = False
    rings = pixel_outline_rings(mask)
    assert sorted(polygon_area(r) for r in rings) == [-4.0, 16.0]


def test_empty_mask_has_no_rings():
    assert pixel_outline_rings(np.zeros((3, 3), dtype=bool)) == []


@settings(derandomize=True, deadline=None, max_examples=100)
@given(mask=hnp.arrays(np.bool_, st.tuples(st.integers(1, 9), st.integers(1, 9))))
def test_outline_area_and_inside_test_match_the_mask(mask, naive):
    """Any mask, including diagonal contacts and holes: signed areas add up to the pixel
    count, and the even-odd rule over the rings gives back the mask."""
    rings = pixel_outline_rings(mask)
    assert sum(polygon_area(r) for r in rings) == float(mask.sum())
    rr, cc = np.meshgrid(np.arange(mask.shape[0]), np.arange(mask.shape[1]), indexing="ij")
    centres = np.column_stack([rr.ravel(), cc.ravel()]).astype(np.float64)
    np.testing.assert_array_equal(
        naive.inside_rings_even_odd(centres, rings).reshape(mask.shape), mask
    )


def test_iso_contour_of_a_cone_is_a_circle():
    """Level r = 4 of the field r on a 0.1 grid: vertices within interpolation error of the
    circle, enclosed area within 0.1 % of pi r^2."""
    step = 0.1
    axis = np.arange(-6.0, 6.0 + step / 2, step)
    rr, cc = np.meshgrid(axis, axis, indexing="ij")
    field = np.hypot(rr, cc)
    (ring,) = iso_contour_rings(field, 4.0, origin_rc=(axis[0], axis[0]), step_rc=(step, step))
    np.testing.assert_array_equal(ring[0], ring[-1])
    np.testing.assert_allclose(np.hypot(ring[:, 0], ring[:, 1]), 4.0, atol=2e-3)
    assert abs(polygon_area(ring)) == pytest.approx(math.pi * 16.0, rel=1e-3)


def test_iso_contour_closes_at_the_grid_border(naive):
    """A field inside everywhere is closed by the outside padding one node beyond it: the
    ring encloses every node and stays within one step of the grid."""
    (ring,) = iso_contour_rings(np.zeros((3, 4)), 0.5)
    np.testing.assert_array_equal(ring[0], ring[-1])
    assert -1.0 < ring[:, 0].min() < 0.0 and 2.0 < ring[:, 0].max() < 3.0
    assert -1.0 < ring[:, 1].min() < 0.0 and 3.0 < ring[:, 1].max() < 4.0
    rr, cc = np.meshgrid(np.arange(3.0), np.arange(4.0), indexing="ij")
    nodes = np.column_stack([rr.ravel(), cc.ravel()])
    assert naive.inside_rings_even_odd(nodes, [ring]).all()
    assert 6.0 < abs(polygon_area(ring)) < 20.0


def test_iso_contour_saddle_uses_the_centre():
    """Two diagonal inside corners: joined when the centre is inside, separate if not."""
    joined = np.array([[-1.0, 0.5], [0.5, -1.0]])
    separate = np.array([[-0.2, 1.0], [1.0, -0.2]])
    assert len(iso_contour_rings(joined, 0.0)) == 1
    assert len(iso_contour_rings(separate, 0.0)) == 2


def test_iso_contour_two_levels_nest():
    axis = np.arange(-5.0, 5.01, 0.25)
    rr, cc = np.meshgrid(axis, axis, indexing="ij")
    field = np.hypot(rr, cc)
    small = iso_contour_rings(field, 2.0, (axis[0], axis[0]), (0.25, 0.25))
    large = iso_contour_rings(field, 3.0, (axis[0], axis[0]), (0.25, 0.25))
    assert abs(polygon_area(small[0])) < abs(polygon_area(large[0]))


@pytest.mark.parametrize(
    ("field", "match"),
    [
        (np.zeros(4), "field"),
        (np.array([[0.0, math.nan]]), "field"),
        (np.zeros((2, 2, 2)), "field"),
    ],
)
def test_iso_contour_validation(field, match):
    with pytest.raises(ValueError, match=match):
        iso_contour_rings(field, 0.0)


def test_pixel_outline_validation():
    with pytest.raises(ValueError, match="mask"):
        pixel_outline_rings(np.zeros((2, 2, 2), dtype=bool))
