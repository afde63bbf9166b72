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
  output columns at once, along template rows padded with zeros to a multiple of the
  compiled loop's vector step (8 columns, 16 with AVX-512: :func:`_vector_step_floats`),
  which LLVM turns into 8-lane SIMD code with no scalar remainder. float32
  halves the work of float64 and keeps scores within ~1e-6 of a float64 computation
  (measured in tests/tracking/test_zncc.py, far below the score differences that decide
  a peak).
* The patch sums ``sum(I - c)`` and ``sum((I - c)**2)`` come from integral images of
  the copy (float64, built in the same pass as the copy), four lookups per position.
  When the searched region holds a NaN or inf pixel (which would poison every later
  integral), each patch is summed directly in float64 instead: slower, but a bad pixel
  then only turns the scores of its own patches NaN.
* Flat patches (variance at most :data:`FLAT_VARIANCE_RATIO` times the template's) score
  0, as scikit-image does, instead of dividing by a vanishing norm.

The tracker's per-frame search (:func:`_search_kernel`) scores large windows (more than
:data:`COARSE_MIN_POSITIONS` positions, e.g. +-30 mm) coarse-to-fine: every position at
half resolution (2 x 2 block means of window and template: a sixteenth of the work per
position, and a smooth correlation surface), then steepest ascent at full resolution
from every coarse local maximum within a margin of the best (:func:`_climb`), the margin
measured per template on the reference (:func:`coarse_margin`: how much a perfect
match loses at half resolution when it lies between coarse positions). When more than
:data:`MAX_CANDIDATES` maxima qualify, or the best score found is below
:data:`COARSE_TRUST_SCORE`, every position is scored after all; a template whose
margin exceeds :data:`MAX_COARSE_MARGIN` is always searched exhaustively.
tests/tracking/test_coarse_to_fine.py holds it to the exhaustive search on every frame
of real cine and of phantoms driven by real liver motion, and on decoys.

References
----------
J. P. Lewis, "Fast normalized cross-correlation", Vision Interface 1995.
"""

# The search kernel binds its peak once on the coarse path and once on the exhaustive
# path, chosen by a flag the checker cannot follow (every path that reads them bound them).
# pyright: reportPossiblyUnboundVariable=false

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import binding as llvm_binding

from tracking._numba_options import NJIT_OPTIONS

__all__ = [
    "FLAT_VARIANCE_RATIO",
    "SHARPNESS_EXCLUSION_PX",
    "coarse_buffers",
    "coarse_margin",
    "coarse_template",
    "pad_template",
    "prepare_template",
    "subpixel_peak",
    "window_buffers",
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



def _vector_step_floats(cpu_features: str | None = None) -> int:
    """float32 values of a template row that the compiled inner loop of
    :func:`_correlate_row` consumes per vector iteration; template rows are padded to a
    multiple of it, so that no row ends in LLVM's scalar remainder loop.

    On AVX2 it is one 8-lane register. With AVX-512 the CPU has 32 vector registers
    instead of 16, room for LLVM to interleave two 8-lane iterations (it keeps 256-bit
    vectors), so a row must be a multiple of 16: a 24-column row then ran 8 of them
    scalar, and cost 50 % more than a 32-column one (measured on a Rocket Lake class
    Xeon). The padding's zeros add nothing to the sums.

    Parameters
    ----------
    cpu_features : str, optional
        LLVM feature string (``"+avx2,+avx512f,..."``); by default Numba's target, i.e.
        ``NUMBA_CPU_FEATURES`` when set, else the host CPU's.
    """
    if cpu_features is None:
        cpu_features = numba.config.CPU_FEATURES  # pyright: ignore[reportAttributeAccessIssue, reportPrivateImportUsage]  # set at run time
    if cpu_features is None:
        has_avx512 = bool(llvm_binding.get_host_cpu_features().get("avx512f", False))
    else:
        has_avx512 = "+avx512f" in cpu_features.split(",")
    return 16 if has_avx512 else 8


_LANES = _vector_step_floats()


def _padded_width(w: int) -> int:
    """``w`` rounded up to a multiple of :data:`_LANES`."""
    return -(-w // _LANES) * _LANES


def pad_template(tmpl_zm: np.ndarray) -> np.ndarray:
    """The zero-mean template in float32, with zero columns appended up to a multiple of
    :data:`_LANES` (8, or 16 on AVX-512 CPUs: :func:`_vector_step_floats`).

    The kernel's inner loop runs along template rows; LLVM vectorises it 8 float32 lanes
    at a time, and a width that is a multiple of its vector step leaves no scalar
    remainder loop (which cost as much as the vector part for 20-30 px templates). The zero columns multiply
    the zero padding of the kernel's window copy, so they add nothing.

    Parameters
    ----------
    tmpl_zm : (h, w) float64 ndarray
        Zero-mean template (from :func:`prepare_template`).

    Returns
    -------
    (h, w_pad) float32 C-contiguous ndarray
        ``w_pad = _LANES * ceil(w / _LANES)``.
    """
    h, w = tmpl_zm.shape
    w_pad = _padded_width(w)
    padded = np.zeros((h, w_pad), dtype=np.float32)
    padded[:, :w] = tmpl_zm
    return padded


def window_buffers(
    n_rows: int, n_cols: int, tmpl_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scratch for the kernels' work on a window of ``n_rows x n_cols`` positions.

    Returns
    -------
    win : (n_rows + h - 1, n_cols + w_pad - 1) float32 ndarray
        The window copy (``w_pad`` as in :func:`pad_template`).
    integ, integ2 : (n_rows + h, n_cols + w) float64 ndarray
        Integral images of the copy and of its square.
    """
    h, w = tmpl_shape
    w_pad = _padded_width(w)
    win = np.zeros((n_rows + h - 1, n_cols + w_pad - 1), dtype=np.float32)
    integ = np.zeros((n_rows + h, n_cols + w), dtype=np.float64)
    return win, integ, integ.copy()


