"""Read a folder holding one DICOM series of 2D cine frames (one frame per file).

Which files are read
--------------------
Every regular file directly in the folder is read as DICOM, whatever its extension
(``.IMA``, ``.dcm`` or none). Subfolders are not entered. Files that are obviously not
images are skipped by name, without being opened:

- hidden files (name starting with ``.``);
- names starting with ``README``, ``LICENSE``, ``LICENCE``, ``COPYING``, ``NOTICE`` or
  ``CHANGELOG`` (any case);
- the extensions in :data:`IGNORED_SUFFIXES` (text, documents, spreadsheets, metadata);
- ``DICOMDIR`` (a DICOM index, not an image) and ``Thumbs.db``.

Any other file that is not DICOM (no ``DICM`` preamble), cannot be parsed, or carries no
pixel data is refused with an :class:`~hardware.errors.InputError` naming it: a series
folder must not hide stray images.

What makes a series
-------------------
All files must share one ``SeriesInstanceUID``. One exception: when *every* file carries
its own ``SeriesInstanceUID`` (as MATLAB's ``dicomwrite`` produces by default, e.g. the
ETH 4D-MRI slices), there is no series structure to check; the files are taken as one
series with a warning. All frames must have the same ``Rows`` x ``Columns``; the same
``SOPInstanceUID`` may not appear twice.

Order and times
---------------
Frames are ordered by ``AcquisitionTime`` (DICOM TM ``HHMMSS.FFFFFF``; a series that
crosses midnight is unwrapped, assuming it lasts under 12 h), then by
``InstanceNumber`` (when every file has one), then by file name in natural order
(``image2`` before ``image10``). Frame times are the acquisition times relative to the
first frame. A series without acquisition times needs the frame rate from the caller.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardware.errors import InputError
from hardware.plane_geometry import PlaneGeometry

if TYPE_CHECKING:
    import pydicom

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0

#: File name prefixes (lower case) of files skipped as obviously not images.
IGNORED_PREFIXES: tuple[str, ...] = ("readme", "license", "licence", "copying", "notice", "changelog")
#: File name extensions (lower case) of files skipped as obviously not images.
IGNORED_SUFFIXES: frozenset[str] = frozenset(
    {".txt", ".md", ".rst", ".json", ".csv", ".tsv", ".pdf", ".html", ".htm", ".xml", ".yaml", ".yml",
     ".log", ".ini", ".py", ".m", ".mat", ".zip"}
)
#: Whole file names (lower case) skipped as obviously not images.
IGNORED_NAMES: frozenset[str] = frozenset({"dicomdir", "thumbs.db"})


@dataclass(frozen=True, eq=False)
class DicomSeries:
    """One 2D cine series read from a folder.

    Attributes
    ----------
    folder : Path
        The folder read.
    series_uid : str
        The series' ``SeriesInstanceUID`` (the first frame's, for per-file series).
    frames : (T, H, W) float32 ndarray
        Frame intensities after ``RescaleSlope`` / ``RescaleIntercept``, row 0 at the top.
    times_s : (T,) float64 ndarray
        Acquisition time of each frame in s from the first (0 for frame 0).
    spacing_mm : tuple of float
        Pixel spacing (row, col) in mm.
    fps : float
        Frame rate in frames/s: 1 / median frame interval, or the caller's.
    times_from_file : bool
        Whether ``times_s`` come from ``AcquisitionTime`` (else from index / fps).
    paths : tuple of Path
        The file of each frame, in frame order.
    geometry : PlaneGeometry or None
        Where the frames lie in the patient (first frame's ``ImagePositionPatient``,
        ``ImageOrientationPatient``, ``PixelSpacing``, ``FrameOfReferenceUID`` and
        ``SliceThickness``), or None when the files do not carry position and orientation.
    """

    folder: Path
    series_uid: str
    frames: np.ndarray
    times_s: np.ndarray
    spacing_mm: tuple[float, float]
    fps: float
    times_from_file: bool
    paths: tuple[Path, ...]
    geometry: PlaneGeometry | None = None


@dataclass(slots=True)
class _Slice:
    """What one file contributes, before ordering."""

    path: Path
    series_uid: str
    sop_uid: str | None
    instance: int | None
    time_of_day_s: float | None
    spacing_mm: tuple[float, float] | None
    raw: np.ndarray  # (H, W) as stored
    slope: float
    intercept: float
    position_mm: tuple[float, ...] | None = None  # ImagePositionPatient
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient
    frame_of_reference_uid: str | None = None
    slice_thickness_mm: float | None = None
    slice_location_mm: float | None = None


def is_ignored_name(name: str) -> bool:
    """Whether a file of this name is skipped as obviously not an image (see module doc)."""
    lower = name.lower()
    if lower.startswith(".") or lower in IGNORED_NAMES or lower.startswith(IGNORED_PREFIXES):
        return True
    return Path(lower).suffix in IGNORED_SUFFIXES


def candidate_files(folder: Path) -> list[Path]:
    """The files of ``folder`` read as DICOM: regular files not skipped by name."""
    return [p for p in sorted(folder.iterdir()) if p.is_file() and not is_ignored_name(p.name)]


def parse_dicom_time(text: str) -> float:
    """Seconds since midnight from a DICOM TM value.

    Accepts ``HH``, ``HHMM``, ``HHMMSS`` and ``HHMMSS.F`` to ``HHMMSS.FFFFFF``, and the
    old ``HH:MM:SS.FFFFFF`` form.

    Raises
    ------
    ValueError
        ``text`` is not such a time.
    """
    s = text.strip().replace(":", "")
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2}(?:\.\d{1,6})?)?", s)
    if m is None:
        raise ValueError(f"{text!r} is not a DICOM time HHMMSS.FFFFFF")
    hours = int(m.group(1))
    minutes = int(m.group(2)) if m.group(2) else 0
    seconds = float(m.group(3)) if m.group(3) else 0.0
    # 60 is allowed for a leap second, as in the standard.
    if hours > 23 or minutes > 59 or seconds >= 61.0 or (m.group(3) and not m.group(2)):
        raise ValueError(f"{text!r} is not a DICOM time HHMMSS.FFFFFF")
    return hours * 3600.0 + minutes * 60.0 + seconds


def unwrap_midnight(time_of_day_s: np.ndarray) -> np.ndarray:
    """Times of day made continuous across a midnight the series crossed.

    The recorded part of the day is the circle of times minus its largest gap; for a
    series shorter than 12 h that gap is the unrecorded rest of the day. Times before
    the gap that closes the series (i.e. after midnight) get one day added.

    Parameters
    ----------
    time_of_day_s : (N,) float64 ndarray
        Seconds since midnight, in [0, 86400), any order.

    Returns
    -------
    (N,) float64 ndarray
        Same order as the input; after midnight times are shifted by 86400 s.
    """
    t = np.asarray(time_of_day_s, dtype=np.float64)
    if t.size < 2:
        return t.copy()
    ts = np.sort(t)
    gaps = np.diff(ts)
    k = int(np.argmax(gaps))
    wrap_gap = ts[0] + SECONDS_PER_DAY - ts[-1]
    if gaps[k] <= wrap_gap:
        return t.copy()
    # The series started after ts[k]'s gap and ran past midnight into [ts[0], ts[k]].
    return np.where(t <= ts[k], t + SECONDS_PER_DAY, t)


def _natural_key(name: str) -> list[Any]:
    # re.split with a capture group alternates text and digits, so positions compare alike.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_series(
    folder: str | Path,
    *,
    fps: float | None = None,
    spacing_mm: tuple[float, float] | None = None,
) -> DicomSeries:
    """Read a folder holding one DICOM series of 2D frames.

    Parameters
    ----------
    folder : str or Path
        The series folder (see the module doc for which files are read).
    fps : float, optional
        Frame rate in frames/s. Required when the files carry no ``AcquisitionTime``;
        when they do, giving it replaces their times by index / fps (logged).
    spacing_mm : (float, float), optional
        Pixel spacing (row, col) in mm. Required when the files carry no
        ``PixelSpacing``; otherwise it overrides them (a disagreement is logged).

    Returns
    -------
    DicomSeries

    Raises
    ------
    InputError
        A file is not DICOM, is truncated or corrupt, has no pixel data, belongs to
        another series, differs in size, or the series lacks spacing or times that the
        caller did not provide. The message names the file, the field and the rule.
    ValueError
        ``fps`` or ``spacing_mm`` is not positive and finite.
    """
    folder = Path(folder)
    if fps is not None and (isinstance(fps, bool) or not (math.isfinite(fps) and fps > 0.0)):
        raise ValueError(f"fps must be finite and > 0 frames/s, got {fps!r}")
    if spacing_mm is not None:
        values = tuple(spacing_mm)
        if len(values) != 2 or not all(math.isfinite(v) and v > 0.0 for v in values):
            raise ValueError(f"spacing_mm must be two finite values > 0 mm (row, col), got {spacing_mm!r}")
        spacing_mm = (float(values[0]), float(values[1]))
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise InputError(folder, "series folder", f"{what}; expected a folder holding one DICOM series")
    files = candidate_files(folder)
    if not files:
        raise InputError(folder, "files", "no DICOM files: the folder is empty or holds only skipped files")

    slices = [_read_slice(p) for p in files]
    series_uid = _check_one_series(folder, slices)
    _check_unique_instances(slices)
    ordered, times_s = _order(slices)
    frames = _stack(ordered)
    if times_s is None and fps is None and spacing_mm is None and all(s.spacing_mm is None for s in ordered):
        # Name both missing values at once rather than one per attempt.
        raise InputError(folder, "AcquisitionTime, PixelSpacing", "absent from every file: pass the frame rate "
                         "(--fps) and the pixel spacing in mm (--spacing-mm ROW,COL)")
    row_col = _series_spacing(folder, ordered, spacing_mm)
    times_s, series_fps, from_file = _series_times(folder, frames.shape[0], times_s, fps)

    log.info("read DICOM series %s from %s: %d frames %dx%d, %.3fx%.3f mm, %.3f fps (%s)", series_uid, folder,
             *frames.shape, *row_col, series_fps, "AcquisitionTime" if from_file else "given rate")
    return DicomSeries(
        folder=folder,
        series_uid=series_uid,
        frames=frames,
        times_s=times_s,
        spacing_mm=row_col,
        fps=series_fps,
        times_from_file=from_file,
        paths=tuple(s.path for s in ordered),
        geometry=_plane_geometry(ordered, row_col, (int(frames.shape[1]), int(frames.shape[2]))),
    )


def _read_slice(path: Path) -> _Slice:
    # pydicom warns (UserWarning) about values that break their VR's format, lazily as
    # they are accessed. The rules that matter here are checked and refused explicitly
    # below; the rest are vendor quirks, logged rather than printed as warnings.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _read_slice_checked(path)
        except InputError:
            raise
        except Exception as exc:
            # pydicom parses elements lazily: a corrupt element raises (NotImplementedError,
            # KeyError, struct.error, ...) only when it is first read, anywhere above.
            raise InputError(path, "file", f"corrupt DICOM ({type(exc).__name__}: {exc})") from exc
    for w in caught:
        log.debug("%s: pydicom: %s", path, w.message)
    return result


def _read_slice_checked(path: Path) -> _Slice:
    # pydicom is imported on first use: a replay of any other format skips its ~0.25 s.
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise InputError(path, "file", "not a DICOM file (no 'DICM' preamble, or truncated): remove it from the "
                         "series folder") from exc
    except OSError as exc:
        raise InputError(path, "file", f"cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # pydicom raises many types on malformed input
        raise InputError(path, "file", f"corrupt DICOM ({type(exc).__name__}: {exc})") from exc

    if "PixelData" not in ds:
        raise InputError(path, "PixelData", "absent: not an image (or the file is truncated); a series folder "
                         "must hold only the series' image files")
    series_uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if not series_uid:
        raise InputError(path, "SeriesInstanceUID", "missing: cannot tell which series the file belongs to")
    n_frames = _int_or_none(path, ds, "NumberOfFrames")
    if n_frames is not None and n_frames != 1:
        raise InputError(path, "NumberOfFrames", f"{n_frames}: multi-frame files are not supported; export the "
                         "cine as one file per frame")
    samples = _int_or_none(path, ds, "SamplesPerPixel")
    if samples is not None and samples != 1:
        raise InputError(path, "SamplesPerPixel", f"{samples}: expected a grey-level image (1 sample per pixel)")

    time_text = str(ds.get("AcquisitionTime", "") or "").strip()
    time_of_day_s = None
    if time_text:
        try:
            time_of_day_s = parse_dicom_time(time_text)
        except ValueError as exc:
            raise InputError(path, "AcquisitionTime", str(exc)) from None

    spacing = None
    if ds.get("PixelSpacing") is not None:
        try:
            values = [float(v) for v in ds.PixelSpacing]
        except (TypeError, ValueError) as exc:
            raise InputError(path, "PixelSpacing", f"not numbers ({exc})") from None
        if len(values) != 2 or not all(math.isfinite(v) and v > 0.0 for v in values):
            raise InputError(path, "PixelSpacing", f"{values}: must be two finite values > 0 mm (row, col)")
        spacing = (values[0], values[1])

    position = _floats_or_none(path, ds, "ImagePositionPatient", 3)
    orientation = _floats_or_none(path, ds, "ImageOrientationPatient", 6)
    thickness = _floats_or_none(path, ds, "SliceThickness", 1)
    location = _floats_or_none(path, ds, "SliceLocation", 1)

    slope = _float_or(path, ds, "RescaleSlope", 1.0)
    intercept = _float_or(path, ds, "RescaleIntercept", 0.0)

    raw = _decode_pixels(path, ds)
    if raw.ndim != 2:
        raise InputError(path, "PixelData", f"decodes to shape {raw.shape}: expected one 2D frame")
    sop_uid = str(ds.get("SOPInstanceUID", "") or "").strip() or None
    return _Slice(
        path=path,
        series_uid=series_uid,
        sop_uid=sop_uid,
        instance=_int_or_none(path, ds, "InstanceNumber"),
        time_of_day_s=time_of_day_s,
        spacing_mm=spacing,
        raw=raw,
        slope=slope,
        intercept=intercept,
        position_mm=position,
        orientation=orientation,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or "").strip() or None,
        slice_thickness_mm=thickness[0] if thickness is not None else None,
        slice_location_mm=location[0] if location is not None else None,
    )


#: Uncompressed little-endian transfer syntaxes whose pixels :func:`_decode_pixels` reads directly.
#: (pydicom.uid.ImplicitVRLittleEndian and ExplicitVRLittleEndian, spelled out so that this
#: module does not import pydicom.)
_NATIVE_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def _decode_pixels(path: Path, ds: pydicom.Dataset) -> np.ndarray:
    """The (Rows, Columns) pixel array as stored.

    The common case (uncompressed little-endian, 8 or 16 bits, no sign extension
    needed) is read straight from the buffer, which halves the load time of a long
    series; everything else goes through pydicom's decoders.
    """
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    rows, cols = _int_or_none(path, ds, "Rows"), _int_or_none(path, ds, "Columns")
    bits = _int_or_none(path, ds, "BitsAllocated")
    signed = _int_or_none(path, ds, "PixelRepresentation") == 1
    stored = _int_or_none(path, ds, "BitsStored")
    if (
        syntax in _NATIVE_LITTLE_ENDIAN
        and rows and cols and bits in (8, 16)
        and (not signed or stored == bits)
    ):
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        data = ds.PixelData
        count = rows * cols
        if len(data) < count * dtype.itemsize:
            raise InputError(path, "PixelData", f"{len(data)} bytes, fewer than the {count * dtype.itemsize} of "
                             f"{rows} x {cols} x {bits} bits: the file is truncated")
        return np.frombuffer(data, dtype=dtype, count=count).reshape(rows, cols)
    try:
        return ds.pixel_array
    except Exception as exc:  # decoders raise many types on short or odd data
        raise InputError(path, "PixelData", f"cannot be decoded, the file may be truncated ({type(exc).__name__}: "
                         f"{exc})") from exc


def _int_or_none(path: Path, ds: pydicom.Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(path, keyword, f"{value!r} is not an integer") from None


def _floats_or_none(path: Path, ds: pydicom.Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    """The ``n`` finite numbers of ``keyword``, None when absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    # pydicom gives a multi-valued element as a list-like MultiValue, a single one as a number.
    items = [value] if isinstance(value, (int, float)) else list(value)
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError) as exc:
        raise InputError(path, keyword, f"not numbers ({exc})") from None
    if len(numbers) != n or not all(math.isfinite(v) for v in numbers):
        raise InputError(path, keyword, f"{list(numbers)}: must be {n} finite number{'s' if n > 1 else ''}")
    return numbers


