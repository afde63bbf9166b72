"""Tracking contours (the MRIdian console tracker's ROI binary): codec and rasterisation.

What is known and what is inferred
----------------------------------
The layout follows the conversion scripts published by the TrackRAD2025 organisers (see
``../shared/docs/mridian-formats.md``); no sample file is public. Little-endian, fields
one after another with no padding::

    n_contours   int32
    per contour:
      cine_id       int32    frame index
      need_soften   1 byte   bool
      contour_mode  int32    0 = crude, 1 = soft
      n_points      int32
      points        n_points x (float32 x, float32 y)

Known: the layout, and that coordinates are normalised to the frame with (0, 0) the
upper-left corner and (1, 1) the lower-right.

Inferred (this project's reading):

- ``x`` runs along the columns (rightwards) and ``y`` along the rows (downwards) of the
  frame as displayed, i.e. after the SendExternal left-right mirror.
- (0, 0) and (1, 1) are the outer corners of the corner pixels (not their centres). In
  pixel coordinates where pixel (r, c) covers rows [r, r + 1) and columns [c, c + 1),
  a point is (row, col) = (y H, x W).
- ``cine_id`` is the frame's index in its recording, counted from 0.
- ``need_soften`` is stored as 0 or 1 and ``contour_mode`` as 0 or 1; other values are
  refused. The file holds nothing after the last contour.
- A contour is a closed polygon (the last point joins the first) with at least 3 points.
  Coordinates must be finite and lie within [-1, 2] (a contour may stray slightly outside
  the frame; beyond that the file is taken as corrupt).

Masks and contours
------------------
:func:`contour_to_mask` rasterises with the pixel-centre rule: pixel (r, c) is inside when
its centre (r + 0.5, c + 0.5) is inside the polygon by the even-odd rule; a centre exactly
on a left or top edge counts as inside, on a right or bottom edge as outside, so two
polygons sharing an edge never both claim a pixel. :func:`mask_to_contour` returns the
outline of the mask's largest 4-connected component (holes filled) along pixel edges, so
``contour_to_mask(mask_to_contour(m))`` gives back ``m`` exactly when ``m`` is one
4-connected component without holes.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from hardware.errors import InputError
from hardware.format_errors import FormatError

log = logging.getLogger(__name__)

MIN_POINTS = 3
#: Bounds that stop a corrupt count from allocating memory.
MAX_CONTOURS = 1_000_000
MAX_POINTS = 1_000_000
#: Normalised coordinates outside [COORD_LOW, COORD_HIGH] are refused.
COORD_LOW, COORD_HIGH = -1.0, 2.0
CRUDE, SOFT = 0, 1

_N = struct.Struct("<i")
_CONTOUR_HEAD = struct.Struct("<i?ii")  # '<' means no padding: 4 + 1 + 4 + 4 bytes
_POINT_BYTES = 8


class RoiContourError(FormatError):
    """An ROI binary that breaks a rule of the format (names offset and field)."""


@dataclass(frozen=True, eq=False)
class TrackingContour:
    """One contour the console's tracker drew on one cine frame.

    Attributes
    ----------
    cine_id : int
        Index of the frame the contour belongs to (from 0).
    points : (N, 2) float32 ndarray, read-only
        (x, y) normalised coordinates, N >= 3; x along columns, y along rows.
    need_soften : bool
    contour_mode : int
        0 (crude) or 1 (soft).
    """

    cine_id: int
    points: np.ndarray
    need_soften: bool = False
    contour_mode: int = CRUDE

    def __post_init__(self) -> None:
        cine_id = int(self.cine_id)
        if not -(2**31) <= cine_id < 2**31:
            raise ValueError(f"cine_id must fit an int32, got {cine_id}")
        points = np.array(self.points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 2 or not MIN_POINTS <= points.shape[0] <= MAX_POINTS:
            raise ValueError(f"points must be (N, 2) with {MIN_POINTS} <= N <= {MAX_POINTS}, got {points.shape}")
        if not (np.isfinite(points).all() and points.min() >= COORD_LOW and points.max() <= COORD_HIGH):
            raise ValueError(f"points must be finite normalised coordinates within [{COORD_LOW:g}, {COORD_HIGH:g}]")
        if self.contour_mode not in (CRUDE, SOFT):
            raise ValueError(f"contour_mode must be 0 (crude) or 1 (soft), got {self.contour_mode!r}")
        points.flags.writeable = False
        object.__setattr__(self, "cine_id", cine_id)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "need_soften", bool(self.need_soften))
        object.__setattr__(self, "contour_mode", int(self.contour_mode))


# -- codec ---------------------------------------------------------------------------------
def encode_contours(contours: Iterable[TrackingContour]) -> bytes:
    """The bytes of an ROI binary holding ``contours`` in order."""
    contours = list(contours)
    parts = [_N.pack(len(contours))]
    for c in contours:
        parts.append(_CONTOUR_HEAD.pack(c.cine_id, c.need_soften, c.contour_mode, c.points.shape[0]))
        parts.append(np.ascontiguousarray(c.points, dtype="<f4").tobytes())
    return b"".join(parts)


def decode_contours(data: bytes, source: str | Path = "<bytes>") -> list[TrackingContour]:
    """The contours of a complete ROI binary.

    Raises
    ------
    RoiContourError
        A count is negative or absurd, a contour has too few points, a flag is not 0 or
        1, a coordinate is not finite or out of range, the data ends inside a contour, or
        bytes follow the last contour. The error names the byte offset and the field.
    """
    view = memoryview(data)
    size = len(view)

    def need(offset: int, n_bytes: int, field: str) -> None:
        if offset + n_bytes > size:
            raise RoiContourError(source, offset, field, f"the data ends {size - offset} bytes into this "
                                  f"{n_bytes}-byte field: truncated")

    need(0, 4, "n_contours")
    (n_contours,) = _N.unpack_from(view, 0)
    # Every contour takes at least its 13-byte head and 3 points.
    smallest = _CONTOUR_HEAD.size + MIN_POINTS * _POINT_BYTES
    if not 0 <= n_contours <= MAX_CONTOURS or n_contours * smallest > size - 4:
        raise RoiContourError(source, 0, "n_contours", f"{n_contours} is negative or more than the "
                              f"{size - 4} bytes that follow can hold ({smallest} bytes each at least)")
    contours: list[TrackingContour] = []
    offset = 4
    for k in range(n_contours):
        need(offset, _CONTOUR_HEAD.size, f"contour {k} head")
        cine_id = _N.unpack_from(view, offset)[0]
        soften_byte = view[offset + 4]
        mode = _N.unpack_from(view, offset + 5)[0]
        n_points = _N.unpack_from(view, offset + 9)[0]
        if soften_byte not in (0, 1):
            raise RoiContourError(source, offset + 4, f"contour {k} need_soften", f"byte {soften_byte}: must be 0 or 1")
        if mode not in (CRUDE, SOFT):
            raise RoiContourError(source, offset + 5, f"contour {k} contour_mode", f"{mode}: must be 0 (crude) or "
                                  "1 (soft)")
        if n_points < MIN_POINTS:
            raise RoiContourError(source, offset + 9, f"contour {k} n_points", f"{n_points}: a contour needs at "
                                  f"least {MIN_POINTS} points")
        points_at = offset + _CONTOUR_HEAD.size
        if n_points > MAX_POINTS or points_at + n_points * _POINT_BYTES > size:
            raise RoiContourError(source, offset + 9, f"contour {k} n_points", f"{n_points} points need "
                                  f"{n_points * _POINT_BYTES} bytes but {size - points_at} remain: truncated or "
                                  "corrupt")
        points = np.frombuffer(view, dtype="<f4", count=2 * n_points, offset=points_at).reshape(n_points, 2)
        bad = ~(np.isfinite(points) & (points >= COORD_LOW) & (points <= COORD_HIGH))
        if bad.any():
            i = int(np.flatnonzero(bad.any(axis=1))[0])
            raise RoiContourError(source, points_at + i * _POINT_BYTES, f"contour {k} point {i}",
                                  f"{tuple(float(v) for v in points[i])}: coordinates must be finite and within "
                                  f"[{COORD_LOW:g}, {COORD_HIGH:g}] (normalised to the frame)")
        contours.append(TrackingContour(cine_id, points.astype(np.float32), bool(soften_byte), mode))
        offset = points_at + n_points * _POINT_BYTES
    if offset != size:
        raise RoiContourError(source, offset, "end of data", f"{size - offset} bytes follow the last contour")
    return contours


def read_contours(path: str | Path) -> list[TrackingContour]:
    """The contours of an ROI binary file (see :func:`decode_contours`).

    Raises
    ------
    InputError
        The file is missing or unreadable; :class:`RoiContourError` for bad content.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file", "does not exist") from None
    except OSError as exc:
        raise InputError(path, "file", f"cannot be read ({exc.strerror or exc})") from None
    contours = decode_contours(data, path)
    log.info("read %d tracking contours from %s", len(contours), path)
    return contours


