"""DICOM series folders: real cine series, synthetic series, and every refusal."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from hardware.dicom_series import is_ignored_name, parse_dicom_time, read_series, unwrap_midnight
from hardware.errors import InputError
from tests.hardware.synthetic import (
    dicom_time,
    index_frames,
    truncate,
    uid,
    write_dicom_frame,
    write_dicom_series,
)

LIVER = ("cine", "liver-3T-volunteer-KS81")
THORAX = ("cine", "thorax-ETH-sl010")


def _frame_indices(frames: np.ndarray) -> list[int]:
    """The true index encoded by :func:`index_frames` in each frame."""
    return [int(f[0, 0]) // 1000 - 1 for f in frames]


# -- time parsing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("133911.145000", 13 * 3600 + 39 * 60 + 11.145),
        ("133911", 13 * 3600 + 39 * 60 + 11),
        ("1339", 13 * 3600 + 39 * 60),
        ("13", 13 * 3600),
        ("000000.5", 0.5),
        ("235959.999999", 86399.999999),
        ("13:39:11.5", 13 * 3600 + 39 * 60 + 11.5),
        (" 101010.1 ", 36610.1),
    ],
)
def test_parse_dicom_time(text: str, seconds: float) -> None:
    assert parse_dicom_time(text) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize("text", ["", "1", "13391", "2400", "1360", "136161", "abcdef", "133911.1234567", "13.5"])
def test_parse_dicom_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="DICOM time"):
        parse_dicom_time(text)


def test_unwrap_midnight_without_crossing() -> None:
    t = np.array([100.0, 50.0, 75.0])
    np.testing.assert_array_equal(unwrap_midnight(t), t)


def test_unwrap_midnight_with_crossing() -> None:
    t = np.array([86399.8, 0.1, 86399.9, 0.0])
    np.testing.assert_allclose(unwrap_midnight(t), [86399.8, 86400.1, 86399.9, 86400.0])


def test_unwrap_midnight_single_and_empty() -> None:
    assert unwrap_midnight(np.array([5.0])).tolist() == [5.0]
    assert unwrap_midnight(np.array([])).size == 0


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("LICENSE-pohl-michel-BSD3.txt", True),
        ("README", True),
        ("readme.md", True),
        (".DS_Store", True),
        ("DICOMDIR", True),
        ("notes.json", True),
        ("image1.IMA", False),
        ("image1.dcm", False),
        ("IM0001", False),
        ("frame.bin", False),
    ],
)
def test_ignored_names(name: str, ignored: bool) -> None:
    assert is_ignored_name(name) is ignored


# -- real series ----------------------------------------------------------------------------
def test_liver_series(shared_data: Path) -> None:
    folder = shared_data.joinpath(*LIVER)
    t0 = time.perf_counter()
    series = read_series(folder)
    load_s = time.perf_counter() - t0
    assert load_s < 10.0, f"498 frames took {load_s:.1f} s to load"
    assert series.frames.shape == (498, 176, 140) and series.frames.dtype == np.float32
    assert series.spacing_mm == pytest.approx((1.8181818723679, 1.8181818723679))
    assert series.times_from_file
    intervals = np.diff(series.times_s)
    assert series.times_s[0] == 0.0
    assert np.all(intervals > 0.16) and np.all(intervals < 0.175)
    assert series.fps == pytest.approx(1 / 0.1675, rel=0.01)
    # Independent check of order and content with pydicom on a few frames.
    instances = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in series.paths]
    assert instances == sorted(instances) and len(set(instances)) == 498
    for i in (0, 1, 250, 497):
        ds = pydicom.dcmread(series.paths[i])
        np.testing.assert_array_equal(series.frames[i], ds.pixel_array.astype(np.float32))
    assert series.paths[0].name == "image1.IMA" and series.paths[-1].name == "image498.IMA"


def test_thorax_series_needs_rate_and_spacing(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = shared_data.joinpath(*THORAX)
    with pytest.raises(InputError) as info:
        read_series(folder)
    assert "--fps" in info.value.rule and "--spacing-mm" in info.value.rule
    with pytest.raises(InputError) as info:
        read_series(folder, spacing_mm=(1.0, 1.0))
    assert info.value.field == "AcquisitionTime" and "--fps" in info.value.rule
    with pytest.raises(InputError) as info:
        read_series(folder, fps=2.5)
    assert info.value.field == "PixelSpacing" and "--spacing-mm" in info.value.rule
    with caplog.at_level(logging.WARNING, logger="hardware.dicom_series"):
        series = read_series(folder, fps=2.5, spacing_mm=(1.5, 1.5))
    assert "its own series" in caplog.text
    assert series.frames.shape == (200, 270, 270)
    assert not series.times_from_file and series.fps == 2.5
    np.testing.assert_allclose(series.times_s, np.arange(200) / 2.5)
    # No times, no instance numbers: natural file-name order.
    assert [p.name for p in series.paths[:11]] == [f"image{i}.dcm" for i in range(1, 12)]
    np.testing.assert_array_equal(series.frames[9], pydicom.dcmread(folder / "image10.dcm").pixel_array)


# -- ordering -------------------------------------------------------------------------------
def test_order_by_acquisition_time_not_file_name(tmp_path: Path) -> None:
    frames = index_frames(6)
    names = ["f.dcm", "b.dcm", "e.dcm", "a.dcm", "d", "c.IMA"]  # shuffled against time
    times = [dicom_time(3600.0 + 0.25 * i) for i in range(6)]
    write_dicom_series(tmp_path, frames, names=names, times=times)
    series = read_series(tmp_path)
    assert _frame_indices(series.frames) == list(range(6))
    assert [p.name for p in series.paths] == names
    np.testing.assert_allclose(series.times_s, 0.25 * np.arange(6))
    assert series.fps == pytest.approx(4.0)


def test_acquisition_time_takes_precedence_over_instance_number(tmp_path: Path) -> None:
    frames = index_frames(4)
    write_dicom_series(tmp_path, frames, times=[dicom_time(10.0 + i) for i in range(4)], instances=[4, 3, 2, 1])
    assert _frame_indices(read_series(tmp_path).frames) == [0, 1, 2, 3]


def test_equal_times_are_ordered_by_instance_number(tmp_path: Path) -> None:
    frames = index_frames(5)
    times = [dicom_time(t) for t in (10.0, 10.0, 10.5, 11.0, 11.0)]
    write_dicom_series(tmp_path, frames, names=["e", "d", "c", "b", "a"], times=times, instances=[1, 2, 3, 4, 5])
    assert _frame_indices(read_series(tmp_path).frames) == [0, 1, 2, 3, 4]


def test_without_times_order_by_instance_number(tmp_path: Path) -> None:
    frames = index_frames(5)
    write_dicom_series(tmp_path, frames, names=["e", "d", "c", "b", "a"], instances=[1, 2, 3, 4, 5])
    series = read_series(tmp_path, fps=5.0)
    assert _frame_indices(series.frames) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(series.times_s, np.arange(5) / 5.0)


def test_midnight_rollover(tmp_path: Path) -> None:
    frames = index_frames(5)
    seconds = [86399.7, 86399.8, 86399.9, 0.0, 0.1]
    names = ["c", "e", "a", "d", "b"]
    write_dicom_series(tmp_path, frames, names=names, times=[dicom_time(s) for s in seconds])
    series = read_series(tmp_path)
    assert _frame_indices(series.frames) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(series.times_s, [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-9)


def test_fps_argument_replaces_file_times(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(3), times=[dicom_time(10.0 + 0.2 * i) for i in range(3)])
    series = read_series(tmp_path, fps=10.0)
    assert not series.times_from_file
    np.testing.assert_allclose(series.times_s, [0.0, 0.1, 0.2])


def test_ignored_files_are_skipped(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(3), times=[dicom_time(10.0 + i) for i in range(3)])
    (tmp_path / "README").write_text("about this series")
    (tmp_path / "LICENSE-x.txt").write_text("licence")
    (tmp_path / ".hidden").write_bytes(b"\x00\x01")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.dcm").write_bytes(b"not read")
    assert read_series(tmp_path).frames.shape == (3, 6, 5)


# -- pixel values -----------------------------------------------------------------------------
def test_rescale_slope_and_intercept(tmp_path: Path) -> None:
    raw = np.arange(30, dtype=np.uint16).reshape(6, 5)
    series_uid = uid("rescale")
    for i, (slope, intercept) in enumerate([(2.0, -100.0), (0.5, 3.0)]):
        write_dicom_frame(tmp_path / f"{i}.dcm", raw, series_uid=series_uid, instance=i + 1, slope=slope,
                          intercept=intercept)
    series = read_series(tmp_path, fps=1.0)
    np.testing.assert_allclose(series.frames[0], raw * 2.0 - 100.0)
    np.testing.assert_allclose(series.frames[1], raw * 0.5 + 3.0)


@pytest.mark.parametrize(
    ("dtype", "bits_stored"),
    [(np.uint16, 16), (np.uint16, 12), (np.uint8, 8), (np.int16, 16), (np.int16, 12)],
)
def test_pixels_match_pydicom(tmp_path: Path, dtype: type, bits_stored: int) -> None:
    """Whichever decoding path is taken, the pixels are pydicom's."""
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    low = max(info.min, -(2 ** (bits_stored - 1)) if info.min < 0 else 0)
    high = min(info.max, 2 ** (bits_stored - (1 if info.min < 0 else 0)) - 1)
    raw = rng.integers(low, high, size=(7, 9), endpoint=True).astype(dtype)
    path = write_dicom_frame(tmp_path / "a.dcm", raw, series_uid=uid("px"), bits_stored=bits_stored)
    series = read_series(tmp_path, fps=1.0)
    np.testing.assert_array_equal(series.frames[0], pydicom.dcmread(path).pixel_array.astype(np.float32))
    np.testing.assert_array_equal(series.frames[0], raw.astype(np.float32))


