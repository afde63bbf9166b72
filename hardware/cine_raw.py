"""MRIdian cine ``.raw`` files: reader and writer.

What is known and what is inferred
----------------------------------
The layout follows the conversion scripts published by the TrackRAD2025 organisers (see
``../shared/docs/mridian-formats.md``); no sample file is public. All values are
little-endian, with no padding::

    nx int32, ox float64, dx float64     columns, origin, pixel spacing
    ny int32, oy float64, dy float64     rows, origin, pixel spacing
    nz int32, oz float64, dz float64     slices, origin, spacing
    n_frames int16
    n_frames x (nx x ny int16)           each frame is
                                         np.frombuffer(buf, "<i2").reshape(ny, nx)

Known: the field order (count, origin, spacing) per axis, that the spacing is in cm (the
script multiplies it by 10 for mm) and the pixel order (no mirror, unlike the
SendExternal records). A second script in the same folder writes (count, spacing,
origin) instead; the order above is taken as the console's.

Inferred (this project's reading):

- ``x`` runs along the columns and ``y`` along the rows of the displayed frame, so the
  pixel spacing is (row, col) = (10 dy, 10 dx) mm.
- The origins are in cm like the spacings (they are kept as read, in ``origin_cm``).
- ``nz`` counts slices (1 for a 2D cine); the pixel data does not depend on it.
- The file holds nothing after the last frame: its length must be exactly
  ``62 + n_frames x nx x ny x 2`` bytes.

Plausibility checks (so that a file written in the swapped order is refused rather than
misread): 1 <= nx, ny <= :data:`MAX_DIMENSION`, 1 <= nz <= :data:`MAX_DIMENSION`,
1 <= n_frames, 0 < dx, dy <= :data:`MAX_PIXEL_SPACING_CM` (2 cm: cine pixels are a few
mm), 0 <= dz <= :data:`MAX_SLICE_SPACING_CM`, every origin finite with magnitude at most
:data:`MAX_ORIGIN_CM` (1 m), and the file length as above. A swapped file reads its
origin as the spacing; it is refused when that origin is zero, negative or more than
2 cm (as scanner origins at the edge of the field of view are), but a swapped file whose
origins happen to lie in (0, 2] cm cannot be told apart from a valid one.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware.errors import InputError
from hardware.format_errors import FormatError

log = logging.getLogger(__name__)

MAX_DIMENSION = 1024
MAX_PIXEL_SPACING_CM = 2.0
MAX_SLICE_SPACING_CM = 10.0
MAX_ORIGIN_CM = 100.0
MAX_FRAMES = 32767  # n_frames is an int16

_AXIS = struct.Struct("<idd")
_COUNT = struct.Struct("<h")
#: Bytes before the first frame.
HEADER_BYTES = 3 * _AXIS.size + _COUNT.size


class CineRawError(FormatError):
    """A ``.raw`` file that breaks a rule of the format (names offset and field)."""


@dataclass(frozen=True, eq=False)
class CineRaw:
    """A cine ``.raw`` file's content.

    Attributes
    ----------
    frames : (T, ny, nx) int16 ndarray
        The frames, row 0 at the top.
    spacing_mm : (float, float)
        Pixel spacing (row, col) = (10 dy, 10 dx) in mm.
    origin_cm : (float, float, float)
        (ox, oy, oz) as stored (unit inferred to be cm).
    n_slices : int
        ``nz`` as stored.
    slice_spacing_cm : float
        ``dz`` as stored (cm).
    """

    frames: np.ndarray
    spacing_mm: tuple[float, float]
    origin_cm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    n_slices: int = 1
    slice_spacing_cm: float = 0.0


def read_raw(path: str | Path) -> CineRaw:
    """Read a cine ``.raw`` file.

    Raises
    ------
    InputError
        The file is missing or unreadable.
    CineRawError
        A field breaks a rule (see the module doc), naming its byte offset.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(HEADER_BYTES)
            size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(path, "file", "does not exist") from None
    except OSError as exc:
        raise InputError(path, "file", f"cannot be read ({exc.strerror or exc})") from None
    if len(head) < HEADER_BYTES:
        raise CineRawError(path, len(head), "header", f"the file ends after {len(head)} bytes, inside the "
                           f"{HEADER_BYTES}-byte header: truncated")
    axes = [_AXIS.unpack_from(head, i * _AXIS.size) for i in range(3)]
    (nx, ox, dx), (ny, oy, dy), (nz, oz, dz) = axes
    (n_frames,) = _COUNT.unpack_from(head, 3 * _AXIS.size)
    for i, (name, n) in enumerate((("nx", nx), ("ny", ny), ("nz", nz))):
        if not 1 <= n <= MAX_DIMENSION:
            raise CineRawError(path, i * _AXIS.size, name, f"{n} is outside 1 to {MAX_DIMENSION}")
    for i, (axis, origin, spacing) in enumerate((("x", ox, dx), ("y", oy, dy), ("z", oz, dz))):
        at = i * _AXIS.size + 4
        if not (math.isfinite(origin) and abs(origin) <= MAX_ORIGIN_CM):
            raise CineRawError(path, at, f"o{axis}", f"{origin!r} cm is not a plausible origin (finite, within "
                               f"{MAX_ORIGIN_CM:g} cm): is the header in (n, spacing, origin) order?")
        high = MAX_SLICE_SPACING_CM if axis == "z" else MAX_PIXEL_SPACING_CM
        ok = math.isfinite(spacing) and (0.0 <= spacing if axis == "z" else 0.0 < spacing) and spacing <= high
        if not ok:
            raise CineRawError(path, at + 8, f"d{axis}", f"{spacing!r} cm is not a plausible spacing "
                               f"({'0' if axis == 'z' else 'above 0'} to {high:g} cm): is the header in "
                               "(n, spacing, origin) order?")
    if n_frames < 1:
        raise CineRawError(path, 3 * _AXIS.size, "n_frames", f"{n_frames}: must be at least 1")
    expected = HEADER_BYTES + n_frames * nx * ny * 2
    if size != expected:
        rule = (f"the file is {size} bytes but {n_frames} frames of {ny} x {nx} int16 need {expected}: "
                + ("truncated" if size < expected else f"{size - expected} bytes follow the last frame"))
        raise CineRawError(path, min(size, expected), "frames", rule)
    data = np.fromfile(path, dtype="<i2", count=n_frames * nx * ny, offset=HEADER_BYTES)
    frames = data.reshape(n_frames, ny, nx).astype(np.int16, copy=False)
    log.info("read %s: %d frames %dx%d, spacing %.4f x %.4f cm", path, n_frames, ny, nx, dy, dx)
    return CineRaw(
        frames=frames,
        spacing_mm=(dy * 10.0, dx * 10.0),
        origin_cm=(ox, oy, oz),
        n_slices=nz,
        slice_spacing_cm=dz,
    )


