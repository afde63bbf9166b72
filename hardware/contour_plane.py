"""A structure's planar contours, in patient coordinates, cut by a cine plane into a mask.

Planning contours are stacks of closed planar polygons, usually one per CT or MR slice
(axial), while the cine plane is sagittal, or oblique. Each contour stands for a slab of
the structure: from halfway to the contour level below to halfway to the one above (the
nearest-slice rule treatment planning systems display and compute dose with). A point of
the cine plane belongs to the structure when it lies inside, by the even-odd rule, the
contours of the level whose slab holds it: so a contour inside another is a hole, as
PS3.3 C.8.8.6 allows. Contours on more than one orientation are taken per orientation and
united.

Each pixel is sampled ``samples_per_px`` x ``samples_per_px`` times; it belongs to the
mask when at least half its samples are inside (the partial-volume rule of the
project's labels). Pure computation: the file is read by :mod:`hardware.rtstruct`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hardware.plane_geometry import PlaneGeometry

#: Largest distance of a contour's point from its own best plane (mm): a contour that
#: departs more than this is not planar and is refused.
PLANARITY_TOLERANCE_MM = 0.5
#: Contours whose normals are within this angle share an orientation (degrees).
ORIENTATION_TOLERANCE_DEG = 1.0
#: Contour levels closer than this are one level (mm).
LEVEL_TOLERANCE_MM = 0.05
#: Half-thickness given to a single-level stack: it then bounds the plane it lies in.
SINGLE_LEVEL_HALF_THICKNESS_MM = 0.5


def _plane_of(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(centroid, unit normal, largest off-plane distance mm) of a polygon's points."""
    centroid = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centroid, full_matrices=False)
    normal = vt[2] / np.linalg.norm(vt[2])
    # A canonical sign, so that parallel contours agree.
    k = int(np.argmax(np.abs(normal)))
    if normal[k] < 0:
        normal = -normal
    return centroid, normal, float(np.abs((points - centroid) @ normal).max())


