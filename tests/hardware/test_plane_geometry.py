"""Plane geometry of a cine frame: hand-computed positions, the PosVec convention, and
its round trips through SendExternal and DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.dicom_series import read_series
from hardware.dicom_write import write_series
from hardware.plane_geometry import PlaneGeometry
from hardware.sendexternal import END_OF_STREAM, SendExternalRecord, decode_stream, encode_record, geometry_fields

SAGITTAL = dict(row_direction=(0.0, 1.0, 0.0), col_direction=(0.0, 0.0, -1.0))


def sagittal(shape=(4, 6), spacing=(2.0, 3.0), position=(-92.0, -10.0, 50.0), **kw) -> PlaneGeometry:
    return PlaneGeometry(np.array(position), np.array(SAGITTAL["row_direction"]), np.array(SAGITTAL["col_direction"]),
                         spacing, shape, **kw)


def test_pixel_positions_by_hand() -> None:
    g = sagittal()
    # pixel (r, c) = position + c * 3 mm * (0, 1, 0) + r * 2 mm * (0, 0, -1)
    np.testing.assert_allclose(g.pixel_to_patient_mm(np.array([[0, 0], [1, 0], [0, 1], [3, 5]])),
                               [[-92, -10, 50], [-92, -10, 48], [-92, -7, 50], [-92, 5, 44]])
    np.testing.assert_allclose(g.normal, [-1, 0, 0])  # (0,1,0) x (0,0,-1)
    np.testing.assert_allclose(g.centre_mm, [-92, -10 + 3 * 3, 50 - 2 * 2])  # pixel (2, 3)
    assert g.axis_location_mm == -92.0
    rc, dist = g.patient_to_pixel(np.array([[-92, 5, 44], [-90, -7, 48]]))
    np.testing.assert_allclose(rc, [[3, 5], [1, 1]])
    np.testing.assert_allclose(dist, [0, -2])


def test_vendor_posvec_on_a_square_axis_aligned_frame() -> None:
    # The vendor script's formula, written out for a sagittal 100 x 100 frame at 3.5 mm:
    # PosVec.1 = IPP.1 + 50 * 3.5 (row vector +y), PosVec.2 = IPP.2 - 50 * 3.5 (column vector -z).
    g = sagittal(shape=(100, 100), spacing=(3.5, 3.5), position=(12.0, -175.0, 175.0))
    np.testing.assert_allclose(g.centre_mm, [12.0, 0.0, 0.0])
    back = PlaneGeometry.from_centre(g.centre_mm, g.row_direction, g.col_direction, g.spacing_mm, g.shape)
    np.testing.assert_allclose(back.position_mm, g.position_mm)


@pytest.mark.parametrize("rows, cols", [(1, 1), (0.5, 0.5)])
def test_refuses_directions_that_are_not_orthonormal(rows: float, cols: float) -> None:
    with pytest.raises(ValueError, match="unit vector|orthogonal"):
        PlaneGeometry(np.zeros(3), np.array([rows, cols, 0.0]), np.array([0.0, 0.0, 1.0]), (1.0, 1.0), (2, 2))
    with pytest.raises(ValueError, match="orthogonal"):
        PlaneGeometry(np.zeros(3), np.array([1.0, 0, 0]), np.array([0.6, 0.8, 0.0]), (1.0, 1.0), (2, 2))


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


_angle = st.floats(-np.pi, np.pi)
_coord = st.floats(-500, 500)


@settings(max_examples=60, deadline=None)
@given(_angle, _angle, _angle, st.tuples(_coord, _coord, _coord), st.integers(1, 300), st.integers(1, 300),
       st.floats(0.5, 5.0))
def test_oblique_geometry_survives_a_sendexternal_round_trip(a, b, c, centre, rows, cols, spacing) -> None:
    r = _rotation(a, b, c)
    g = PlaneGeometry.from_centre(centre, r[:, 0], r[:, 1], (spacing, spacing * 1.25), (rows, cols),
                                  slice_thickness_mm=7.0)
    pixels = np.zeros((rows, cols), np.int16)
    (record,) = decode_stream(encode_record(SendExternalRecord(pixels, g.spacing_mm, **geometry_fields(g)))
                              + END_OF_STREAM)
    back = record.geometry
    assert back is not None and back.same_plane(g, tol_mm=1e-6)
    assert back.slice_thickness_mm == 7.0


def test_a_record_without_geometry_gives_none_and_round_trips_as_unknown() -> None:
    record = SendExternalRecord(np.zeros((3, 3), np.int16), (2.4, 2.4))
    (back,) = decode_stream(encode_record(record) + END_OF_STREAM)
    assert back.geometry is None and back.position is None and back.slice_thickness_mm is None
    assert back.metadata["DICOM.PosVec.0"] == "0.0"  # written for readers that need it


def test_dicom_series_geometry_round_trip(tmp_path: Path) -> None:
    r = _rotation(0.3, -0.2, 0.1)
    g = PlaneGeometry.from_centre((10.0, -20.0, 30.0), r[:, 0], r[:, 1], (2.4, 2.4), (8, 6),
                                  frame_of_reference_uid="1.2.3.4", slice_thickness_mm=7.0, slice_location_mm=12.5)
    frames = np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6)
    write_series(tmp_path, frames, np.array([0.0, 0.125, 0.25]), (2.4, 2.4), uid_seed="geometry", geometry=g)
    back = read_series(tmp_path).geometry
    assert back is not None and back.same_plane(g, tol_mm=1e-9)
    assert (back.frame_of_reference_uid, back.slice_thickness_mm, back.slice_location_mm) == ("1.2.3.4", 7.0, 12.5)


def test_real_series_geometry(shared_data: Path) -> None:
    g = read_series(shared_data / "cine" / "liver-3T-volunteer-KS81").geometry
    assert g is not None
    np.testing.assert_allclose(g.orientation, [0, 1, 0, 0, 0, -1])
    np.testing.assert_allclose(g.position_mm, [-92.0, -112.27273106575, 134.00000476837])
    assert g.frame_of_reference_uid == "1.3.12.2.1107.5.2.19.45007.2.20201110132348102.0.0.0"
    # pixel (88, 70) = IPP + 70 * 1.818 * (0,1,0) + 88 * 1.818 * (0,0,-1)
    np.testing.assert_allclose(g.centre_mm, [-92.0, -112.27273106575 + 70 * 1.8181818723679,
                                             134.00000476837 - 88 * 1.8181818723679])
