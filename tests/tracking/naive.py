"""Deliberately slow, obviously correct references for the tracking kernels.

Plain Python loops and numpy in float64, written straight from the definitions, sharing
no code with the kernels (only the documented constants).
"""

from __future__ import annotations

import math

import numpy as np

from tracking.zncc import FLAT_VARIANCE_RATIO, SHARPNESS_EXCLUSION_PX


def zncc_naive(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """ZNCC of ``template`` at every position in ``image``, patch by patch.

    A patch holding NaN or inf scores NaN; a patch whose variance is at most
    ``FLAT_VARIANCE_RATIO`` times the template's scores 0.
    """
    image = np.asarray(image, dtype=np.float64)
    template = np.asarray(template, dtype=np.float64)
    h, w = template.shape
    n_rows = image.shape[0] - h + 1
    n_cols = image.shape[1] - w + 1
    t_dev = template - template.mean()
    t_ssd = float((t_dev**2).sum())
    scores = np.empty((n_rows, n_cols))
    for y in range(n_rows):
        for x in range(n_cols):
            patch = image[y : y + h, x : x + w]
            if not np.isfinite(patch).all():
                scores[y, x] = math.nan
                continue
            p_dev = patch - patch.mean()
            p_ssd = float((p_dev**2).sum())
            if p_ssd <= FLAT_VARIANCE_RATIO * t_ssd:
                scores[y, x] = 0.0
                continue
            scores[y, x] = float((t_dev * p_dev).sum()) / math.sqrt(t_ssd * p_ssd)
    return scores


def _parabola_vertex(f_minus: float, f_0: float, f_plus: float) -> float:
    """Vertex offset of the parabola through (-1, f_minus), (0, f_0), (1, f_plus),
    by solving the 3 x 3 interpolation system; 0 when not concave or not finite."""
    values = np.array([f_minus, f_0, f_plus])
    if not np.isfinite(values).all():
        return 0.0
    x = np.array([-1.0, 0.0, 1.0])
    a, b, _ = np.linalg.solve(np.stack([x**2, x, np.ones(3)], axis=1), values)
    if not a < 0.0:
        return 0.0
    return float(np.clip(-b / (2.0 * a), -0.5, 0.5))


def subpixel_peak_naive(scores: np.ndarray) -> tuple[float, float, float, float, bool]:
    """Same contract as :func:`tracking.zncc.subpixel_peak`, fitted with ``lstsq``.

    Integer maximum: the first (row-major) largest finite score. Interior maximum: the
    vertex of the least-squares quadratic through its 3 x 3 neighbourhood if that is
    concave and within one pixel per axis, else 1D parabolas per axis. On the border: no step
    along the border axis. Sharpness: peak minus mean of the finite scores outside the
    Chebyshev zone of radius ``SHARPNESS_EXCLUSION_PX``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n_rows, n_cols = scores.shape
    best = -math.inf
    br = bc = -1
    for r in range(n_rows):
        for c in range(n_cols):
            if np.isfinite(scores[r, c]) and scores[r, c] > best:
                best, br, bc = float(scores[r, c]), r, c
    if br < 0:
        return math.nan, math.nan, math.nan, math.nan, False

    rr, cc = np.mgrid[0:n_rows, 0:n_cols]
    outside = np.maximum(abs(rr - br), abs(cc - bc)) > SHARPNESS_EXCLUSION_PX
    others = scores[outside & np.isfinite(scores)]
    sharpness = best - float(others.mean()) if others.size else 0.0

    edge_r = br in (0, n_rows - 1)
    edge_c = bc in (0, n_cols - 1)
    if not edge_r and not edge_c:
        patch = scores[br - 1 : br + 2, bc - 1 : bc + 2]
        if np.isfinite(patch).all():
            u, v = np.mgrid[-1:2, -1:2]
            u = u.ravel().astype(float)
            v = v.ravel().astype(float)
            design = np.stack([np.ones(9), u, v, u**2, v**2, u * v], axis=1)
            _, g_r, g_c, a_rr, a_cc, a_rc = np.linalg.lstsq(design, patch.ravel(), rcond=None)[0]
            hessian = np.array([[2 * a_rr, a_rc], [a_rc, 2 * a_cc]])
            if np.all(np.linalg.eigvalsh(hessian) < 0):
                du, dv = np.linalg.solve(hessian, -np.array([g_r, g_c]))
                if abs(du) <= 1.0 and abs(dv) <= 1.0:
                    return br + float(du), bc + float(dv), best, sharpness, False
    dr = 0.0 if edge_r else _parabola_vertex(scores[br - 1, bc], best, scores[br + 1, bc])
    dc = 0.0 if edge_c else _parabola_vertex(scores[br, bc - 1], best, scores[br, bc + 1])
    return br + dr, bc + dc, best, sharpness, edge_r or edge_c


def keys_kernel_naive(s: float) -> float:
    """Keys (1981) cubic convolution kernel, a = -0.5, at distance ``s`` from a tap."""
    s = abs(s)
    if s < 1.0:
        return 1.5 * s**3 - 2.5 * s**2 + 1.0
    if s < 2.0:
        return -0.5 * s**3 + 2.5 * s**2 - 4.0 * s + 2.0
    return 0.0


def keys_sample_naive(image: np.ndarray, r: float, c: float) -> float:
    """Keys cubic interpolation of ``image`` at (r, c) px: the 4 x 4 taps around it."""
    ir, ic = math.floor(r), math.floor(c)
    value = 0.0
    for a in range(ir - 1, ir + 3):
        for b in range(ic - 1, ic + 3):
            value += keys_kernel_naive(r - a) * keys_kernel_naive(c - b) * float(image[a, b])
    return value


def keys_warp_naive(image: np.ndarray, row_px: float, col_px: float, shape: tuple[int, int]) -> np.ndarray:
    """The ``shape`` patch of ``image`` whose top-left lies at (row_px, col_px), by Keys
    cubic interpolation of every pixel (:func:`keys_sample_naive`)."""
    return np.array([[keys_sample_naive(image, row_px + i, col_px + j) for j in range(shape[1])]
                     for i in range(shape[0])])


def affine_ic_naive(
    reference: np.ndarray,
    origin_px: tuple[int, int],
    shape: tuple[int, int],
    weights: np.ndarray,
    frame: np.ndarray,
    start_px: tuple[float, float],
    max_iter: int,
    tol_px: float,
) -> tuple[np.ndarray, int]:
    """Inverse-compositional affine Gauss-Newton with gain and offset, written out.

    The template is ``reference[r0:r0+h, c0:c0+w]``, its gradient ``np.gradient`` of the
    reference crop with one pixel of context. Every step samples the frame pixel by pixel
    (Keys cubic), fits ``I_w ~ SD (g Delta) + g T + o`` by weighted ``lstsq`` and composes
    3 x 3 homogeneous matrices: ``W <- W @ inv(W(Delta))``. Coordinates are centred on the
    region's centre. Stops when the increment moves every region corner by < ``tol_px``.

    Returns
    -------
    (2, 3) ndarray
        Affine from reference (row, col, 1) to frame (row, col).
    int
        Steps taken.
    """
    ref = np.asarray(reference, dtype=np.float64)
    r0, c0 = origin_px
    h, w = shape
    a0, a1 = max(r0 - 1, 0), min(r0 + h + 1, ref.shape[0])
    b0, b1 = max(c0 - 1, 0), min(c0 + w + 1, ref.shape[1])
    g_r, g_c = np.gradient(ref[a0:a1, b0:b1])
    g_r = g_r[r0 - a0 : r0 - a0 + h, c0 - b0 : c0 - b0 + w]
    g_c = g_c[r0 - a0 : r0 - a0 + h, c0 - b0 : c0 - b0 + w]
    tmpl = ref[r0 : r0 + h, c0 : c0 + w]
    cr, cc = r0 + (h - 1) / 2.0, c0 + (w - 1) / 2.0
    rows = []
    coords = []
    for i in range(h):
        for j in range(w):
            ur, uc = r0 + i - cr, c0 + j - cc
            rows.append([g_r[i, j] * ur, g_r[i, j] * uc, g_r[i, j], g_c[i, j] * ur, g_c[i, j] * uc,
                         g_c[i, j], tmpl[i, j], 1.0])
            coords.append((ur, uc))
    design = np.array(rows)
    sw = np.sqrt(np.asarray(weights, dtype=np.float64).ravel())
    warp = np.array([[1.0, 0.0, cr + start_px[0]], [0.0, 1.0, cc + start_px[1]], [0.0, 0.0, 1.0]])
    corners = np.array([[r0 - cr, c0 - cc, 1.0], [r0 - cr, c0 + w - 1 - cc, 1.0],
                        [r0 + h - 1 - cr, c0 - cc, 1.0], [r0 + h - 1 - cr, c0 + w - 1 - cc, 1.0]])
    steps = 0
    for _ in range(max_iter):
        warped = np.array([keys_sample_naive(frame, *(warp @ np.array([ur, uc, 1.0]))[:2]) for ur, uc in coords])
        q = np.linalg.lstsq(design * sw[:, None], warped * sw, rcond=None)[0]
        delta = q[:6] / q[6]
        inc = np.array([[1.0 + delta[0], delta[1], delta[2]], [delta[3], 1.0 + delta[4], delta[5]], [0.0, 0.0, 1.0]])
        warp = warp @ np.linalg.inv(inc)
        steps += 1
        moved = np.abs((inc - np.eye(3)) @ corners.T)[:2]
        if moved.max() < tol_px:
            break
    # Uncentre: frame = L (x - centre) + b.
    lin, b = warp[:2, :2], warp[:2, 2]
    return np.column_stack([lin, b - lin @ np.array([cr, cc])]), steps