@numba.njit(**NJIT_OPTIONS)
def _numerator_at(win, tmpl_pad, win_row, win_col):
    """``sum(tmpl_pad * win[patch])`` for the patch with top-left ``(win_row, win_col)``."""
    h, w_pad = tmpl_pad.shape
    acc = np.float32(0.0)
    for i in range(h):
        seg = win[win_row + i, win_col : win_col + w_pad]
        trow = tmpl_pad[i]
        for j in range(w_pad):
            acc += trow[j] * seg[j]
    return acc


@numba.njit(**NJIT_OPTIONS)
def _correlate_row(win, tmpl_pad, win_row, n_cols, out_row):
    """Write ``sum(tmpl_pad * win[patch])`` into ``out_row[:n_cols]`` for the patches of
    one row.

    Parameters
    ----------
    win : (>= win_row + h, >= n_cols + w_pad - 1) float32 ndarray
        Window copy, zero beyond the data columns.
    tmpl_pad : (h, w_pad) float32 ndarray
        Zero-mean template padded with zero columns (:func:`pad_template`).
    win_row : int
        Window row of the top of the patches.
    n_cols : int
        Number of patch positions along the row, the first at window column 0.
    out_row : (>= n_cols,) float64 ndarray
        Receives the numerators.
    """
    # Blocks of 8 positions, then the tail: a block that would run past the row is
    # shifted back to end at the last position (overlapping the previous one), so every
    # block is full width and no scalar tail loop is needed. A tail of at most 4
    # positions takes a 4-wide block: on an 11-position window (4 fps, +-15 mm) that is
    # 12 numerators a row, not 16.
    c = 0
    while n_cols - c >= 8:
        _correlate_block8(win, tmpl_pad, win_row, c, out_row)
        c += 8
    if n_cols - c > 4 and n_cols >= 8:
        _correlate_block8(win, tmpl_pad, win_row, n_cols - 8, out_row)
        return
    while n_cols - c >= 4:
        _correlate_block4(win, tmpl_pad, win_row, c, out_row)
        c += 4
    if c < n_cols:
        if n_cols >= 4:
            _correlate_block4(win, tmpl_pad, win_row, n_cols - 4, out_row)
        else:
            for cc in range(c, n_cols):
                out_row[cc] = _numerator_at(win, tmpl_pad, win_row, cc)


