"""maestro convert: exact round trips between formats, contours and labels, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardware.cine_raw import read_raw
from hardware.dicom_series import read_series
from hardware.label_mha import read_labels
from hardware.roi_contours import contour_to_mask, read_contours
from hardware.sendexternal import read_dat
from hardware.trackrad import read_case, write_case
from maestro.cli import BUNDLED_SESSION, PROJECT_ROOT, main

BUNDLED_DAT = PROJECT_ROOT / "replay_data" / "mridian-8fps-seed1.dat"
BUNDLED_ROI = PROJECT_ROOT / "replay_data" / "mridian-8fps-seed1.roi"


def _ok(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_real_dicom_series_to_dat_and_back_gives_identical_pixels(shared_data: Path, tmp_path: Path, capsys) -> None:
    series = shared_data / "cine" / "liver-3T-volunteer-KS81"
    _ok(capsys, ["convert", series, tmp_path / "ks81.dat"])
    _ok(capsys, ["convert", tmp_path / "ks81.dat", tmp_path / "back", "--to", "dicom"])
    a, b = read_series(series), read_series(tmp_path / "back")
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.times_s, b.times_s)
    assert a.spacing_mm == b.spacing_mm
    records = read_dat(tmp_path / "ks81.dat")
    assert len(records) == a.frames.shape[0]
    np.testing.assert_array_equal(records[3].pixels, a.frames[3])


def _case(folder: Path, frames: np.ndarray) -> Path:
    labels = np.zeros(frames.shape, np.uint8)
    for i in range(frames.shape[0]):
        labels[i, 2 + i:6 + i, 3:7] = 1
    labels[:, 4, 5] = 1
    return write_case(folder, folder.name, frames, labels, spacing_mm=(2.5, 2.0), fps=4.0)


def test_trackrad_round_trips_through_dat_raw_and_dicom(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 32767, (4, 14, 11)).astype(np.uint16)
    case = _case(tmp_path / "C_1", frames)
    _ok(capsys, ["convert", case, tmp_path / "c.dat", "--contours", tmp_path / "c.roi"])
    _ok(capsys, ["convert", tmp_path / "c.dat", tmp_path / "c.raw"])
    _ok(capsys, ["convert", tmp_path / "c.raw", tmp_path / "dcm", "--to", "dicom", "--fps", "4"])
    _ok(capsys, ["convert", tmp_path / "dcm", tmp_path / "C_2", "--to", "trackrad"])
    np.testing.assert_array_equal(read_raw(tmp_path / "c.raw").frames, frames.astype(np.int16))
    back = read_case(tmp_path / "C_2")
    np.testing.assert_array_equal(back.frames, frames.astype(np.float32))
    assert back.fps == pytest.approx(4.0) and back.spacing_mm == pytest.approx((2.5, 2.0))
    original = read_case(case)
    contours = read_contours(tmp_path / "c.roi")
    assert [c.cine_id for c in contours] == [0, 1, 2, 3]
    for c in contours:
        np.testing.assert_array_equal(contour_to_mask(c, (14, 11)), original.labels[c.cine_id])


def test_contours_to_labels_and_back(tmp_path: Path, capsys) -> None:
    frames = np.arange(3 * 14 * 11, dtype=np.uint16).reshape(3, 14, 11)
    case = _case(tmp_path / "C_1", frames)
    _ok(capsys, ["convert", case / "targets" / "C_1_labels.mha", tmp_path / "l.roi"])
    _ok(capsys, ["convert", tmp_path / "l.roi", tmp_path / "l.mha", "--like", case])
    labels, spacing = read_labels(tmp_path / "l.mha")
    np.testing.assert_array_equal(labels, read_case(case).labels)
    assert spacing == pytest.approx((2.5, 2.0))
    line = _refused(capsys, ["convert", tmp_path / "l.roi", tmp_path / "m.mha"])
    assert "--like" in line


def test_values_outside_int16_are_refused_not_clipped(tmp_path: Path, capsys) -> None:
    frames = np.full((2, 6, 6), 40000, np.uint16)
    case = _case(tmp_path / "C_1", frames)
    line = _refused(capsys, ["convert", case, tmp_path / "x.dat"])
    assert "int16" in line and "never clipped" in line
    assert not (tmp_path / "x.dat").exists()


def test_negative_values_do_not_fit_trackrad(tmp_path: Path, capsys) -> None:
    from hardware.sendexternal import SendExternalRecord, write_dat

    write_dat(tmp_path / "n.dat", [SendExternalRecord(np.full((4, 4), -3, np.int16), (1.0, 1.0),
                                                      acquisition_time_s=t) for t in (0.0, 0.25)])
    line = _refused(capsys, ["convert", tmp_path / "n.dat", tmp_path / "T_1", "--to", "trackrad"])
    assert "uint16" in line
    _ok(capsys, ["convert", tmp_path / "n.dat", tmp_path / "dcm", "--to", "dicom"])
    assert read_series(tmp_path / "dcm").frames.min() == -3


@pytest.mark.parametrize("out,extra,words", [
    ("folder", [], "--to"),
    ("x.mha", [], "labels"),
    ("x.dat", ["--to", "dicom"], "--to"),
])
def test_output_format_refusals(tmp_path: Path, capsys, out: str, extra: list[str], words: str) -> None:
    frames = np.ones((2, 6, 6), np.uint16)
    case = _case(tmp_path / "C_1", frames)
    assert words in _refused(capsys, ["convert", case, tmp_path / out, *extra])


def test_corrupt_dat_input_names_offset_and_field(tmp_path: Path, capsys) -> None:
    data = BUNDLED_DAT.read_bytes()[:5000]
    (tmp_path / "cut.dat").write_bytes(data)
    line = _refused(capsys, ["convert", tmp_path / "cut.dat", tmp_path / "x.raw"])
    assert "pixels at byte" in line and "truncated" in line


def test_bundled_mridian_session_is_the_phantom_in_mridian_form(capsys) -> None:
    """replay_data/mridian-8fps-seed1.dat and .roi are the first 80 frames of the bundled
    phantom, as written by `maestro convert ... --max-frames 80 --contours ...`."""
    case = read_case(BUNDLED_SESSION)
    records = read_dat(BUNDLED_DAT)
    assert len(records) == 80
    np.testing.assert_array_equal(np.stack([r.pixels for r in records]), case.frames[:80])
    assert [r.acquisition_time_s for r in records] == pytest.approx(list(case.times_s[:80]))
    contours = read_contours(BUNDLED_ROI)
    assert [c.cine_id for c in contours] == list(range(80))
    for c in contours:
        np.testing.assert_array_equal(contour_to_mask(c, case.frames.shape[1:]), case.labels[c.cine_id])


@pytest.mark.system
def test_replay_of_the_mridian_form_decides_like_the_trackrad_form(tmp_path: Path, capsys) -> None:
    out = _ok(capsys, ["replay", BUNDLED_DAT, "--out", tmp_path / "dat"])
    assert "reference contours  80 frames compared" in out and "Dice" in out
    _ok(capsys, ["replay", BUNDLED_SESSION, "--max-frames", "80", "--out", tmp_path / "mha"])
    keep = slice(0, 8)  # frame .. reason: everything decided, not the timing columns
    a = [line.split(",")[keep] for line in (tmp_path / "dat" / "frames.csv").read_text().splitlines()]
    b = [line.split(",")[keep] for line in (tmp_path / "mha" / "frames.csv").read_text().splitlines()]
    assert a == b
    rows = (tmp_path / "dat" / "reference_agreement.csv").read_text().splitlines()
    assert rows[0] == "frame,t_acq_s,tracking_valid,dice,centroid_distance_mm" and len(rows) == 81
    dice = [float(r.split(",")[3]) for r in rows[1:]]
    assert min(dice) > 0.8 and dice[0] == 1.0


def test_reference_contours_option_on_a_trackrad_case(tmp_path: Path, capsys) -> None:
    out = _ok(capsys, ["replay", BUNDLED_SESSION, "--max-frames", "10", "--reference-contours", BUNDLED_ROI])
    assert "reference contours  10 frames compared, 0 not tracked" in out