def _plane_geometry(ordered: list[_Slice], row_col: tuple[float, float],
                    shape: tuple[int, int]) -> PlaneGeometry | None:
    """The series' plane (its first frame's), or None when position or orientation is absent."""
    first = ordered[0]
    if first.position_mm is None or first.orientation is None:
        return None
    try:
        geometry = PlaneGeometry(np.array(first.position_mm), np.array(first.orientation[:3]),
                                 np.array(first.orientation[3:]), row_col, shape,
                                 frame_of_reference_uid=first.frame_of_reference_uid,
                                 slice_thickness_mm=first.slice_thickness_mm,
                                 slice_location_mm=first.slice_location_mm)
    except ValueError as exc:
        raise InputError(first.path, "ImageOrientationPatient", str(exc)) from None
    for s in ordered[1:]:
        if s.position_mm is None or s.orientation is None:
            continue
        try:
            other = PlaneGeometry(np.array(s.position_mm), np.array(s.orientation[:3]), np.array(s.orientation[3:]),
                                  row_col, shape)
        except ValueError as exc:
            raise InputError(s.path, "ImageOrientationPatient", str(exc)) from None
        if not geometry.same_plane(other):
            # A cine images one fixed plane; a moved plane is reported, and the first one used.
            log.warning("%s: ImagePositionPatient / ImageOrientationPatient differ from the first frame's: the "
                        "series' plane is taken from %s", s.path, first.path.name)
            break
    return geometry