@numba.njit(**NJIT_OPTIONS)
def _correlate_block8(win, tmpl_pad, win_row, cs, out_row):
    """The numerators of the 8 patches at window columns ``cs .. cs + 7`` of one row
    into ``out_row[cs : cs + 8]``."""
    h, w_pad = tmpl_pad.shape
    zero = np.float32(0.0)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
    for i in range(h):
        # The inner loop runs along a template row: LLVM vectorises it 8 lanes at a
        # time with one vector accumulator per output. A slice starting at the block
        # gives it non-negative, consecutive indices (no wrap-around selects).
        seg = win[win_row + i, cs : cs + w_pad + 7]
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


@numba.njit(**NJIT_OPTIONS)
def _correlate_block4(win, tmpl_pad, win_row, cs, out_row):
    """:func:`_correlate_block8` for the 4 patches at columns ``cs .. cs + 3``."""
    h, w_pad = tmpl_pad.shape
    zero = np.float32(0.0)
    a0 = a1 = a2 = a3 = zero
    for i in range(h):
        seg = win[win_row + i, cs : cs + w_pad + 3]
        trow = tmpl_pad[i]
        for j in range(w_pad):
            t = trow[j]
            a0 += t * seg[j]
            a1 += t * seg[j + 1]
            a2 += t * seg[j + 2]
            a3 += t * seg[j + 3]
    out_row[cs] = a0
    out_row[cs + 1] = a1
    out_row[cs + 2] = a2
    out_row[cs + 3] = a3


@numba.njit(**NJIT_OPTIONS)
def _prepare_window(image, shift, row0, col0, n_win_rows, n_win_cols, win, integ, integ2):
    """Copy ``image[row0:row0+n_win_rows, col0:col0+n_win_cols] - shift`` into ``win`` as
    float32 (zeroing ``win``'s further columns), build the integral images of the copy and
    of its square, and return the number of NaN or inf pixels.

    Subtracting the template mean before rounding to float32 keeps the copy's relative
    precision that of the deviations, not of the absolute intensities. ``integ[r, c]`` is
    the sum of ``win[:r, :c]`` (float64); row 0 and column 0 are zero."""
    n_bad = 0
    zero = np.float32(0.0)
    width = win.shape[1]
    for r in range(n_win_rows):
        src = image[row0 + r, col0 : col0 + n_win_cols]
        dst = win[r]
        for c in range(n_win_cols):
            d = np.float32(src[c] - shift)
            # Tested after the rounding: a finite float64 pixel beyond float32's range
            # becomes inf here, and must not poison the integrals unnoticed.
            if not math.isfinite(d):
                n_bad += 1
            dst[c] = d
        for c in range(n_win_cols, width):
            dst[c] = zero
    _integrals(win, n_win_rows, n_win_cols, integ, integ2)
    return n_bad


@numba.njit(**NJIT_OPTIONS)
def _integrals(win, n_rows, n_cols, integ, integ2):
    """Integral images of ``win[:n_rows, :n_cols]`` and of its square, in float64:
    ``integ[r, c]`` is the sum of ``win[:r, :c]``; row 0 and column 0 are zero."""
    for c in range(n_cols + 1):
        integ[0, c] = 0.0
        integ2[0, c] = 0.0
    for r in range(n_rows):
        row = win[r]
        above = integ[r]
        above2 = integ2[r]
        here = integ[r + 1]
        here2 = integ2[r + 1]
        here[0] = 0.0
        here2[0] = 0.0
        run = 0.0
        run2 = 0.0
        for c in range(n_cols):
            v = np.float64(row[c])
            run += v
            run2 += v * v
            here[c + 1] = above[c + 1] + run
            here2[c + 1] = above2[c + 1] + run2


@numba.njit(**NJIT_OPTIONS)
def _rounding_coef(n_win_rows, n_win_cols, h, w):
    """Bound, as a multiple of ``integ2[r + h, c + w]``, of the rounding error of a patch's
    sum of squared deviations taken from integral images (used by :func:`_score`).

    The four corners of each integral hold sums over up to the whole window, so their
    differences carry float64 rounding of order eps times those sums; through ``s**2 / n``
    the error of ``s`` is amplified by up to ``sqrt(window area / patch area)``. Without
    this bound an exactly flat patch far from the template mean (large offset, tiny
    spread) could score a non-zero rounding artefact."""
    return 8.0 * 2.220446049250313e-16 * (1.0 + math.sqrt(n_win_rows * n_win_cols / (h * w)))



