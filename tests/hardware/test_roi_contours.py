"""Tracking-contour ROI binaries: codec round trips, refusals, rasterisation."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from hardware.errors import InputError
from hardware.roi_contours import (
    RoiContourError,
    TrackingContour,
    contour_to_mask,
    contours_by_frame,
    decode_contours,
    encode_contours,
    mask_outline,
    mask_to_contour,
    polygon_mask,
    read_contours,
    write_contours,
)


def naive_even_odd(rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Point-in-polygon for every pixel centre, one pixel at a time (ray casting)."""
    out = np.zeros(shape, dtype=bool)
    n = len(rc)
    for r in range(shape[0]):
        for c in range(shape[1]):
            y, x = r + 0.5, c + 0.5
            inside = False
            for i in range(n):
                (y0, x0), (y1, x1) = rc[i], rc[(i + 1) % n]
                if (y0 <= y) != (y1 <= y):
                    xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
                    if x >= xc:
                        inside = not inside
            out[r, c] = inside
    return out


_coord = st.floats(0.0, 1.0, width=32)
_contour = st.builds(
    TrackingContour,
    cine_id=st.integers(-(2**31), 2**31 - 1),
    points=st.lists(st.tuples(_coord, _coord), min_size=3, max_size=12).map(np.array),
    need_soften=st.booleans(),
    contour_mode=st.sampled_from([0, 1]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_contour, max_size=5))
def test_codec_round_trip(contours: list[TrackingContour]) -> None:
    data = encode_contours(contours)
    back = decode_contours(data)
    assert len(back) == len(contours)
    for a, b in zip(contours, back):
        assert (a.cine_id, a.need_soften, a.contour_mode) == (b.cine_id, b.need_soften, b.contour_mode)
        np.testing.assert_array_equal(a.points, b.points)
    assert encode_contours(back) == data


def test_layout_has_no_padding(tmp_path: Path) -> None:
    pts = np.array([[0.1, 0.2], [0.5, 0.2], [0.3, 0.9]], np.float32)
    path = tmp_path / "roi.bin"
    write_contours(path, [TrackingContour(7, pts, True, 1)])
    data = path.read_bytes()
    assert data[:4] == struct.pack("<i", 1)
    assert data[4:17] == struct.pack("<i", 7) + b"\x01" + struct.pack("<ii", 1, 3)
    assert data[17:] == pts.astype("<f4").tobytes()
    (c,) = read_contours(path)
    assert c.cine_id == 7 and c.need_soften and c.contour_mode == 1


def one(cine: int = 0, soften: int = 0, mode: int = 0, n: int = 3, pts: bytes | None = None) -> bytes:
    if pts is None:
        pts = np.tile(np.float32([0.25, 0.5]), n).astype("<f4").tobytes()
    return struct.pack("<i", cine) + bytes([soften]) + struct.pack("<ii", mode, n) + pts


def refused(data: bytes) -> RoiContourError:
    with pytest.raises(RoiContourError) as info:
        decode_contours(data, "roi")
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(f"roi: {info.value.field} at byte {info.value.offset}: ")
    return info.value


@pytest.mark.parametrize("n", [0, 1, 2, -1])
def test_refuses_a_contour_with_too_few_points(n: int) -> None:
    e = refused(struct.pack("<i", 1) + one(n=n, pts=b"") + b"\0" * 64)
    assert (e.field, e.offset) == ("contour 0 n_points", 13)


@pytest.mark.parametrize("count", [-1, 2, 2**31 - 1])
def test_refuses_negative_or_absurd_contour_counts(count: int) -> None:
    e = refused(struct.pack("<i", count) + one())
    assert (e.field, e.offset) == ("n_contours", 0)


def test_refuses_absurd_point_count_without_allocating() -> None:
    e = refused(struct.pack("<i", 1) + one(n=2**31 - 1, pts=b"\0" * 24))
    assert (e.field, e.offset) == ("contour 0 n_points", 13)


def test_refuses_bad_flags_coordinates_truncation_and_trailing_bytes() -> None:
    head = struct.pack("<i", 1)
    assert (refused(head + one(soften=2)).field, refused(head + one(soften=2)).offset) == ("contour 0 need_soften", 8)
    assert refused(head + one(mode=3)).offset == 9
    nan_pts = np.float32([0.1, 0.1, np.nan, 0.2, 0.3, 0.3]).astype("<f4").tobytes()
    e = refused(head + one(pts=nan_pts))
    assert (e.field, e.offset) == ("contour 0 point 1", 4 + 13 + 8)
    far = np.float32([0.1, 0.1, 0.2, 5.0, 0.3, 0.3]).astype("<f4").tobytes()
    assert refused(head + one(pts=far)).field == "contour 0 point 1"
    two = struct.pack("<i", 2) + one(n=6) + one()
    e = refused(two[:-3])
    assert (e.field, e.offset) == ("contour 1 n_points", 4 + 13 + 48 + 9) and "truncated" in e.rule
    e = refused(two[:40])
    assert (e.field, e.offset) == ("n_contours", 0)
    e = refused(head + one() + b"\0")
    assert (e.field, e.offset) == ("end of data", 4 + 13 + 24)
    assert refused(b"\1\0").field == "n_contours"


