"""The target from a DICOM RT Structure Set, on the real 3 T liver cine series.

Structure sets are built with pydicom (:func:`hardware.rtstruct.write_rtstruct`) in the
series' own frame of reference, then given to replay, live and validate as a physicist
would: ``--target-rtstruct FILE --roi NAME``. Skips when ../shared is absent.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from hardware import SimulatedBeam
from hardware.beam_sim import BeamSimulator
from hardware.dicom_write import write_series
from hardware.plane_geometry import PlaneGeometry
from hardware.replay import ReplaySource
from hardware.roi_contours import mask_outline
from hardware.rtstruct import write_rtstruct
from hardware.scanner_sim import ScannerSimulator, load_recording
from maestro.cli import main
from maestro.session import GatingSession, SessionConfig

pytestmark = pytest.mark.system

SERIES = "cine/liver-3T-volunteer-KS81"
#: A hepatic vessel on the series' first frame (README: --target-box 84,73,13,10).
VESSEL_BOX = (84, 73, 13, 10)
DECISION_COLUMNS = ("frame", "t_acq_s", "row_mm", "col_mm", "confidence", "outside_pct", "beam", "reason")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _sphere(centre: np.ndarray, radius_mm: float, step_mm: float = 2.5) -> list[np.ndarray]:
    """A sphere as axial contours every ``step_mm`` (a planning system's slices)."""
    out = []
    t = np.linspace(0.0, 2.0 * np.pi, 72, endpoint=False)
    for dz in np.arange(-radius_mm + step_mm / 2, radius_mm, step_mm):
        r = math.sqrt(radius_mm**2 - dz**2)
        out.append(np.column_stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t),
                                    np.full(t.size, centre[2] + dz)]))
    return out


@pytest.fixture(scope="module")
def series(shared_data: Path) -> Path:
    return shared_data / SERIES


@pytest.fixture(scope="module")
def geometry(series: Path) -> PlaneGeometry:
    with ReplaySource(series) as source:
        assert source.geometry is not None and source.geometry.frame_of_reference_uid
        return source.geometry


def _box_mask(shape: tuple[int, int]) -> np.ndarray:
    r, c, h, w = VESSEL_BOX
    mask = np.zeros(shape, dtype=bool)
    mask[r : r + h, c : c + w] = True
    return mask


@pytest.fixture(scope="module")
def structure_set(tmp_path_factory: pytest.TempPathFactory, geometry: PlaneGeometry) -> Path:
    """GTV: the vessel box outlined on the cine plane (a known mask); Sphere: a 12 mm
    sphere about the vessel, as axial contours; Far: the same sphere 30 mm to the side
    of the plane."""
    box = _box_mask(geometry.shape)
    outline = geometry.pixel_to_patient_mm(mask_outline(box) - 0.5)
    centre = geometry.pixel_to_patient_mm(np.array([[90.0, 78.0]]))[0]
    path = tmp_path_factory.mktemp("rtstruct") / "RS.dcm"
    return write_rtstruct(path, {"GTV": [outline], "Sphere": _sphere(centre, 12.0),
                                 "Far": _sphere(centre + 30.0 * geometry.normal, 12.0)},
                          geometry.frame_of_reference_uid, uid_seed="liver-rs")


def _session_mask(series: Path, rtstruct: Path, roi: str) -> np.ndarray:
    config = SessionConfig(target_rtstruct=rtstruct, roi=roi, watchdog_periods=None)
    with ReplaySource(series) as source:
        session = GatingSession(source, config, SimulatedBeam(0.0, 0.0), None)
        session.run(max_frames=3)
        assert session.tracker is not None
        return np.asarray(session.tracker.target_mask)


def test_a_known_mask_outlined_on_the_plane_is_the_target_exactly(series: Path, structure_set: Path,
                                                                     geometry: PlaneGeometry) -> None:
    np.testing.assert_array_equal(_session_mask(series, structure_set, "GTV"), _box_mask(geometry.shape))


def test_an_axial_sphere_is_cut_to_its_disc(series: Path, structure_set: Path, geometry: PlaneGeometry) -> None:
    mask = _session_mask(series, structure_set, "Sphere")
    rr, cc = np.mgrid[: geometry.shape[0], : geometry.shape[1]]
    disc = (rr - 90.0) ** 2 + (cc - 78.0) ** 2 <= (12.0 / geometry.spacing_mm[0]) ** 2
    dice = 2 * (mask & disc).sum() / (mask.sum() + disc.sum())
    assert dice > 0.9, dice


