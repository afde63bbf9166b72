"""Planar contours cut by a cine plane: against known masks and a naive reference.

The naive reference decides every sub-sample on its own: the contour level nearest to it
(by a plain loop over levels), then matplotlib's point-in-polygon on that level's
polygons. It shares no code with :func:`hardware.contour_plane.mask_on_plane`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from hardware.contour_plane import distance_to_plane_mm, fraction_on_plane, mask_on_plane
from hardware.plane_geometry import PlaneGeometry
from hardware.roi_contours import mask_outline

#: The 3 T liver series' plane (sagittal, x = -92 mm; read from its DICOM headers).
LIVER = PlaneGeometry(np.array([-92.0, -112.27273107, 134.00000477]), np.array([0.0, 1.0, 0.0]),
                      np.array([0.0, 0.0, -1.0]), (1.8181818723679, 1.8181818723679), (176, 140))


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    a = math.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)


def _oblique(geometry: PlaneGeometry, angle_deg: float, axis: tuple[float, float, float]) -> PlaneGeometry:
    """``geometry`` turned about its centre by ``angle_deg`` around ``axis``."""
    r = _rotation(np.asarray(axis, dtype=float), angle_deg)
    return PlaneGeometry.from_centre(geometry.centre_mm, r @ geometry.row_direction, r @ geometry.col_direction,
                                     geometry.spacing_mm, geometry.shape)


OBLIQUE = _oblique(LIVER, 25.0, (0.3, 0.2, 1.0))
ANISOTROPIC = PlaneGeometry.from_centre([10.0, -5.0, 30.0], [0.8, 0.6, 0.0], [0.0, 0.0, -1.0], (3.5, 2.4), (60, 80))
GEOMETRIES = {"sagittal": LIVER, "oblique": OBLIQUE, "anisotropic": ANISOTROPIC}


def _edge_outline_mm(mask: np.ndarray, geometry: PlaneGeometry) -> np.ndarray:
    """The mask's outline along pixel edges, in patient coordinates (pixel (r, c) covers
    [r - 1/2, r + 1/2) about its centre)."""
    return geometry.pixel_to_patient_mm(mask_outline(mask) - 0.5)


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius_px: float) -> np.ndarray:
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius_px**2


@pytest.mark.parametrize("name", GEOMETRIES)
def test_an_outline_drawn_on_the_plane_gives_its_mask_back_exactly(name: str) -> None:
    geometry = GEOMETRIES[name]
    rows, cols = geometry.shape
    shapes = [
        _disc(geometry.shape, (rows * 0.5, cols * 0.4), 7.3),
        _disc(geometry.shape, (rows * 0.3, cols * 0.6), 11.0) & ~_disc(geometry.shape, (rows * 0.3 + 9, cols * 0.6), 6.0),
    ]
    ell = np.zeros(geometry.shape, dtype=bool)  # an L with a one-pixel neck
    ell[10:30, 12:16] = True
    ell[26:30, 12:40] = True
    ell[20, 16] = True
    shapes.append(ell)
    for mask in shapes:
        contour = _edge_outline_mm(mask, geometry)
        np.testing.assert_array_equal(mask_on_plane([contour], geometry), mask)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_a_rectangle_off_the_pixel_edges_gives_its_partial_volume(name: str) -> None:
    """A rectangle whose edges lie a quarter pixel inside the pixel edges: with 4 x 4
    sub-samples its edge pixels are exactly 3/4 inside, its corners 9/16, and the mask
    is the pixels at least half inside."""
    geometry = GEOMETRIES[name]
    r0, r1, c0, c1 = 10.25, 19.75, 12.25, 25.75  # pixel coordinates of the edges
    corners_px = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]]) - 0.5
    got = fraction_on_plane([geometry.pixel_to_patient_mm(corners_px)], geometry)
    expected = np.zeros(geometry.shape)
    expected[10:20, 12:26] = 1.0
    expected[[10, 19], 12:26] *= 0.75
    expected[10:20, [12, 25]] *= 0.75
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_array_equal(mask_on_plane([geometry.pixel_to_patient_mm(corners_px)], geometry), expected >= 0.5)
    # The area is kept to the sub-sample grid: 9.5 x 13.5 pixels.
    assert got.sum() == pytest.approx(9.5 * 13.5)


def test_a_contour_inside_another_is_a_hole() -> None:
    geometry = LIVER
    outer = np.zeros(geometry.shape, dtype=bool)
    outer[40:80, 30:90] = True
    inner = np.zeros(geometry.shape, dtype=bool)
    inner[50:60, 50:70] = True
    got = mask_on_plane([_edge_outline_mm(outer, geometry), _edge_outline_mm(inner, geometry)], geometry)
    np.testing.assert_array_equal(got, outer & ~inner)


def _sphere_stack(centre: np.ndarray, radius_mm: float, step_mm: float, n_points: int = 90) -> list[np.ndarray]:
    """Axial (constant z) circles of a sphere every ``step_mm``, as a planning system draws it."""
    contours = []
    for z in np.arange(-radius_mm + step_mm / 2, radius_mm, step_mm):
        r = math.sqrt(radius_mm**2 - z**2)
        t = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
        contours.append(np.column_stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t),
                                         np.full(n_points, centre[2] + z)]))
    return contours


def _naive_axial(contours: list[np.ndarray], geometry: PlaneGeometry, samples: int = 4) -> np.ndarray:
    """Naive reference for an axial stack: per sub-sample, the nearest level's polygons."""
    levels = sorted({float(c[0, 2]) for c in contours})
    step = levels[1] - levels[0]
    by_level = {z: [MplPath(c[:, :2]) for c in contours if abs(c[0, 2] - z) < 1e-9] for z in levels}
    rows, cols = geometry.shape
    out = np.zeros(geometry.shape, dtype=bool)
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    for r in range(rows):
        for c in range(cols):
            inside = 0
            for dr in offsets:
                for dc in offsets:
                    p = geometry.pixel_to_patient_mm(np.array([[r + dr, c + dc]]))[0]
                    if not levels[0] - step / 2 <= p[2] <= levels[-1] + step / 2:
                        continue
                    z = min(levels, key=lambda lv: abs(lv - p[2]))
                    hits = sum(path.contains_point(p[:2]) for path in by_level[z])
                    inside += hits % 2
            out[r, c] = inside >= samples * samples / 2
    return out


