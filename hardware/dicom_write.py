"""Write a 2D cine series as a folder of DICOM MR image files (one frame per file).

The files are what :mod:`hardware.dicom_series` reads back: one ``SeriesInstanceUID``,
``InstanceNumber`` 1..T, ``AcquisitionTime`` from the frame times, ``PixelSpacing``
(row, col), 16-bit pixels stored as they are given (unsigned when every value is >= 0,
signed otherwise), no rescale. UIDs are derived from ``uid_seed`` so that the same input
writes the same files.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from hardware.errors import InputError
from hardware.plane_geometry import PlaneGeometry

log = logging.getLogger(__name__)

#: UID root for files this project writes (pydicom's documented root for generated UIDs).
UID_ROOT = "1.2.826.0.1.3680043.8.498."
#: Time of day of the first frame when the caller gives none (12:00:00).
DEFAULT_START_S = 12 * 3600.0


def decimal_string(value: float) -> str:
    """The shortest text of ``value`` that fits a DICOM DS (16 characters)."""
    text = repr(float(value))
    precision = 15
    while len(text) > 16:
        text = f"{value:.{precision}g}"
        precision -= 1
    return text


def _dicom_time(seconds_of_day: float) -> str:
    total_us = int(round(seconds_of_day * 1e6)) % (86400 * 1_000_000)
    s, us = divmod(total_us, 1_000_000)
    return f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}.{us:06d}"


def new_dataset(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An empty DICOM file dataset of that SOP class and instance (explicit VR little
    endian file meta), for the caller to fill and save."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def write_series(
    folder: str | Path,
    frames: np.ndarray,
    times_s: np.ndarray,
    spacing_mm: tuple[float, float],
    *,
    uid_seed: str,
    series_description: str = "",
    slice_thickness_mm: float | None = None,
    start_time_of_day_s: float = DEFAULT_START_S,
    geometry: PlaneGeometry | None = None,
) -> list[Path]:
    """Write frames as ``folder/image0001.dcm`` ... in frame order.

    Parameters
    ----------
    folder : str or Path
        Created if missing; must not already hold files.
    frames : (T, H, W) integer ndarray
        Values must fit 16 bits (uint16, or int16 when any is negative).
    times_s : (T,) float ndarray
        Acquisition time of each frame from the first (s), increasing; stored to 1 us.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm.
    uid_seed : str
        Makes the series and instance UIDs (same seed, same UIDs).
    geometry : PlaneGeometry, optional
        The frames' plane: written as ``ImagePositionPatient``, ``ImageOrientationPatient``,
        ``SliceLocation`` (when known) and, when it has one, ``FrameOfReferenceUID`` (else
        one is made from ``uid_seed``) and ``SliceThickness`` (unless given). Its spacing
        and shape must match ``spacing_mm`` and the frames.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InputError
        ``folder`` exists and is not empty.
    ValueError
        An argument that breaks the rules above.
    """
    folder = Path(folder)
    frames = np.asarray(frames)
    if frames.ndim != 3 or 0 in frames.shape or not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(f"frames must be a non-empty (T, H, W) integer array, got {frames.dtype} {frames.shape}")
    lo, hi = int(frames.min()), int(frames.max())
    if lo >= 0 and hi <= 65535:
        dtype, signed = np.dtype("<u2"), 0
    elif -32768 <= lo and hi <= 32767:
        dtype, signed = np.dtype("<i2"), 1
    else:
        raise ValueError(f"frames hold {lo} to {hi}: outside what 16-bit DICOM pixels can store")
    times = np.asarray(times_s, dtype=np.float64)
    if times.shape != (frames.shape[0],) or not np.isfinite(times).all() or (np.diff(times) <= 0).any():
        raise ValueError(f"times_s must be {frames.shape[0]} finite increasing values (s)")
    if len(spacing_mm) != 2 or not all(math.isfinite(v) and v > 0 for v in spacing_mm):
        raise ValueError(f"spacing_mm must be two finite values > 0 mm, got {spacing_mm!r}")
    if folder.exists() and any(folder.iterdir()):
        raise InputError(folder, "output folder", "already holds files: write a DICOM series to a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)

    series_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[uid_seed, "series"])
    study_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[uid_seed, "study"])
    frame_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[uid_seed, "frame-of-reference"])
    n, rows, cols = frames.shape
    if geometry is not None:
        if geometry.shape != (rows, cols) or not np.allclose(geometry.spacing_mm, spacing_mm, rtol=1e-9, atol=0.0):
            raise ValueError(f"geometry is {geometry.shape} px at {geometry.spacing_mm} mm but the frames are "
                             f"{(rows, cols)} px at {tuple(spacing_mm)} mm")
        frame_uid = geometry.frame_of_reference_uid or frame_uid
        if slice_thickness_mm is None:
            slice_thickness_mm = geometry.slice_thickness_mm
    paths: list[Path] = []
    width = max(4, len(str(n)))
    for i in range(n):
        sop_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[uid_seed, "instance", str(i)])
        ds = new_dataset(MRImageStorage, sop_uid)
        ds.Modality = "MR"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = 1
        ds.InstanceNumber = i + 1
        ds.AcquisitionTime = _dicom_time(start_time_of_day_s + float(times[i]))
        if series_description:
            ds.SeriesDescription = series_description[:64]
        if slice_thickness_mm is not None:
            ds.SliceThickness = decimal_string(slice_thickness_mm)
        ds.PixelSpacing = [decimal_string(spacing_mm[0]), decimal_string(spacing_mm[1])]
        if geometry is not None:
            ds.ImagePositionPatient = [decimal_string(v) for v in geometry.position_mm]
            ds.ImageOrientationPatient = [decimal_string(v) for v in geometry.orientation]
            if geometry.slice_location_mm is not None:
                ds.SliceLocation = decimal_string(geometry.slice_location_mm)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = signed
        ds.PixelData = np.ascontiguousarray(frames[i], dtype=dtype).tobytes()
        path = folder / f"image{i + 1:0{width}d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    log.info("wrote DICOM series %s to %s: %d frames %dx%d", series_uid, folder, n, rows, cols)
    return paths
