"""Tests of gating.boundary: outside percentage, boundary mask, contours, validation."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gating.boundary import GatingGeometry
from gating.contours import polygon_area

LESION_KINDS = ("disk10", "disk20", "disk30", "disk40", "blob", "ring", "two_parts", "pixel")
SPACINGS_MM = ((2.4, 2.4), (3.5, 3.5), (1.5, 3.5), (3.5, 2.4))
MARGINS_MM = (0.0, 1.0, 3.0, 5.0)

#: Requirement: within 0.5 percentage points of an exact polygon computation. The method
#: does far better (0.011 pp is the worst seen over these shapes, spacings and margins);
#: this bound keeps some room while still catching any real regression.
EXACT_TOL_PCT = 0.05


def _displacements(rng: np.random.Generator, margin_mm: float, n: int) -> np.ndarray:
    """Random sub-pixel displacements (row_mm, col_mm), most of them with the target partly
    outside: radii around the margin plus up to 12 mm, all directions."""
    radius = rng.uniform(0.0, margin_mm + 12.0, n)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return np.column_stack([radius * np.sin(angle), radius * np.cos(angle)])


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("margin_mm", MARGINS_MM)
@pytest.mark.parametrize("spacing_mm", SPACINGS_MM)
@pytest.mark.parametrize("kind", LESION_KINDS)
def test_outside_pct_matches_exact_polygon(kind, spacing_mm, margin_mm, make_lesion, exact_outside):
    """Against shapely: union of pixel squares in mm, buffered, shifted, area difference."""
    mask = make_lesion(kind, spacing_mm)
    geometry = GatingGeometry(mask, spacing_mm, margin_mm)
    exact = exact_outside(mask, spacing_mm, margin_mm)
    rng = np.random.default_rng(zlib.crc32(repr((kind, spacing_mm, margin_mm)).encode()))
    errors = []
    values = []
    for row_mm, col_mm in _displacements(rng, margin_mm, 24):
        got = geometry.outside_pct(row_mm, col_mm)
        want = exact.outside_pct(row_mm, col_mm)
        errors.append(abs(got - want))
        values.append(want)
    assert max(errors) <= EXACT_TOL_PCT, f"max error {max(errors):.4f} pp"
    # The sample must exercise partial overlaps, not only 0 % and 100 %.
    assert any(1.0 < v < 99.0 for v in values)


def test_outside_pct_worst_case_coarse_pixels(make_lesion, exact_outside):
    """3.5 mm pixels with a 3 mm margin, displacements near the boundary edge, where
    pixel counting would be off by whole pixels."""
    spacing_mm = (3.5, 3.5)
    rng = np.random.default_rng(7)
    for kind in ("disk10", "disk30", "blob"):
        mask = make_lesion(kind, spacing_mm)
        geometry = GatingGeometry(mask, spacing_mm, 3.0)
        exact = exact_outside(mask, spacing_mm, 3.0)
        for _ in range(40):
            row_mm, col_mm = rng.uniform(-6.0, 6.0, 2)
            got = geometry.outside_pct(row_mm, col_mm)
            assert got == pytest.approx(exact.outside_pct(row_mm, col_mm), abs=EXACT_TOL_PCT)


@settings(derandomize=True, deadline=None, max_examples=60)
@given(
    mask=hnp.arrays(np.bool_, st.tuples(st.integers(1, 6), st.integers(1, 6))).filter(np.any),
    spacing_mm=st.tuples(st.floats(0.5, 4.0), st.floats(0.5, 4.0)),
    # shapely's buffer degenerates for margins of 1e-100 mm or so; the kernel does not.
    margin_mm=st.just(0.0) | st.floats(0.01, 6.0),
    shift=st.tuples(st.floats(-15.0, 15.0), st.floats(-15.0, 15.0)),
)
def test_outside_pct_random_masks_match_exact(mask, spacing_mm, margin_mm, shift, exact_outside):
    """Arbitrary small masks (holes, diagonal contacts, several parts) against shapely."""
    geometry = GatingGeometry(mask, spacing_mm, margin_mm)
    want = exact_outside(mask, spacing_mm, margin_mm).outside_pct(*shift)
    assert geometry.outside_pct(*shift) == pytest.approx(want, abs=EXACT_TOL_PCT)


@pytest.mark.parametrize("margin_mm", (0.0, 3.0))
@pytest.mark.parametrize("spacing_mm", ((2.4, 2.4), (3.5, 2.0)))
@pytest.mark.parametrize("kind", ("pixel", "disk10", "two_parts", "ring"))
def test_outside_pct_within_naive_error_bound(kind, spacing_mm, margin_mm, make_lesion, naive):
    """Against brute-force sampling, within the sampling's own guaranteed error bound."""
    mask = make_lesion(kind, spacing_mm)
    geometry = GatingGeometry(mask, spacing_mm, margin_mm)
    rng = np.random.default_rng(11)
    for row_mm, col_mm in _displacements(rng, margin_mm, 4):
        want, bound = naive.outside_pct(mask, spacing_mm, margin_mm, row_mm, col_mm)
        assert abs(geometry.outside_pct(row_mm, col_mm) - want) <= bound + 1e-9