@numba.njit(**NJIT_OPTIONS)
def _score(num, integ, integ2, r, c, h, w, tmpl_norm, flat_ssd, rounding):
    """ZNCC of the patch at window position ``(r, c)`` from its numerator and the integral
    images; returns ``(score, flat)``: a flat patch scores 0.

    A patch is flat when its sum of squared deviations is at most ``flat_ssd`` plus the
    rounding bound ``rounding * integ2[r + h, c + w]`` (:func:`_rounding_coef`)."""
    r1 = r + h
    c1 = c + w
    s = integ[r1, c1] - integ[r, c1] - integ[r1, c] + integ[r, c]
    s2 = integ2[r1, c1] - integ2[r, c1] - integ2[r1, c] + integ2[r, c]
    patch_ssd = s2 - s * s / (h * w)
    if patch_ssd <= flat_ssd + rounding * integ2[r1, c1]:  # also catches rounding below 0
        return 0.0, True
    return _clamped_ratio(num, patch_ssd, tmpl_norm), False


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
def _score_all(win, tmpl_pad, integ, integ2, h, w, norms, n_rows, n_cols, out):
    """Score every position of a prepared window into ``out``; returns the number of
    flat patches. ``norms`` is ``(tmpl_norm, flat_ssd, rounding)`` as :func:`_score`
    takes them."""
    tmpl_norm, flat_ssd, rounding = norms
    n_flat = 0
    for r in range(n_rows):
        out_row = out[r]
        _correlate_row(win, tmpl_pad, r, n_cols, out_row)
        for c in range(n_cols):
            score, flat = _score(out_row[c], integ, integ2, r, c, h, w, tmpl_norm, flat_ssd, rounding)
            out_row[c] = score
            n_flat += 1 if flat else 0
    return n_flat


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
    integ,
    integ2,
    out,
):
    """ZNCC of a prepared template at every patch ``(row0 + r, col0 + c)``.

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
    win, integ, integ2 : ndarray
        Scratch from :func:`window_buffers` for at least ``n_rows x n_cols`` positions.
    out : (>= n_rows, >= n_cols) float64 ndarray
        Receives the scores in ``out[:n_rows, :n_cols]``: NaN where the patch holds a
        non-finite pixel, 0 where the patch (or the template) is flat.

    Returns
    -------
    n_flat : int
        Number of positions scored 0 because their patch (or the template) is flat.
    """
    h, w = tmpl_zm.shape
    if not (tmpl_ssd > 0.0 and math.isfinite(tmpl_ssd)):
        for r in range(n_rows):
            for c in range(n_cols):
                out[r, c] = 0.0
        return n_rows * n_cols
    tmpl_norm = math.sqrt(tmpl_ssd)
    flat_ssd = FLAT_VARIANCE_RATIO * tmpl_ssd
    n_bad = _prepare_window(
        image, shift, row0, col0, n_rows + h - 1, n_cols + w - 1, win, integ, integ2
    )
    n_flat = 0
    if n_bad > 0:
        # A NaN or inf poisons the integral images for every later position (and, via
        # the zero-padded template columns, the numerators of its neighbours): sum each
        # patch directly in float64 instead, so it only affects the patches holding it.
        inv_n = 1.0 / (h * w)
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
    norms = (tmpl_norm, flat_ssd, _rounding_coef(n_rows + h - 1, n_cols + w - 1, h, w))
    return _score_all(win, tmpl_pad, integ, integ2, h, w, norms, n_rows, n_cols, out)


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
_R_WIN_ROW0, _R_WIN_COL0, _R_WIN_ROWS, _R_WIN_COLS, _R_N_SCORED = 5, 6, 7, 8, 9
_SEARCH_RESULT_SIZE = 10

COARSE_MIN_POSITIONS = 256
"""Windows with more positions than this (16 x 16) are searched coarse-to-fine when the
tracker allows it; smaller ones exhaustively (the coarse stage would save little)."""

MAX_CANDIDATES = 8
"""Coarse local maxima climbed at full resolution, best first (the candidate buffer's
length). When more qualify, every position is scored instead."""