# -- refusals ---------------------------------------------------------------------------------
def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_series(tmp_path / "nope")
    with pytest.raises(InputError, match="no DICOM files"):
        read_series(tmp_path)
    (tmp_path / "README.txt").write_text("nothing else")
    with pytest.raises(InputError, match="no DICOM files"):
        read_series(tmp_path)


def test_mixed_series(tmp_path: Path) -> None:
    uid_a, uid_b = uid("series-a"), uid("series-b")
    for i in range(3):
        write_dicom_frame(tmp_path / f"a{i}.dcm", index_frames(1)[0], series_uid=uid_a, instance=i)
        write_dicom_frame(tmp_path / f"b{i}.dcm", index_frames(1)[0], series_uid=uid_b, instance=i)
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.field == "SeriesInstanceUID"
    assert uid_a in info.value.rule and uid_b in info.value.rule


def test_non_image_dicom(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(2), instances=[1, 2])
    path = write_dicom_frame(tmp_path / "report.dcm", index_frames(1)[0], series_uid=uid(f"{tmp_path}-series"),
                             with_pixels=False)
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(path) and info.value.field == "PixelData"


def test_size_mismatch(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(2), instances=[1, 2])
    path = write_dicom_frame(tmp_path / "frame002.dcm", np.zeros((6, 4), np.uint16),
                             series_uid=uid(f"{tmp_path}-series"), instance=3)
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(path) and "6 x 4" in info.value.rule and "6 x 5" in info.value.rule