def _float_or(path: Path, ds: pydicom.Dataset, keyword: str, default: float) -> float:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise InputError(path, keyword, f"{value!r} is not a number") from None
    if not math.isfinite(result):
        raise InputError(path, keyword, f"{value!r} must be finite")
    return result


def _check_one_series(folder: Path, slices: list[_Slice]) -> str:
    first_file: dict[str, Path] = {}
    for s in slices:
        first_file.setdefault(s.series_uid, s.path)
    if len(first_file) == 1:
        return slices[0].series_uid
    if len(first_file) == len(slices):
        log.warning("%s: every one of the %d files is its own series (SeriesInstanceUID differs in each); reading "
                    "them as one series", folder, len(slices))
        return slices[0].series_uid
    (uid_a, path_a), (uid_b, path_b) = list(first_file.items())[:2]
    raise InputError(folder, "SeriesInstanceUID", f"the folder mixes {len(first_file)} series: {uid_a} "
                     f"({path_a.name}) and {uid_b} ({path_b.name}); keep one series per folder")


def _check_unique_instances(slices: list[_Slice]) -> None:
    seen: dict[str, Path] = {}
    for s in slices:
        if s.sop_uid is None:
            continue
        if s.sop_uid in seen:
            raise InputError(s.path, "SOPInstanceUID", f"same image as {seen[s.sop_uid].name}: remove the duplicate")
        seen[s.sop_uid] = s.path


