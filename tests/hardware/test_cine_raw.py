"""Cine .raw files: round trips, the documented layout, plausibility refusals."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hardware.cine_raw import HEADER_BYTES, CineRawError, read_raw, write_raw
from hardware.errors import InputError


def header(nx: int, ny: int, n: int, *, ox: float = -24.0, dx: float = 0.35, oy: float = -24.0, dy: float = 0.35,
           nz: int = 1, oz: float = 0.0, dz: float = 0.5) -> bytes:
    return struct.pack("<idd", nx, ox, dx) + struct.pack("<idd", ny, oy, dy) + struct.pack("<idd", nz, oz, dz) \
        + struct.pack("<h", n)


def test_reads_the_documented_layout(tmp_path: Path) -> None:
    nx, ny = 3, 2
    stored = np.arange(2 * nx * ny, dtype="<i2") - 5
    path = tmp_path / "a.raw"
    path.write_bytes(header(nx, ny, 2, dx=0.25, dy=0.5) + stored.tobytes())
    raw = read_raw(path)
    assert HEADER_BYTES == 62
    assert raw.frames.shape == (2, ny, nx) and raw.frames.dtype == np.int16
    np.testing.assert_array_equal(raw.frames[1], stored[6:].reshape(ny, nx))
    # The script's literal reading: fill nx x ny column by column, then transpose.
    m = np.empty((nx, ny), np.int16)
    k = 0
    for col in range(ny):
        for row in range(nx):
            m[row, col] = stored[k]
            k += 1
    np.testing.assert_array_equal(raw.frames[0], m.T)
    assert raw.spacing_mm == pytest.approx((5.0, 2.5))
    assert raw.origin_cm == (-24.0, -24.0, 0.0) and raw.n_slices == 1 and raw.slice_spacing_cm == 0.5


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.int16, st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7))),
       st.tuples(st.floats(0.1, 20.0), st.floats(0.1, 20.0)),
       st.tuples(*[st.floats(-100.0, 100.0)] * 3))
def test_round_trip(frames: np.ndarray, spacing: tuple[float, float], origin: tuple[float, float, float]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.raw"
        write_raw(path, frames, spacing, origin_cm=origin, slice_spacing_cm=0.5)
        raw = read_raw(path)
    np.testing.assert_array_equal(raw.frames, frames)
    assert raw.spacing_mm == pytest.approx(spacing, rel=1e-12)
    assert raw.origin_cm == origin


def refused(tmp_path: Path, data: bytes) -> CineRawError:
    path = tmp_path / "bad.raw"
    path.write_bytes(data)
    with pytest.raises(CineRawError) as info:
        read_raw(path)
    assert str(info.value).startswith(f"{path}: {info.value.field} at byte {info.value.offset}: ")
    return info.value


def test_refuses_a_file_in_the_swapped_spacing_origin_order(tmp_path: Path) -> None:
    swapped = struct.pack("<idd", 2, 0.35, -24.0) + struct.pack("<idd", 2, 0.35, -24.0) \
        + struct.pack("<idd", 1, 0.5, 0.0) + struct.pack("<h", 1) + b"\0" * 8
    e = refused(tmp_path, swapped)
    assert (e.field, e.offset) == ("dx", 12)
    assert "order" in e.rule


@pytest.mark.parametrize("kwargs,field,offset", [
    ({"nx": 0}, "nx", 0), ({"ny": -3}, "ny", 20), ({"nx": 5000}, "nx", 0), ({"nz": 0}, "nz", 40),
    ({"dx": 0.0}, "dx", 12), ({"dy": 3.0}, "dy", 32), ({"dx": float("nan")}, "dx", 12),
    ({"oy": 1e9}, "oy", 24), ({"dz": -1.0}, "dz", 52),
])
def test_refuses_implausible_header_fields(tmp_path: Path, kwargs: dict, field: str, offset: int) -> None:
    args = {"nx": 2, "ny": 2, "n": 1, **kwargs}
    e = refused(tmp_path, header(**args) + b"\0" * 8)
    assert (e.field, e.offset) == (field, offset)


def test_refuses_sizes_that_disagree_with_the_file_length(tmp_path: Path) -> None:
    e = refused(tmp_path, header(2, 2, 2) + b"\0" * 15)
    assert (e.field, e.offset) == ("frames", 62 + 15) and "truncated" in e.rule
    e = refused(tmp_path, header(2, 2, 1) + b"\0" * 9)
    assert (e.field, e.offset) == ("frames", 70) and "1 bytes follow" in e.rule
    e = refused(tmp_path, header(2, 2, 0))
    assert e.field == "n_frames"
    e = refused(tmp_path, header(2, 2, -4))
    assert e.field == "n_frames"
    e = refused(tmp_path, header(2, 2, 1)[:30])
    assert (e.field, e.offset) == ("header", 30)


def test_missing_file_and_bad_writer_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_raw(tmp_path / "no.raw")
    with pytest.raises(ValueError):
        write_raw(tmp_path / "x.raw", np.zeros((1, 2, 2), np.float32), (1.0, 1.0))
    with pytest.raises(ValueError):
        write_raw(tmp_path / "x.raw", np.zeros((1, 2, 2), np.int16), (0.0, 1.0))
    with pytest.raises(ValueError):
        write_raw(tmp_path / "x.raw", np.zeros((1, 2, 2), np.int16), (25.0, 1.0))