# --------------------------------------------------------------------------- hand cases


@pytest.mark.parametrize("spacing_mm", ((2.4, 2.4), (3.5, 3.5), (2.0, 3.0)))
def test_single_pixel_hand_computed(spacing_mm):
    """One pixel, margin 0: half a pixel of shift leaves half the area outside."""
    sr, sc = spacing_mm
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 1] = True
    geometry = GatingGeometry(mask, spacing_mm, 0.0)
    assert geometry.outside_pct(0.0, 0.0) == 0.0
    assert geometry.outside_pct(sr / 2, 0.0) == pytest.approx(50.0, abs=1e-9)
    assert geometry.outside_pct(0.0, -sc / 2) == pytest.approx(50.0, abs=1e-9)
    assert geometry.outside_pct(sr / 2, sc / 2) == pytest.approx(75.0, abs=1e-9)
    assert geometry.outside_pct(sr / 4, 0.0) == pytest.approx(25.0, abs=1e-9)
    assert geometry.outside_pct(sr, 0.0) == pytest.approx(100.0, abs=1e-9)
    assert geometry.outside_pct(10 * sr, -7 * sc) == 100.0


@pytest.mark.parametrize(
    ("shift_mm", "margin_mm"), [(2.2, 1.0), (1.0, 1.0), (3.0, 0.3), (0.5, 2.0)]
)
def test_single_pixel_with_margin_along_a_row(shift_mm, margin_mm):
    """Along one axis the margin simply extends the pixel: outside = (shift - m) / s."""
    s = 2.4
    mask = np.zeros((1, 1), dtype=bool)
    mask[0, 0] = True
    geometry = GatingGeometry(mask, (s, s), margin_mm)
    want = 100.0 * min(max((shift_mm - margin_mm) / s, 0.0), 1.0)
    assert geometry.outside_pct(shift_mm, 0.0) == pytest.approx(want, abs=1e-9)
    assert geometry.outside_pct(0.0, -shift_mm) == pytest.approx(want, abs=1e-9)


def test_single_pixel_diagonal_shift_with_margin():
    """Diagonal shift d with m <= d <= s: the shifted square covers the rounded corner of
    the boundary, so inside = (s + m - d)^2 - (m^2 - pi m^2 / 4)."""
    s, m, d = 2.4, 1.0, 1.2
    mask = np.ones((1, 1), dtype=bool)
    geometry = GatingGeometry(mask, (s, s), m)
    inside_mm2 = (s + m - d) ** 2 - (m * m - math.pi * m * m / 4)
    want = 100.0 * (1.0 - inside_mm2 / (s * s))
    assert geometry.outside_pct(d, d) == pytest.approx(want, abs=1e-3)
    assert geometry.outside_pct(-d, d) == pytest.approx(want, abs=1e-3)


