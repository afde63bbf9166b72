"""Polygon outlines for display: pixel-square outlines of masks and iso-contours of fields.

Numpy only, not on the hot path: the gating geometry calls these once per session to give
the display something to draw. Every outline is returned as a list of closed rings, each an
``(N, 2)`` float64 array of (row, col) vertices in pixel coordinates (pixel ``(r, c)``
covers rows ``[r - 0.5, r + 0.5]`` and columns ``[c - 0.5, c + 0.5]``), with the last
vertex equal to the first.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

log = logging.getLogger(__name__)

# Marching-squares cell edges: top, right, bottom, left.
_TOP, _RIGHT, _BOTTOM, _LEFT = 0, 1, 2, 3

# Edge pairs joined by the level line for each non-saddle cell case. The case index has
# bit 0 for the top-left corner inside, bit 1 top-right, bit 2 bottom-right, bit 3
# bottom-left; each pair separates the inside corners from the outside ones.
_CASE_SEGMENTS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((_TOP, _LEFT),),
    2: ((_TOP, _RIGHT),),
    3: ((_LEFT, _RIGHT),),
    4: ((_RIGHT, _BOTTOM),),
    6: ((_TOP, _BOTTOM),),
    7: ((_BOTTOM, _LEFT),),
    8: ((_BOTTOM, _LEFT),),
    9: ((_TOP, _BOTTOM),),
    11: ((_RIGHT, _BOTTOM),),
    12: ((_LEFT, _RIGHT),),
    13: ((_TOP, _RIGHT),),
    14: ((_TOP, _LEFT),),
}
# Saddles (two diagonal corners inside): which corners the level line cuts off depends on
# whether the cell centre is inside. Keyed by (case, centre_inside).
_SADDLE_SEGMENTS: dict[tuple[int, bool], tuple[tuple[int, int], ...]] = {
    (5, True): ((_TOP, _RIGHT), (_BOTTOM, _LEFT)),
    (5, False): ((_TOP, _LEFT), (_RIGHT, _BOTTOM)),
    (10, True): ((_TOP, _LEFT), (_RIGHT, _BOTTOM)),
    (10, False): ((_TOP, _RIGHT), (_BOTTOM, _LEFT)),
}


def pixel_outline_rings(mask: np.ndarray) -> list[np.ndarray]:
    """Trace the outline of the union of a mask's pixel squares.

    Parameters
    ----------
    mask : (H, W) bool ndarray
        Pixels to outline.

    Returns
    -------
    list of (N, 2) float64 ndarray
        Closed rings of (row, col) vertices in pixel coordinates, corners at half-integer
        positions, collinear vertices removed. Outer rings run clockwise on screen (row
        down, column right) and holes counter-clockwise, so the signed shoelace areas add
        up to the pixel count. Empty list for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: must be 2-D, got shape {mask.shape}")
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[1:-1, 1:-1]
    # Corner (i, j) is the point (i - 0.5, j - 0.5). Each pixel side facing a pixel outside
    # the mask becomes a directed edge that keeps the pixel on the same side, so shared
    # sides never appear and every corner has as many edges in as out.
    edges: list[tuple[tuple[int, int], tuple[int, int]]] = []
    sides = (
        (padded[:-2, 1:-1], (0, 0), (0, 1)),  # top: top-left -> top-right
        (padded[1:-1, 2:], (0, 1), (1, 1)),  # right: top-right -> bottom-right
        (padded[2:, 1:-1], (1, 1), (1, 0)),  # bottom: bottom-right -> bottom-left
        (padded[1:-1, :-2], (1, 0), (0, 0)),  # left: bottom-left -> top-left
    )
    for neighbour, (dr0, dc0), (dr1, dc1) in sides:
        rows, cols = np.nonzero(inner & ~neighbour)
        for r, c in zip(rows.tolist(), cols.tolist()):
            edges.append(((r + dr0, c + dc0), (r + dr1, c + dc1)))
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for start, end in edges:
        outgoing[start].append(end)
    rings = []
    for ring in _walk_directed(outgoing):
        corners = _drop_collinear(np.asarray(ring, dtype=np.float64))
        rings.append(_close(corners - 0.5))
    return rings