def _order(slices: list[_Slice]) -> tuple[list[_Slice], np.ndarray | None]:
    """Slices in frame order, and their unwrapped times of day (s) when every file has one."""
    timed = [s.time_of_day_s is not None for s in slices]
    if any(timed) and not all(timed):
        missing = next(s for s in slices if s.time_of_day_s is None)
        raise InputError(missing.path, "AcquisitionTime", f"missing here but present in {sum(timed)} other files: "
                         "frame times would be unknown for some frames")
    use_instance = all(s.instance is not None for s in slices)
    if all(timed):
        times = unwrap_midnight(np.array([s.time_of_day_s for s in slices], dtype=np.float64))
    else:
        times = np.zeros(len(slices), dtype=np.float64)
    keys = [
        (float(times[i]), s.instance if use_instance else 0, _natural_key(s.path.name))
        for i, s in enumerate(slices)
    ]
    order = sorted(range(len(slices)), key=keys.__getitem__)
    ordered = [slices[i] for i in order]
    return ordered, (times[order] if all(timed) else None)


def _stack(ordered: list[_Slice]) -> np.ndarray:
    first = ordered[0]
    height, width = first.raw.shape
    for s in ordered[1:]:
        if s.raw.shape != (height, width):
            rows, cols = s.raw.shape
            raise InputError(s.path, "Rows x Columns", f"{rows} x {cols} differs from {height} x {width} of the first "
                             f"frame ({first.path.name}): all frames must have the same size")
    frames = np.empty((len(ordered), height, width), dtype=np.float32)
    for i, s in enumerate(ordered):
        frames[i] = s.raw
        if s.slope != 1.0 or s.intercept != 0.0:
            frames[i] *= np.float32(s.slope)
            frames[i] += np.float32(s.intercept)
    return frames


