"""Replay a recorded cine series as a :class:`~hardware.frame.FrameSource`.

A replay reads the whole recording at construction (so that every input problem is
refused before the first frame, and no file I/O happens while frames are handed over),
then hands frames over one by one, either as fast as the consumer takes them or paced
at the recorded frame times.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from hardware import cine_raw, dicom_series, roi_contours, sendexternal, trackrad
from hardware.errors import InputError
from hardware.frame import Frame
from hardware.plane_geometry import PlaneGeometry

log = logging.getLogger(__name__)

TRACKRAD = "TrackRAD2025"
DICOM = "DICOM"
SENDEXTERNAL = "MRIdian SendExternal"
CINE_RAW = "MRIdian cine raw"
#: Recording files (not folders) by suffix (lower case).
FILE_FORMATS = {".dat": SENDEXTERNAL, ".raw": CINE_RAW}


def detect_format(path: str | Path) -> str:
    """Which recording format a path holds.

    A ``.dat`` file is a SendExternal stream (:data:`SENDEXTERNAL`), a ``.raw`` file a
    cine raw file (:data:`CINE_RAW`). A folder with an ``images/`` subfolder is a
    TrackRAD2025 case (:data:`TRACKRAD`); a folder holding files that are not skipped by
    name (see :mod:`hardware.dicom_series`) is taken as a DICOM series (:data:`DICOM`),
    whose reader then checks every file.

    Raises
    ------
    InputError
        The path does not exist, is a file of another kind, is an empty folder, or holds
        neither folder format.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "recording", "does not exist")
    if not path.is_dir():
        if path.suffix.lower() in FILE_FORMATS:
            return FILE_FORMATS[path.suffix.lower()]
        raise InputError(path, "recording", "is a file but not a .dat (SendExternal) or .raw (cine raw) recording; "
                         "pass one of those, or the folder of a TrackRAD2025 case or of one DICOM series")
    if (path / "images").is_dir():
        return TRACKRAD
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise InputError(path, "recording", "the folder is empty")
    files = dicom_series.candidate_files(path)
    if any(p.suffix.lower() == ".mha" for p in files):
        hint = " (this looks like a case's images/ folder: pass the case folder above it)" if path.name == "images" else ""
        raise InputError(path, "recording", f"holds .mha files but no images/ subfolder: a TrackRAD2025 case keeps "
                         f"its frames in images/<id>_frames.mha{hint}")
    if not files:
        raise InputError(path, "recording", "holds neither a TrackRAD2025 case (images/<id>_frames.mha) nor DICOM "
                         "files")
    return DICOM


