"""DICOM RT Structure Sets: read one ROI's contours, in patient coordinates.

A physicist's target is the GTV contoured in treatment planning and stored in an RT
Structure Set (``RTSTRUCT``). This module reads it with pydicom, the library the project
already reads DICOM with. Candidates looked at: rt-utils (last release 2023, builds masks
only on the 3D image series the structure set references, and pulls in the full
opencv-python beside our headless build) and highdicom (no RT Structure Set support; it
covers segmentations, structured reports and presentation states). The structure set's
layout is small and fixed (PS3.3 C.8.8.5-6), so reading it directly is short and every rule
can be checked with a clear message:

- ``StructureSetROISequence``: ``ROINumber``, ``ROIName``, ``ReferencedFrameOfReferenceUID``;
- ``ROIContourSequence``: per ROI (``ReferencedROINumber``), a ``ContourSequence`` of
  contours, each with ``ContourGeometricType`` and ``ContourData`` (x, y, z triplets, mm).

Only ``CLOSED_PLANAR`` contours bound a volume; points and open contours are skipped
(logged). How contours become a mask on the cine plane is
:func:`hardware.contour_plane.mask_on_plane`. :func:`write_rtstruct` writes a structure
set from contours (for tests and for exporting a target drawn on a cine frame), and reads
back through :func:`read_roi` unchanged.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware.errors import InputError

log = logging.getLogger(__name__)

#: RT Structure Set Storage SOP class.
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass(frozen=True, eq=False)
class StructureROI:
    """One ROI of an RT Structure Set.

    Attributes
    ----------
    name : str
        ``ROIName``.
    number : int
        ``ROINumber``.
    frame_of_reference_uid : str or None
        ``ReferencedFrameOfReferenceUID``: the patient coordinate system of the contours.
    contours : tuple of (N, 3) float64 ndarray
        The closed planar contours, patient coordinates (mm), N >= 3 points each.
    source : Path
        The file read.
    """

    name: str
    number: int
    frame_of_reference_uid: str | None
    contours: tuple[np.ndarray, ...]
    source: Path


def _read_dataset(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise InputError(path, "--target-rtstruct", "does not exist" if not path.exists() else "is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise InputError(path, "file", "not a DICOM file (no 'DICM' preamble, or truncated)") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on malformed input
        raise InputError(path, "file", f"corrupt DICOM ({type(exc).__name__}: {exc})") from None
    modality = str(ds.get("Modality", "") or "")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if modality != "RTSTRUCT" and sop_class != RTSTRUCT_SOP_CLASS:
        raise InputError(path, "Modality", f"{modality or 'absent'}: not an RT Structure Set (RTSTRUCT)")
    return ds


def _roi_table(path: Path, ds: Any) -> list[tuple[int, str, str | None]]:
    """(ROINumber, ROIName, ReferencedFrameOfReferenceUID) of every ROI."""
    table = []
    for i, item in enumerate(ds.get("StructureSetROISequence", None) or []):
        number = item.get("ROINumber")
        if number is None:
            raise InputError(path, f"StructureSetROISequence[{i}].ROINumber", "missing: every ROI needs a number")
        name = str(item.get("ROIName", "") or "").strip()
        uid = str(item.get("ReferencedFrameOfReferenceUID", "") or "").strip() or None
        table.append((int(number), name, uid))
    if not table:
        raise InputError(path, "StructureSetROISequence", "empty or absent: the structure set holds no ROI")
    # An ROI without its own ReferencedFrameOfReferenceUID is in the set's frame of
    # reference when the set names exactly one.
    frames = [str(item.get("FrameOfReferenceUID", "") or "").strip()
              for item in ds.get("ReferencedFrameOfReferenceSequence", None) or []]
    frames = [uid for uid in frames if uid]
    if len(frames) == 1:
        table = [(number, name, uid or frames[0]) for number, name, uid in table]
    return table


def roi_names(path: str | Path) -> list[str]:
    """The ``ROIName`` of every ROI in the structure set at ``path``, in file order."""
    path = Path(path)
    return [name for _, name, _ in _roi_table(path, _read_dataset(path))]


def read_roi(path: str | Path, name: str) -> StructureROI:
    """The ROI called ``name`` (exactly, else the one match ignoring case).

    Raises
    ------
    InputError
        The file is not an RT Structure Set, the ROI is not there (the message lists
        the names present), or its contours break the format's rules.
    """
    path = Path(path)
    ds = _read_dataset(path)
    table = _roi_table(path, ds)
    matches = [row for row in table if row[1] == name] or [row for row in table if row[1].lower() == name.lower()]
    if len(matches) != 1:
        present = ", ".join(repr(n) for _, n, _ in table)
        what = "not found" if not matches else f"matches {len(matches)} ROIs"
        raise InputError(path, "--roi", f"{name!r} {what}; the structure set holds: {present}")
    number, roi_name, uid = matches[0]
    items = [item for item in ds.get("ROIContourSequence", None) or [] if item.get("ReferencedROINumber") == number]
    if not items:
        raise InputError(path, "ROIContourSequence", f"has no entry for ROI {roi_name!r} (ROINumber {number}): "
                         "the ROI has no contours")
    contours: list[np.ndarray] = []
    skipped: dict[str, int] = {}
    for item in items:
        for j, contour in enumerate(item.get("ContourSequence", None) or []):
            kind = str(contour.get("ContourGeometricType", "") or "").strip().upper()
            field = f"ROI {roi_name!r} ContourSequence[{j}]"
            if kind != "CLOSED_PLANAR":
                skipped[kind or "no type"] = skipped.get(kind or "no type", 0) + 1
                continue
            data = contour.get("ContourData")
            try:
                points = np.asarray([float(v) for v in (data or [])], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(path, f"{field}.ContourData", f"not numbers ({exc})") from None
            if points.size % 3 or points.size < 9:
                raise InputError(path, f"{field}.ContourData", f"{points.size} values: a closed contour needs x, y, "
                                 "z triplets of at least 3 points")
            if not np.isfinite(points).all():
                raise InputError(path, f"{field}.ContourData", "holds a value that is not finite")
            contours.append(points.reshape(-1, 3))
    for kind, count in skipped.items():
        log.info("%s: ROI %r: %d %s contour(s) skipped (only CLOSED_PLANAR bounds a volume)", path, roi_name,
                 count, kind)
    if not contours:
        raise InputError(path, f"ROI {roi_name!r}", "has no CLOSED_PLANAR contour: nothing bounds a target")
    log.info("%s: ROI %r: %d contours, %d points", path, roi_name, len(contours), sum(len(c) for c in contours))
    return StructureROI(roi_name, number, uid, tuple(contours), path)


def write_rtstruct(
    path: str | Path,
    rois: Mapping[str, Sequence[np.ndarray]],
    frame_of_reference_uid: str,
    *,
    uid_seed: str,
    label: str = "maestro",
) -> Path:
    """Write an RT Structure Set holding ``rois`` (name -> closed planar contours).

    Parameters
    ----------
    path : str or Path
        File to write (must not exist).
    rois : mapping of str to sequence of (N, 3) float ndarray
        Per ROI, its closed planar contours in patient coordinates (mm), N >= 3 points.
    frame_of_reference_uid : str
        The patient coordinate system the contours are in (the image series').
    uid_seed : str
        Seed of the file's UIDs: the same input writes the same file.
    label : str
        ``StructureSetLabel``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        No ROI, an ROI without contours, or a contour that is not (N >= 3, 3) finite.
    InputError
        ``path`` exists already.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import generate_uid

    from hardware.dicom_write import UID_ROOT, decimal_string, new_dataset

    path = Path(path)
    if path.exists():
        raise InputError(path, "output file", "already exists: an RT Structure Set is written to a new file")
    if not rois:
        raise ValueError("rois is empty: a structure set needs at least one ROI")
    sop_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[uid_seed, "rtstruct"])
    ds = new_dataset(RTSTRUCT_SOP_CLASS, sop_uid)
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=[uid_seed, "study"])
    ds.SeriesInstanceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=[uid_seed, "rtstruct-series"])
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.StructureSetLabel = label[:16]
    ds.StructureSetDate = ""
    ds.StructureSetTime = ""
    ref = Dataset()
    ref.FrameOfReferenceUID = frame_of_reference_uid
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([ref])
    roi_items, contour_items, observation_items = [], [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        if not contours:
            raise ValueError(f"ROI {name!r} has no contour")
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_of_reference_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi_items.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = [255, 0, 0]
        sequence = []
        for j, points in enumerate(contours):
            points = np.asarray(points, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] < 3 or not np.isfinite(points).all():
                raise ValueError(f"ROI {name!r} contour {j}: must be (N >= 3, 3) finite points, got {points.shape}")
            contour = Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = int(points.shape[0])
            contour.ContourData = [decimal_string(v) for v in points.ravel()]
            sequence.append(contour)
        item.ContourSequence = DicomSequence(sequence)
        contour_items.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = ""
        observation.ROIInterpreter = ""
        observation_items.append(observation)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(observation_items)
    ds.save_as(path, enforce_file_format=True)
    log.info("wrote RT Structure Set %s: %d ROI(s)", path, len(rois))
    return path