def test_the_session_keeps_the_contours_partial_volume_for_the_tracked_labels(series: Path, structure_set: Path,
                                                                              tmp_path: Path) -> None:
    """A sphere's cut has edge pixels partly inside: the session keeps those fractions
    (its mask is the pixels half inside or more), and --labels-out propagates them, so
    the written first mask is the fraction >= 1/2 (the identity affine on frame 0), but
    for the pixels exactly on the threshold."""
    import SimpleITK as sitk

    from hardware.trackrad import array_thw

    config = SessionConfig(target_rtstruct=structure_set, roi="Sphere", watchdog_periods=None)
    with ReplaySource(series) as source:
        session = GatingSession(source, config, SimulatedBeam(0.0, 0.0), None)
        session.run(max_frames=2)
    fraction = session.reference_fraction
    assert fraction is not None and session.tracker is not None
    partial = (fraction > 0.0) & (fraction < 1.0)
    assert partial.sum() >= 10
    np.testing.assert_array_equal(np.asarray(session.tracker.target_mask), fraction >= 0.5)
    out = tmp_path / "labels"
    assert main(["replay", str(series), "--target-rtstruct", str(structure_set), "--roi", "Sphere",
                 "--max-frames", "20", "--out", str(tmp_path / "run"), "--labels-out", str(out)]) == 0
    image = sitk.ReadImage(str(next((out / "targets").glob("*_labels.mha"))))
    masks = np.array(array_thw(image)) != 0  # a copy: the view lives only as long as the image
    assert masks.shape[0] == 20
    # A pixel exactly half inside (8 of its 16 sub-samples) sits on the threshold: frame 0's
    # position is the reference's only to the solvers' round-off (1e-9 mm here, the rigid
    # match's share of it moving the propagated target), which may decide it either way.
    off_threshold = fraction != 0.5
    np.testing.assert_array_equal(masks[0][off_threshold], (fraction >= 0.5)[off_threshold])
    assert all(m.any() for m in masks)


