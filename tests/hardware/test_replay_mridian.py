"""ReplaySource on MRIdian files: .dat and .raw recordings, reference contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardware.cine_raw import write_raw
from hardware.errors import InputError
from hardware.replay import CINE_RAW, SENDEXTERNAL, ReplaySource, detect_format
from hardware.roi_contours import TrackingContour, mask_to_contour, write_contours
from hardware.sendexternal import SendExternalRecord, write_dat


def _frames(n: int = 5, shape: tuple[int, int] = (12, 10)) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(-500, 3000, (n, *shape)).astype(np.int16)


def _dat(path: Path, frames: np.ndarray, times: list[float] | None, spacing: tuple[float, float] = (2.0, 3.0)) -> Path:
    write_dat(path, [SendExternalRecord(f, spacing, acquisition_time_s=None if times is None else times[i])
                     for i, f in enumerate(frames)])
    return path


def test_dat_frames_times_and_geometry(tmp_path: Path) -> None:
    frames = _frames()
    times = [10.0, 10.125, 10.25, 10.5, 10.625]
    path = _dat(tmp_path / "a.dat", frames, times)
    assert detect_format(path) == SENDEXTERNAL
    with ReplaySource(path) as source:
        got = list(source)
        assert source.spacing_mm == (2.0, 3.0) and source.shape == (12, 10)
        assert source.frame_period_s == pytest.approx(0.125)
        assert source.reference_label is None and source.reference_masks == {}
    np.testing.assert_array_equal(np.stack([f.pixels for f in got]), frames.astype(np.float32))
    assert [f.t_acq_s for f in got] == pytest.approx([t - 10.0 for t in times])
    assert all(f.pixels.dtype == np.float32 and f.label is None for f in got)


def test_dat_without_times_needs_fps_and_mixed_times_are_refused(tmp_path: Path) -> None:
    path = _dat(tmp_path / "a.dat", _frames(3), None)
    with pytest.raises(InputError, match="--fps"):
        ReplaySource(path)
    with ReplaySource(path, fps=4.0) as source:
        assert [f.t_acq_s for f in source] == [0.0, 0.25, 0.5]
    recs = [SendExternalRecord(f, (1.0, 1.0), acquisition_time_s=t) for f, t in zip(_frames(2), [0.0, None])]
    write_dat(tmp_path / "b.dat", recs)
    with pytest.raises(InputError, match="record 1"):
        ReplaySource(tmp_path / "b.dat")


def test_dat_with_changing_geometry_is_refused(tmp_path: Path) -> None:
    a, b = _frames(1)[0], _frames(1, (10, 10))[0]
    write_dat(tmp_path / "g.dat", [SendExternalRecord(a, (1.0, 1.0), acquisition_time_s=0.0),
                                    SendExternalRecord(b, (1.0, 1.0), acquisition_time_s=0.1)])
    with pytest.raises(InputError, match="one geometry"):
        ReplaySource(tmp_path / "g.dat")


def test_raw_needs_fps(tmp_path: Path) -> None:
    frames = _frames()
    write_raw(tmp_path / "c.raw", frames, (3.5, 3.5))
    assert detect_format(tmp_path / "c.raw") == CINE_RAW
    with pytest.raises(InputError, match="--fps"):
        ReplaySource(tmp_path / "c.raw")
    with ReplaySource(tmp_path / "c.raw", fps=8.0) as source:
        got = list(source)
        assert source.spacing_mm == pytest.approx((3.5, 3.5))
    np.testing.assert_array_equal(np.stack([f.pixels for f in got]), frames)


def test_other_files_are_still_refused(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"x")
    with pytest.raises(InputError, match="is a file"):
        ReplaySource(tmp_path / "x.png")


def test_contours_give_first_target_and_per_frame_masks(tmp_path: Path) -> None:
    frames = _frames()
    path = _dat(tmp_path / "a.dat", frames, [0.0, 0.1, 0.2, 0.3, 0.4])
    masks = {}
    for i in (0, 2, 3):
        m = np.zeros((12, 10), bool)
        m[3 + i:7 + i, 2:6] = True
        masks[i] = m
    contours = [mask_to_contour(m, i) for i, m in masks.items()]
    contours.append(TrackingContour(99, np.float32([[0, 0], [1, 0], [0, 1]])))  # not a frame: ignored
    write_contours(tmp_path / "a.roi", contours)
    with ReplaySource(path, contours=tmp_path / "a.roi") as source:
        np.testing.assert_array_equal(source.reference_label, masks[0])
        assert sorted(source.reference_masks) == [0, 2, 3]
        for i, m in masks.items():
            np.testing.assert_array_equal(source.reference_masks[i], m)
        assert "reference contours a.roi" in source.description


def test_contours_that_cannot_serve_are_refused(tmp_path: Path) -> None:
    path = _dat(tmp_path / "a.dat", _frames(2), [0.0, 0.1])
    # A sliver between pixel centres covers no pixel on frame 0.
    write_contours(tmp_path / "thin.roi", [TrackingContour(0, np.float32([[0.01, 0.01], [0.02, 0.01], [0.02, 0.02]]))])
    with pytest.raises(InputError, match="covers no pixel"):
        ReplaySource(path, contours=tmp_path / "thin.roi")
    write_contours(tmp_path / "far.roi", [TrackingContour(7, np.float32([[0, 0], [1, 0], [0, 1]]))])
    with pytest.raises(InputError, match="no contour names a frame"):
        ReplaySource(path, contours=tmp_path / "far.roi")
    (tmp_path / "bad.roi").write_bytes(b"\x01\x00")
    with pytest.raises(InputError, match="n_contours at byte 0"):
        ReplaySource(path, contours=tmp_path / "bad.roi")