def _series_spacing(folder: Path, ordered: list[_Slice], spacing_mm: tuple[float, float] | None) -> tuple[float, float]:
    with_spacing = [s for s in ordered if s.spacing_mm is not None]
    if with_spacing and len(with_spacing) != len(ordered):
        missing = next(s for s in ordered if s.spacing_mm is None)
        raise InputError(missing.path, "PixelSpacing", f"missing here but present in {len(with_spacing)} other "
                         "files of the series")
    file_spacing = with_spacing[0].spacing_mm if with_spacing else None
    for s in with_spacing[1:]:
        assert s.spacing_mm is not None and file_spacing is not None
        if not np.allclose(s.spacing_mm, file_spacing, rtol=1e-6, atol=0.0):
            raise InputError(s.path, "PixelSpacing", f"{s.spacing_mm} differs from {file_spacing} of "
                             f"{with_spacing[0].path.name}: all frames must share one spacing")
    if spacing_mm is not None:
        if file_spacing is not None and not np.allclose(spacing_mm, file_spacing, rtol=1e-6, atol=0.0):
            log.warning("%s: files give PixelSpacing %s mm; using the %s mm given", folder, file_spacing, spacing_mm)
        return spacing_mm
    if file_spacing is None:
        raise InputError(folder, "PixelSpacing", "absent from every file: pass the pixel spacing in mm "
                         "(--spacing-mm ROW,COL)")
    return file_spacing


