"""Corrupt files read through SimpleITK and pydicom end in the project's InputError,
never a library traceback, and no header makes the reader allocate beyond its bound.

Examples per test: ``MAESTRO_FUZZ_EXAMPLES`` (default 300, so CI runs about a thousand
mutated files in all); the longer run documented in the README sets it to 20000.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware import InputError
from hardware.dicom_series import read_series
from hardware.trackrad import MAX_PIXELS, read_case, write_case
from tests.hardware.synthetic import write_dicom_series

N_EXAMPLES = int(os.environ.get("MAESTRO_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _case_bytes() -> tuple[dict[str, bytes], str]:
    """A small valid TrackRAD case, as bytes per relative path."""
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 400, size=(4, 12, 10), dtype=np.uint16)
        labels = np.zeros((4, 12, 10), dtype=np.uint8)
        labels[:, 4:8, 3:6] = 1
        case = Path(tmp) / "F_001"
        write_case(case, "F_001", frames, labels, spacing_mm=(2.4, 2.4), fps=8.0)
        files = {str(p.relative_to(case)): p.read_bytes() for p in case.rglob("*") if p.is_file()}
    return files, "images/F_001_frames.mha"


CASE_FILES, FRAMES_FILE = _case_bytes()


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


mutations = st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8)


def _mutate(data: bytes, edits: list[tuple[float, int]], cut: float | None) -> bytes:
    buf = bytearray(data)
    for where, value in edits:
        buf[int(where * len(buf))] = value
    if cut is not None:
        del buf[int(cut * len(buf)) :]
    return bytes(buf)


@FUZZ
@given(
    target=st.sampled_from(sorted(CASE_FILES)),
    edits=mutations,
    cut=st.none() | st.floats(0.0, 1.0, exclude_max=True),
)
def test_mutated_trackrad_case_is_read_or_refused(target: str, edits, cut) -> None:
    files = dict(CASE_FILES)
    files[target] = _mutate(files[target], edits, cut)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _write(Path(tmp) / "F_001", files)
        try:
            case = read_case(folder)
        except InputError:
            return
        assert case.frames.ndim == 3 and np.isfinite(case.frames).all()


@FUZZ
@given(dims=st.lists(st.integers(0, 2**40), min_size=1, max_size=4), n_dims=st.integers(0, 5))
def test_mha_header_sizes_are_bounded_before_allocation(dims: list[int], n_dims: int) -> None:
    text = CASE_FILES[FRAMES_FILE]
    head, sep, body = text.partition(b"ElementDataFile = LOCAL\n")
    lines = [
        (f"DimSize = {' '.join(map(str, dims))}" if ln.startswith(b"DimSize") else
         f"NDims = {n_dims}" if ln.startswith(b"NDims") else ln.decode("ascii"))
        for ln in head.splitlines()
    ]
    files = dict(CASE_FILES)
    files[FRAMES_FILE] = ("\n".join(lines) + "\n").encode("ascii") + sep + body
    with tempfile.TemporaryDirectory() as tmp:
        folder = _write(Path(tmp) / "F_001", files)
        try:
            case = read_case(folder)
        except InputError:
            return
        assert case.frames.size <= MAX_PIXELS


@pytest.mark.parametrize("dims", ["0 2147483648 2147483648", "4 0 12"])
def test_a_zero_size_is_refused_by_name(tmp_path: Path, dims: str) -> None:
    """Regression (found by the long fuzz run): DimSize 0 x 2^31 x 2^31 passed the pixel
    bound (product 0) and numpy then raised 'array is too big'."""
    files = dict(CASE_FILES)
    files[FRAMES_FILE] = CASE_FILES[FRAMES_FILE].replace(b"DimSize = 4 10 12", f"DimSize = {dims}".encode())
    with pytest.raises(InputError, match="DimSize"):
        read_case(_write(tmp_path / "F_001", files))


LABELS_FILE = "targets/F_001_labels.mha"


@pytest.mark.parametrize(("find", "replace", "key"), [
    # Both lines damaged: ITK 5.4's reader never returned on this file.
    ((b"ObjectType", b"CompressedDataSize"), (b"hbjectType", b"CM\xd8\xferessedDataSize"), "ObjectType"),
    ((b"CompressedDataSize = 24",), (b"CompressedDataSize = 9999",), "CompressedDataSize"),
    ((b"CompressedDataSize = 24",), (b"CompressedDataSize = -24",), "CompressedDataSize"),
    ((b"CompressedDataSize",), (b"CompressedDataSiXe",), "CompressedDataSize"),
    ((b"ElementDataFile = LOCAL",), (b"ElementDataFile = /dev/zero",), "ElementDataFile"),
    ((b"ElementDataFile",), (b"ElementDataFilX",), "ElementDataFile"),
])
def test_a_header_the_itk_reader_cannot_be_trusted_with_is_refused_first(
    tmp_path: Path, find: tuple[bytes, ...], replace: tuple[bytes, ...], key: str
) -> None:
    """Regression (found by the fuzz run, which then never finished): the header is
    checked before ITK reads it. Run in a child process, so that a reader that hangs
    again fails this test instead of stopping the suite."""
    data = CASE_FILES[LABELS_FILE]
    for old, new in zip(find, replace):
        assert data.count(old) == 1, f"fixture layout changed: {old!r}"
        data = data.replace(old, new)
    files = dict(CASE_FILES)
    files[LABELS_FILE] = data
    folder = _write(tmp_path / "F_001", files)
    code = ("import sys; from hardware import InputError; from hardware.trackrad import read_case\n"
            f"try: read_case({str(folder)!r})\n"
            "except InputError as e: print(e); sys.exit(3)\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"F_001_labels.mha: {key}: " in done.stdout


def test_a_corrupt_value_representation_is_refused(tmp_path: Path) -> None:
    """Regression (found by the fuzz run): a zeroed byte in Columns' VR made pydicom raise
    NotImplementedError lazily, when the element was first read."""
    files = dict(SERIES_FILES)
    name = sorted(files)[0]
    data = bytearray(files[name])
    where = data.index(b"\x28\x00\x11\x00US")  # (0028,0011) Columns, explicit VR
    data[where + 5] = 0
    files[name] = bytes(data)
    with pytest.raises(InputError, match="corrupt DICOM"):
        read_series(_write(tmp_path, files), fps=8.0, spacing_mm=(2.0, 2.0))


def test_a_huge_claimed_size_is_refused_by_name(tmp_path: Path) -> None:
    text = CASE_FILES[FRAMES_FILE].replace(b"DimSize = 4 10 12", b"DimSize = 100000 4096 4096")
    assert text != CASE_FILES[FRAMES_FILE], "fixture layout changed: DimSize line not found"
    files = dict(CASE_FILES)
    files[FRAMES_FILE] = text
    with pytest.raises(InputError, match="DimSize"):
        read_case(_write(tmp_path / "F_001", files))


def _series_bytes() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        frames = np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6)
        paths = write_dicom_series(Path(tmp), frames, times=["120000.000", "120000.125", "120000.250"])
        return {p.name: p.read_bytes() for p in paths}


SERIES_FILES = _series_bytes()


@FUZZ
@given(
    target=st.sampled_from(sorted(SERIES_FILES)),
    edits=mutations,
    cut=st.none() | st.floats(0.0, 1.0, exclude_max=True),
)
def test_mutated_dicom_series_is_read_or_refused(target: str, edits, cut) -> None:
    files = dict(SERIES_FILES)
    files[target] = _mutate(files[target], edits, cut)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _write(Path(tmp), files)
        try:
            series = read_series(folder, fps=8.0, spacing_mm=(2.0, 2.0))
        except InputError:
            return
        assert series.frames.ndim == 3