def test_non_dicom_file(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(2), instances=[1, 2])
    stray = tmp_path / "scan.png"
    stray.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(stray) and "not a DICOM file" in info.value.rule


@pytest.mark.parametrize("n_bytes", [0, 100, 140, 400, -200, -1])
def test_truncated_file(tmp_path: Path, n_bytes: int) -> None:
    paths = write_dicom_series(tmp_path, index_frames(3, shape=(16, 16)), instances=[1, 2, 3])
    truncate(paths[1], n_bytes)
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(paths[1])


def test_corrupt_file_after_preamble(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path, index_frames(2), instances=[1, 2])
    rng = np.random.default_rng(3)
    paths[0].write_bytes(bytes(128) + b"DICM" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(paths[0])


def test_duplicate_image(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path, index_frames(2), instances=[1, 2])
    copy = tmp_path / "copy.IMA"
    copy.write_bytes(paths[0].read_bytes())
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.field == "SOPInstanceUID" and paths[0].name in info.value.rule + info.value.path


def test_multi_frame_file(tmp_path: Path) -> None:
    path = write_dicom_frame(tmp_path / "mf.dcm", index_frames(1)[0], series_uid=uid("mf"), number_of_frames=3)
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(path) and info.value.field == "NumberOfFrames"


def test_missing_series_uid(tmp_path: Path) -> None:
    path = write_dicom_frame(tmp_path / "x.dcm", index_frames(1)[0], series_uid="")
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(path) and info.value.field == "SeriesInstanceUID"


def test_partial_acquisition_times(tmp_path: Path) -> None:
    paths = write_dicom_series(tmp_path, index_frames(3), times=[dicom_time(10.0), None, dicom_time(12.0)])
    with pytest.raises(InputError) as info:
        read_series(tmp_path)
    assert info.value.path == str(paths[1]) and info.value.field == "AcquisitionTime"


def test_invalid_acquisition_time(tmp_path: Path) -> None:
    """pydicom only warns about such a value (on writing and reading); the reader refuses it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        paths = write_dicom_series(tmp_path, index_frames(2), times=[dicom_time(10.0), "996000"])
    with pytest.raises(InputError) as info:
        read_series(tmp_path)
    assert info.value.path == str(paths[1]) and info.value.field == "AcquisitionTime"


def test_times_that_cannot_pace(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(3), times=[dicom_time(10.0)] * 3)
    with pytest.raises(InputError, match="--fps"):
        read_series(tmp_path)


def test_single_timed_frame_needs_fps(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(1), times=[dicom_time(10.0)])
    with pytest.raises(InputError, match="--fps"):
        read_series(tmp_path)
    assert read_series(tmp_path, fps=8.0).frames.shape == (1, 6, 5)


def test_partial_pixel_spacing(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(2), instances=[1, 2])
    path = write_dicom_frame(tmp_path / "z.dcm", index_frames(1)[0], series_uid=uid(f"{tmp_path}-series"),
                             instance=3, spacing_mm=None)
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(path) and info.value.field == "PixelSpacing"


def test_inconsistent_pixel_spacing(tmp_path: Path) -> None:
    write_dicom_series(tmp_path, index_frames(2), instances=[1, 2])
    path = write_dicom_frame(tmp_path / "z.dcm", index_frames(1)[0], series_uid=uid(f"{tmp_path}-series"),
                             instance=3, spacing_mm=(2.0, 2.5))
    with pytest.raises(InputError) as info:
        read_series(tmp_path, fps=1.0)
    assert info.value.path == str(path) and "differs" in info.value.rule


def test_spacing_argument_overrides_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_dicom_series(tmp_path, index_frames(2), instances=[1, 2], spacing_mm=(2.0, 2.0))
    with caplog.at_level(logging.WARNING, logger="hardware.dicom_series"):
        series = read_series(tmp_path, fps=1.0, spacing_mm=(3.0, 3.5))
    assert series.spacing_mm == (3.0, 3.5) and "PixelSpacing" in caplog.text


@pytest.mark.parametrize(("fps", "spacing"), [(0.0, None), (float("nan"), None), (None, (1.0, 0.0)), (None, (1.0,))])
def test_bad_arguments(tmp_path: Path, fps: float | None, spacing: tuple[float, ...] | None) -> None:
    with pytest.raises(ValueError):
        read_series(tmp_path, fps=fps, spacing_mm=spacing)