class ReplaySource:
    """Frames of a recording replayed: a TrackRAD2025 case folder, a DICOM series
    folder, a SendExternal ``.dat`` file or a cine ``.raw`` file.

    Implements :class:`~hardware.frame.FrameSource`. Iterating yields each frame once,
    in order: the source is single-pass, like a live scanner. Breaking out of a loop and
    iterating again resumes at the next frame. Frames are never dropped: a consumer
    slower than the recording receives frames late, and ``t_recv_s`` shows it.

    Parameters
    ----------
    path : str or Path
        A TrackRAD2025 case folder, a folder holding one DICOM series, a ``.dat`` file
        (SendExternal records, see :mod:`hardware.sendexternal`) or a ``.raw`` file
        (see :mod:`hardware.cine_raw`).
    fps : float, optional
        Frame rate (frames/s) for a recording that gives none (a ``.raw`` file, a
        ``.dat`` file without the ``Maestro.AcquisitionTime_s`` key); when the recording
        has its own frame times or rate, this replaces them (logged).
    spacing_mm : (float, float), optional
        Pixel spacing (row, col) in mm for a recording that gives none; otherwise it
        overrides the files' (a disagreement is logged).
    realtime : bool
        ``False`` (default): hand frames over as fast as they are taken. ``True``: hand
        frame i over at ``t_start + t_acq_s[i]``, where ``t_start`` is the clock when
        frame 0 (or the first frame taken) was requested.
    clock : callable returning float seconds
        Stamps ``t_recv_s`` and paces real-time replay; ``time.perf_counter`` by default.
    sleep : callable taking float seconds
        Waits in real-time replay; ``time.sleep`` by default.
    contours : str or Path, optional
        A tracking-contour ROI binary (see :mod:`hardware.roi_contours`) for this
        recording. The contour with ``cine_id`` 0 becomes the first frame's target
        (``reference_label``, replacing any first label of the recording), and every
        contour is rasterised into ``reference_masks`` for comparison with tracking.

    Attributes
    ----------
    description : str
        Format, path, number of frames, geometry and frame rate.
    format : str
        :data:`TRACKRAD` or :data:`DICOM`.
    path : Path
        The folder read.
    frame_period_s : float
        1 / frame rate (s).
    n_frames : int
    shape : (int, int)
        Frame size (H, W) in pixels.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm.
    has_labels : bool
        Whether every frame carries a label.
    times_s : (T,) float64 ndarray, read-only
        Acquisition time of each frame from the first (s).
    reference_masks : dict of int to (H, W) bool ndarray
        Per-frame reference masks from ``contours`` (frame index to mask); empty
        without ``contours``. Contours for frames the recording lacks are dropped
        (logged).

    Raises
    ------
    InputError
        The path is missing, empty or unrecognised, or the recording breaks a rule of
        its format (see :mod:`hardware.trackrad` and :mod:`hardware.dicom_series`).
    ValueError
        ``fps`` or ``spacing_mm`` is not positive and finite.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float | None = None,
        spacing_mm: tuple[float, float] | None = None,
        realtime: bool = False,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        contours: str | Path | None = None,
    ) -> None:
        if fps is not None and (isinstance(fps, bool) or not (math.isfinite(fps) and fps > 0.0)):
            raise ValueError(f"fps must be finite and > 0 frames/s, got {fps!r}")
        self.path = Path(path)
        self.format = detect_format(self.path)
        labels: np.ndarray | None
        if self.format == TRACKRAD:
            case = trackrad.read_case(self.path, fps=fps, spacing_mm=spacing_mm)
            frames, labels, times_s = case.frames, case.labels, case.times_s
            rate, spacing = case.fps, case.spacing_mm
            reference = case.first_label
            if reference is None and labels is not None and labels[0].any():
                reference = labels[0]
            name = f"{TRACKRAD} case {case.case_id}"
            geometry = None  # a TrackRAD case gives no patient position or orientation
            timing = f"{rate:.3f} frames/s"
        elif self.format in (SENDEXTERNAL, CINE_RAW):
            frames, times_s, rate, spacing, timing, geometry = _read_file_recording(self.path, self.format, fps,
                                                                                   spacing_mm)
            labels, reference = None, None
            name = f"{self.format} file"
        else:
            series = dicom_series.read_series(self.path, fps=fps, spacing_mm=spacing_mm)
            frames, labels, times_s = series.frames, None, series.times_s
            rate, spacing = series.fps, series.spacing_mm
            reference = None
            geometry = series.geometry
            name = f"{DICOM} series {series.series_uid}"
            timing = f"{rate:.3f} frames/s ({'AcquisitionTime' if series.times_from_file else 'given rate'})"

        self.reference_masks: dict[int, np.ndarray] = {}
        if contours is not None:
            self.reference_masks = _contour_masks(Path(contours), frames.shape)
            if 0 in self.reference_masks:
                if reference is not None:
                    log.info("%s: the contour of frame 0 replaces the recording's first-frame label", contours)
                reference = self.reference_masks[0]
            else:
                log.warning("%s: no contour for frame 0 (cine_id 0): the first frame's target must come from "
                            "elsewhere", contours)
            name += f" with reference contours {Path(contours).name}"
        # Frames are handed over as views: make them read-only so no consumer can alter
        # what a later reader (or a recording of the session) sees.
        for array in (frames, labels, times_s, reference, *self.reference_masks.values()):
            if array is not None:
                array.flags.writeable = False
        #: Where the frames lie in the patient (None when the recording does not say).
        self.geometry: PlaneGeometry | None = geometry
        self._frames = frames
        self._labels = labels
        self.times_s = times_s
        self._reference_label = reference
        self.spacing_mm: tuple[float, float] = (float(spacing[0]), float(spacing[1]))
        self.frame_period_s = 1.0 / rate
        self.n_frames, height, width = frames.shape
        self.shape = (height, width)
        self.has_labels = labels is not None
        self.realtime = bool(realtime)
        self._clock = clock
        self._sleep = sleep
        self._next_index = 0
        self._t_start_s: float | None = None
        self._closed = False
        label_text = "labels on every frame" if labels is not None else (
            "first-frame label only" if reference is not None else "no labels")
        self.description = (
            f"{name} at {self.path}: {self.n_frames} frames of {height}x{width} px, "
            f"{self.spacing_mm[0]:.3f}x{self.spacing_mm[1]:.3f} mm, {timing}, {label_text}"
        )
        log.info("replay source: %s", self.description)

    @property
    def reference_label(self) -> np.ndarray | None:
        """(H, W) bool target mask on the first frame, when the recording has one."""
        return self._reference_label

    @property
    def fault(self) -> str | None:
        """Always ``None``: a recording read in full cannot fault, and running out of
        frames is the end of the replay, not a fault."""
        return None

    @property
    def exhausted(self) -> bool:
        """Whether every frame has been handed over."""
        return self._next_index >= self.n_frames

    @property
    def closed(self) -> bool:
        return self._closed

    def __iter__(self) -> Iterator[Frame]:
        return self._frames_from_next()

    def _frames_from_next(self) -> Iterator[Frame]:
        frames, labels, times_s = self._frames, self._labels, self.times_s
        while not self._closed and self._next_index < self.n_frames:
            i = self._next_index
            if self.realtime:
                if self._t_start_s is None:
                    # Anchor the schedule so that the first frame taken is due now.
                    self._t_start_s = self._clock() - (times_s[i] - times_s[0])
                wait_s = self._t_start_s + (times_s[i] - times_s[0]) - self._clock()
                if wait_s > 0.0:
                    self._sleep(wait_s)
                if self._closed:
                    return
            t_recv_s = self._clock()
            self._next_index = i + 1
            yield Frame(
                index=i,
                t_acq_s=float(times_s[i]),
                t_recv_s=t_recv_s,
                pixels=frames[i],
                spacing_mm=self.spacing_mm,
                label=None if labels is None else labels[i],
            )

    def close(self) -> None:
        """Stop the replay: iteration ends and yields nothing more. Idempotent."""
        if not self._closed:
            self._closed = True
            log.info("replay source closed after %d of %d frames", self._next_index, self.n_frames)

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_file_recording(
    path: Path, fmt: str, fps: float | None, spacing_mm: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray, float, tuple[float, float], str, PlaneGeometry | None]:
    """Frames (T, H, W) float32, times (s), rate (frames/s), spacing (row, col) mm, a
    timing description and the plane (first record's; None for ``.raw``) of a ``.dat`` or
    ``.raw`` file."""
    file_times: np.ndarray | None = None
    geometry: PlaneGeometry | None = None
    if fmt == SENDEXTERNAL:
        records = sendexternal.read_dat(path)
        first = records[0]
        for i, r in enumerate(records[1:], start=1):
            if r.shape != first.shape or r.spacing_mm != first.spacing_mm:
                raise InputError(path, f"record {i}", f"{r.shape[0]} x {r.shape[1]} px at {r.spacing_mm} mm differs "
                                 f"from record 0 ({first.shape[0]} x {first.shape[1]} px at {first.spacing_mm} mm): "
                                 "a recording keeps one geometry")
        frames = np.stack([r.pixels for r in records]).astype(np.float32)
        file_spacing = first.spacing_mm
        geometry = first.geometry
        stamped = [r.acquisition_time_s is not None for r in records]
        if any(stamped) and not all(stamped):
            i = stamped.index(False)
            raise InputError(path, f"record {i}", f"has no {sendexternal.ACQUISITION_TIME_KEY} while other records "
                             "do: frame times would be unknown for some frames")
        if all(stamped):
            t = np.array([r.acquisition_time_s for r in records], dtype=np.float64)
            file_times = t - t[0]
    else:
        raw = cine_raw.read_raw(path)
        frames = raw.frames.astype(np.float32)
        file_spacing = raw.spacing_mm
    spacing = file_spacing
    if spacing_mm is not None:
        if not np.allclose(spacing_mm, file_spacing, rtol=1e-6, atol=0.0):
            log.warning("%s: the file gives pixel spacing %s mm; using the %s mm given", path, file_spacing, spacing_mm)
        spacing = spacing_mm
        if geometry is not None:
            geometry = dataclasses.replace(geometry, spacing_mm=tuple(spacing_mm))
    n = frames.shape[0]
    if fps is not None:
        if file_times is not None:
            log.warning("%s: replacing the recorded frame times by index / %g fps as given", path, fps)
        return (frames, np.arange(n, dtype=np.float64) / fps, float(fps), spacing, f"{fps:.3f} frames/s (given rate)",
                geometry)
    if file_times is None:
        what = "a .raw file has no frame times" if fmt == CINE_RAW else (
            f"the records carry no {sendexternal.ACQUISITION_TIME_KEY}, so frame times are unknown")
        raise InputError(path, "frame rate", f"{what}: pass the frame rate (--fps)")
    intervals = np.diff(file_times)
    if n < 2 or not (intervals > 0.0).all():
        raise InputError(path, sendexternal.ACQUISITION_TIME_KEY, "frame times must increase from record to record "
                         "(and a single frame gives no rate): pass the frame rate (--fps)")
    rate = 1.0 / float(np.median(intervals))
    return frames, file_times, rate, spacing, f"{rate:.3f} frames/s ({sendexternal.ACQUISITION_TIME_KEY})", geometry


def _contour_masks(path: Path, shape: tuple[int, int, int]) -> dict[int, np.ndarray]:
    """Masks of the contours in ``path`` for the frames of a (T, H, W) recording."""
    n, height, width = shape
    by_frame = roi_contours.contours_by_frame(roi_contours.read_contours(path), path)
    masks: dict[int, np.ndarray] = {}
    dropped = 0
    for cine_id, contour in sorted(by_frame.items()):
        if not 0 <= cine_id < n:
            dropped += 1
            continue
        masks[cine_id] = roi_contours.contour_to_mask(contour, (height, width))
    if dropped:
        log.warning("%s: %d contours name frames outside the recording's 0 to %d; ignored", path, dropped, n - 1)
    if 0 in masks and not masks[0].any():
        raise InputError(path, "contour of cine_id 0", f"covers no pixel centre of the {height} x {width} frame: it "
                         "cannot serve as the first frame's target")
    if not masks:
        raise InputError(path, "cine_id", f"no contour names a frame of the recording (0 to {n - 1})")
    log.info("%s: reference contours for %d of %d frames", path, len(masks), n)
    return masks