def write_contours(path: str | Path, contours: Iterable[TrackingContour]) -> None:
    """Write contours as an ROI binary file."""
    Path(path).write_bytes(encode_contours(contours))


def contours_by_frame(contours: Iterable[TrackingContour], source: str | Path = "<contours>") -> dict[int, TrackingContour]:
    """Contours keyed by ``cine_id``.

    Raises
    ------
    InputError
        Two contours share a ``cine_id`` (which would be the reference is ambiguous).
    """
    out: dict[int, TrackingContour] = {}
    for c in contours:
        if c.cine_id in out:
            raise InputError(source, "cine_id", f"{c.cine_id} appears on more than one contour: one reference "
                             "contour per frame")
        out[c.cine_id] = c
    return out


# -- geometry ------------------------------------------------------------------------------
def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"shape must be (H, W) with H, W >= 1, got {shape!r}")
    return h, w


def normalised_to_pixels(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 2) normalised (x, y) to (N, 2) float64 (row, col) pixel-edge coordinates."""
    h, w = _check_shape(shape)
    p = np.asarray(points, dtype=np.float64)
    return np.stack([p[:, 1] * h, p[:, 0] * w], axis=1)


def pixels_to_normalised(rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 2) (row, col) pixel-edge coordinates to (N, 2) float32 normalised (x, y)."""
    h, w = _check_shape(shape)
    rc = np.asarray(rc, dtype=np.float64)
    return np.stack([rc[:, 1] / w, rc[:, 0] / h], axis=1).astype(np.float32)