@pytest.mark.parametrize("kind", LESION_KINDS)
@pytest.mark.parametrize("margin_mm", MARGINS_MM)
def test_zero_displacement_is_inside(kind, margin_mm, make_lesion):
    mask = make_lesion(kind, (2.4, 2.4))
    assert GatingGeometry(mask, (2.4, 2.4), margin_mm).outside_pct(0.0, 0.0) == 0.0


@pytest.mark.parametrize(
    ("row_mm", "col_mm"),
    [(math.nan, 0.0), (0.0, math.nan), (math.inf, 0.0), (0.0, -math.inf), (None, 0.0), ("x", 1.0)],
)
def test_non_finite_displacement_fails_safe(row_mm, col_mm, make_lesion):
    geometry = GatingGeometry(make_lesion("disk20", (2.4, 2.4)), (2.4, 2.4), 3.0)
    assert geometry.outside_pct(row_mm, col_mm) == 100.0


@pytest.mark.parametrize(
    ("row_mm", "col_mm"),
    [(1e6, 0.0), (0.0, -1e6), (1e300, 1e300), (-1e300, 0.0), (0.0, 1e308), (50.0, 0.0)],
)
def test_large_displacement_is_fully_outside(row_mm, col_mm, make_lesion):
    geometry = GatingGeometry(make_lesion("disk20", (2.4, 2.4)), (2.4, 2.4), 3.0)
    assert geometry.outside_pct(row_mm, col_mm) == 100.0


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_numpy_scalar_displacements(dtype, make_lesion, exact_outside):
    mask = make_lesion("blob", (2.4, 2.4))
    geometry = GatingGeometry(mask, (2.4, 2.4), 3.0)
    exact = exact_outside(mask, (2.4, 2.4), 3.0)
    row_mm, col_mm = dtype(3.7), dtype(-2.9)
    want = exact.outside_pct(float(row_mm), float(col_mm))
    got = geometry.outside_pct(row_mm, col_mm)
    assert isinstance(got, float)
    assert got == pytest.approx(want, abs=EXACT_TOL_PCT)
    spacing32 = np.array([2.4, 2.4], dtype=dtype)
    assert GatingGeometry(mask, spacing32, 3.0).outside_pct(3.7, -2.9) == pytest.approx(
        exact_outside(mask, tuple(float(s) for s in spacing32), 3.0).outside_pct(3.7, -2.9),
        abs=EXACT_TOL_PCT,
    )


def test_mask_position_in_image_does_not_matter(make_lesion):
    mask = make_lesion("blob", (2.4, 3.0))
    moved = np.zeros((mask.shape[0] + 9, mask.shape[1] + 4), dtype=bool)
    moved[9:, 4:] = mask
    a = GatingGeometry(mask, (2.4, 3.0), 2.0)
    b = GatingGeometry(moved, (2.4, 3.0), 2.0)
    for shift in [(1.0, 2.0), (-4.3, 0.7), (6.1, -5.5)]:
        assert a.outside_pct(*shift) == pytest.approx(b.outside_pct(*shift), abs=1e-12)


def test_strip_width_controls_accuracy(make_lesion, exact_outside):
    """A coarse strip is allowed to be less accurate, and the default is fine."""
    mask = make_lesion("disk10", (3.5, 3.5))
    exact = exact_outside(mask, (3.5, 3.5), 3.0)
    rng = np.random.default_rng(5)
    shifts = _displacements(rng, 3.0, 30)
    want = np.array([exact.outside_pct(*s) for s in shifts])
    coarse = GatingGeometry(mask, (3.5, 3.5), 3.0, strip_mm=1.0)
    default = GatingGeometry(mask, (3.5, 3.5), 3.0)
    err_coarse = np.max(np.abs([coarse.outside_pct(*s) for s in shifts] - want))
    err_default = np.max(np.abs([default.outside_pct(*s) for s in shifts] - want))
    assert err_default <= EXACT_TOL_PCT
    assert err_default < err_coarse