def test_contours_by_frame_refuses_duplicates() -> None:
    c = TrackingContour(3, np.float32([[0, 0], [1, 0], [0, 1]]))
    assert contours_by_frame([c])[3] is c
    with pytest.raises(InputError, match="cine_id"):
        contours_by_frame([c, c])


def test_contour_refuses_too_few_points_and_bad_values() -> None:
    with pytest.raises(ValueError):
        TrackingContour(0, np.zeros((2, 2)))
    with pytest.raises(ValueError):
        TrackingContour(0, np.full((3, 2), np.inf))
    with pytest.raises(ValueError):
        TrackingContour(0, np.zeros((3, 2)), contour_mode=2)


# -- rasterisation ---------------------------------------------------------------------------
def test_hand_computed_square_and_triangle() -> None:
    # Square covering pixel centres 1.5 and 2.5 in both axes.
    square = np.array([[1.2, 1.2], [1.2, 3.0], [3.0, 3.0], [3.0, 1.2]])
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(polygon_mask(square, (5, 5)), expected)
    # Edges exactly on centres: left/top inclusive, right/bottom exclusive.
    tie = np.array([[0.5, 0.5], [0.5, 2.5], [2.5, 2.5], [2.5, 0.5]])
    expected = np.zeros((4, 4), bool)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(polygon_mask(tie, (4, 4)), expected)
    # Right triangle: centre (r + .5, c + .5) inside when c + .5 < r + .5 (below the diagonal).
    tri = np.array([[0.0, 0.0], [4.0, 4.0], [4.0, 0.0]])
    np.testing.assert_array_equal(polygon_mask(tri, (4, 4)), np.tril(np.ones((4, 4), bool), -1))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-2, 12), st.floats(-2, 12)), min_size=3, max_size=9),
       st.sampled_from([np.float32, np.float64]))
def test_rasterisation_matches_naive_ray_casting(points: list[tuple[float, float]], dtype: type) -> None:
    """Agree on every pixel centre that is not on an edge.

    A centre exactly on an edge is a tie whose side depends on how each implementation
    rounds the crossing (found by hypothesis: a zero-area polygon along the diagonal,
    (0, 0), (0, 0), (8.97, 8.97), put centres on both of its coincident edges); such
    centres are left out of the comparison.
    """
    rc = np.array(points, dtype=dtype)
    on_edge = _centres_on_edges(rc.astype(np.float64), (10, 11))
    fast = polygon_mask(rc, (10, 11))
    naive = naive_even_odd(rc.astype(np.float64), (10, 11))
    np.testing.assert_array_equal(fast[~on_edge], naive[~on_edge])


def _centres_on_edges(rc: np.ndarray, shape: tuple[int, int], tol: float = 1e-9) -> np.ndarray:
    """Pixel centres within ``tol`` of any polygon edge."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    p = np.stack([rows.ravel(), cols.ravel()], axis=1)
    near = np.zeros(len(p), dtype=bool)
    for a, b in zip(rc, np.roll(rc, -1, axis=0)):
        d = b - a
        length2 = float(d @ d)
        t = np.clip(((p - a) @ d) / length2, 0.0, 1.0) if length2 > 0 else np.zeros(len(p))
        dist = np.linalg.norm(p - (a + t[:, None] * d), axis=1)
        near |= dist <= tol
    return near.reshape(shape)


def test_area_of_a_large_disc_polygon_is_close_to_its_pixel_count() -> None:
    angle = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    rc = np.stack([50 + 30.3 * np.sin(angle), 60 + 30.3 * np.cos(angle)], axis=1)
    mask = polygon_mask(rc, (100, 120))
    assert abs(mask.sum() - math.pi * 30.3**2) < 2 * math.pi * 30.3 * 0.5


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_mask_to_contour_to_mask_gives_back_the_filled_largest_component(mask: np.ndarray) -> None:
    if not mask.any():
        with pytest.raises(ValueError, match="empty"):
            mask_outline(mask)
        return
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    expected = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
    contour = mask_to_contour(mask, 4)
    np.testing.assert_array_equal(contour_to_mask(contour, mask.shape), expected)
    np.testing.assert_array_equal(polygon_mask(mask_outline(mask), mask.shape), expected)


def test_normalised_coordinates_put_0_0_at_the_upper_left_corner() -> None:
    mask = np.zeros((4, 8), bool)
    mask[0, 0:2] = True
    c = mask_to_contour(mask, 0)
    assert {tuple(p) for p in c.points.tolist()} == {(0.0, 0.0), (0.25, 0.0), (0.25, 0.25), (0.0, 0.25)}