MARGIN_SLACK = 0.05
"""Added to the coarse score loss measured on the reference (see :func:`coarse_margin`)."""

MAX_COARSE_MARGIN = 0.5
"""A template whose coarse margin exceeds this is always searched exhaustively: its
structure is mostly finer than two pixels and the coarse stage would tell little."""

COARSE_TRUST_SCORE = 0.5
"""When the best full-resolution score a coarse-to-fine search finds is below this,
every position is scored after all: a weak best match is exactly when the coarse stage
may have missed the target (a template with little structure at half resolution), so
exhaustive scoring costs time only on frames that are in doubt anyway, and the result
there is the exhaustive search's."""


def _block_means(a: np.ndarray, hc: int, wc: int) -> np.ndarray:
    """(hc, wc) means of the 2 x 2 blocks of ``a[:2 hc, :2 wc]``."""
    return a[: 2 * hc, : 2 * wc].reshape(hc, 2, wc, 2).mean(axis=(1, 3))


def coarse_template(tmpl_zm: np.ndarray) -> tuple[np.ndarray, float, int] | None:
    """The template at half resolution (2 x 2 block means), for the coarse stage.

    Parameters
    ----------
    tmpl_zm : (h, w) float64 ndarray
        Zero-mean template (from :func:`prepare_template`).

    Returns
    -------
    tmpl_pad : (h // 2, w_pad) float32 ndarray
        The coarse template minus its mean, zero-padded (:func:`pad_template`).
    tmpl_ssd : float
        Its sum of squared deviations.
    w : int
        Its width before padding, ``w // 2``.

    ``None`` when the coarse template would be smaller than 2 x 2 or has no contrast:
    the window is then always searched exhaustively.
    """
    h, w = tmpl_zm.shape
    hc, wc = h // 2, w // 2
    if hc < 2 or wc < 2:
        return None
    blocks = _block_means(tmpl_zm, hc, wc)
    blocks = blocks - blocks.mean()
    ssd = float((blocks**2).sum())
    if not (ssd > 0.0 and math.isfinite(ssd)):
        return None
    return pad_template(blocks), ssd, wc


def coarse_margin(reference: np.ndarray, origin_px: tuple[int, int], shape: tuple[int, int]) -> float:
    """How far below the best coarse score the target's own coarse maximum may fall.

    A target at an odd pixel offset lies half-way between two half-resolution positions,
    where its 2 x 2 blocks straddle the template's: its coarse score drops. How much is a
    property of the template (a fine texture loses most of it), measured here on the
    reference itself: the lowest ZNCC between the coarse template and the coarse version
    of the reference shifted by one pixel in each of the eight directions. The margin is
    ``1 - that + MARGIN_SLACK``: the true target's coarse maximum is climbed unless some
    other coarse position scores better than the target does at full resolution.

    Parameters
    ----------
    reference : (H, W) real ndarray
    origin_px, shape : (int, int)
        Top-left pixel and size of the template in the reference.

    Returns
    -------
    float
        The margin, or ``inf`` when the template is too small or lies against the image
        border on every side (nothing to measure).
    """
    ref = np.asarray(reference, dtype=np.float64)
    r0, c0 = origin_px
    h, w = shape
    hc, wc = h // 2, w // 2
    if hc < 2 or wc < 2:
        return math.inf
    tmpl = _block_means(ref[r0 : r0 + h, c0 : c0 + w], hc, wc)
    tmpl = tmpl - tmpl.mean()
    tmpl_norm = math.sqrt(float((tmpl**2).sum()))
    worst = math.inf
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            a0, b0 = r0 + dr, c0 + dc
            if (dr, dc) == (0, 0) or a0 < 0 or b0 < 0 or a0 + h > ref.shape[0] or b0 + w > ref.shape[1]:
                continue
            patch = _block_means(ref[a0 : a0 + h, b0 : b0 + w], hc, wc)
            patch = patch - patch.mean()
            norm = tmpl_norm * math.sqrt(float((patch**2).sum()))
            score = float((tmpl * patch).sum()) / norm if norm > 0.0 else 0.0
            worst = min(worst, score)
    return 1.0 - worst + MARGIN_SLACK if math.isfinite(worst) else math.inf