# --------------------------------------------------------------------------- properties


@settings(derandomize=True, deadline=None, max_examples=80)
@given(
    mask=hnp.arrays(np.bool_, st.tuples(st.integers(1, 8), st.integers(1, 8))).filter(np.any),
    spacing_mm=st.tuples(st.floats(0.5, 4.0), st.floats(0.5, 4.0)),
    margins_mm=st.tuples(st.floats(0.0, 8.0), st.floats(0.0, 8.0)).map(sorted),
    shift=st.tuples(st.floats(-30.0, 30.0), st.floats(-30.0, 30.0)),
)
def test_outside_pct_bounded_and_monotone_in_margin(mask, spacing_mm, margins_mm, shift):
    small, large = (GatingGeometry(mask, spacing_mm, m) for m in margins_mm)
    p_small = small.outside_pct(*shift)
    p_large = large.outside_pct(*shift)
    assert 0.0 <= p_large <= 100.0
    assert 0.0 <= p_small <= 100.0
    assert p_large <= p_small + 1e-9
    assert small.outside_pct(0.0, 0.0) == 0.0


@settings(derandomize=True, deadline=None, max_examples=60)
@given(
    mask=hnp.arrays(np.bool_, st.tuples(st.integers(1, 8), st.integers(1, 8))).filter(np.any),
    spacing_mm=st.tuples(st.floats(0.5, 4.0), st.floats(0.5, 4.0)),
    margin_mm=st.floats(0.0, 6.0),
    shift=st.tuples(st.floats(-12.0, 12.0), st.floats(-12.0, 12.0)),
)
def test_outside_pct_mirror_symmetry(mask, spacing_mm, margin_mm, shift):
    """Mirroring the mask and the displacement together changes nothing (up to the
    quadrature error across columns)."""
    row_mm, col_mm = shift
    base = GatingGeometry(mask, spacing_mm, margin_mm).outside_pct(row_mm, col_mm)
    flipped_rows = GatingGeometry(mask[::-1], spacing_mm, margin_mm)
    flipped_cols = GatingGeometry(mask[:, ::-1], spacing_mm, margin_mm)
    assert flipped_rows.outside_pct(-row_mm, col_mm) == pytest.approx(base, abs=1e-9)
    assert flipped_cols.outside_pct(row_mm, -col_mm) == pytest.approx(base, abs=EXACT_TOL_PCT)


# --------------------------------------------------------------------------- boundary mask


@pytest.mark.parametrize("margin_mm", (0.0, 0.7, 2.9, 5.3))
@pytest.mark.parametrize("spacing_mm", ((2.4, 2.4), (1.5, 3.5)))
@pytest.mark.parametrize("kind", ("pixel", "disk10", "ring", "two_parts", "blob"))
def test_boundary_mask_matches_naive(kind, spacing_mm, margin_mm, make_lesion, naive):
    mask = make_lesion(kind, spacing_mm)
    got = GatingGeometry(mask, spacing_mm, margin_mm).boundary_mask()
    want = naive.boundary_mask(mask, spacing_mm, margin_mm)
    assert got.dtype == np.bool_ and got.shape == mask.shape
    np.testing.assert_array_equal(got, want)
    assert np.all(got[mask])


def test_boundary_mask_hand_computed():
    """Unit pixels: at m = 1 the eight neighbours' centres (0.5 and 0.71 mm away) are in,
    at m = 0.5 only the four edge neighbours (exactly on the boundary) are."""
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 2] = True
    block = np.zeros((5, 5), dtype=bool)
    block[1:4, 1:4] = True
    np.testing.assert_array_equal(GatingGeometry(mask, (1.0, 1.0), 1.0).boundary_mask(), block)
    plus = np.zeros((5, 5), dtype=bool)
    plus[2, 1:4] = True
    plus[1:4, 2] = True
    np.testing.assert_array_equal(GatingGeometry(mask, (1.0, 1.0), 0.5).boundary_mask(), plus)
    np.testing.assert_array_equal(GatingGeometry(mask, (1.0, 1.0), 0.0).boundary_mask(), mask)