def write_raw(
    path: str | Path,
    frames: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    origin_cm: Sequence[float] = (0.0, 0.0, 0.0),
    n_slices: int = 1,
    slice_spacing_cm: float = 0.0,
) -> None:
    """Write frames as a cine ``.raw`` file in the console's field order.

    Parameters
    ----------
    path : str or Path
    frames : (T, H, W) int16 ndarray
        1 <= T <= 32767; H and W up to :data:`MAX_DIMENSION`.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm; stored as dy, dx in cm.
    origin_cm, n_slices, slice_spacing_cm
        Stored as ``ox, oy, oz``, ``nz`` and ``dz``.

    Raises
    ------
    ValueError
        An argument the reader would refuse.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.int16:
        raise ValueError(f"frames must be a (T, H, W) int16 array, got {frames.dtype} {frames.shape}")
    n, h, w = frames.shape
    if not (1 <= n <= MAX_FRAMES and 1 <= h <= MAX_DIMENSION and 1 <= w <= MAX_DIMENSION):
        raise ValueError(f"frames must hold 1 to {MAX_FRAMES} frames of 1 to {MAX_DIMENSION} rows and columns, "
                         f"got {frames.shape}")
    dy, dx = (float(v) / 10.0 for v in spacing_mm)
    if not all(math.isfinite(v) and 0.0 < v <= MAX_PIXEL_SPACING_CM for v in (dy, dx)):
        raise ValueError(f"spacing_mm must be two values in (0, {MAX_PIXEL_SPACING_CM * 10:g}] mm, got {spacing_mm!r}")
    ox, oy, oz = (float(v) for v in origin_cm)
    if not all(math.isfinite(v) and abs(v) <= MAX_ORIGIN_CM for v in (ox, oy, oz)):
        raise ValueError(f"origin_cm must be three finite values within {MAX_ORIGIN_CM:g} cm, got {origin_cm!r}")
    if not 1 <= n_slices <= MAX_DIMENSION:
        raise ValueError(f"n_slices must be 1 to {MAX_DIMENSION}, got {n_slices}")
    if not (math.isfinite(slice_spacing_cm) and 0.0 <= slice_spacing_cm <= MAX_SLICE_SPACING_CM):
        raise ValueError(f"slice_spacing_cm must be in [0, {MAX_SLICE_SPACING_CM:g}] cm, got {slice_spacing_cm!r}")
    header = (_AXIS.pack(w, ox, dx) + _AXIS.pack(h, oy, dy) + _AXIS.pack(n_slices, oz, float(slice_spacing_cm))
              + _COUNT.pack(n))
    with Path(path).open("wb") as handle:
        handle.write(header)
        handle.write(np.ascontiguousarray(frames, dtype="<i2").tobytes())
    log.info("wrote %s: %d frames %dx%d", path, n, h, w)
