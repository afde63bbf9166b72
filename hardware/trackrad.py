"""Read and write TrackRAD2025 case folders (2D cine-MR in compressed MetaImage).

The layout of one case, as in the public TrackRAD2025 data set (see ``domain.md``)::

    <case>/images/<id>_frames.mha          frames, uint16
    <case>/targets/<id>_labels.mha         target mask on every frame, uint8 (optional)
    <case>/targets/<id>_first_label.mha    target mask on the first frame only (optional)
    <case>/frame-rate.json                 frames per second, e.g. 8.0
    <case>/b-field-strength.json           tesla, e.g. 0.35 (optional)
    <case>/scanned-region.json             e.g. "abdomen" (optional)

In every ``.mha`` the frame index is ITK's *first* axis, so
``SimpleITK.GetArrayFromImage`` returns an (H, W, T) array and ``GetSpacing()`` is
(frame axis, column, row). The spacing of the frame axis is neither a time nor used here
(the example case stores 5.0); :func:`write_case` writes 1.0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hardware.errors import InputError

log = logging.getLogger(__name__)

FRAME_RATE_FILE = "frame-rate.json"
FIELD_STRENGTH_FILE = "b-field-strength.json"
REGION_FILE = "scanned-region.json"
FRAMES_SUFFIX = "_frames.mha"
LABELS_SUFFIX = "_labels.mha"
FIRST_LABEL_SUFFIX = "_first_label.mha"


@dataclass(frozen=True, eq=False)
class TrackradCase:
    """One TrackRAD2025 case as read from its folder.

    Attributes
    ----------
    case_id : str
        The id in the file names (``<id>_frames.mha``).
    frames : (T, H, W) float32 ndarray
        Frame intensities as stored, row 0 at the top.
    labels : (T, H, W) bool ndarray or None
        Target mask on every frame, when ``targets/<id>_labels.mha`` exists.
    first_label : (H, W) bool ndarray or None
        Target mask on the first frame, when ``targets/<id>_first_label.mha`` exists.
        Never empty.
    spacing_mm : tuple of float
        Pixel spacing (row, col) in mm.
    fps : float
        Frame rate in frames per second (from ``frame-rate.json`` or the caller).
    field_strength_T : float or None
        Main field in tesla, when ``b-field-strength.json`` exists.
    region : str or None
        Scanned region, when ``scanned-region.json`` exists.
    paths : dict of str to Path
        The files read, by role: ``"frames"``, and when present ``"labels"``,
        ``"first_label"``, ``"frame_rate"``, ``"field_strength"``, ``"region"``.
    """

    case_id: str
    frames: np.ndarray
    labels: np.ndarray | None
    first_label: np.ndarray | None
    spacing_mm: tuple[float, float]
    fps: float
    field_strength_T: float | None
    region: str | None
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def times_s(self) -> np.ndarray:
        """(T,) float64 acquisition times in s from the first frame: index / fps."""
        return np.arange(self.frames.shape[0], dtype=np.float64) / self.fps


# -- reading -------------------------------------------------------------------------------
def read_case(
    folder: str | Path,
    *,
    fps: float | None = None,
    spacing_mm: tuple[float, float] | None = None,
) -> TrackradCase:
    """Read one TrackRAD2025 case folder.

    Parameters
    ----------
    folder : str or Path
        The case folder (the one holding ``images/``).
    fps : float, optional
        Frame rate (frames/s). Required when the case has no ``frame-rate.json``; when
        it has one, this value takes precedence (a disagreement is logged).
    spacing_mm : (float, float), optional
        Pixel spacing (row, col) in mm overriding the one in the frames file (a
        disagreement is logged).

    Returns
    -------
    TrackradCase

    Raises
    ------
    InputError
        The folder breaks the layout: no or several frames files, an unreadable
        (corrupt, truncated) or non-3D ``.mha``, labels whose shape differs from the
        frames', an empty first label, a missing frame rate with no ``fps``, or an
        invalid side file. The message names the file, the field and the rule.
    ValueError
        ``fps`` or ``spacing_mm`` is not positive and finite.
    """
    folder = Path(folder)
    fps_arg = _check_fps_argument(fps)
    spacing_arg = check_spacing_argument(spacing_mm)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise InputError(folder, "case folder", f"{what}; expected a TrackRAD2025 case folder holding images/<id>{FRAMES_SUFFIX}")

    frames_path = _find_frames_file(folder)
    case_id = frames_path.name[: -len(FRAMES_SUFFIX)] if frames_path.name.endswith(FRAMES_SUFFIX) else frames_path.stem
    paths: dict[str, Path] = {"frames": frames_path}

    image = read_mha(frames_path, "frames")
    frames = _frames_from_image(frames_path, image)
    n_frames, height, width = frames.shape
    file_spacing = spacing_from_image(frames_path, image)

    labels = None
    labels_path = folder / "targets" / f"{case_id}{LABELS_SUFFIX}"
    _check_no_foreign_targets(folder, case_id)
    if labels_path.is_file():
        labels = _mask_from_file(labels_path, "labels", (n_frames, height, width))
        paths["labels"] = labels_path

    first_label = None
    first_path = folder / "targets" / f"{case_id}{FIRST_LABEL_SUFFIX}"
    if first_path.is_file():
        first_label = _mask_from_file(first_path, "first label", (1, height, width))[0]
        if not first_label.any():
            raise InputError(first_path, "first label", "empty mask: the first frame's label must mark the target")
        paths["first_label"] = first_path
        if labels is not None and not np.array_equal(first_label, labels[0]):
            log.warning("%s differs from frame 0 of %s; using it as the reference label", first_path, labels_path)

    rate_path = folder / FRAME_RATE_FILE
    file_fps = None
    if rate_path.is_file():
        file_fps = _read_positive_number(rate_path, "frame rate")
        paths["frame_rate"] = rate_path
    if fps_arg is not None:
        if file_fps is not None and not math.isclose(fps_arg, file_fps, rel_tol=1e-6):
            log.warning("%s says %g frames/s; using the %g frames/s given", rate_path, file_fps, fps_arg)
        case_fps = fps_arg
    elif file_fps is not None:
        case_fps = file_fps
    else:
        raise InputError(rate_path, "frame rate", "file is missing, so frame times are unknown: pass the frame rate (--fps)")

    if spacing_arg is not None:
        if not np.allclose(spacing_arg, file_spacing, rtol=1e-6, atol=0.0):
            log.warning("%s has spacing %s mm; using the %s mm given", frames_path, file_spacing, spacing_arg)
        case_spacing = spacing_arg
    else:
        case_spacing = file_spacing

    field_strength = None
    field_path = folder / FIELD_STRENGTH_FILE
    if field_path.is_file():
        field_strength = _read_positive_number(field_path, "field strength")
        paths["field_strength"] = field_path
    region = None
    region_path = folder / REGION_FILE
    if region_path.is_file():
        region = _read_region(region_path)
        paths["region"] = region_path

    log.info("read TrackRAD2025 case %s: %d frames %dx%d, %.3fx%.3f mm, %g fps", case_id, n_frames, height, width,
             case_spacing[0], case_spacing[1], case_fps)
    return TrackradCase(
        case_id=case_id,
        frames=frames,
        labels=labels,
        first_label=first_label,
        spacing_mm=case_spacing,
        fps=case_fps,
        field_strength_T=field_strength,
        region=region,
        paths=paths,
    )


def _find_frames_file(folder: Path) -> Path:
    images = folder / "images"
    if not images.is_dir():
        raise InputError(images, "images folder", f"missing; a TrackRAD2025 case holds images/<id>{FRAMES_SUFFIX}")
    candidates = sorted(p for p in images.glob("*.mha") if p.is_file() and not p.name.startswith("."))
    if not candidates:
        raise InputError(images, "images/*.mha", f"no frames file; a TrackRAD2025 case holds images/<id>{FRAMES_SUFFIX}")
    if len(candidates) > 1:
        # Prefer the one named as the layout says; anything else is ambiguous.
        named = [p for p in candidates if p.name.endswith(FRAMES_SUFFIX)]
        if len(named) == 1:
            return named[0]
        names = ", ".join(p.name for p in candidates)
        raise InputError(images, "images/*.mha", f"ambiguous: {len(candidates)} files ({names}); keep one <id>{FRAMES_SUFFIX}")
    return candidates[0]


def _check_no_foreign_targets(folder: Path, case_id: str) -> None:
    """Refuse label files of another case id: silently ignoring them would lose labels."""
    targets = folder / "targets"
    if not targets.is_dir():
        return
    for p in sorted(targets.glob("*.mha")):
        if p.name.startswith("."):
            continue
        if p.name not in (f"{case_id}{LABELS_SUFFIX}", f"{case_id}{FIRST_LABEL_SUFFIX}"):
            raise InputError(p, "targets/*.mha", f"does not belong to case {case_id!r}; expected "
                             f"{case_id}{LABELS_SUFFIX} or {case_id}{FIRST_LABEL_SUFFIX}")


@contextlib.contextmanager
def _native_stderr_to(sink: list[str]) -> Iterator[None]:
    """Collect what native code writes to file descriptor 2 while the block runs.

    ITK's MetaImage reader prints its diagnosis of a bad file (e.g. "data not read
    completely") straight to fd 2, which would break the one-line refusal the command
    line promises. Only used around reads at start-up, as it redirects fd 2
    process-wide for the duration.
    """
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", errors="replace"))


#: Largest image read, in pixels over all frames (e.g. 10,000 frames of 144 x 144 is
#: 2.1e8). A header that claims more is refused before anything is allocated.
MAX_PIXELS = 2**28


#: Longest MetaImage header read, bytes (a TrackRAD2025 header is about 350).
MAX_HEADER_BYTES = 65536


def check_mha_header(path: Path) -> None:
    """Refuse a MetaImage header that ITK's reader cannot be trusted with.

    ITK 5.4's MetaIO reader does not return on some corrupt headers: with both the
    ``ObjectType`` line and the ``CompressedDataSize`` line damaged it reads for ever
    (found by ``tests/hardware/test_fuzz_files.py``). So the header is read here first
    and must be what a TrackRAD2025 case holds (and SimpleITK writes): ``ObjectType =
    Image``, the data in the file (``ElementDataFile = LOCAL``, the last header line),
    and, for compressed data, a ``CompressedDataSize`` that fits in the file.

    Raises
    ------
    InputError
        Naming the file, the header key and the rule.
    """
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
        file_bytes = os.fstat(f.fileno()).st_size
    fields: dict[str, str] = {}
    end = -1
    offset = 0
    for raw in head.split(b"\n")[:-1]:
        offset += len(raw) + 1
        key, sep, value = raw.decode("latin-1").partition("=")
        if sep:
            fields.setdefault(key.strip(), value.strip())
        if key.strip() == "ElementDataFile":
            end = offset
            break
    if end < 0:
        raise InputError(path, "ElementDataFile", f"no such line in the first {MAX_HEADER_BYTES} bytes, where a "
                         "MetaImage header ends: the file is truncated, or not a MetaImage")
    if fields.get("ObjectType") != "Image":
        raise InputError(path, "ObjectType", f"{fields.get('ObjectType', 'missing')!r}: must be 'Image'")
    if fields["ElementDataFile"] != "LOCAL":
        raise InputError(path, "ElementDataFile", f"{fields['ElementDataFile'][:40]!r}: must be LOCAL "
                         "(the pixels in the .mha file itself, as a TrackRAD2025 case keeps them)")
    if fields.get("CompressedData", "False") == "True":
        size = fields.get("CompressedDataSize", "missing")
        if not (size.isdigit() and int(size) > 0):
            raise InputError(path, "CompressedDataSize", f"{size[:20]!r}: compressed data needs its size, "
                             "a whole number of bytes > 0")
        if int(size) > file_bytes - end:
            raise InputError(path, "CompressedDataSize", f"{size} bytes of compressed data, but the file holds "
                             f"{file_bytes - end} after the header: it is truncated")


def read_mha(path: Path, what: str) -> sitk.Image:
    check_mha_header(path)
    native_messages: list[str] = []
    try:
        with _native_stderr_to(native_messages):
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            # The header alone first: its sizes are bounded before any pixel is allocated.
            reader.ReadImageInformation()
            size = reader.GetSize()
            n_pixels = math.prod(size) * max(1, reader.GetNumberOfComponents())
            if any(n < 1 for n in size):
                raise InputError(path, "DimSize", f"{' x '.join(map(str, size))}: every size must be at least 1")
            if n_pixels > MAX_PIXELS:
                raise InputError(path, "DimSize", f"{' x '.join(map(str, size))} is {n_pixels} pixels: "
                                 f"more than the {MAX_PIXELS} this reader accepts")
            image = reader.Execute()
    except RuntimeError as exc:
        # SimpleITK reports truncation as a generic read failure ("cannot be read ...");
        # MetaIO's own words on stderr say what is wrong.
        detail = " ".join(" ".join(native_messages).split())
        detail = f" ({detail[:200]})" if detail else ""
        raise InputError(path, what, f"cannot be read as a MetaImage: the file is corrupt or truncated{detail}") from exc
    if native_messages and native_messages[0].strip():
        log.debug("%s: ITK: %s", path, native_messages[0].strip())
    if image.GetDimension() != 3:
        raise InputError(path, "NDims", f"{image.GetDimension()}: expected a 3D image (frames x columns x rows, "
                         "the frame index on ITK's first axis)")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, "ElementNumberOfChannels",
                         f"{image.GetNumberOfComponentsPerPixel()}: expected a single-channel (grey-level) image")
    return image


def array_thw(image: sitk.Image) -> np.ndarray:
    """(T, H, W) view of an image whose ITK axes are (frame, column, row)."""
    # GetArrayViewFromImage is (H, W, T): ITK's first axis (frames) is numpy's last.
    return sitk.GetArrayViewFromImage(image).transpose(2, 0, 1)


def _frames_from_image(path: Path, image: sitk.Image) -> np.ndarray:
    view = array_thw(image)
    if not (np.issubdtype(view.dtype, np.integer) or np.issubdtype(view.dtype, np.floating)):
        raise InputError(path, "ElementType", f"{view.dtype}: frames must be integer or real grey levels")
    frames = np.ascontiguousarray(view, dtype=np.float32)
    if not np.isfinite(frames).all():
        raise InputError(path, "pixels", "contain NaN or infinite values")
    return frames


def spacing_from_image(path: Path, image: sitk.Image) -> tuple[float, float]:
    spacing = image.GetSpacing()
    row_mm, col_mm = float(spacing[2]), float(spacing[1])
    if not all(math.isfinite(v) and v > 0.0 for v in (row_mm, col_mm)):
        raise InputError(path, "ElementSpacing", f"{spacing}: row and column spacing must be finite and > 0 mm")
    return row_mm, col_mm


def _mask_from_file(path: Path, what: str, shape: tuple[int, int, int]) -> np.ndarray:
    image = read_mha(path, what)
    view = array_thw(image)
    if view.shape != shape:
        raise InputError(path, what, f"shape {view.shape} (frames, rows, cols) does not match the frames' {shape}")
    if not (np.issubdtype(view.dtype, np.integer) or view.dtype == np.bool_):
        raise InputError(path, "ElementType", f"{view.dtype}: a label must be an integer mask (0 = background)")
    return np.ascontiguousarray(view != 0)


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, what, f"cannot be read as JSON ({exc})") from exc


def _read_positive_number(path: Path, what: str) -> float:
    value = _read_json(path, what)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(path, what, f"{value!r}: must be one finite number > 0")
    return float(value)


def _read_region(path: Path) -> str:
    value = _read_json(path, "scanned region")
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, "scanned region", f"{value!r}: must be a non-empty string, e.g. \"abdomen\"")
    return value


def _check_fps_argument(fps: float | None) -> float | None:
    if fps is None:
        return None
    if isinstance(fps, bool) or not (math.isfinite(fps) and fps > 0.0):
        raise ValueError(f"fps must be finite and > 0 frames/s, got {fps!r}")
    return float(fps)


def check_spacing_argument(spacing_mm: tuple[float, float] | None) -> tuple[float, float] | None:
    if spacing_mm is None:
        return None
    values = tuple(spacing_mm)
    if len(values) != 2 or not all(math.isfinite(v) and v > 0.0 for v in values):
        raise ValueError(f"spacing_mm must be two finite values > 0 mm (row, col), got {spacing_mm!r}")
    return float(values[0]), float(values[1])


# -- writing -------------------------------------------------------------------------------
def write_case(
    folder: str | Path,
    case_id: str,
    frames: np.ndarray,
    labels: np.ndarray | None,
    spacing_mm: tuple[float, float],
    fps: float,
    field_strength_T: float = 0.35,
    region: str = "abdomen",
    *,
    first_label: np.ndarray | None = None,
) -> Path:
    """Write one case in the TrackRAD2025 layout (compressed MetaImage and JSON side files).

    Parameters
    ----------
    folder : str or Path
        The case folder; created if missing. If it exists it may hold only this case's
        own files (they are replaced).
    case_id : str
        Id used in the file names; letters, digits, ``-`` and ``_``.
    frames : (T, H, W) uint16 ndarray
        Frames, row 0 at the top.
    labels : (T, H, W) uint8 or bool ndarray or None
        Target mask on every frame; nonzero is target. Frame 0's mask must not be empty.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm.
    fps : float
        Frame rate in frames/s.
    field_strength_T : float
        Main field in tesla.
    region : str
        Scanned region.
    first_label : (H, W) uint8 or bool ndarray, optional
        The first frame's mask. Defaults to ``labels[0]``; must equal it when both are
        given. Giving it without ``labels`` writes the layout of a case whose later
        labels are withheld (as in the challenge's test set).

    Returns
    -------
    Path
        The case folder.

    Notes
    -----
    ``targets/<id>_first_label.mha`` is written whenever a first label is known (always
    when ``labels`` is given). Stale label files of the same case id are removed when the
    new case has none, so that reading the folder gives back exactly what was written.
    """
    folder = Path(folder)
    if not isinstance(case_id, str) or not case_id or not all(c.isalnum() or c in "-_" for c in case_id):
        raise ValueError(f"case_id must be a non-empty string of letters, digits, '-' or '_', got {case_id!r}")
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint16 or 0 in frames.shape:
        raise ValueError(f"frames must be a non-empty (T, H, W) uint16 array, got {frames.dtype} {frames.shape}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != frames.shape or labels.dtype not in (np.uint8, np.bool_):
            raise ValueError(f"labels must be a {frames.shape} uint8 or bool array like frames, got {labels.dtype} {labels.shape}")
        labels = labels != 0
    if first_label is not None:
        first = np.asarray(first_label)
        if first.shape != frames.shape[1:] or first.dtype not in (np.uint8, np.bool_):
            raise ValueError(f"first_label must be a {frames.shape[1:]} uint8 or bool array, got {first.dtype} {first.shape}")
        first_label = first = first != 0
        if labels is not None and not np.array_equal(first, labels[0]):
            raise ValueError("first_label must equal labels[0] when both are given")
    elif labels is not None:
        first_label = labels[0]
    if first_label is not None and not first_label.any():
        raise ValueError("the first frame's label (labels[0] or first_label) is empty: it must mark the target")
    spacing = check_spacing_argument(spacing_mm)
    rate = _check_fps_argument(fps)
    if spacing is None or rate is None:
        raise ValueError("spacing_mm and fps are required")
    if isinstance(field_strength_T, bool) or not (math.isfinite(field_strength_T) and field_strength_T > 0.0):
        raise ValueError(f"field_strength_T must be finite and > 0 T, got {field_strength_T!r}")
    if not isinstance(region, str) or not region.strip():
        raise ValueError(f"region must be a non-empty string, got {region!r}")

    images = folder / "images"
    targets = folder / "targets"
    frames_path = images / f"{case_id}{FRAMES_SUFFIX}"
    labels_path = targets / f"{case_id}{LABELS_SUFFIX}"
    first_path = targets / f"{case_id}{FIRST_LABEL_SUFFIX}"
    if images.is_dir():
        foreign = [p.name for p in images.glob("*.mha") if p != frames_path]
        if foreign:
            raise InputError(images, "images/*.mha", f"already holds {', '.join(sorted(foreign))}; write case "
                             f"{case_id!r} to an empty folder")
    images.mkdir(parents=True, exist_ok=True)

    write_mha(frames_path, frames, spacing)
    if labels is not None:
        targets.mkdir(exist_ok=True)
        write_mha(labels_path, labels.astype(np.uint8), spacing)
    else:
        labels_path.unlink(missing_ok=True)
    if first_label is not None:
        targets.mkdir(exist_ok=True)
        write_mha(first_path, first_label[np.newaxis].astype(np.uint8), spacing)
    else:
        first_path.unlink(missing_ok=True)

    (folder / FRAME_RATE_FILE).write_text(json.dumps(rate), encoding="utf-8")
    (folder / FIELD_STRENGTH_FILE).write_text(json.dumps(float(field_strength_T)), encoding="utf-8")
    (folder / REGION_FILE).write_text(json.dumps(region), encoding="utf-8")
    log.info("wrote TrackRAD2025 case %s to %s: %d frames %dx%d", case_id, folder, *frames.shape)
    return folder


def write_mha(path: Path, array_thw: np.ndarray, spacing_mm: tuple[float, float]) -> None:
    # (T, H, W) -> (H, W, T) so that ITK's first axis carries the frame index, as in the data set.
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_thw.transpose(1, 2, 0)))
    image.SetSpacing((1.0, spacing_mm[1], spacing_mm[0]))
    sitk.WriteImage(image, str(path), useCompression=True)