def coarse_buffers(n_rows: int, n_cols: int, tmpl_shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Scratch for the coarse stage of a window of ``n_rows x n_cols`` positions of a
    template of ``tmpl_shape`` (full resolution).

    Returns
    -------
    win : (Hc, Wc - wc + wc_pad) float32 ndarray
        The half-resolution window, ``Hc = (n_rows + h - 1) // 2``,
        ``Wc = (n_cols + w - 1) // 2``, ``wc = w // 2`` and ``wc_pad`` its padded width.
    integ, integ2 : (Hc + 1, Wc + 1) float64 ndarray
        Its integral images.
    scores : (Hc - h // 2 + 1, Wc - wc + 1) float64 ndarray
        The coarse score map.
    """
    h, w = tmpl_shape
    hc, wc = h // 2, w // 2
    wc_pad = _padded_width(wc)
    n_hc = (n_rows + h - 1) // 2
    n_wc = (n_cols + w - 1) // 2
    win = np.zeros((max(n_hc, 1), max(n_wc - wc + wc_pad, 1)), dtype=np.float32)
    integ = np.zeros((n_hc + 1, n_wc + 1), dtype=np.float64)
    scores = np.zeros((max(n_hc - hc + 1, 1), max(n_wc - wc + 1, 1)), dtype=np.float64)
    return win, integ, integ.copy(), scores


@numba.njit(**NJIT_OPTIONS)
def _downsample(win, n_win_rows, n_win_cols, cwin, cinteg, cinteg2):
    """2 x 2 block means of ``win[:n_win_rows, :n_win_cols]`` into ``cwin`` (zeroing its
    further columns) and their integral images; returns the coarse window's size."""
    n_hc = n_win_rows // 2
    n_wc = n_win_cols // 2
    zero = np.float32(0.0)
    quarter = np.float32(0.25)
    width = cwin.shape[1]
    for i in range(n_hc):
        a = win[2 * i]
        b = win[2 * i + 1]
        dst = cwin[i]
        for j in range(n_wc):
            dst[j] = quarter * (a[2 * j] + a[2 * j + 1] + b[2 * j] + b[2 * j + 1])
        for j in range(n_wc, width):
            dst[j] = zero
    _integrals(cwin, n_hc, n_wc, cinteg, cinteg2)
    return n_hc, n_wc


@numba.njit(**NJIT_OPTIONS)
def _score_at(win, tmpl_pad, integ, integ2, r, c, h, w, norms, scores):
    """Score one window position into ``scores[r, c]``; returns 1 if the patch is flat."""
    tmpl_norm, flat_ssd, rounding = norms
    score, flat = _score(
        _numerator_at(win, tmpl_pad, r, c), integ, integ2, r, c, h, w, tmpl_norm, flat_ssd, rounding
    )
    scores[r, c] = score
    return 1 if flat else 0


@numba.njit(**NJIT_OPTIONS)
def _climb(win, tmpl_pad, integ, integ2, h, w, norms, n_rows, n_cols, r, c, scores):
    """Steepest ascent on the full-resolution score map from ``(r, c)``: score the 3 x 3
    neighbourhood of the current position (positions already scored are reused; NaN marks
    the others), move to its best, stop at a position that beats its neighbours. Equal
    scores move towards the lower (row, col), as the peak search's row-major scan does,
    so the position finally chosen always has its neighbourhood scored.
    Returns the numbers of positions scored and of flat ones among them."""
    n_scored = 0
    n_flat = 0
    if math.isnan(scores[r, c]):
        n_flat += _score_at(win, tmpl_pad, integ, integ2, r, c, h, w, norms, scores)
        n_scored += 1
    while True:
        best = scores[r, c]
        br = r
        bc = c
        for dr in range(-1, 2):
            rr = r + dr
            if rr < 0 or rr >= n_rows:
                continue
            for dc in range(-1, 2):
                cc = c + dc
                if cc < 0 or cc >= n_cols:
                    continue
                if math.isnan(scores[rr, cc]):
                    n_flat += _score_at(win, tmpl_pad, integ, integ2, rr, cc, h, w, norms, scores)
                    n_scored += 1
                v = scores[rr, cc]
                if v > best or (v == best and (rr < br or (rr == br and cc < bc))):
                    best = v
                    br = rr
                    bc = cc
        if br == r and bc == c:
            return n_scored, n_flat
        r = br
        c = bc


@numba.njit(**NJIT_OPTIONS)
def _coarse_candidates(cscores, n_rows, n_cols, margin, candidates):
    """The coarse map's local maxima within ``margin`` of its best score, best first,
    into ``candidates`` rows ``(score, row, col)``; returns how many qualified (which may
    exceed the buffer's length: only the best fit)."""
    best = -math.inf
    for r in range(n_rows):
        for c in range(n_cols):
            if cscores[r, c] > best:
                best = cscores[r, c]
    n_max = candidates.shape[0]
    n_cand = 0
    n_qualified = 0
    for r in range(n_rows):
        for c in range(n_cols):
            v = cscores[r, c]
            if not (v >= best - margin):
                continue
            is_max = True
            for rr in range(max(r - 1, 0), min(r + 2, n_rows)):
                for cc in range(max(c - 1, 0), min(c + 2, n_cols)):
                    if cscores[rr, cc] > v:
                        is_max = False
            if not is_max:
                continue
            n_qualified += 1
            # Insert into the sorted buffer, dropping the weakest when it is full.
            k = min(n_cand, n_max)
            while k > 0 and candidates[k - 1, 0] < v:
                if k < n_max:
                    candidates[k, 0] = candidates[k - 1, 0]
                    candidates[k, 1] = candidates[k - 1, 1]
                    candidates[k, 2] = candidates[k - 1, 2]
                k -= 1
            if k < n_max:
                candidates[k, 0] = v
                candidates[k, 1] = r
                candidates[k, 2] = c
                n_cand = min(n_cand + 1, n_max)
    return n_qualified


@numba.njit(**NJIT_OPTIONS)
def _background_mean(cscores, n_rows, n_cols, peak_r, peak_c):
    """Mean finite score of the coarse map outside the zone of Chebyshev radius 1 (2
    full-resolution pixels) around the coarse position of the peak; NaN if none."""
    total = 0.0
    count = 0
    for r in range(n_rows):
        for c in range(n_cols):
            if abs(r - peak_r) > 1 or abs(c - peak_c) > 1:
                v = cscores[r, c]
                if math.isfinite(v):
                    total += v
                    count += 1
    return total / count if count > 0 else math.nan


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
    integ,
    integ2,
    scores,
    coarse_to_fine,
    margin,
    ctmpl_pad,
    ctmpl_ssd,
    ctmpl_w,
    cwin,
    cinteg,
    cinteg2,
    cscores,
    candidates,
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
    win, integ, integ2 : ndarray
        Scratch from :func:`window_buffers` for ``n_rows_max x n_cols_max`` positions.
    scores : (>= n_rows_max, >= n_cols_max) float64 ndarray
        Receives the ZNCC map of the window (NaN at positions a coarse-to-fine search
        did not score), where ``n_rows_max = min(2 * search_rows_px + 1, H - h + 1)``
        and ``n_cols_max = min(2 * search_cols_px + 1, W - w + 1)``.
    coarse_to_fine : bool
        Search windows of more than :data:`COARSE_MIN_POSITIONS` positions
        coarse-to-fine: exhaustively at half resolution, then by steepest ascent at full
        resolution from the coarse local maxima within ``margin`` of the best; every
        position is scored after all when more than :data:`MAX_CANDIDATES` qualify or
        the best found is below :data:`COARSE_TRUST_SCORE`.
    margin : float
        From :func:`coarse_margin`.
    ctmpl_pad, ctmpl_ssd, ctmpl_w : ndarray, float, int
        The half-resolution template (:func:`coarse_template`).
    cwin, cinteg, cinteg2, cscores : ndarray
        Scratch from :func:`coarse_buffers` for ``n_rows_max x n_cols_max`` positions.
    candidates : (MAX_CANDIDATES, 3) float64 ndarray
        Scratch for the coarse-to-fine search.
    result : (10,) float64 ndarray
        Receives displacement (row, col px), peak, sharpness, at-edge flag, the window
        (first template row and column, number of rows and columns) and the number of
        full-resolution positions scored.

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
    n_win_rows = n_rows + h - 1
    n_win_cols = n_cols + w - 1
    n_bad = _prepare_window(image, shift, row0, col0, n_win_rows, n_win_cols, win, integ, integ2)
    if n_bad > 0:
        return _SEARCH_NONFINITE_PIXELS
    if not (tmpl_ssd > 0.0 and math.isfinite(tmpl_ssd)):
        return _SEARCH_NO_CONTRAST
    norms = (
        math.sqrt(tmpl_ssd),
        FLAT_VARIANCE_RATIO * tmpl_ssd,
        _rounding_coef(n_win_rows, n_win_cols, h, w),
    )
    exhaustive = True
    n_crows = 0
    n_ccols = 0
    if coarse_to_fine and n_rows * n_cols > COARSE_MIN_POSITIONS:
        for r in range(n_rows):
            for c in range(n_cols):
                scores[r, c] = math.nan
        # Half resolution: every position, a sixteenth of the work per position.
        n_hc, n_wc = _downsample(win, n_win_rows, n_win_cols, cwin, cinteg, cinteg2)
        ch = ctmpl_pad.shape[0]
        n_crows = n_hc - ch + 1
        n_ccols = n_wc - ctmpl_w + 1
        cnorms = (
            math.sqrt(ctmpl_ssd),
            FLAT_VARIANCE_RATIO * ctmpl_ssd,
            _rounding_coef(n_hc, n_wc, ch, ctmpl_w),
        )
        _score_all(cwin, ctmpl_pad, cinteg, cinteg2, ch, ctmpl_w, cnorms, n_crows, n_ccols, cscores)
        n_qualified = _coarse_candidates(cscores, n_crows, n_ccols, margin, candidates)
        # Full resolution: climb from each candidate (coarse (r, c) is pixel (2r, 2c)).
        n_scored = 0
        n_flat = 0
        n_cand = n_qualified if n_qualified <= candidates.shape[0] else 0
        for k in range(n_cand):
            k_scored, k_flat = _climb(
                win, tmpl_pad, integ, integ2, h, w, norms, n_rows, n_cols,
                min(2 * int(candidates[k, 1]), n_rows - 1),
                min(2 * int(candidates[k, 2]), n_cols - 1),
                scores,
            )
            n_scored += k_scored
            n_flat += k_flat
        if n_cand > 0:
            row, col, peak, sharpness, at_edge = _peak_kernel(scores, n_rows, n_cols)
            # Nothing good found (or, above, too many look-alikes): score everything.
            exhaustive = not (peak >= COARSE_TRUST_SCORE)
    if exhaustive:
        n_flat = _score_all(win, tmpl_pad, integ, integ2, h, w, norms, n_rows, n_cols, scores)
        n_scored = n_rows * n_cols
        row, col, peak, sharpness, at_edge = _peak_kernel(scores, n_rows, n_cols)
    result[_R_N_SCORED] = n_scored
    if n_flat == n_scored:  # pyright: ignore[reportOperatorIssue]  # both bound on every path, as above
        return _SEARCH_NO_CONTRAST
    if not (math.isfinite(peak) and math.isfinite(row) and math.isfinite(col)):
        return _SEARCH_NO_FINITE_SCORE
    if not exhaustive:
        # The full-resolution map is sparse: measure the peak's distinctness against the
        # half-resolution map, which covers the whole window.
        bg = _background_mean(cscores, n_crows, n_ccols,
                              int(math.floor(row + 0.5)) // 2, int(math.floor(col + 0.5)) // 2)
        sharpness = peak - bg if math.isfinite(bg) else 0.0
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
    # A pairwise sum, not np.dot: BLAS splits a long dot product over its threads, and the
    # rounding then depends on the thread count (a validation on a cluster's one-thread
    # workers would differ in the last digit from the same run on a laptop).
    tmpl_ssd = float(np.sum(tmpl_zm * tmpl_zm))
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
    win, integ, integ2 = window_buffers(n_rows, n_cols, (h, w))
    _zncc_kernel(
        image, tmpl_zm, pad_template(tmpl_zm), tmpl_ssd, mean, 0, 0, n_rows, n_cols,
        win, integ, integ2, out,
    )
    return out
