"""Small synthetic recordings written into a test's tmp_path (never into the repo)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

UID_ROOT = "1.2.826.0.1.3680043.8.498."


def uid(tag: str) -> str:
    """A valid, deterministic UID derived from ``tag``."""
    return generate_uid(prefix=UID_ROOT, entropy_srcs=[tag])


def write_dicom_frame(
    path: Path,
    pixels: np.ndarray,
    *,
    series_uid: str,
    sop_uid: str | None = None,
    instance: int | None = None,
    acquisition_time: str | None = None,
    spacing_mm: tuple[float, float] | None = (2.0, 2.0),
    slope: float | None = None,
    intercept: float | None = None,
    bits_stored: int | None = None,
    with_pixels: bool = True,
    number_of_frames: int | None = None,
) -> Path:
    """Write one MR image file (explicit VR little endian) holding ``pixels``.

    ``pixels`` may be uint8, uint16 or int16 (H, W); the DICOM pixel module follows it.
    """
    pixels = np.ascontiguousarray(pixels)
    sop = sop_uid or uid(f"{path}-sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop
    ds.Modality = "MR"
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = series_uid
    if instance is not None:
        ds.InstanceNumber = instance
    if acquisition_time is not None:
        ds.AcquisitionTime = acquisition_time
    if spacing_mm is not None:
        ds.PixelSpacing = [f"{spacing_mm[0]:g}", f"{spacing_mm[1]:g}"]
    if slope is not None:
        ds.RescaleSlope = f"{slope:g}"
    if intercept is not None:
        ds.RescaleIntercept = f"{intercept:g}"
    if number_of_frames is not None:
        ds.NumberOfFrames = number_of_frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if with_pixels:
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom_series(
    folder: Path,
    frames: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    times: Sequence[str | None] | None = None,
    instances: Sequence[int | None] | None = None,
    series_uid: str | None = None,
    spacing_mm: tuple[float, float] | None = (2.0, 2.0),
) -> list[Path]:
    """Write (T, H, W) ``frames`` as one series, file i named ``names[i]``."""
    folder.mkdir(parents=True, exist_ok=True)
    n = frames.shape[0]
    names = names or [f"frame{i:03d}.dcm" for i in range(n)]
    times = times or [None] * n
    instances = instances or [None] * n
    series = series_uid or uid(f"{folder}-series")
    return [
        write_dicom_frame(
            folder / names[i],
            frames[i],
            series_uid=series,
            instance=instances[i],
            acquisition_time=times[i],
            spacing_mm=spacing_mm,
        )
        for i in range(n)
    ]


def index_frames(n: int, shape: tuple[int, int] = (6, 5)) -> np.ndarray:
    """(n, H, W) uint16 frames whose pixels encode their true index (and vary in space)."""
    base = np.arange(shape[0] * shape[1], dtype=np.uint16).reshape(shape)
    return np.stack([base + np.uint16(1000 * (i + 1)) for i in range(n)])


def dicom_time(seconds_of_day: float) -> str:
    """DICOM TM text HHMMSS.FFFFFF for a time of day in seconds."""
    micro = round(seconds_of_day * 1e6)
    hours, rest = divmod(micro, 3600 * 10**6)
    minutes, rest = divmod(rest, 60 * 10**6)
    seconds, micro = divmod(rest, 10**6)
    return f"{hours:02d}{minutes:02d}{seconds:02d}.{micro:06d}"


def writable_copy(src: Path, dst: Path) -> Path:
    """Copy a tree with fresh, writable permissions (the shared data is read-only)."""
    for item in sorted(src.rglob("*")):
        target = dst / item.relative_to(src)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item, target)
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def truncate(path: Path, n_bytes: int) -> Path:
    """Keep only the first ``n_bytes`` of ``path`` (negative: drop that many from the end)."""
    data = path.read_bytes()
    path.write_bytes(data[:n_bytes])
    return path