def polygon_mask(rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a closed polygon with the pixel-centre rule (see the module doc).

    Parameters
    ----------
    rc : (N, 2) float ndarray
        (row, col) vertices in pixel-edge coordinates (pixel (r, c) covers [r, r + 1) x
        [c, c + 1)); the last vertex joins the first.
    shape : (int, int)
        (H, W) of the mask.

    Returns
    -------
    (H, W) bool ndarray
    """
    h, w = _check_shape(shape)
    rc = np.asarray(rc, dtype=np.float64)
    if rc.ndim != 2 or rc.shape[1] != 2 or rc.shape[0] < MIN_POINTS:
        raise ValueError(f"rc must be (N, 2) with N >= {MIN_POINTS}, got {rc.shape}")
    if not np.isfinite(rc).all():
        raise ValueError("rc must be finite")
    out = np.zeros((h, w), dtype=bool)
    r0, c0 = rc[:, 0], rc[:, 1]
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    # Half-open in y: an edge spans the row centres y with min <= y < max, so a vertex on
    # a scanline is counted once and horizontal edges never.
    lo, hi = np.minimum(r0, r1), np.maximum(r0, r1)
    centres = np.arange(h) + 0.5
    cols = np.arange(w) + 0.5
    for r in range(h):
        y = centres[r]
        active = (lo <= y) & (y < hi)
        if not active.any():
            continue
        t = (y - r0[active]) / (r1[active] - r0[active])
        xs = np.sort(c0[active] + t * (c1[active] - c0[active]))
        # Even-odd: inside between crossings 0-1, 2-3, ...; [x_in, x_out) by the tie rule.
        for x_in, x_out in zip(xs[0::2], xs[1::2]):
            out[r] |= (cols >= x_in) & (cols < x_out)
    return out


def contour_to_mask(contour: TrackingContour, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask of a contour in a frame of ``shape`` (pixel-centre rule)."""
    return polygon_mask(normalised_to_pixels(contour.points, shape), shape)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Outline of a mask's largest 4-connected component, holes filled, along pixel edges.

    Parameters
    ----------
    mask : (H, W) bool ndarray
        Must have at least one pixel set.

    Returns
    -------
    (N, 2) float64 ndarray
        (row, col) corners in pixel-edge coordinates (integers), clockwise on screen,
        not repeated at the end, collinear corners removed.
    """
    from scipy import ndimage  # here, not at the top: replay start-up need not pay ~0.4 s

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {mask.shape}")
    labels, n = cast(tuple[np.ndarray, int], ndimage.label(mask))  # the stubs allow an int (output=...)
    if n == 0:
        raise ValueError("mask is empty: no contour to draw")
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        keep = int(np.argmax(sizes)) + 1
        log.debug("mask has %d components; outlining the largest (%d px)", n, int(sizes[keep - 1]))
    else:
        keep = 1
    region = cast(np.ndarray, ndimage.binary_fill_holes(labels == keep))  # the stubs allow None (output=...)
    padded = np.pad(region, 1)
    # Directed unit edges keep the region on their right (clockwise on screen, row down).
    # Corners are (row, col) of the padded grid's pixel edges.
    nxt: dict[tuple[int, int], list[tuple[int, int]]] = {}
    rows, cols = np.nonzero(padded)
    for r, c in zip(rows.tolist(), cols.tolist()):
        if not padded[r - 1, c]:
            nxt.setdefault((r, c), []).append((r, c + 1))  # top, rightwards
        if not padded[r, c + 1]:
            nxt.setdefault((r, c + 1), []).append((r + 1, c + 1))  # right, downwards
        if not padded[r + 1, c]:
            nxt.setdefault((r + 1, c + 1), []).append((r + 1, c))  # bottom, leftwards
        if not padded[r, c - 1]:
            nxt.setdefault((r + 1, c), []).append((r, c))  # left, upwards
    start = min(nxt)  # top-most, then left-most corner: on the outer outline
    path = [start]
    prev_dir = (0, 1)
    here = start
    while True:
        options = nxt[here]
        if len(options) == 1:
            step = options.pop()
        else:
            # A pinch corner (two regions touching diagonally): turn right first, so the
            # outline stays simple and encloses each pixel once.
            def turn(o: tuple[int, int], here: tuple[int, int] = here, prev_dir: tuple[int, int] = prev_dir) -> int:
                d = (o[0] - here[0], o[1] - here[1])
                cross = prev_dir[0] * d[1] - prev_dir[1] * d[0]
                return 0 if cross < 0 else (1 if cross == 0 else 2)

            options.sort(key=turn)
            step = options.pop(0)
        prev_dir = (step[0] - here[0], step[1] - here[1])
        here = step
        if here == start:
            break
        path.append(here)
    corners = np.array(path, dtype=np.float64) - 1.0  # undo the padding
    # Drop corners where the outline goes straight on.
    before, after = np.roll(corners, 1, axis=0), np.roll(corners, -1, axis=0)
    d1, d2 = corners - before, after - corners
    straight = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) == 0
    return corners[~straight]


def mask_to_contour(mask: np.ndarray, cine_id: int, *, need_soften: bool = False,
                    contour_mode: int = CRUDE) -> TrackingContour:
    """A contour outlining ``mask`` (see :func:`mask_outline`) in normalised coordinates."""
    mask = np.asarray(mask, dtype=bool)
    return TrackingContour(cine_id, pixels_to_normalised(mask_outline(mask), mask.shape), need_soften, contour_mode)