def _inside_even_odd(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each (M, 2) point is inside the closed (N, 2) polygon (crossing number)."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(points.shape[0], dtype=bool)
    xa, ya = polygon[:, 0], polygon[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    for x0, y0, x1, y1 in zip(xa, ya, xb, yb):
        if y0 == y1:
            continue  # a horizontal edge crosses no horizontal ray
        crosses = (y0 > y) != (y1 > y)
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_at)
    return inside


def _orientation_groups(contours: Sequence[np.ndarray]) -> list[tuple[np.ndarray, list[int], np.ndarray]]:
    """Contours grouped by orientation: (normal, contour indices, level of each)."""
    cos_tol = np.cos(np.radians(ORIENTATION_TOLERANCE_DEG))
    planes = []
    for i, c in enumerate(contours):
        centroid, normal, off = _plane_of(c)
        if off > PLANARITY_TOLERANCE_MM:
            raise ValueError(f"contour {i} is not planar: a point lies {off:.2f} mm from its plane (tolerance "
                             f"{PLANARITY_TOLERANCE_MM:g} mm)")
        planes.append((centroid, normal))
    groups: list[tuple[np.ndarray, list[int]]] = []
    for i, (_, normal) in enumerate(planes):
        for g_normal, members in groups:
            if abs(float(normal @ g_normal)) >= cos_tol:
                members.append(i)
                break
        else:
            groups.append((normal, [i]))
    out = []
    for g_normal, members in groups:
        n = np.mean([planes[i][1] * np.sign(planes[i][1] @ g_normal) for i in members], axis=0)
        n /= np.linalg.norm(n)
        out.append((n, members, np.array([planes[i][0] @ n for i in members])))
    return out


def mask_on_plane(contours: Sequence[np.ndarray], geometry: PlaneGeometry, samples_per_px: int = 4) -> np.ndarray:
    """The pixels at least half inside the structure bounded by ``contours`` on the cine
    plane ``geometry``: :func:`fraction_on_plane` >= 1/2.

    Parameters and errors as :func:`fraction_on_plane`; returns a (rows, cols) bool
    ndarray, possibly empty (the caller decides what an empty cut means).
    """
    return fraction_on_plane(contours, geometry, samples_per_px) >= 0.5


def fraction_on_plane(contours: Sequence[np.ndarray], geometry: PlaneGeometry, samples_per_px: int = 4) -> np.ndarray:
    """The share of each pixel of the cine plane ``geometry`` inside the structure bounded
    by ``contours`` (its partial volume), from ``samples_per_px``**2 sub-samples.

    Parameters
    ----------
    contours : sequence of (N, 3) float ndarray
        Closed planar polygons in patient coordinates (mm), N >= 3.
    geometry : PlaneGeometry
        The cine frame's plane.
    samples_per_px : int
        Samples per pixel along each axis.

    Returns
    -------
    (rows, cols) float64 ndarray
        In [0, 1], in steps of ``1 / samples_per_px**2``.

    Raises
    ------
    ValueError
        A contour is not planar or has fewer than 3 points.
    """
    for i, c in enumerate(contours):
        if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] < 3:
            raise ValueError(f"contour {i} must be an (N >= 3, 3) array of points, got shape {c.shape}")
    rows, cols = geometry.shape
    k = int(samples_per_px)
    offsets = (np.arange(k) + 0.5) / k - 0.5
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    sub_r = (rr[:, :, None, None] + offsets[None, None, :, None]).repeat(k, axis=3)
    sub_c = (cc[:, :, None, None] + offsets[None, None, None, :]).repeat(k, axis=2)
    points = geometry.pixel_to_patient_mm(np.column_stack([sub_r.ravel(), sub_c.ravel()]))
    inside = np.zeros(points.shape[0], dtype=bool)
    for normal, members, levels in _orientation_groups(contours):
        order = np.argsort(levels)
        unique: list[float] = []
        level_of = np.empty(len(members), dtype=int)
        for j in order:
            if not unique or levels[j] - unique[-1] > LEVEL_TOLERANCE_MM:
                unique.append(float(levels[j]))
            level_of[j] = len(unique) - 1
        lv = np.array(unique)
        if lv.size > 1:
            mids = (lv[1:] + lv[:-1]) / 2.0
            lo, hi = lv[0] - (lv[1] - lv[0]) / 2.0, lv[-1] + (lv[-1] - lv[-2]) / 2.0
        else:
            mids = np.empty(0)
            lo, hi = lv[0] - SINGLE_LEVEL_HALF_THICKNESS_MM, lv[0] + SINGLE_LEVEL_HALF_THICKNESS_MM
        s = points @ normal
        in_stack = (s >= lo) & (s <= hi)
        slab = np.searchsorted(mids, s)
        # An in-plane basis for the contours' orientation.
        helper = np.eye(3)[int(np.argmin(np.abs(normal)))]
        e1 = np.cross(normal, helper)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(normal, e1)
        for level in range(lv.size):
            at = np.flatnonzero(in_stack & (slab == level))
            if at.size == 0:
                continue
            uv = np.column_stack([points[at] @ e1, points[at] @ e2])
            hit = np.zeros(at.size, dtype=bool)
            for j, i in enumerate(members):
                if level_of[j] == level:
                    polygon = contours[i]
                    hit ^= _inside_even_odd(uv, np.column_stack([polygon @ e1, polygon @ e2]))
            inside[at] |= hit
    return inside.reshape(rows, cols, k * k).mean(axis=2)


def distance_to_plane_mm(contours: Sequence[np.ndarray], geometry: PlaneGeometry) -> float:
    """How far the contours are from the cine plane (mm), for messages: 0 when a contour
    has points on both sides of it (it crosses the plane), else the smallest distance of
    a contour point from the plane."""
    nearest = np.inf
    for c in contours:
        d = geometry.patient_to_pixel(c)[1]
        if d.min() <= 0.0 <= d.max():
            return 0.0
        nearest = min(nearest, float(np.abs(d).min()))
    return float(nearest)
