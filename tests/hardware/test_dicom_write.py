"""write_series: what dicom_series reads back, deterministic UIDs, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from hardware.dicom_series import read_series
from hardware.dicom_write import write_series
from hardware.errors import InputError


@pytest.mark.parametrize("dtype,lo,hi", [(np.uint16, 0, 65535), (np.int16, -32768, 32767)])
def test_round_trip(tmp_path: Path, dtype: type, lo: int, hi: int) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(lo, hi, (3, 5, 4), endpoint=True).astype(dtype)
    frames[0, 0, 0], frames[0, 0, 1] = lo, hi
    times = np.array([0.0, 0.1234567, 0.5])
    paths = write_series(tmp_path / "s", frames, times, (1.8181818723679, 0.5), uid_seed="x")
    series = read_series(tmp_path / "s")
    np.testing.assert_array_equal(series.frames, frames.astype(np.float32))
    np.testing.assert_allclose(series.times_s, np.round(times, 6))
    assert series.spacing_mm == (1.8181818723679, 0.5)
    again = write_series(tmp_path / "t", frames, times, (1.0, 1.0), uid_seed="x")
    assert pydicom.dcmread(paths[1]).SOPInstanceUID == pydicom.dcmread(again[1]).SOPInstanceUID


def test_refusals(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    ok = np.zeros((2, 2, 2), np.int16)
    with pytest.raises(InputError, match="already holds files"):
        write_series(tmp_path / "full", ok, np.array([0.0, 1.0]), (1.0, 1.0), uid_seed="x")
    with pytest.raises(ValueError, match="16-bit"):
        write_series(tmp_path / "a", np.array([[[-1, 40000]]]), np.array([0.0]), (1.0, 1.0), uid_seed="x")
    with pytest.raises(ValueError, match="increasing"):
        write_series(tmp_path / "b", ok, np.array([1.0, 1.0]), (1.0, 1.0), uid_seed="x")
    with pytest.raises(ValueError, match="integer"):
        write_series(tmp_path / "c", ok.astype(np.float32), np.array([0.0, 1.0]), (1.0, 1.0), uid_seed="x")
