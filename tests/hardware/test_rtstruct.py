"""DICOM RT Structure Sets: written with pydicom, read back, and refused with clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hardware.errors import InputError
from hardware.rtstruct import read_roi, roi_names, write_rtstruct

FOR_UID = "1.2.826.0.1.3680043.8.498.1"


def _square(z: float, half: float = 10.0) -> np.ndarray:
    return np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])


def test_round_trip_keeps_names_frames_of_reference_and_points(tmp_path: Path) -> None:
    gtv = [_square(0.0), _square(2.5, 8.0), _square(5.0, 4.123456789)]
    liver = [_square(0.0, 60.0)]
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": gtv, "Liver": liver}, FOR_UID, uid_seed="t")
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3"
    assert roi_names(path) == ["GTV", "Liver"]
    roi = read_roi(path, "GTV")
    assert (roi.name, roi.number, roi.frame_of_reference_uid) == ("GTV", 1, FOR_UID)
    assert len(roi.contours) == 3
    for got, want in zip(roi.contours, gtv):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert read_roi(path, "liver").name == "Liver"  # the one match ignoring case


def test_same_input_writes_the_same_file(tmp_path: Path) -> None:
    a = write_rtstruct(tmp_path / "a.dcm", {"GTV": [_square(0.0)]}, FOR_UID, uid_seed="s")
    b = write_rtstruct(tmp_path / "b.dcm", {"GTV": [_square(0.0)]}, FOR_UID, uid_seed="s")
    assert a.read_bytes() == b.read_bytes()


contour_points = arrays(np.float64, st.tuples(st.integers(3, 40), st.just(2)),
                        elements=st.floats(-400, 400, allow_nan=False, width=64))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(contour_points, st.floats(-300, 300, allow_nan=False)), min_size=1, max_size=5))
def test_property_round_trip(tmp_path: Path, contours_xy: list[tuple[np.ndarray, float]]) -> None:
    contours = [np.column_stack([xy, np.full(len(xy), z)]) for xy, z in contours_xy]
    path = tmp_path / "p.dcm"
    path.unlink(missing_ok=True)
    write_rtstruct(path, {"GTV": contours}, FOR_UID, uid_seed="p")
    back = read_roi(path, "GTV").contours
    assert len(back) == len(contours)
    for got, want in zip(back, contours):
        # DICOM decimal strings hold 16 characters: a relative error well below 1e-12.
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_an_roi_not_found_lists_the_names_present(tmp_path: Path) -> None:
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [_square(0.0)], "PTV": [_square(0.0, 15)]}, FOR_UID,
                          uid_seed="n")
    with pytest.raises(InputError) as err:
        read_roi(path, "CTV")
    assert err.value.field == "--roi"
    assert "'CTV' not found" in err.value.rule and "'GTV', 'PTV'" in err.value.rule


def test_only_closed_planar_contours_count(tmp_path: Path) -> None:
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [_square(0.0), _square(2.0)], "Marker": [_square(0.0)]},
                          FOR_UID, uid_seed="c")
    ds = pydicom.dcmread(path)
    ds.ROIContourSequence[0].ContourSequence[1].ContourGeometricType = "OPEN_PLANAR"
    ds.ROIContourSequence[1].ContourSequence[0].ContourGeometricType = "POINT"
    ds.save_as(path)
    assert len(read_roi(path, "GTV").contours) == 1
    with pytest.raises(InputError, match="no CLOSED_PLANAR contour"):
        read_roi(path, "Marker")


@pytest.mark.parametrize("edit, field, rule", [
    (lambda ds: setattr(ds.ROIContourSequence[0].ContourSequence[0], "ContourData", [1.0, 2.0, 3.0, 4.0]),
     "ContourData", "x, y, z triplets"),
    (lambda ds: setattr(ds.ROIContourSequence[0].ContourSequence[0], "ContourData",
                        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, "nan", 1.0, 0.0]), "ContourData", "not finite"),
    (lambda ds: delattr(ds, "ROIContourSequence"), "ROIContourSequence", "no contours"),
    (lambda ds: delattr(ds, "StructureSetROISequence"), "StructureSetROISequence", "holds no ROI"),
    (lambda ds: (setattr(ds, "Modality", "MR"), setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.4")),
     "Modality", "not an RT Structure Set"),
])
def test_broken_files_are_refused_naming_the_field(tmp_path: Path, edit, field: str, rule: str) -> None:
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [_square(0.0)]}, FOR_UID, uid_seed="b")
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on the invalid values written on purpose
        edit(ds)
        ds.save_as(path)
    with pytest.raises(InputError) as err:
        read_roi(path, "GTV")
    assert field in err.value.field and rule in err.value.rule
    assert str(path) in str(err.value)


def test_not_a_file_or_not_dicom(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_roi(tmp_path / "missing.dcm", "GTV")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(InputError, match="not a DICOM file"):
        read_roi(junk, "GTV")


def test_an_roi_without_its_own_frame_of_reference_takes_the_sets(tmp_path: Path) -> None:
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [_square(0.0)]}, FOR_UID, uid_seed="f")
    ds = pydicom.dcmread(path)
    del ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID
    ds.save_as(path)
    assert read_roi(path, "GTV").frame_of_reference_uid == FOR_UID


def test_write_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no contour"):
        write_rtstruct(tmp_path / "a.dcm", {"GTV": []}, FOR_UID, uid_seed="w")
    with pytest.raises(ValueError, match="N >= 3"):
        write_rtstruct(tmp_path / "b.dcm", {"GTV": [np.zeros((2, 3))]}, FOR_UID, uid_seed="w")
    existing = tmp_path / "c.dcm"
    existing.write_bytes(b"x")
    with pytest.raises(InputError, match="already exists"):
        write_rtstruct(existing, {"GTV": [_square(0.0)]}, FOR_UID, uid_seed="w")