def test_boundary_mask_clipped_at_image_edge():
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = True
    got = GatingGeometry(mask, (1.0, 1.0), 10.0).boundary_mask()
    assert got.shape == (4, 4) and got.all()


def test_boundary_mask_returns_a_copy():
    mask = np.zeros((4, 4), dtype=bool)
    mask[1, 1] = True
    geometry = GatingGeometry(mask, (1.0, 1.0), 1.0)
    first = geometry.boundary_mask()
    first[:] = False
    assert geometry.boundary_mask()[1, 1]


# --------------------------------------------------------------------------- contours


@pytest.mark.parametrize("kind", ("pixel", "disk20", "ring", "two_parts", "blob"))
def test_target_contour_outlines_the_pixels(kind, make_lesion, naive):
    mask = make_lesion(kind, (2.4, 2.4))
    rings = GatingGeometry(mask, (2.4, 2.4), 3.0).target_contour_px()
    for ring in rings:
        assert ring.ndim == 2 and ring.shape[1] == 2
        np.testing.assert_array_equal(ring[0], ring[-1])
        np.testing.assert_array_equal(ring % 1.0, np.full_like(ring, 0.5))
    assert sum(polygon_area(ring) for ring in rings) == pytest.approx(float(mask.sum()))
    rr, cc = np.meshgrid(np.arange(mask.shape[0]), np.arange(mask.shape[1]), indexing="ij")
    centres = np.column_stack([rr.ravel(), cc.ravel()]).astype(np.float64)
    inside = naive.inside_rings_even_odd(centres, rings).reshape(mask.shape)
    np.testing.assert_array_equal(inside, mask)


def test_target_contour_of_a_ring_has_a_hole(make_lesion):
    rings = GatingGeometry(make_lesion("ring", (2.4, 2.4)), (2.4, 2.4), 3.0).target_contour_px()
    areas = sorted(polygon_area(ring) for ring in rings)
    assert len(rings) == 2 and areas[0] < 0 < areas[1]


@pytest.mark.parametrize("margin_mm", (0.8, 3.0, 5.0))
@pytest.mark.parametrize("spacing_mm", ((2.4, 2.4), (1.5, 3.5)))
@pytest.mark.parametrize("kind", ("pixel", "disk20", "ring", "two_parts", "blob"))
def test_boundary_contour_lies_on_the_margin(kind, spacing_mm, margin_mm, make_lesion, naive):
    mask = make_lesion(kind, spacing_mm)
    geometry = GatingGeometry(mask, spacing_mm, margin_mm)
    rings = geometry.boundary_contour_px()
    assert rings
    sr, sc = spacing_mm
    vertices = np.vstack(rings)
    distance = naive.distance_to_squares_mm(vertices * [sr, sc], mask, spacing_mm)
    # Linear interpolation of the distance on a 0.25 mm grid: exact along straight sides;
    # where the nearest target feature switches (rounded corners, concave corners, the
    # cusp where the boundaries of two parts meet) the field bends inside a cell and a
    # vertex can be off by a fraction of the node step. Half a step is plenty for display.
    assert np.max(np.abs(distance - margin_mm)) <= 0.5 * 0.25
    for ring in rings:
        np.testing.assert_array_equal(ring[0], ring[-1])
    # Pixel centres clearly inside or outside the boundary are classified alike by the
    # contour (even-odd over all rings) and by the boundary mask.
    rr, cc = np.meshgrid(np.arange(mask.shape[0]), np.arange(mask.shape[1]), indexing="ij")
    centres = np.column_stack([rr.ravel(), cc.ravel()]).astype(np.float64)
    clear = np.abs(naive.distance_to_squares_mm(centres * [sr, sc], mask, spacing_mm) - margin_mm)
    clear = clear > 0.05
    inside = naive.inside_rings_even_odd(centres, rings)
    np.testing.assert_array_equal(inside[clear], geometry.boundary_mask().ravel()[clear])