def iso_contour_rings(
    field: np.ndarray,
    level: float,
    origin_rc: tuple[float, float] = (0.0, 0.0),
    step_rc: tuple[float, float] = (1.0, 1.0),
) -> list[np.ndarray]:
    """Marching-squares contour of ``field == level`` around the region ``field <= level``.

    Parameters
    ----------
    field : (M, N) float ndarray
        Samples on a regular grid; node ``(i, j)`` sits at
        ``origin_rc + (i * step_rc[0], j * step_rc[1])``. Must be finite.
    level : float
        Iso-level. The region ``field <= level`` is the inside; the field is padded by one
        outside node on every side so every ring closes.
    origin_rc : tuple of float
        (row, col) position of node (0, 0).
    step_rc : tuple of float
        (row, col) distance between neighbouring nodes.

    Returns
    -------
    list of (N, 2) float64 ndarray
        Closed rings of (row, col) vertices, linearly interpolated along grid edges;
        saddle cells are resolved by the cell-centre mean. Orientation is arbitrary.
    """
    values = np.asarray(field, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"field: must be 2-D, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("field: must be finite everywhere")
    shifted = values - float(level)
    pad_value = max(float(shifted.max()), 0.0) + 1.0
    f = np.pad(shifted, 1, constant_values=pad_value)
    width = f.shape[1]
    inside = f <= 0.0
    case = (
        inside[:-1, :-1].astype(np.int64)
        | (inside[:-1, 1:].astype(np.int64) << 1)
        | (inside[1:, 1:].astype(np.int64) << 2)
        | (inside[1:, :-1].astype(np.int64) << 3)
    )
    centre_inside = (f[:-1, :-1] + f[:-1, 1:] + f[1:, 1:] + f[1:, :-1]) <= 0.0

    def edge_key(i: int, j: int, edge: int) -> int:
        # Horizontal grid edge (i, j)-(i, j+1) -> even key; vertical (i, j)-(i+1, j) -> odd.
        if edge == _TOP:
            return (i * width + j) * 2
        if edge == _BOTTOM:
            return ((i + 1) * width + j) * 2
        if edge == _LEFT:
            return (i * width + j) * 2 + 1
        return (i * width + j + 1) * 2 + 1

    neighbours: dict[int, list[int]] = defaultdict(list)
    rows, cols = np.nonzero((case != 0) & (case != 15))
    for i, j in zip(rows.tolist(), cols.tolist()):
        k = int(case[i, j])
        if k in (5, 10):
            pairs = _SADDLE_SEGMENTS[(k, bool(centre_inside[i, j]))]
        else:
            pairs = _CASE_SEGMENTS[k]
        for ea, eb in pairs:
            ka, kb = edge_key(i, j, ea), edge_key(i, j, eb)
            neighbours[ka].append(kb)
            neighbours[kb].append(ka)

    def crossing(key: int) -> tuple[float, float]:
        node, vertical = divmod(key, 2)
        i, j = divmod(node, width)
        a = f[i, j]
        b = f[i + 1, j] if vertical else f[i, j + 1]
        # One end is inside (<= 0) and the other outside (> 0), so a - b < 0.
        t = a / (a - b)
        pr, pc = (i + t, float(j)) if vertical else (float(i), j + t)
        # Undo the one-node padding and map to the caller's coordinates.
        return (
            origin_rc[0] + (pr - 1.0) * step_rc[0],
            origin_rc[1] + (pc - 1.0) * step_rc[1],
        )

    rings = []
    for keys in _walk_undirected(neighbours):
        rings.append(_close(np.array([crossing(k) for k in keys], dtype=np.float64)))
    return rings


def polygon_area(ring: np.ndarray) -> float:
    """Signed shoelace area of a closed ring.

    Parameters
    ----------
    ring : (N, 2) float ndarray
        (row, col) vertices, last equal to first.

    Returns
    -------
    float
        Area in squared input units; positive for rings that run clockwise on screen
        (row down, column right), as the outer rings of :func:`pixel_outline_rings` do.
    """
    r = ring[:, 0]
    c = ring[:, 1]
    return 0.5 * float(np.sum(c[:-1] * r[1:] - c[1:] * r[:-1]))


def _walk_directed(
    outgoing: dict[tuple[int, int], list[tuple[int, int]]],
) -> list[list[tuple[int, int]]]:
    """Split a balanced directed edge set into closed walks (without the repeated start)."""
    rings = []
    while outgoing:
        start = next(iter(outgoing))
        ring = [start]
        current = start
        while True:
            ends = outgoing[current]
            nxt = ends.pop()
            if not ends:
                del outgoing[current]
            if nxt == start:
                break
            ring.append(nxt)
            current = nxt
        rings.append(ring)
    return rings


def _walk_undirected(neighbours: dict[int, list[int]]) -> list[list[int]]:
    """Split a graph whose nodes all have degree 2 into its cycles."""
    rings = []
    unvisited = set(neighbours)
    while unvisited:
        start = unvisited.pop()
        ring = [start]
        previous, current = start, neighbours[start][0]
        while current != start:
            ring.append(current)
            unvisited.discard(current)
            a, b = neighbours[current]
            previous, current = current, (b if a == previous else a)
        rings.append(ring)
    return rings


def _drop_collinear(vertices: np.ndarray) -> np.ndarray:
    """Remove vertices of an open ring (no repeated start) where the direction is unchanged."""
    before = vertices - np.roll(vertices, 1, axis=0)
    after = np.roll(vertices, -1, axis=0) - vertices
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    keep = cross != 0.0
    return vertices[keep] if np.any(keep) else vertices


def _close(vertices: np.ndarray) -> np.ndarray:
    return np.vstack([vertices, vertices[:1]])