def test_replay_and_validate_take_the_target_from_the_structure_set(series: Path, structure_set: Path,
                                                                    tmp_path: Path, capsys) -> None:
    out = tmp_path / "replay"
    assert main(["replay", str(series), "--target-rtstruct", str(structure_set), "--roi", "Sphere",
                 "--max-frames", "60", "--out", str(out)]) == 0
    rows = _rows(out / "frames.csv")
    assert len(rows) == 60 and {r["beam"] for r in rows} >= {"on"}
    config = json.loads((out / "session.json").read_text())["config"]
    assert config["target_rtstruct"] == str(structure_set) and config["roi"] == "Sphere"
    report = tmp_path / "report"
    code = main(["validate", str(series), "--target-rtstruct", str(structure_set), "--roi", "Sphere",
                 "--margins-mm", "3", "--thresholds-pct", "10", "--latency-ms", "0", "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((report / "summary.json").read_text())
    assert summary["settings"]["roi"] == "Sphere"


def test_an_oblique_cine_plane_is_cut_where_it_lies(series: Path, tmp_path: Path, geometry: PlaneGeometry) -> None:
    """The real frames written as an oblique series (turned 30 degrees about the
    anterior-posterior axis): the sphere's cut must be centred where its centre projects."""
    with ReplaySource(series) as source:
        frames = np.stack([f.pixels for f in source][:20]).astype(np.int16)
        times = np.asarray(source.times_s[:20])
    a = math.radians(30.0)
    turn = np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    oblique = PlaneGeometry.from_centre(geometry.centre_mm, turn @ geometry.row_direction,
                                        turn @ geometry.col_direction, geometry.spacing_mm, geometry.shape,
                                        frame_of_reference_uid=geometry.frame_of_reference_uid)
    folder = tmp_path / "oblique"
    write_series(folder, frames, times, geometry.spacing_mm, uid_seed="oblique", geometry=oblique)
    centre = oblique.pixel_to_patient_mm(np.array([[90.0, 78.0]]))[0]
    rs = write_rtstruct(tmp_path / "RS.dcm", {"GTV": _sphere(centre, 12.0)}, geometry.frame_of_reference_uid,
                        uid_seed="oblique-rs")
    mask = _session_mask(folder, rs, "GTV")
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - 90.0) < 0.5 and abs(cols.mean() - 78.0) < 0.5
    area_mm2 = mask.sum() * geometry.spacing_mm[0] * geometry.spacing_mm[1]
    assert area_mm2 == pytest.approx(math.pi * 12.0**2, rel=0.1)


@pytest.mark.parametrize("args, expected", [
    (["--roi", "CTV"], "'CTV' not found; the structure set holds: 'GTV', 'Sphere', 'Far'"),
    (["--roi", "Far"], "does not cut it: its nearest contour point is 18.0 mm from the plane"),
])
def test_structure_set_errors_name_the_file_and_rule(series: Path, structure_set: Path, args: list[str],
                                                     expected: str, capsys) -> None:
    assert main(["replay", str(series), "--target-rtstruct", str(structure_set), *args, "--max-frames", "5"]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(structure_set) in err and "Traceback" not in err


def test_a_frame_of_reference_that_does_not_match_is_refused(series: Path, geometry: PlaneGeometry,
                                                             tmp_path: Path, capsys) -> None:
    centre = geometry.pixel_to_patient_mm(np.array([[90.0, 78.0]]))[0]
    rs = write_rtstruct(tmp_path / "RS.dcm", {"GTV": _sphere(centre, 12.0)}, "1.2.3.4", uid_seed="other")
    assert main(["replay", str(series), "--target-rtstruct", str(rs), "--roi", "GTV", "--max-frames", "5"]) == 2
    err = capsys.readouterr().err
    assert "ReferencedFrameOfReferenceUID: 1.2.3.4 does not match the cine's FrameOfReferenceUID" in err


def test_a_cine_without_geometry_is_refused(structure_set: Path, capsys) -> None:
    # The bundled session is a TrackRAD case: its .mha files say nothing of the patient.
    assert main(["replay", "--target-rtstruct", str(structure_set), "--roi", "GTV", "--max-frames", "5"]) == 2
    err = capsys.readouterr().err
    assert "geometry: the recording does not say where its frames lie in the patient" in err


def test_conflicting_target_options_are_refused(structure_set: Path, capsys) -> None:
    assert main(["replay", "--target-rtstruct", str(structure_set)]) == 2
    assert "needs --roi NAME" in capsys.readouterr().err
    assert main(["replay", "--target-rtstruct", str(structure_set), "--roi", "GTV", "--target-box", "1,1,4,4"]) == 2
    assert "give the target one way" in capsys.readouterr().err


def test_live_takes_the_target_from_the_structure_set(series: Path, structure_set: Path, tmp_path: Path,
                                                     capsys) -> None:
    """The plane comes over the wire (SendExternal DICOM.PosVec/RowVec/ColVec) and the
    decisions are replay's."""
    n = 24
    frames, times_s, spacing_mm, period_s, _, geometry = load_recording(series)
    assert geometry is not None
    with BeamSimulator() as beam, ScannerSimulator(frames, times_s, spacing_mm, frame_period_s=period_s,
                                                   max_frames=n, geometry=geometry) as scanner:
        code = main(["live", "--scanner", f"127.0.0.1:{scanner.port}", "--beam", f"127.0.0.1:{beam.port}",
                     "--fps", str(1.0 / period_s), "--target-rtstruct", str(structure_set), "--roi", "Sphere",
                     "--max-frame-age-ms", "5000", "--stall-periods", "40", "--out", str(tmp_path / "live")])
        assert beam.client_closed.wait(5.0)
        assert scanner.done.wait(5.0)
    assert code == 0, capsys.readouterr().err
    assert main(["replay", str(series), "--target-rtstruct", str(structure_set), "--roi", "Sphere",
                 "--max-frames", str(n), "--max-frame-age-ms", "5000", "--out", str(tmp_path / "replay")]) == 0
    live_rows, replay_rows = _rows(tmp_path / "live" / "frames.csv"), _rows(tmp_path / "replay" / "frames.csv")
    assert len(live_rows) == len(replay_rows) == n
    for a, b in zip(live_rows, replay_rows):
        assert {c: a[c] for c in DECISION_COLUMNS} == {c: b[c] for c in DECISION_COLUMNS}
