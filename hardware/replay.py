"""Replay a recorded cine series as a :class:`~hardware.frame.FrameSource`.

A replay reads the whole recording at construction (so that every input problem is
refused before the first frame, and no file I/O happens while frames are handed over),
then hands frames over one by one, either as fast as the consumer takes them or paced
at the recorded frame times.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from hardware import dicom_series, trackrad
from hardware.errors import InputError
from hardware.frame import Frame

log = logging.getLogger(__name__)

TRACKRAD = "TrackRAD2025"
DICOM = "DICOM"


def detect_format(path: str | Path) -> str:
    """Which recording format a folder holds: :data:`TRACKRAD` or :data:`DICOM`.

    A folder with an ``images/`` subfolder is a TrackRAD2025 case; a folder holding
    files that are not skipped by name (see :mod:`hardware.dicom_series`) is taken as a
    DICOM series, whose reader then checks every file.

    Raises
    ------
    InputError
        The path does not exist, is not a folder, is empty, or holds neither format.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "recording", "does not exist")
    if not path.is_dir():
        raise InputError(path, "recording", "is a file; pass the folder of a TrackRAD2025 case or of one DICOM series")
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
    """Frames of a TrackRAD2025 case folder or a DICOM series folder, replayed.

    Implements :class:`~hardware.frame.FrameSource`. Iterating yields each frame once,
    in order: the source is single-pass, like a live scanner. Breaking out of a loop and
    iterating again resumes at the next frame. Frames are never dropped: a consumer
    slower than the recording receives frames late, and ``t_recv_s`` shows it.

    Parameters
    ----------
    path : str or Path
        A TrackRAD2025 case folder or a folder holding one DICOM series.
    fps : float, optional
        Frame rate (frames/s) for a recording that gives none; when the recording has
        its own frame times or rate, this replaces them (logged).
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
            timing = f"{rate:.3f} frames/s"
        else:
            series = dicom_series.read_series(self.path, fps=fps, spacing_mm=spacing_mm)
            frames, labels, times_s = series.frames, None, series.times_s
            rate, spacing = series.fps, series.spacing_mm
            reference = None
            name = f"{DICOM} series {series.series_uid}"
            timing = f"{rate:.3f} frames/s ({'AcquisitionTime' if series.times_from_file else 'given rate'})"

        # Frames are handed over as views: make them read-only so no consumer can alter
        # what a later reader (or a recording of the session) sees.
        for array in (frames, labels, times_s, reference):
            if array is not None:
                array.flags.writeable = False
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
