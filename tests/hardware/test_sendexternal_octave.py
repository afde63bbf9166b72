"""Our .dat files read by the published SendExternal reader's rules, in Octave.

``tests/octave/read_sendexternal.m`` re-implements, rule by rule, the reader the TrackRAD2025
organisers published (``ConvertSendExternalToMatlabVolume.m``, derived from ViewRay's code;
not copied: its repository states no licence). The tests check that it reads every frame of
files this project writes, sees exactly our pixels in its own orientation, and the header
values we wrote, and that the keys we add are the ones it cannot do without.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hardware.dicom_series import read_series
from hardware.sendexternal import END_OF_STREAM, header_entries, read_dat
from maestro.cli import PROJECT_ROOT, main

OCTAVE = shutil.which("octave-cli")
READER_DIR = Path(__file__).resolve().parents[1] / "octave"
#: The values the reader parses after the sizes, in the order read_sendexternal.m writes them.
READER_VALUE_KEYS = ("DICOM.PosVec.0", "DICOM.PosVec.1", "DICOM.PosVec.2", "DICOM.SliceThickness",
                     "DICOM.SliceLocation", "DICOM.PixelSpacing.0", "DICOM.PixelSpacing.1")

pytestmark = pytest.mark.skipif(OCTAVE is None, reason="octave-cli not installed (Debian package 'octave'; "
                                "`.ci/run` installs it): the published reader's rules run in Octave")


def octave_read(dat: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], np.ndarray, np.ndarray]:
    """Run the reader on ``dat``: (process, frames (T, rows, cols) int16, values (T, 7))."""
    out = tmp_path / f"{dat.stem}.octave.bin"
    call = f"addpath('{READER_DIR}'); read_sendexternal('{dat}', '{out}')"
    proc = subprocess.run([str(OCTAVE), "--no-gui", "--quiet", "--no-window-system", "--eval", call],
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        return proc, np.empty((0, 0, 0), np.int16), np.empty((0, 7))
    data = out.read_bytes()
    n, rows, cols = (int(v) for v in np.frombuffer(data[:12], "<i4"))
    end = 12 + n * rows * cols * 2
    frames = np.frombuffer(data[12:end], "<i2").reshape((n, rows, cols), order="F")
    values = np.frombuffer(data[end:], "<f8").reshape(n, len(READER_VALUE_KEYS))
    return proc, frames, values


def reader_number(text: str) -> float:
    """What the reader makes of a value we wrote: its first 6 characters (rule 3)."""
    return float(text[:6])


def test_reads_every_frame_of_a_real_series_converted_to_dat(shared_data: Path, tmp_path: Path, capsys) -> None:
    source = shared_data / "cine" / "liver-3T-volunteer-KS81"
    dat = tmp_path / "ks81.dat"
    assert main(["convert", str(source), str(dat)]) == 0, capsys.readouterr().err
    proc, frames, values = octave_read(dat, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    series = read_series(source)
    records = read_dat(dat)
    assert frames.shape == series.frames.shape == (498, 176, 140)
    # The reader's frames are our pixels, and the DICOM series' pixels, value for value.
    np.testing.assert_array_equal(frames, np.stack([r.pixels for r in records]))
    np.testing.assert_array_equal(frames, series.frames.astype(np.int16))
    # The header values it parsed are the ones we wrote, from the DICOM geometry.
    written = dict(header_entries(records[0]))
    expected = [reader_number(written[k]) for k in READER_VALUE_KEYS]
    np.testing.assert_allclose(values, np.tile(expected, (498, 1)), rtol=0, atol=1e-9)
    geometry = series.geometry
    assert geometry is not None
    np.testing.assert_allclose(values[0, :3], geometry.centre_mm, atol=0.01)  # PosVec: the frame's centre
    assert values[0, 3] == geometry.slice_thickness_mm == 4.0
    assert values[0, 4] == geometry.slice_location_mm == -92.0
    np.testing.assert_allclose(values[0, 5:], series.spacing_mm, atol=1e-3)  # 6 characters: 1.8181


def test_reads_a_recording_without_geometry_with_the_documented_defaults(tmp_path: Path) -> None:
    dat = PROJECT_ROOT / "replay_data" / "mridian-8fps-seed1.dat"
    proc, frames, values = octave_read(dat, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    np.testing.assert_array_equal(frames, np.stack([r.pixels for r in read_dat(dat)]))
    np.testing.assert_array_equal(values[0], [0.0, 0.0, 0.0, 7.0, 0.0, 2.4, 2.4])


def _record_without(keys: set[str], pixels: np.ndarray) -> bytes:
    entries = [(k, v) for k, v in header_entries_for(pixels) if k not in keys]
    header = "\n".join(f"{k} = {v}" for k, v in entries).encode("ascii")
    stored = np.ascontiguousarray(pixels[:, ::-1].T, dtype="<i2").tobytes()
    return struct.pack("<ii", len(header), len(stored)) + header + stored


def header_entries_for(pixels: np.ndarray) -> list[tuple[str, str]]:
    from hardware.sendexternal import SendExternalRecord

    return header_entries(SendExternalRecord(pixels, (2.4, 2.4)))


@pytest.mark.parametrize("missing", [{"DICOM.PosVec.0", "DICOM.PosVec.1", "DICOM.PosVec.2"},
                                     {"DICOM.SliceThickness"}, {"DICOM.SliceLocation"}])
def test_the_keys_we_add_are_ones_the_reader_cannot_do_without(missing: set[str], tmp_path: Path) -> None:
    # A file as this project wrote it before (no position, thickness or location) stops
    # the reader: the test above is not vacuous.
    pixels = (np.arange(12 * 10, dtype=np.int16).reshape(12, 10) * 3 - 50)
    dat = tmp_path / "old.dat"
    dat.write_bytes(_record_without(missing, pixels) + END_OF_STREAM)
    assert read_dat(dat)[0].pixels.tolist() == pixels.tolist()  # our reader accepts it
    proc, _, _ = octave_read(dat, tmp_path)
    assert proc.returncode == 1 and "reader error" in proc.stdout, proc.stdout + proc.stderr