def _series_times(
    folder: Path, n_frames: int, time_of_day_s: np.ndarray | None, fps: float | None
) -> tuple[np.ndarray, float, bool]:
    """Frame times from the first (s), frame rate (frames/s), and whether they come from the files."""
    if fps is not None:
        if time_of_day_s is not None:
            log.warning("%s: replacing AcquisitionTime frame times by index / %g fps as given", folder, fps)
        return np.arange(n_frames, dtype=np.float64) / fps, float(fps), False
    if time_of_day_s is None:
        raise InputError(folder, "AcquisitionTime", "absent from every file, so frame times are unknown: pass the "
                         "frame rate (--fps)")
    if n_frames < 2:
        raise InputError(folder, "AcquisitionTime", "a single frame gives no frame rate: pass the frame rate (--fps)")
    # TM values resolve 1 us: rounding removes the float noise of subtracting times of day.
    times_s = np.round(time_of_day_s - time_of_day_s[0], 6)
    intervals = np.diff(times_s)
    period_s = float(np.median(intervals))
    if not period_s > 0.0:
        raise InputError(folder, "AcquisitionTime", "most frames share their acquisition time with the previous one: "
                         "the times cannot pace the series; pass the frame rate (--fps)")
    gaps = int(np.count_nonzero(intervals > 1.5 * period_s))
    if gaps:
        log.warning("%s: %d frame intervals exceed 1.5 x the median %.4f s (dropped frames?)", folder, gaps, period_s)
    return times_s, 1.0 / period_s, True