def test_boundary_contour_area_matches_buffer(make_lesion, exact_outside):
    mask = make_lesion("disk30", (2.4, 2.4))
    rings = GatingGeometry(mask, (2.4, 2.4), 3.0).boundary_contour_px()
    area_mm2 = abs(sum(polygon_area(ring) for ring in rings)) * 2.4 * 2.4
    want = exact_outside(mask, (2.4, 2.4), 3.0).boundary.area
    assert area_mm2 == pytest.approx(want, rel=2e-3)


def test_boundary_contour_with_zero_margin_is_the_target_outline(make_lesion):
    geometry = GatingGeometry(make_lesion("blob", (2.4, 2.4)), (2.4, 2.4), 0.0)
    for a, b in zip(geometry.boundary_contour_px(), geometry.target_contour_px(), strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- validation


def _one_pixel(shape=(3, 3)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[1, 1] = True
    return mask


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(target_mask=np.zeros((4, 4), dtype=bool)), "target_mask"),
        (dict(target_mask=np.ones((2, 2, 2), dtype=bool)), "target_mask"),
        (dict(target_mask=np.ones(4, dtype=bool)), "target_mask"),
        (dict(target_mask=_one_pixel().astype(np.uint8)), "target_mask"),
        (dict(margin_mm=-0.1), "margin_mm"),
        (dict(margin_mm=math.nan), "margin_mm"),
        (dict(margin_mm=math.inf), "margin_mm"),
        (dict(spacing_mm=(0.0, 2.4)), "spacing_mm"),
        (dict(spacing_mm=(2.4, -1.0)), "spacing_mm"),
        (dict(spacing_mm=(math.nan, 2.4)), "spacing_mm"),
        (dict(spacing_mm=(2.4,)), "spacing_mm"),
        (dict(spacing_mm=(2.4, 2.4, 2.4)), "spacing_mm"),
        (dict(strip_mm=0.0), "strip_mm"),
        (dict(strip_mm=math.nan), "strip_mm"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    args = dict(target_mask=_one_pixel(), spacing_mm=(2.4, 2.4), margin_mm=3.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GatingGeometry(**args)


def test_geometry_does_not_alias_the_callers_mask():
    mask = _one_pixel()
    geometry = GatingGeometry(mask, (2.4, 2.4), 0.0)
    mask[:] = False
    assert geometry.outside_pct(1.2, 0.0) == pytest.approx(50.0, abs=1e-9)
    assert geometry.target_mask[1, 1] and not geometry.target_mask.flags.writeable


def test_properties():
    geometry = GatingGeometry(_one_pixel((4, 5)), (2.0, 3.0), 1.5)
    assert geometry.shape == (4, 5)
    assert geometry.spacing_mm == (2.0, 3.0)
    assert geometry.margin_mm == 1.5
    assert geometry.target_area_mm2 == pytest.approx(6.0)


def test_distance_to_target_matches_naive(make_lesion, naive):
    mask = make_lesion("ring", (1.5, 3.5))
    geometry = GatingGeometry(mask, (1.5, 3.5), 2.0)
    rng = np.random.default_rng(3)
    points = rng.uniform(-3.0, np.array(mask.shape) + 3.0, size=(500, 2))
    want = naive.distance_to_squares_mm(points * [1.5, 3.5], mask, (1.5, 3.5))
    np.testing.assert_allclose(geometry.distance_to_target_mm(points), want, atol=1e-12)
    with pytest.raises(ValueError, match="points_rc_px"):
        geometry.distance_to_target_mm(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="points_rc_px"):
        geometry.distance_to_target_mm(np.array([[math.nan, 0.0]]))
