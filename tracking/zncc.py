"""Zero-mean normalised cross-correlation (ZNCC) of a template over an image window, and
the sub-pixel location of the best match in a score map.

Definition (identical to OpenCV's ``cv2.matchTemplate(..., cv2.TM_CCOEFF_NORMED)`` and to
``skimage.feature.match_template``): for a template ``T`` of shape ``(h, w)`` placed with
its top-left corner at image pixel ``(y, x)``,

.. math::

    R(y, x) = \\frac{\\sum_{i,j} T'_{ij} \\, I'_{y+i, x+j}}
                   {\\sqrt{\\sum_{i,j} T'^2_{ij} \\; \\sum_{i,j} I'^2_{y+i, x+j}}}

where ``T' = T - mean(T)`` and ``I'`` is the image patch minus its own mean. ``R`` lies in
``[-1, 1]``; 1 is a perfect match up to brightness offset and contrast gain.

How the kernel is fast and allocation-free:

* The window is first copied, minus the template mean ``c``, into a float32 scratch
  buffer (the copy also counts NaN and inf pixels). Working on deviations from ``c``
  keeps float32 accurate (no large common offset in the sums) and keeps the variance
  ``sum((I-c)**2) - sum(I-c)**2 / n`` from cancelling catastrophically.
* The numerator needs no patch mean, because ``sum(T') == 0``:
  ``sum(T' * I') == sum(T' * (I - c))``. It is accumulated in float32 for 8 neighbouring
  output columns at once, along template rows padded with zeros to a multiple of 8
  columns, which LLVM turns into 8-lane SIMD code with no scalar remainder. float32
  halves the work of float64 and keeps scores within ~1e-6 of a float64 computation
  (measured in tests/tracking/test_zncc.py, far below the score differences that decide
  a peak).
* The patch sums ``sum(I - c)`` and ``sum((I - c)**2)`` come from running column sums
  (one add and one subtract per column and output row) and a running sum along the row,
  in float64, in buffers the caller preallocates. When the searched region holds a NaN or
  inf pixel (which would poison every later running sum), each patch is summed directly
  in float64 instead: slower, but a bad pixel then only turns the scores of its own
  patches NaN.
* Flat patches (variance at most :data:`FLAT_VARIANCE_RATIO` times the template's) score
  0, as scikit-image does, instead of dividing by a vanishing norm.

References
----------
J. P. Lewis, "Fast normalized cross-correlation", Vision Interface 1995.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from tracking._numba_options import NJIT_OPTIONS

__all__ = [
    "FLAT_VARIANCE_RATIO",
    "SHARPNESS_EXCLUSION_PX",
    "pad_template",
    "prepare_template",
    "subpixel_peak",
    "window_buffer",
    "zncc_map",
]

FLAT_VARIANCE_RATIO = 1e-8
"""A patch whose variance is at most this fraction of the template's variance is "flat":
its score is set to 0 (its ZNCC is undefined or pure rounding noise). 1e-8 means a
standard deviation 10^4 times smaller than the template's, below float32 resolution of
typical MR intensities."""

SHARPNESS_EXCLUSION_PX = 2
"""Half-width in pixels (Chebyshev distance) of the zone around the integer peak that is
left out when the sharpness of a peak is measured (a 5 x 5 zone)."""

_BLOCK = 8  # output columns computed together (8 independent accumulators)
_LANES = 8  # float32 lanes of an AVX2 register: the padded template width is a multiple


def pad_template(tmpl_zm: np.ndarray) -> np.ndarray:
    """The zero-mean template in float32, with zero columns appended up to a multiple of 8.

    The kernel's inner loop runs along template rows; LLVM vectorises it 8 float32 lanes
    at a time, and a width that is a multiple of 8 leaves no scalar remainder loop (which
    cost as much as the vector part for 20-30 px templates). The zero columns multiply
    the zero padding of the kernel's window copy, so they add nothing.

    Parameters
    ----------
    tmpl_zm : (h, w) float64 ndarray
        Zero-mean template (from :func:`prepare_template`).

    Returns
    -------
    (h, w_pad) float32 C-contiguous ndarray
        ``w_pad = 8 * ceil(w / 8)``.
    """
    h, w = tmpl_zm.shape
    w_pad = -(-w // _LANES) * _LANES
    padded = np.zeros((h, w_pad), dtype=np.float32)
    padded[:, :w] = tmpl_zm
    return padded


def window_buffer(n_rows: int, n_cols: int, tmpl_shape: tuple[int, int]) -> np.ndarray:
    """Scratch for the kernel's float32 copy of a window of ``n_rows x n_cols`` positions.

    Returns
    -------
    (n_rows + h - 1, n_cols + w_pad - 1) float32 ndarray
        ``w_pad`` as in :func:`pad_template`.
    """
    h, w = tmpl_shape
    w_pad = -(-w // _LANES) * _LANES
    return np.zeros((n_rows + h - 1, n_cols + w_pad - 1), dtype=np.float32)


@numba.njit(**NJIT_OPTIONS)
def _correlate_row(win, tmpl_pad, win_row, n_cols, out_row):
    """Write ``sum(tmpl_pad * win[patch])`` for one output row into ``out_row``.

    Parameters
    ----------
    win : (>= win_row + h, >= n_cols + w_pad - 1) float32 ndarray
        Window copy, zero beyond the data columns.
    tmpl_pad : (h, w_pad) float32 ndarray
        Zero-mean template padded with zero columns (:func:`pad_template`).
    win_row : int
        Window row of the top of the patches.
    n_cols : int
        Number of patches, the first one at window column 0.
    out_row : (>= n_cols,) float64 ndarray
        Receives the numerators.
    """
    h, w_pad = tmpl_pad.shape
    zero = np.float32(0.0)
    if n_cols >= _BLOCK:
        c = 0
        while c < n_cols:
            # The last block is shifted left to end at n_cols (overlapping the previous
            # one) so every block is full width and no scalar tail loop is needed.
            cs = c if c + _BLOCK <= n_cols else n_cols - _BLOCK
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
            for i in range(h):
                # A slice starting at the block lets LLVM see non-negative, consecutive
                # indices (no wrap-around selects), which is what allows vectorisation.
                seg = win[win_row + i, cs : cs + w_pad + _BLOCK - 1]
                trow = tmpl_pad[i]
                for j in range(w_pad):
                    t = trow[j]
                    a0 += t * seg[j]
                    a1 += t * seg[j + 1]
                    a2 += t * seg[j + 2]
                    a3 += t * seg[j + 3]
                    a4 += t * seg[j + 4]
                    a5 += t * seg[j + 5]
                    a6 += t * seg[j + 6]
                    a7 += t * seg[j + 7]
            out_row[cs] = a0
            out_row[cs + 1] = a1
            out_row[cs + 2] = a2
            out_row[cs + 3] = a3
            out_row[cs + 4] = a4
            out_row[cs + 5] = a5
            out_row[cs + 6] = a6
            out_row[cs + 7] = a7
            c = cs + _BLOCK
    else:
        for c in range(n_cols):
            acc = zero
            for i in range(h):
                seg = win[win_row + i, c : c + w_pad]
                trow = tmpl_pad[i]
                for j in range(w_pad):
                    acc += trow[j] * seg[j]
            out_row[c] = acc


@numba.njit(**NJIT_OPTIONS)
def _copy_window(image, shift, row0, col0, n_rows, n_cols, win):
    """Copy ``image[row0:row0+n_rows, col0:col0+n_cols] - shift`` into ``win`` as float32,
    zero the rest of ``win``'s columns, and return the number of NaN or inf pixels.

    Subtracting the template mean before rounding to float32 keeps the copy's relative
    precision that of the deviations, not of the absolute intensities."""
    n_bad = 0
    zero = np.float32(0.0)
    width = win.shape[1]
    for r in range(n_rows):
        src = image[row0 + r, col0 : col0 + n_cols]
        dst = win[r]
        for c in range(n_cols):
            v = src[c]
            if not math.isfinite(v):
                n_bad += 1
            dst[c] = v - shift
        for c in range(n_cols, width):
            dst[c] = zero
    return n_bad


@numba.njit(**NJIT_OPTIONS)
def _count_nonfinite(image, row0, col0, n_rows, n_cols):
    """Number of NaN or inf pixels in ``image[row0:row0+n_rows, col0:col0+n_cols]``."""
    n_bad = 0
    for r in range(n_rows):
        seg = image[row0 + r, col0 : col0 + n_cols]
        for c in range(n_cols):
            if not math.isfinite(seg[c]):
                n_bad += 1
    return n_bad


@numba.njit(**NJIT_OPTIONS)
def _clamped_ratio(num, patch_ssd, tmpl_norm):
    """``num / (sqrt(patch_ssd) * tmpl_norm)`` clamped to [-1, 1]; NaN stays NaN."""
    score = num / (math.sqrt(patch_ssd) * tmpl_norm)
    # Clamp rounding overshoot; comparisons are False for NaN, which is kept.
    if score > 1.0:
        return 1.0
    if score < -1.0:
        return -1.0
    return score


@numba.njit(**NJIT_OPTIONS)
def _zncc_kernel(
    image,
    tmpl_zm,
    tmpl_pad,
    tmpl_ssd,
    shift,
    row0,
    col0,
    n_rows,
    n_cols,
    win,
    colsum,
    colsum2,
    out,
):
    """ZNCC of a prepared template at the patches ``(row0 + r, col0 + c)``.

    Never raises and never allocates. The caller guarantees that every patch lies inside
    the image: ``0 <= row0``, ``row0 + n_rows + h - 1 <= H`` and likewise for columns.

    Parameters
    ----------
    image : (H, W) float32 or float64 ndarray, C-contiguous
        Full image; the window is addressed by offsets.
    tmpl_zm : (h, w) float64 ndarray
        Template minus its mean.
    tmpl_pad : (h, w_pad) float32 ndarray
        The same, padded (:func:`pad_template`).
    tmpl_ssd : float
        ``sum(tmpl_zm ** 2)``, the template's sum of squared deviations.
    shift : float
        The template mean; subtracted from the image before anything is summed.
    row0, col0 : int
        Image row and column of the top-left corner of the first patch.
    n_rows, n_cols : int
        Number of patch positions (score rows and columns) to compute.
    win : (>= n_rows + h - 1, >= n_cols + w_pad - 1) float32 ndarray
        Scratch for the window copy (:func:`window_buffer`).
    colsum, colsum2 : (>= n_cols + w - 1,) float64 ndarray
        Scratch buffers for the running column sums.
    out : (>= n_rows, >= n_cols) float64 ndarray
        Receives the scores in ``out[:n_rows, :n_cols]``: NaN where the patch holds a
        non-finite pixel, 0 where the patch (or the template) is flat.

    Returns
    -------
    n_flat : int
        Number of positions scored 0 because their patch (or the template) is flat.
    """
    h, w = tmpl_zm.shape
    inv_n = 1.0 / (h * w)
    if not (tmpl_ssd > 0.0 and math.isfinite(tmpl_ssd)):
        for r in range(n_rows):
            for c in range(n_cols):
                out[r, c] = 0.0
        return n_rows * n_cols
    tmpl_norm = math.sqrt(tmpl_ssd)
    flat_ssd = FLAT_VARIANCE_RATIO * tmpl_ssd
    n_sum_cols = n_cols + w - 1
    n_bad = _copy_window(image, shift, row0, col0, n_rows + h - 1, n_sum_cols, win)
    n_flat = 0
    if n_bad > 0:
        # A NaN or inf would poison the running sums for every later position (and, via
        # the zero-padded template columns, the numerators of its neighbours): sum each
        # patch directly in float64 instead, so it only affects the patches holding it.
        for r in range(n_rows):
            for c in range(n_cols):
                num = 0.0
                bs = 0.0
                bs2 = 0.0
                for i in range(h):
                    seg = image[row0 + r + i, col0 + c : col0 + c + w]
                    trow = tmpl_zm[i]
                    for j in range(w):
                        v = seg[j] - shift
                        num += trow[j] * v
                        bs += v
                        bs2 += v * v
                patch_ssd = bs2 - bs * bs * inv_n
                if patch_ssd <= flat_ssd:  # False for NaN: a non-finite patch scores NaN
                    out[r, c] = 0.0
                    n_flat += 1
                else:
                    out[r, c] = _clamped_ratio(num, patch_ssd, tmpl_norm)
        return n_flat
    for r in range(n_rows):
        out_row = out[r]
        # Numerators in float32 (8 lanes per AVX2 register): the window holds deviations
        # from the template mean, so the products carry no large common offset and the
        # sums keep ~1e-6 relative accuracy (tests/tracking/test_zncc.py bounds it).
        _correlate_row(win, tmpl_pad, r, n_cols, out_row)
        # Column sums over window rows r .. r + h - 1, in float64: built once, then slid
        # down one row (add the entering row, subtract the leaving one).
        if r == 0:
            for c in range(n_sum_cols):
                colsum[c] = 0.0
                colsum2[c] = 0.0
            for i in range(h):
                seg = win[i]
                for c in range(n_sum_cols):
                    v = np.float64(seg[c])
                    colsum[c] += v
                    colsum2[c] += v * v
        else:
            new = win[r + h - 1]
            old = win[r - 1]
            for c in range(n_sum_cols):
                a = np.float64(new[c])
                b = np.float64(old[c])
                colsum[c] += a - b
                colsum2[c] += a * a - b * b
        # Patch sums: a running sum of w column sums along the row.
        bs = 0.0
        bs2 = 0.0
        for j in range(w):
            bs += colsum[j]
            bs2 += colsum2[j]
        for c in range(n_cols):
            if c > 0:
                bs += colsum[c + w - 1] - colsum[c - 1]
                bs2 += colsum2[c + w - 1] - colsum2[c - 1]
            patch_ssd = bs2 - bs * bs * inv_n
            if patch_ssd <= flat_ssd:  # also catches rounding below 0
                out_row[c] = 0.0
                n_flat += 1
            else:
                out_row[c] = _clamped_ratio(out_row[c], patch_ssd, tmpl_norm)
    return n_flat


@numba.njit(**NJIT_OPTIONS)
def _parabolic_offset(f_minus, f_0, f_plus):
    """Offset in ``[-0.5, 0.5]`` of the vertex of the parabola through 3 equally spaced
    samples centred on a maximum; 0 when the samples are not concave or not finite."""
    denom = f_minus - 2.0 * f_0 + f_plus
    if denom < 0.0:  # False for NaN
        off = 0.5 * (f_minus - f_plus) / denom
        if off > 0.5:
            off = 0.5
        elif off < -0.5:
            off = -0.5
        return off
    return 0.0


@numba.njit(**NJIT_OPTIONS)
def _peak_kernel(scores, n_rows, n_cols):
    """Sub-pixel peak of ``scores[:n_rows, :n_cols]``; see :func:`subpixel_peak`."""
    best = -math.inf
    br = -1
    bc = -1
    for r in range(n_rows):
        for c in range(n_cols):
            v = scores[r, c]
            if v > best:  # NaN never wins
                best = v
                br = r
                bc = c
    if br < 0:
        return math.nan, math.nan, math.nan, math.nan, False

    # Sharpness: peak minus the mean of the finite scores outside the exclusion zone.
    total = 0.0
    count = 0
    for r in range(n_rows):
        outside_r = abs(r - br) > SHARPNESS_EXCLUSION_PX
        for c in range(n_cols):
            if outside_r or abs(c - bc) > SHARPNESS_EXCLUSION_PX:
                v = scores[r, c]
                if math.isfinite(v):
                    total += v
                    count += 1
    sharpness = best - total / count if count > 0 else 0.0

    edge_r = br == 0 or br == n_rows - 1
    edge_c = bc == 0 or bc == n_cols - 1
    dr = 0.0
    dc = 0.0
    fitted = False
    if not edge_r and not edge_c:
        # Least-squares quadratic z = a + br*u + bc*v + drr*u^2 + dcc*v^2 + e*u*v on the
        # 3 x 3 neighbourhood (u: row offset, v: column offset). On this grid the basis
        # {1, u, v, u^2 - 2/3, v^2 - 2/3, u*v} is orthogonal, so each coefficient is a
        # single weighted sum.
        g_r = 0.0
        g_c = 0.0
        c_rr = 0.0
        c_cc = 0.0
        c_rc = 0.0
        for u in range(-1, 2):
            for v in range(-1, 2):
                z = scores[br + u, bc + v]
                g_r += u * z
                g_c += v * z
                c_rr += (u * u - 2.0 / 3.0) * z
                c_cc += (v * v - 2.0 / 3.0) * z
                c_rc += u * v * z
        g_r /= 6.0
        g_c /= 6.0
        h_rr = c_rr  # = 2 * (c_rr / 2): the Hessian diagonal of the fitted quadratic
        h_cc = c_cc
        h_rc = c_rc / 4.0
        det = h_rr * h_cc - h_rc * h_rc
        if h_rr < 0.0 and h_cc < 0.0 and det > 0.0:  # concave (and finite)
            u_hat = (-h_cc * g_r + h_rc * g_c) / det
            v_hat = (h_rc * g_r - h_rr * g_c) / det
            # With a cross term the vertex can legitimately lie more than half a pixel
            # from the integer maximum (an oblique ridge), but beyond the 3 x 3 support
            # the fit is extrapolating (noise, no real peak): fall back to 1D fits.
            if abs(u_hat) <= 1.0 and abs(v_hat) <= 1.0:
                dr = u_hat
                dc = v_hat
                fitted = True
    if not fitted:
        if not edge_r:
            dr = _parabolic_offset(scores[br - 1, bc], best, scores[br + 1, bc])
        if not edge_c:
            dc = _parabolic_offset(scores[br, bc - 1], best, scores[br, bc + 1])
    return br + dr, bc + dc, best, sharpness, edge_r or edge_c


@numba.njit(**NJIT_OPTIONS)
def subpixel_peak(scores):
    """Sub-pixel location, value and distinctness of the maximum of a score map.

    Never raises. NaN scores are ignored.

    Parameters
    ----------
    scores : (M, N) float ndarray
        A ZNCC map (e.g. from :func:`zncc_map`).

    Returns
    -------
    row, col : float
        Sub-pixel position of the peak in score-map pixels. Inside the map it is the
        vertex of a least-squares 2D quadratic fitted to the 3 x 3 neighbourhood of the
        integer maximum (its cross term follows oblique correlation ridges, which 1D
        fits along the axes can miss by more than 0.1 px); when that fit is not concave or
        its vertex lies more than one pixel away along an axis, 1D parabolas along each
        axis are used instead (each within half a pixel). Along an axis where
        the maximum lies on the first or last row (column) there is no sub-pixel step:
        the true peak may lie outside the map.
    peak_value : float
        The largest score (the sampled maximum, not the fitted one, so it stays <= 1).
    sharpness : float
        How distinct the peak is: ``peak_value`` minus the mean of the finite scores whose
        Chebyshev distance from the integer peak exceeds :data:`SHARPNESS_EXCLUSION_PX`.
        In ``[0, 2]`` for a ZNCC map; near 0 for a flat or ambiguous map, large for a
        single clear peak over a low background. 0 when no score lies outside the zone.
    at_edge : bool
        True when the integer maximum lies on the border of the map.

    All four floats are NaN (and ``at_edge`` False) when the map holds no finite score.
    """
    return _peak_kernel(scores, scores.shape[0], scores.shape[1])



# --------------------------------------------------------------------------- window search
# The tracker's per-frame kernel lives here, next to the kernels it calls, on purpose:
# Numba's cache checks only the source file of the function it caches, so a caller cached
# from another module would keep running a stale copy of these kernels after they change.

# Status codes returned by _search_kernel.
_SEARCH_OK = 0
_SEARCH_BAD_PREDICTION = 1
_SEARCH_WINDOW_OUTSIDE = 2
_SEARCH_NONFINITE_PIXELS = 3
_SEARCH_NO_CONTRAST = 4
_SEARCH_NO_FINITE_SCORE = 5

# Layout of _search_kernel's result buffer.
_R_ROW_PX, _R_COL_PX, _R_PEAK, _R_SHARPNESS, _R_AT_EDGE = 0, 1, 2, 3, 4
_R_WIN_ROW0, _R_WIN_COL0, _R_WIN_ROWS, _R_WIN_COLS = 5, 6, 7, 8
_SEARCH_RESULT_SIZE = 9


@numba.njit(**NJIT_OPTIONS)
def _search_kernel(
    image,
    tmpl_zm,
    tmpl_pad,
    tmpl_ssd,
    shift,
    tmpl_row0,
    tmpl_col0,
    pred_row_px,
    pred_col_px,
    search_rows_px,
    search_cols_px,
    win,
    colsum,
    colsum2,
    scores,
    result,
):
    """Search a window of one frame for the template (the tracker's per-frame kernel).

    Never raises, never allocates.

    Parameters
    ----------
    image : (H, W) float32 or float64 ndarray, C-contiguous
    tmpl_zm : (h, w) float64 ndarray
        Zero-mean template; ``tmpl_ssd`` its sum of squares, ``shift`` its mean.
    tmpl_pad : (h, w_pad) float32 ndarray
        The same, padded (:func:`pad_template`).
    tmpl_row0, tmpl_col0 : int
        Top-left pixel of the template in the reference frame.
    pred_row_px, pred_col_px : float
        Predicted displacement in pixels; the window is centred on its nearest pixel.
    search_rows_px, search_cols_px : int
        Half-size of the search window in pixels.
    win : (>= n_rows_max + h - 1, >= n_cols_max + w_pad - 1) float32 ndarray
        Scratch for the ZNCC kernel (:func:`window_buffer`).
    colsum, colsum2 : (>= n_cols_max + w - 1,) float64 ndarray
        Scratch for the ZNCC kernel.
    scores : (>= n_rows_max, >= n_cols_max) float64 ndarray
        Receives the ZNCC map of the window, where ``n_rows_max = min(2 * search_rows_px
        + 1, H - h + 1)`` and ``n_cols_max = min(2 * search_cols_px + 1, W - w + 1)``.
    result : (9,) float64 ndarray
        Receives displacement (row, col px), peak, sharpness, at-edge flag, and the
        window (first template row and column, number of rows and columns).

    Returns
    -------
    status : int
        ``_SEARCH_OK`` or the code of the reason the frame could not be tracked.
    """
    n_img_rows, n_img_cols = image.shape
    h, w = tmpl_zm.shape
    for k in range(result.shape[0]):
        result[k] = math.nan
    if not (math.isfinite(pred_row_px) and math.isfinite(pred_col_px)):
        return _SEARCH_BAD_PREDICTION
    # Clamp before rounding so an absurd prediction cannot overflow the integer cast;
    # any prediction beyond the image size puts the window outside the image anyway.
    lim_r = float(n_img_rows + search_rows_px)
    lim_c = float(n_img_cols + search_cols_px)
    centre_r = int(math.floor(min(max(pred_row_px, -lim_r), lim_r) + 0.5))
    centre_c = int(math.floor(min(max(pred_col_px, -lim_c), lim_c) + 0.5))
    row0 = max(tmpl_row0 + centre_r - search_rows_px, 0)
    row1 = min(tmpl_row0 + centre_r + search_rows_px, n_img_rows - h)
    col0 = max(tmpl_col0 + centre_c - search_cols_px, 0)
    col1 = min(tmpl_col0 + centre_c + search_cols_px, n_img_cols - w)
    n_rows = row1 - row0 + 1
    n_cols = col1 - col0 + 1
    result[_R_WIN_ROW0] = row0
    result[_R_WIN_COL0] = col0
    result[_R_WIN_ROWS] = max(n_rows, 0)
    result[_R_WIN_COLS] = max(n_cols, 0)
    if n_rows < 1 or n_cols < 1:
        return _SEARCH_WINDOW_OUTSIDE
    if _count_nonfinite(image, row0, col0, n_rows + h - 1, n_cols + w - 1) > 0:
        return _SEARCH_NONFINITE_PIXELS
    n_flat = _zncc_kernel(
        image, tmpl_zm, tmpl_pad, tmpl_ssd, shift, row0, col0, n_rows, n_cols,
        win, colsum, colsum2, scores,
    )
    if n_flat == n_rows * n_cols:
        return _SEARCH_NO_CONTRAST
    row, col, peak, sharpness, at_edge = _peak_kernel(scores, n_rows, n_cols)
    if not (math.isfinite(peak) and math.isfinite(row) and math.isfinite(col)):
        return _SEARCH_NO_FINITE_SCORE
    result[_R_ROW_PX] = row0 + row - tmpl_row0
    result[_R_COL_PX] = col0 + col - tmpl_col0
    result[_R_PEAK] = peak
    result[_R_SHARPNESS] = sharpness
    result[_R_AT_EDGE] = 1.0 if at_edge else 0.0
    return _SEARCH_OK


def prepare_template(template: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Validate a template and return what the kernel needs.

    Parameters
    ----------
    template : (h, w) real ndarray
        Finite, not constant.

    Returns
    -------
    tmpl_zm : (h, w) float64 ndarray
        ``template - mean(template)``, C-contiguous.
    tmpl_ssd : float
        ``sum(tmpl_zm ** 2)``.
    mean : float
        The template mean (the ``shift`` argument of the kernel).

    Raises
    ------
    ValueError
        If the template is not 2D, empty, non-finite, not real, or constant.
    """
    template = np.asarray(template)
    if template.ndim != 2:
        raise ValueError(f"template: must be a 2D array, got {template.ndim} dimensions")
    if template.size == 0:
        raise ValueError(f"template: must not be empty, got shape {template.shape}")
    if template.dtype.kind not in "biuf":
        raise ValueError(f"template: dtype must be real numeric, got {template.dtype}")
    tmpl = template.astype(np.float64)
    if not np.isfinite(tmpl).all():
        raise ValueError("template: must be finite (it holds NaN or inf)")
    if tmpl.max() == tmpl.min():
        raise ValueError("template: must not be constant (its ZNCC is undefined)")
    mean = float(tmpl.mean())
    tmpl_zm = np.ascontiguousarray(tmpl - mean)
    tmpl_ssd = float(np.dot(tmpl_zm.ravel(), tmpl_zm.ravel()))
    return tmpl_zm, tmpl_ssd, mean


def zncc_map(image: np.ndarray, template: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """ZNCC of a template at every position where it fits inside an image.

    Same result as ``cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)`` (up to
    rounding; flat patches score 0 here, see :data:`FLAT_VARIANCE_RATIO`).

    Parameters
    ----------
    image : (H, W) float32 or float64 ndarray
        May hold NaN or inf: scores whose patch contains such a pixel are NaN.
    template : (h, w) real ndarray
        Finite and not constant, with ``h <= H`` and ``w <= W``.
    out : (H - h + 1, W - w + 1) float64 C-contiguous writeable ndarray, optional
        Buffer for the result (avoids an allocation).

    Returns
    -------
    scores : (H - h + 1, W - w + 1) float64 ndarray
        ``scores[y, x]`` is the ZNCC of the template with its top-left corner at image
        pixel ``(y, x)``; ``out`` when given.

    Raises
    ------
    ValueError
        If an argument breaks the rules above.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        raise ValueError("image: must be a 2D numpy array")
    if image.dtype not in (np.float32, np.float64):
        raise ValueError(f"image: dtype must be float32 or float64, got {image.dtype}")
    tmpl_zm, tmpl_ssd, mean = prepare_template(template)
    h, w = tmpl_zm.shape
    n_rows = image.shape[0] - h + 1
    n_cols = image.shape[1] - w + 1
    if n_rows < 1 or n_cols < 1:
        raise ValueError(
            f"template: shape {tmpl_zm.shape} must not exceed the image shape {image.shape}"
        )
    if out is None:
        out = np.empty((n_rows, n_cols), dtype=np.float64)
    elif not (
        isinstance(out, np.ndarray)
        and out.shape == (n_rows, n_cols)
        and out.dtype == np.float64
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError(
            f"out: must be a writeable C-contiguous float64 array of shape {(n_rows, n_cols)}"
        )
    image = np.ascontiguousarray(image)
    win = window_buffer(n_rows, n_cols, (h, w))
    colsum = np.empty(n_cols + w - 1, dtype=np.float64)
    colsum2 = np.empty(n_cols + w - 1, dtype=np.float64)
    _zncc_kernel(
        image, tmpl_zm, pad_template(tmpl_zm), tmpl_ssd, mean, 0, 0, n_rows, n_cols,
        win, colsum, colsum2, out,
    )
    return out
