"""``maestro convert IN OUT``: between recording formats, and between contours and labels.

Recordings (any to any): a DICOM series folder, a TrackRAD2025 case folder, a
SendExternal ``.dat`` file, a cine ``.raw`` file. Contours: a tracking-contour ROI binary
(``.roi`` or ``.bin``) to a label stack ``.mha`` (in the geometry of ``--like
RECORDING``), and a label ``.mha`` to an ROI binary.

The format of OUT follows its suffix (``.dat``, ``.raw``, ``.mha``, ``.roi``, ``.bin``);
a folder needs ``--to dicom`` or ``--to trackrad``. Pixel values are carried over
exactly: a value the output cannot hold (not an integer, or outside int16 for ``.dat``
and ``.raw``, outside uint16 for TrackRAD) is refused, never clipped.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware.errors import InputError
from hardware.plane_geometry import PlaneGeometry

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = {".dat": "dat", ".raw": "raw"}
CONTOUR_SUFFIXES = (".roi", ".bin")
LABEL_SUFFIX = ".mha"
FOLDER_FORMATS = ("dicom", "trackrad")


@dataclass(frozen=True, eq=False)
class Recording:
    """A recording held in memory, whatever its format.

    Attributes
    ----------
    frames : (T, H, W) float32 ndarray
    times_s : (T,) float64 ndarray
        Acquisition times from the first frame (s).
    fps : float
        Frame rate (frames/s).
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm.
    labels : (T, H, W) bool ndarray or None
        Per-frame target masks, when the recording has them.
    first_label : (H, W) bool ndarray or None
        The first frame's target mask, when known.
    geometry : PlaneGeometry or None
        Where the frames lie in the patient, when the recording says.
    """

    frames: np.ndarray
    times_s: np.ndarray
    fps: float
    spacing_mm: tuple[float, float]
    labels: np.ndarray | None
    first_label: np.ndarray | None
    geometry: PlaneGeometry | None = None


def read_recording(path: Path, *, fps: float | None = None, spacing_mm: tuple[float, float] | None = None,
                   max_frames: int | None = None) -> Recording:
    """Any recording :class:`hardware.replay.ReplaySource` reads, held in memory
    (its first ``max_frames`` frames when given)."""
    from hardware.replay import ReplaySource

    with ReplaySource(path, fps=fps, spacing_mm=spacing_mm) as source:
        frames = [f for f, _ in zip(source, range(source.n_frames if max_frames is None else max_frames))]
        if not frames:
            raise InputError(path, "--max-frames", "must be at least 1")
        # has_labels: every frame carries its label.
        labels = np.stack([f.label for f in frames]) if source.has_labels else None  # pyright: ignore[reportCallIssue, reportArgumentType]
        return Recording(
            frames=np.stack([f.pixels for f in frames]),
            times_s=np.array(source.times_s[: len(frames)], dtype=np.float64),
            fps=1.0 / source.frame_period_s,
            spacing_mm=source.spacing_mm,
            labels=labels,
            first_label=source.reference_label,
            geometry=source.geometry,
        )


def integer_frames(path: Path, frames: np.ndarray, dtype: type[np.integer], what: str) -> np.ndarray:
    """``frames`` as ``dtype`` when every value is an integer it holds; else refuse."""
    info = np.iinfo(dtype)
    if not np.array_equal(frames, np.round(frames)):
        raise InputError(path, "pixels", f"hold non-integer values: {what} stores integers; the values are not "
                         "converted")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < info.min or hi > info.max:
        raise InputError(path, "pixels", f"range {lo:g} to {hi:g} does not fit {what}'s {np.dtype(dtype).name} "
                         f"({info.min} to {info.max}); values are never clipped")
    return frames.astype(dtype)


def write_recording(rec: Recording, source: Path, out: Path, fmt: str) -> str:
    """Write ``rec`` to ``out`` as ``fmt`` (dat, raw, dicom, trackrad); returns a summary."""
    n, h, w = rec.frames.shape
    if fmt == "dat":
        from hardware.sendexternal import SendExternalRecord, geometry_fields, write_dat

        pixels = integer_frames(source, rec.frames, np.int16, "SendExternal (.dat)")
        plane = geometry_fields(rec.geometry) if rec.geometry is not None else {}
        write_dat(out, (SendExternalRecord(pixels[i], rec.spacing_mm, acquisition_time_s=float(rec.times_s[i]),
                                           **plane)  # type: ignore[arg-type]
                        for i in range(n)))
    elif fmt == "raw":
        from hardware.cine_raw import write_raw

        if n > 32767:
            raise InputError(source, "frames", f"{n}: a .raw file holds at most 32767 frames (int16 count)")
        write_raw(out, integer_frames(source, rec.frames, np.int16, "cine raw (.raw)"), rec.spacing_mm)
        log.info("a .raw file keeps no frame times: replay it with --fps %.6g", rec.fps)
    elif fmt == "trackrad":
        from hardware.trackrad import write_case

        case_id = out.name
        if not case_id or not all(c.isalnum() or c in "-_" for c in case_id):
            raise InputError(out, "case folder", "its name is the case id: use letters, digits, '-' and '_' only")
        write_case(out, case_id, integer_frames(source, rec.frames, np.uint16, "TrackRAD2025"), rec.labels,
                   spacing_mm=rec.spacing_mm, fps=rec.fps, first_label=rec.first_label if rec.labels is None else None)
    elif fmt == "dicom":
        from hardware.dicom_write import write_series

        if rec.frames.min() < 0:
            frames = integer_frames(source, rec.frames, np.int16, "DICOM (16-bit)")
        else:
            frames = integer_frames(source, rec.frames, np.uint16, "DICOM (16-bit)")
        write_series(out, frames, rec.times_s, rec.spacing_mm, uid_seed=f"maestro convert {source.name} {out.name}",
                     geometry=rec.geometry)
    else:  # pragma: no cover - the parser restricts fmt
        raise ValueError(f"unknown format {fmt!r}")
    return (f"{n} frames {h}x{w} at {rec.spacing_mm[0]:.4g}x{rec.spacing_mm[1]:.4g} mm, {rec.fps:.4g} frames/s"
            + (", labels" if rec.labels is not None and fmt == "trackrad" else ""))


def labels_to_contours(labels: np.ndarray) -> list:
    """One contour per frame with a non-empty label (frame index as ``cine_id``)."""
    from hardware.roi_contours import mask_to_contour

    return [mask_to_contour(labels[i], i) for i in range(labels.shape[0]) if labels[i].any()]


def output_format(out: Path, to: str | None) -> str:
    """The format to write: from ``--to`` or the suffix of OUT."""
    suffix = out.suffix.lower()
    if to is not None:
        if suffix in RECORDING_SUFFIXES or suffix in CONTOUR_SUFFIXES or suffix == LABEL_SUFFIX:
            raise InputError(out, "--to", f"{to} writes a folder, but OUT ends in {suffix}")
        return to
    if suffix in RECORDING_SUFFIXES:
        return RECORDING_SUFFIXES[suffix]
    if suffix in CONTOUR_SUFFIXES:
        return "contours"
    if suffix == LABEL_SUFFIX:
        return "labels"
    raise InputError(out, "OUT", "a folder needs --to dicom or --to trackrad; files end in .dat, .raw, .mha "
                     "(labels) or .roi/.bin (contours)")


def convert(args: argparse.Namespace) -> str:
    """Do one conversion; returns the line printed."""
    src: Path = args.input
    out: Path = args.output
    fmt = output_format(out, args.to)
    if out.exists() and out.resolve() == src.resolve():
        raise InputError(out, "OUT", "is the input: write to another path")
    src_suffix = src.suffix.lower() if src.is_file() else ""
    if src_suffix in CONTOUR_SUFFIXES:
        if fmt != "labels":
            raise InputError(out, "OUT", "contours convert to a label .mha only")
        return _contours_to_labels(src, out, args)
    if src_suffix == LABEL_SUFFIX:
        if fmt != "contours":
            raise InputError(out, "OUT", "a label .mha converts to contours (.roi or .bin) only")
        from hardware.label_mha import read_labels
        from hardware.roi_contours import write_contours

        labels, _ = read_labels(src)
        if not labels.any():
            raise InputError(src, "labels", "every frame is empty: no contour to write")
        contours = labels_to_contours(labels)
        write_contours(out, contours)
        return f"wrote {out}: {len(contours)} contours from {labels.shape[0]} label frames"
    if fmt in ("labels", "contours"):
        raise InputError(out, "OUT", f"{fmt} come from contours or labels, not from a recording; write the recording "
                         "as .dat, .raw or a folder, and its labels with --contours")
    rec = read_recording(src, fps=args.fps, spacing_mm=args.spacing_mm, max_frames=args.max_frames)
    if args.contours is not None and rec.labels is None and rec.first_label is None:
        raise InputError(src, "labels", "the recording has no labels to write as --contours")
    summary = write_recording(rec, src, out, fmt)
    line = f"wrote {out} ({fmt}): {summary}"
    if args.contours is not None:
        from hardware.roi_contours import write_contours

        labels = rec.labels if rec.labels is not None else rec.first_label[np.newaxis]  # type: ignore[index]
        contours = labels_to_contours(labels)
        write_contours(args.contours, contours)
        line += f"; {len(contours)} contours to {args.contours}"
    return line


def _contours_to_labels(src: Path, out: Path, args: argparse.Namespace) -> str:
    from hardware.label_mha import write_labels
    from hardware.roi_contours import contour_to_mask, contours_by_frame, read_contours

    if args.like is None:
        raise InputError(src, "--like", "contours are normalised to the frame: give --like RECORDING for the frame "
                         "size, spacing and number of frames of the label image")
    like = read_recording(args.like, fps=args.fps or 1.0, spacing_mm=args.spacing_mm)
    n, h, w = like.frames.shape
    by_frame = contours_by_frame(read_contours(src), src)
    outside = [k for k in by_frame if not 0 <= k < n]
    if outside:
        raise InputError(src, "cine_id", f"{sorted(outside)[:5]} outside the {n} frames of {args.like}")
    labels = np.zeros((n, h, w), dtype=bool)
    for k, contour in by_frame.items():
        labels[k] = contour_to_mask(contour, (h, w))
    write_labels(out, labels, like.spacing_mm)
    return f"wrote {out}: labels for {len(by_frame)} of {n} frames of {h}x{w} px"


def cmd_convert(args: argparse.Namespace) -> int:
    print(convert(args))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from maestro.cli_args import number, positive_count, spacing

    p = subparsers.add_parser(
        "convert",
        help="convert between DICOM, TrackRAD2025, SendExternal .dat and cine .raw; contours <-> labels",
        description=(
            "Convert a recording between a DICOM series folder, a TrackRAD2025 case folder, a "
            "SendExternal .dat file and a cine .raw file (pixels carried over exactly; values the "
            "output cannot hold are refused), or tracking contours (.roi/.bin) to a label .mha "
            "(with --like) and back."
        ),
    )
    p.add_argument("input", type=Path, metavar="IN", help="recording folder or file, ROI binary, or label .mha")
    p.add_argument("output", type=Path, metavar="OUT", help="file (.dat .raw .mha .roi .bin) or folder (with --to)")
    p.add_argument("--to", choices=FOLDER_FORMATS, default=None, help="format of a folder OUT")
    p.add_argument("--contours", type=Path, default=None, metavar="ROI",
                   help="also write the recording's labels as tracking contours to ROI")
    p.add_argument("--like", type=Path, default=None, metavar="RECORDING",
                   help="recording whose geometry a contours-to-labels conversion uses")
    p.add_argument("--fps", type=number(0.0, low_inclusive=False), default=None,
                   help="frame rate of an input without frame times (.raw; .dat without times)")
    p.add_argument("--spacing-mm", type=spacing, default=None, metavar="MM[,MM]",
                   help="pixel spacing (row,col) of an input whose files do not give it")
    p.add_argument("--max-frames", type=positive_count, default=None, metavar="N",
                   help="convert only the first N frames of a recording")
    p.set_defaults(func=cmd_convert)