@pytest.mark.parametrize("name", ["sagittal", "oblique"])
def test_an_axial_stack_cut_by_the_cine_plane_matches_the_naive_reference(name: str) -> None:
    geometry = GEOMETRIES[name]
    centre = geometry.pixel_to_patient_mm(np.array([[90.0, 60.0]]))[0] + np.array([3.0, 0.0, 0.0])
    contours = _sphere_stack(centre, 15.0, 2.5)
    # A second, separate structure on some of the levels, and a hole: the even-odd rule.
    hole_centre = geometry.pixel_to_patient_mm(np.array([[90.0, 64.0]]))[0]  # on the plane
    for c in list(contours[2:6]):
        z = c[0, 2]
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        contours.append(np.column_stack([hole_centre[0] + 3 * np.cos(t), hole_centre[1] + 3 * np.sin(t),
                                         np.full(40, z)]))
    got = mask_on_plane(contours, geometry)
    solid = mask_on_plane(contours[: len(contours) - 4], geometry)
    assert (solid & ~got).sum() >= 4  # the holes are cut
    assert got.sum() > 150  # the cut is a disc ~ 28 mm across: not a vacuous comparison
    # Only the pixels near the structure need the slow reference; elsewhere both are empty.
    rows, cols = np.nonzero(got)
    assert rows.min() > 0 and cols.min() > 0
    np.testing.assert_array_equal(got, _naive_axial(contours, geometry))


def test_the_cut_of_a_sphere_is_its_great_circle() -> None:
    """Fine slices: the sagittal cut of a sphere through its centre is a disc of its radius."""
    geometry = LIVER
    centre = geometry.pixel_to_patient_mm(np.array([[88.0, 70.0]]))[0]
    got = mask_on_plane(_sphere_stack(centre, 12.0, 0.25, n_points=180), geometry)
    expected = _disc(geometry.shape, (88.0, 70.0), 12.0 / geometry.spacing_mm[0])
    dice = 2 * (got & expected).sum() / (got.sum() + expected.sum())
    assert dice > 0.97


def test_a_plane_that_misses_gives_an_empty_mask_and_its_distance() -> None:
    geometry = LIVER  # x = -92
    centre = np.array([-70.0, 0.0, 80.0])
    contours = _sphere_stack(centre, 10.0, 2.0)
    assert not mask_on_plane(contours, geometry).any()
    assert distance_to_plane_mm(contours, geometry) == pytest.approx(12.0, abs=0.1)
    crossing = _sphere_stack(np.array([-92.0, 0.0, 80.0]), 10.0, 2.0, n_points=4)
    assert distance_to_plane_mm(crossing, geometry) == 0.0


def test_a_non_planar_contour_is_refused() -> None:
    bent = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, 10.0, 3.0], [0.0, 10.0, 0.0]])
    with pytest.raises(ValueError, match="not planar"):
        mask_on_plane([bent], LIVER)
    with pytest.raises(ValueError, match="N >= 3"):
        mask_on_plane([np.zeros((2, 3))], LIVER)
