"""Track a target on 2D cine frames by ZNCC template matching against a reference frame.

The template is the target's bounding box on the reference frame plus a margin of
context. Each frame is searched in a window of +-``search_mm`` around a predicted
displacement; the best ZNCC match, refined to sub-pixel precision, gives the target's
displacement from the reference in mm.

Only a result with confidence at least ``trust_floor`` moves the window. After a result
that is not trusted (invalid, on the window's edge, or below the floor) the tracker is
*lost*: the next frame is searched in a wider re-acquisition window (+-``reacquire_mm``)
around the last confident position, never around a weak match, so that a window that
followed a wrong match cannot walk away from the target, and a target that jumped out
of the window (a cough, a sudden shift) or came back after one is found again; when
nothing is confirmed there, the same window around the reference position is searched
too. In the larger window a match needs ``reacquire_floor`` to count as the target found
again; a weaker one is reported ``unconfirmed`` (the gate holds) and never followed.

Per frame, :meth:`TemplateTracker.track` makes one call into a compiled kernel
(:func:`tracking.zncc._search_kernel`) that works in buffers allocated at construction,
and builds one small result object. It never raises on the content of a frame: a frame
it cannot track yields a result flagged ``valid=False`` with the reason.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass

import numpy as np

from tracking.refine import prepare_refinement
from tracking.zncc import (
    _R_AT_EDGE,
    _R_COL_PX,
    _R_N_SCORED,
    _R_PEAK,
    _R_ROW_PX,
    _R_SHARPNESS,
    _R_WIN_COL0,
    _R_WIN_COLS,
    _R_WIN_ROW0,
    _R_WIN_ROWS,
    _SEARCH_BAD_PREDICTION,
    _SEARCH_NO_CONTRAST,
    _SEARCH_NO_FINITE_SCORE,
    _SEARCH_NONFINITE_PIXELS,
    _SEARCH_OK,
    _SEARCH_RESULT_SIZE,
    _SEARCH_WINDOW_OUTSIDE,
    MAX_CANDIDATES,
    MAX_COARSE_MARGIN,
    _search_kernel,
    coarse_buffers,
    coarse_margin,
    coarse_template,
    pad_template,
    prepare_template,
    window_buffers,
)

__all__ = [
    "DEFAULT_CONTEXT_MM",
    "DEFAULT_MAX_DISAGREEMENT_MM",
    "DEFAULT_MIN_TARGET_ZNCC",
    "DEFAULT_REACQUIRE_FLOOR",
    "DEFAULT_SEARCH_MM",
    "DEFAULT_TARGET_CONTEXT_MM",
    "TemplateTracker",
    "TrackResult",
]

DEFAULT_CONTEXT_MM = 20.0
"""Template context around the target's bounding box, mm (every command's default).

20 mm, not 10: at the 4 fps mode's 3.5 mm pixels 10 mm is 3 pixels of context around a
small lesion, and the reference frame's noise then biases every frame by up to ~0.5 mm
(`maestro accuracy --context-mm 10`: at 4 fps, mean error 0.64 mm on LargeSIandAP70s and
0.68 mm, p95 1.14 mm on TransientWithBreathHold, against targets of 0.5 and 1.0 mm);
20 mm of rigidly moving liver meets every target on all eighteen trace sessions. The larger template costs
the kernel ~40 % more per position (benchmarks/test_kernel.py keeps it >= 1.5x OpenCV)."""

DEFAULT_SEARCH_MM = 15.0
"""Half-width of the search window around the predicted (by default the last confident)
position, mm; the re-acquisition window is twice as wide."""

DEFAULT_REACQUIRE_FLOOR = 0.65
"""Confidence a match found while re-acquiring a lost target needs, by default.

Above the gate's 0.5: the re-acquisition window holds four to seven times the normal
window's positions, and on the trace phantoms with 45 mm excursions look-alikes 60 mm off
scored 0.50-0.56 there, while the target found again scores 0.8 or more."""

DEFAULT_TARGET_CONTEXT_MM = 1.0
"""Context of the target-focused template that gives the final position, mm.

The ZNCC search matches the target with ``context_mm`` (20 mm) of surroundings, which
makes it robust (a small template has look-alikes) but pulls the match toward whatever
the surroundings do: on the trace phantoms where the lesion slides 10 % against the
liver around it, errors up to 2.2 mm, every frame confident. The match is therefore
aligned a second time (weighted Gauss-Newton, :mod:`tracking.refine`) on the target:
weight 1 on it and one pixel around it (its blurred edge), falling off as a Gaussian of
this scale beyond (:func:`target_weight`), and the two estimates are combined by
:class:`_DisagreementModel`. Chosen on the sliding trace phantoms (20 s, both
geometries; worst mean / p95 over the 18 sessions): 0.5 mm loses the edge (every frame
flagged); 1 mm 0.39 / 1.12; 2 mm 0.46 / 1.31; 3 mm 0.56 / 1.50; 4 mm 0.59 / 1.63;
without the second alignment 0.64 / 1.85."""

DEFAULT_MAX_DISAGREEMENT_MM = 3.0
"""Largest distance between the context match and the target-focused alignment, mm,
beyond which the result is ``inconsistent`` (held)."""

DEFAULT_MIN_TARGET_ZNCC = 0.3
"""Smallest ZNCC of the target-focused template at its aligned position; below it the
result is ``inconsistent`` (held): the context matched, the target itself did not."""

log = logging.getLogger(__name__)

# Why the search kernel could not track a frame (it cannot raise; it returns a status).
_REASONS = {
    _SEARCH_BAD_PREDICTION: "predicted displacement is not finite",
    _SEARCH_WINDOW_OUTSIDE: "search window lies outside the image",
    _SEARCH_NONFINITE_PIXELS: "search window holds NaN or inf pixels",
    _SEARCH_NO_CONTRAST: "search window has no contrast (every patch is flat)",
    _SEARCH_NO_FINITE_SCORE: "no finite ZNCC score in the search window",
}


@dataclass(frozen=True, slots=True)
class TrackResult:
    """Where the target is on one frame, relative to the reference frame.

    Attributes
    ----------
    row_mm, col_mm : float
        Displacement of the target from its reference position in mm, along rows and
        columns; positive towards increasing index. NaN when invalid.
    row_px, col_px : float
        The same displacement in pixels (sub-pixel). NaN when invalid.
    peak_zncc : float
        ZNCC score of the best match, in [-1, 1]. NaN when invalid.
    sharpness : float
        How distinct the match is: the peak minus the mean score of the search window
        outside a 5 x 5 pixel zone around the peak (see
        :func:`tracking.zncc.subpixel_peak`); after a coarse-to-fine search, the
        background mean is that of the half-resolution map. NaN when invalid.
    confidence : float
        ``peak_zncc`` clipped to [0, 1]; 0 when invalid. A similarity, not a probability:
        1 means the frame contains the reference template exactly (up to brightness
        and contrast).
    at_edge : bool
        The best match lies on the border of the search window (which includes the
        image border when the window was clipped), so the true match may lie outside:
        the target moved further than the search range or is leaving the image.
    valid : bool
        False when the frame could not be tracked; see ``reason``.
    reason : str
        Why the result is invalid; empty when valid.
    unconfirmed : bool
        Found while re-acquiring a lost target, inside the re-acquisition window but
        below ``reacquire_floor``: possibly a look-alike, so the position is not vouched
        for (the gate holds, as for ``at_edge``).
    inconsistent : bool
        The two estimates of the position disagree: the target-focused alignment
        (template = target + ``target_context_mm``) moved more than
        ``max_disagreement_mm`` from the context match, failed to converge, or aligned
        with ZNCC below ``min_target_zncc``. The match may be off the target (a
        look-alike, or surroundings moving differently): the gate holds.
    disagreement_mm : float
        Distance between the context match and the target-focused alignment, mm; NaN
        when the target-focused alignment did not run or failed.
    target_zncc : float
        ZNCC of the target-focused template at its aligned position; NaN when it did
        not run.
    """

    row_mm: float
    col_mm: float
    row_px: float
    col_px: float
    peak_zncc: float
    sharpness: float
    confidence: float
    at_edge: bool
    valid: bool
    reason: str
    unconfirmed: bool = False
    inconsistent: bool = False
    disagreement_mm: float = math.nan
    target_zncc: float = math.nan

    @property
    def vouched(self) -> bool:
        """Whether the gate may use this result's confidence: valid, not on the window's
        edge, not an unconfirmed re-acquisition and not inconsistent."""
        return self.valid and not (self.at_edge or self.unconfirmed or self.inconsistent)

    @property
    def gate_confidence(self) -> float:
        """The confidence the gate may use: ``confidence`` when :attr:`vouched`, else 0."""
        return self.confidence if self.vouched else 0.0

    @classmethod
    def invalid(cls, reason: str) -> TrackResult:
        """A result for an untrackable frame: NaN displacement, zero confidence."""
        nan = math.nan
        return cls(nan, nan, nan, nan, nan, nan, 0.0, False, False, reason)


def context_box_px(
    mask: np.ndarray, spacing_mm: tuple[float, float], context_mm: float, border_before_px: int = 0, border_after_px: int = 0
) -> tuple[int, int, int, int]:
    """The target's bounding box grown by ``context_mm`` per side, clipped to the image.

    Parameters
    ----------
    mask : (H, W) bool ndarray
        The target; at least one pixel.
    spacing_mm : (float, float)
        Pixel spacing (row, col), mm; the context is ``ceil(context_mm / spacing)`` px.
    context_mm : float
        Context per side, mm, >= 0.
    border_before_px, border_after_px : int
        Pixels kept free before the first and after the last row and column.

    Returns
    -------
    (r0, r1, c0, c1) : int
        First and last row and column of the box, inclusive.
    """
    n_rows, n_cols = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    ctx_r = math.ceil(context_mm / spacing_mm[0])
    ctx_c = math.ceil(context_mm / spacing_mm[1])
    return (
        max(int(rows[0]) - ctx_r, border_before_px),
        min(int(rows[-1]) + ctx_r, n_rows - 1 - border_after_px),
        max(int(cols[0]) - ctx_c, border_before_px),
        min(int(cols[-1]) + ctx_c, n_cols - 1 - border_after_px),
    )


class _DisagreementModel:
    """How far the target itself lies from the context match, as a function of position.

    Two estimates of the displacement are made on every frame. The context match (20 mm
    of surroundings) is steady but pulled by surroundings that move differently from the
    target, by an amount that changes smoothly with the displacement (a lesion sliding
    against the liver around it, a liver pressed against a static body wall). The
    target-focused alignment is not pulled, but on a smooth lesion at 0.35 T-like SNR it
    is several times noisier from frame to frame. Their disagreement (target - context,
    px) is therefore fitted, per axis, by least squares as ``a + b_r d_row + b_c d_col``
    over the trusted frames so far (``d`` the context displacement, px), and the
    position reported is the context match plus the fitted disagreement at its
    displacement: the pull is removed, the noise averaged out. The slopes carry a ridge
    of :attr:`RIDGE_PX2` so that with few frames, or motion along one axis only, the
    model falls back smoothly to the mean disagreement.
    """

    RIDGE_PX2 = 4.0

    # Sums of the normal equations in plain floats: no array is allocated per frame.
    __slots__ = ("_n", "_sr", "_sc", "_srr", "_src", "_scc", "_b", "_coef")

    def __init__(self) -> None:
        self._n = self._sr = self._sc = self._srr = self._src = self._scc = 0.0
        self._b = [0.0] * 6  # sum(a_i * dis_axis): (1, d_row, d_col) x (row, col)
        self._coef = (0.0,) * 6  # (a, b_r, b_c) for rows, then for columns

    #: Trusted frames after which the model is frozen (several breathing cycles at 4-8
    #: frames/s): the same frames then always give the same positions.
    MAX_FRAMES = 64

    def add(self, d_row: float, d_col: float, dis_row: float, dis_col: float) -> None:
        """Add one trusted frame: its context displacement and the disagreement, px."""
        if self._n >= self.MAX_FRAMES:
            return
        self._n += 1.0
        self._sr += d_row
        self._sc += d_col
        self._srr += d_row * d_row
        self._src += d_row * d_col
        self._scc += d_col * d_col
        b = self._b
        for k, dis in ((0, dis_row), (3, dis_col)):
            b[k] += dis
            b[k + 1] += d_row * dis
            b[k + 2] += d_col * dis
        # Solve the symmetric 3 x 3 system [[n, sr, sc], [sr, srr + l, src],
        # [sc, src, scc + l]] x = b by Cramer's rule (its determinant is > 0: l > 0).
        n, sr, sc = self._n, self._sr, self._sc
        m11, m12, m22 = self._srr + self.RIDGE_PX2, self._src, self._scc + self.RIDGE_PX2
        c00 = m11 * m22 - m12 * m12
        c01 = sc * m12 - sr * m22
        c02 = sr * m12 - sc * m11
        c11 = n * m22 - sc * sc
        c12 = sr * sc - n * m12
        c22 = n * m11 - sr * sr
        det = n * c00 + sr * c01 + sc * c02
        coef = []
        for k in (0, 3):
            y0, y1, y2 = b[k], b[k + 1], b[k + 2]
            coef.append((c00 * y0 + c01 * y1 + c02 * y2) / det)
            coef.append((c01 * y0 + c11 * y1 + c12 * y2) / det)
            coef.append((c02 * y0 + c12 * y1 + c22 * y2) / det)
        self._coef = tuple(coef)

    def predict(self, d_row: float, d_col: float) -> tuple[float, float]:
        """Fitted disagreement (row, col px) at a context displacement; 0 before any frame."""
        c = self._coef
        return (c[0] + c[1] * d_row + c[2] * d_col, c[3] + c[4] * d_row + c[5] * d_col)


def target_weight(mask: np.ndarray, spacing_mm: tuple[float, float], context_mm: float) -> np.ndarray:
    """Weight of each template pixel in the target-focused alignment.

    1 on the target and within one pixel of it (its blurred edge), then a Gaussian
    fall-off with the distance ``d`` beyond that, ``exp(-d^2 / (2 context_mm^2))``: the
    surroundings still steady the alignment against noise, but cannot pull it far.

    Parameters
    ----------
    mask : (h, w) bool ndarray
        The target over the template.
    spacing_mm : (float, float)
        Pixel spacing (row, col), mm.
    context_mm : float
        Fall-off scale of the weight outside the target, mm, > 0.

    Returns
    -------
    (h, w) float64 ndarray
        Weights in [0, 1] (those below 1e-3 set to 0).
    """
    sr, sc = float(spacing_mm[0]), float(spacing_mm[1])
    rows, cols = np.nonzero(mask)
    rr, cc = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    # Exact distance (mm) from every pixel centre to the nearest target pixel centre, in
    # blocks of target pixels so that memory stays small for large targets.
    d2 = np.full(mask.shape, np.inf)
    for k in range(0, rows.size, 256):
        dr = (rr[..., None] - rows[None, None, k : k + 256]) * sr
        dc = (cc[..., None] - cols[None, None, k : k + 256]) * sc
        np.minimum(d2, (dr * dr + dc * dc).min(axis=-1), out=d2)
    beyond = np.maximum(np.sqrt(d2) - max(sr, sc), 0.0)
    weight = np.exp(-0.5 * (beyond / float(context_mm)) ** 2)
    # Below 1e-3 a pixel adds nothing but rounding: leave it out exactly.
    weight[weight < 1e-3] = 0.0
    return weight


def _positive_finite(value: object, name: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0.0):
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return number


class TemplateTracker:
    """ZNCC template tracker of one target on frames of a fixed geometry.

    Parameters
    ----------
    reference : (H, W) real ndarray
        The reference frame. Must be finite inside the template.
    target_mask : (H, W) bool ndarray
        The target on the reference frame; at least one pixel.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm; anisotropic spacing is allowed.
    context_mm : float, default :data:`DEFAULT_CONTEXT_MM` (20)
        Margin of surrounding anatomy added to each side of the target's bounding box to
        form the template, converted per axis to ``ceil(context_mm / spacing)`` pixels
        and clipped to the image.
    search_mm : float, default :data:`DEFAULT_SEARCH_MM` (15)
        Half-size of the search window around the predicted displacement, converted per
        axis to ``ceil(search_mm / spacing)`` pixels.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        Precision the frames are accepted in without conversion (frames of another
        dtype are converted, which costs a copy). The kernel works on a float32 copy of
        the search window either way (:mod:`tracking.zncc`).
    refine : bool, default True
        Refine the ZNCC peak by aligning the template to the frame (Gauss-Newton with
        cubic interpolation, :mod:`tracking.refine`), which removes the bias of the
        parabolic peak fit on asymmetric correlation peaks (up to a quarter pixel).
        Skipped, keeping the ZNCC position, when the peak is on the edge of the search
        window, the aligned template would leave the image, or the alignment does not
        converge within one pixel of the ZNCC peak.
    trust_floor : float, default 0.5
        Confidence (peak ZNCC) a result needs to move the search window; a result also
        inside the window (not on its edge) ends a re-acquisition. The gate's default
        confidence floor.
    reacquire_mm : float or None, default None
        Half-size of the re-acquisition window searched after an untrusted result,
        around the last confident displacement; at least ``search_mm``. None: twice
        ``search_mm``.
    reacquire_floor : float or None, default None
        Confidence a match in the re-acquisition window needs to count as the target
        found again (a window several times larger holds more look-alikes); weaker
        matches are reported ``unconfirmed``. Within [``trust_floor``, 1]. None:
        :data:`DEFAULT_REACQUIRE_FLOOR` or ``trust_floor`` if higher.
    coarse_to_fine : bool, default True
        Search windows of more than :data:`tracking.zncc.COARSE_MIN_POSITIONS`
        positions coarse-to-fine: every position at half resolution, then steepest
        ascent at full resolution from the best coarse maxima, every position after
        all when the best match found is weak (:func:`tracking.zncc._search_kernel`).
        False scores every position, as does a template with too little structure
        coarser than two pixels (:func:`tracking.zncc.coarse_margin` above
        :data:`tracking.zncc.MAX_COARSE_MARGIN`, or under 4 x 4 px).

    Attributes
    ----------
    reference_centroid_px : (float, float)
        Centroid (row, col) of the target mask on the reference, in pixels.
    target_mask : (H, W) bool ndarray
        Read-only copy of the reference target mask.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm.
    template_shape : (int, int)
        Template size (h, w) in pixels.
    template_origin_px : (int, int)
        Top-left pixel (row, col) of the template in the reference frame.
    search_px : (int, int)
        Half-size (rows, cols) of the search window in pixels.
    reacquire_px : (int, int)
        Half-size (rows, cols) of the re-acquisition window in pixels.
    trust_floor, reacquire_floor : float
        As given (``reacquire_floor`` resolved).
    dtype : numpy.dtype
        Working precision of the frames.

    Raises
    ------
    ValueError
        If the mask is empty or does not match the reference's shape, the reference is
        not finite inside the template or has no contrast there, the template fills the
        image along an axis (no room to search), or a spacing, ``context_mm``,
        ``search_mm``, ``trust_floor``, ``reacquire_mm`` or ``reacquire_floor`` is out of
        range.
    """

    def __init__(
        self,
        reference: np.ndarray,
        target_mask: np.ndarray,
        spacing_mm: tuple[float, float],
        context_mm: float = DEFAULT_CONTEXT_MM,
        search_mm: float = DEFAULT_SEARCH_MM,
        dtype: type[np.floating] | np.dtype = np.float32,
        refine: bool = True,
        coarse_to_fine: bool = True,
        trust_floor: float = 0.5,
        reacquire_mm: float | None = None,
        reacquire_floor: float | None = None,
        target_context_mm: float | None = DEFAULT_TARGET_CONTEXT_MM,
        max_disagreement_mm: float = DEFAULT_MAX_DISAGREEMENT_MM,
        min_target_zncc: float = DEFAULT_MIN_TARGET_ZNCC,
    ) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: must be float32 or float64, got {self.dtype}")
        reference = np.asarray(reference)
        if reference.ndim != 2 or reference.dtype.kind not in "biuf":
            raise ValueError(
                f"reference: must be a 2D real array, got {reference.ndim}D {reference.dtype}"
            )
        target_mask = np.asarray(target_mask)
        if target_mask.shape != reference.shape:
            raise ValueError(
                f"target_mask: shape {target_mask.shape} must equal the reference shape "
                f"{reference.shape}"
            )
        if target_mask.dtype != np.bool_:
            raise ValueError(
                f"target_mask: dtype must be bool, got {target_mask.dtype} (use mask != 0)"
            )
        if not target_mask.any():
            raise ValueError("target_mask: must contain at least one target pixel")
        if len(spacing_mm) != 2:
            raise ValueError(f"spacing_mm: must be (row_mm, col_mm), got {spacing_mm!r}")
        spacing = (
            _positive_finite(spacing_mm[0], "spacing_mm[0]"),
            _positive_finite(spacing_mm[1], "spacing_mm[1]"),
        )
        try:
            context = float(context_mm)
        except (TypeError, ValueError):
            raise ValueError(f"context_mm: must be a number, got {context_mm!r}") from None
        if not (math.isfinite(context) and context >= 0.0):
            raise ValueError(f"context_mm: must be finite and >= 0, got {context_mm!r}")
        search = _positive_finite(search_mm, "search_mm")
        if isinstance(trust_floor, bool) or not isinstance(trust_floor, numbers.Real) or not 0.0 <= trust_floor <= 1.0:
            raise ValueError(f"trust_floor: must be a number within [0, 1], got {trust_floor!r}")
        if reacquire_floor is None:
            reacquire_floor = max(DEFAULT_REACQUIRE_FLOOR, float(trust_floor))
        if (
            isinstance(reacquire_floor, bool)
            or not isinstance(reacquire_floor, numbers.Real)
            or not float(trust_floor) <= reacquire_floor <= 1.0
        ):
            raise ValueError(f"reacquire_floor: must be a number within [trust_floor ({trust_floor:g}), 1], got {reacquire_floor!r}")
        reacquire = 2.0 * search if reacquire_mm is None else _positive_finite(reacquire_mm, "reacquire_mm")
        if reacquire < search:
            raise ValueError(f"reacquire_mm: must be at least search_mm ({search:g}), got {reacquire_mm!r}")

        n_rows, n_cols = reference.shape
        r0, r1, c0, c1 = context_box_px(target_mask, spacing, context)
        h = r1 - r0 + 1
        w = c1 - c0 + 1
        if h >= n_rows or w >= n_cols:
            raise ValueError(
                f"context_mm: template of {h} x {w} px (target bounding box plus "
                f"{context} mm) must be smaller than the {n_rows} x {n_cols} px image so "
                "that it can move; reduce context_mm"
            )
        template = reference[r0 : r1 + 1, c0 : c1 + 1].astype(self.dtype)
        if not np.isfinite(template).all():
            raise ValueError("reference: must be finite inside the template (holds NaN or inf)")
        try:
            tmpl_zm, tmpl_ssd, shift = prepare_template(template)
        except ValueError as exc:
            raise ValueError(f"reference: no contrast inside the template ({exc})") from None

        search_r = math.ceil(search / spacing[0])
        search_c = math.ceil(search / spacing[1])
        wide_r = math.ceil(reacquire / spacing[0])
        wide_c = math.ceil(reacquire / spacing[1])
        # Buffers for the larger (re-acquisition) window serve both.
        max_rows = min(2 * wide_r + 1, n_rows - h + 1)
        max_cols = min(2 * wide_c + 1, n_cols - w + 1)

        self._shape = (n_rows, n_cols)
        self._tmpl_zm = tmpl_zm
        self._tmpl_pad = pad_template(tmpl_zm)
        self._tmpl_ssd = tmpl_ssd
        self._shift = shift
        self._tmpl_row0 = r0
        self._tmpl_col0 = c0
        self._search_rows_px = search_r
        self._search_cols_px = search_c
        self._wide_rows_px = wide_r
        self._wide_cols_px = wide_c
        self.trust_floor = float(trust_floor)
        self.reacquire_floor = float(reacquire_floor)
        self._lost: bool = False
        self._spacing_row_mm, self._spacing_col_mm = spacing
        self._scores = np.zeros((max_rows, max_cols), dtype=np.float64)
        self._win, self._integ, self._integ2 = window_buffers(max_rows, max_cols, (h, w))
        margin = coarse_margin(reference, (r0, c0), (h, w)) if coarse_to_fine else math.inf
        coarse = coarse_template(tmpl_zm) if margin <= MAX_COARSE_MARGIN else None
        self._coarse_to_fine = coarse is not None
        self._coarse_margin = margin
        if coarse is None:  # placeholders of the kernel's types: never read
            coarse = (np.zeros((1, 8), dtype=np.float32), 1.0, 1)
        self._ctmpl_pad, self._ctmpl_ssd, self._ctmpl_w = coarse
        self._cwin, self._cinteg, self._cinteg2, self._cscores = coarse_buffers(max_rows, max_cols, (h, w))
        self._candidates = np.zeros((MAX_CANDIDATES, 3), dtype=np.float64)
        self._result = np.zeros(_SEARCH_RESULT_SIZE, dtype=np.float64)
        self._result_alt = np.zeros(_SEARCH_RESULT_SIZE, dtype=np.float64)
        self._last_row_px = 0.0
        self._last_col_px = 0.0
        # None when refinement is off or the template has no 2D structure to align on.
        self._refiner = prepare_refinement(reference, (r0, c0), (h, w)) if refine else None
        # The target-focused template: the same target with little context, aligned last.
        self._target_refiner = None
        self.max_disagreement_mm = _positive_finite(max_disagreement_mm, "max_disagreement_mm")
        if isinstance(min_target_zncc, bool) or not isinstance(min_target_zncc, numbers.Real) or not -1.0 <= min_target_zncc <= 1.0:
            raise ValueError(f"min_target_zncc: must be a number within [-1, 1], got {min_target_zncc!r}")
        self.min_target_zncc = float(min_target_zncc)
        self.target_context_mm = None if target_context_mm is None else float(target_context_mm)
        if target_context_mm is not None and refine:
            tc = float(target_context_mm)
            if not (math.isfinite(tc) and tc > 0.0):
                raise ValueError(f"target_context_mm: must be finite and > 0, or None, got {target_context_mm!r}")
            move_px = max(self.max_disagreement_mm / spacing[0], self.max_disagreement_mm / spacing[1]) + 1.0
            weight = target_weight(target_mask[r0 : r1 + 1, c0 : c1 + 1], spacing, tc)
            self._target_refiner = prepare_refinement(reference, (r0, c0), (h, w), move_px, weight)
        self._disagreement = _DisagreementModel()

        mask = target_mask.copy()
        mask.flags.writeable = False
        self.target_mask = mask
        self.spacing_mm = spacing
        self.template_shape = (h, w)
        self.template_origin_px = (r0, c0)
        self.search_px = (search_r, search_c)
        self.reacquire_px = (wide_r, wide_c)
        mask_rows, mask_cols = np.nonzero(target_mask)
        self.reference_centroid_px = (float(mask_rows.mean()), float(mask_cols.mean()))
        log.debug(
            "template %d x %d px at (%d, %d), search +-%d x +-%d px, spacing %s mm",
            h, w, r0, c0, search_r, search_c, spacing,
        )

    def reset(self) -> None:
        """Forget the last tracked displacement: the next default search is centred on 0,
        in the normal window."""
        self._last_row_px = 0.0
        self._last_col_px = 0.0
        self._lost = False

    @property
    def lost(self) -> bool:
        """Whether the last result was not trusted (invalid, on the window's edge, below
        ``trust_floor``, or unconfirmed): the next :meth:`track` searches the
        re-acquisition window around the last confident displacement."""
        return bool(self._lost)

    @property
    def last_search_window_px(self) -> tuple[int, int, int, int]:
        """Window searched by the last :meth:`track` call as (row0, col0, n_rows, n_cols):
        the image pixel of the first template position tried and the number of positions
        per axis, after clipping to the image. (-1, -1, 0, 0) when no window was formed."""
        res = self._result
        if not math.isfinite(res[_R_WIN_ROW0]):
            return (-1, -1, 0, 0)
        return (
            int(res[_R_WIN_ROW0]),
            int(res[_R_WIN_COL0]),
            int(res[_R_WIN_ROWS]),
            int(res[_R_WIN_COLS]),
        )

    @property
    def last_positions_scored(self) -> int:
        """Number of full-resolution window positions the last :meth:`track` call
        scored: all of them for an exhaustive search, a few tens for a coarse-to-fine
        one (which also scores every position at half resolution); 0 when no window
        was searched."""
        n = self._result[_R_N_SCORED]
        return int(n) if math.isfinite(n) else 0

    def _search(self, image: np.ndarray, pred_row_px: float, pred_col_px: float, wide: bool, result: np.ndarray) -> int:
        """One call of the search kernel into ``result``; returns its status."""
        return int(_search_kernel(
            image,
            self._tmpl_zm,
            self._tmpl_pad,
            self._tmpl_ssd,
            self._shift,
            self._tmpl_row0,
            self._tmpl_col0,
            pred_row_px,
            pred_col_px,
            self._wide_rows_px if wide else self._search_rows_px,
            self._wide_cols_px if wide else self._search_cols_px,
            self._win,
            self._integ,
            self._integ2,
            self._scores,
            self._coarse_to_fine,
            self._coarse_margin,
            self._ctmpl_pad,
            self._ctmpl_ssd,
            self._ctmpl_w,
            self._cwin,
            self._cinteg,
            self._cinteg2,
            self._cscores,
            self._candidates,
            result,
        ))

    def _confirmed(self, status: int, result: np.ndarray) -> bool:
        """Whether a re-acquisition result is inside its window with at least ``reacquire_floor``."""
        return status == _SEARCH_OK and result[_R_AT_EDGE] == 0.0 and result[_R_PEAK] >= self.reacquire_floor

    def track(
        self, image: np.ndarray, predicted_mm: tuple[float, float] | None = None, wide: bool | None = None
    ) -> TrackResult:
        """Find the target on one frame.

        Never raises on the frame's content.

        Parameters
        ----------
        image : (H, W) ndarray
            The frame, same shape as the reference. Fastest as a C-contiguous array of
            the tracker's dtype (anything else is converted first).
        predicted_mm : (float, float), optional
            Expected displacement (row, col) in mm, the centre of the search window.
            Default: the displacement of the last result with confidence at least
            ``trust_floor`` (0 at first).
        wide : bool, optional
            Search the re-acquisition window instead of the normal one. Default:
            :attr:`lost`.

        Returns
        -------
        TrackResult
            Invalid (with the reason) when the frame is not a 2D array of the reference's
            shape, the prediction is not finite, the window lies outside the image, the
            searched region holds NaN or inf, it has no contrast, or no score is finite.

        Raises
        ------
        ValueError
            If ``predicted_mm`` is not a pair (a programming error, not frame content).
        """
        if not (
            type(image) is np.ndarray and image.dtype == self.dtype and image.flags.c_contiguous
        ):
            coerced, reason = self._coerce(image)
            if coerced is None:
                self._lost = True
                return TrackResult.invalid(reason)
            image = coerced
        if image.shape != self._shape:
            self._lost = True
            return TrackResult.invalid(
                f"image shape {image.shape} differs from the reference shape {self._shape}"
            )
        if wide is None:
            wide = self._lost
        if predicted_mm is None:
            pred_row_px = self._last_row_px
            pred_col_px = self._last_col_px
        else:
            if len(predicted_mm) != 2:
                raise ValueError(
                    f"predicted_mm: must be (row_mm, col_mm), got {predicted_mm!r}"
                )
            pred_row_px = float(predicted_mm[0]) / self._spacing_row_mm
            pred_col_px = float(predicted_mm[1]) / self._spacing_col_mm
        status = self._search(image, pred_row_px, pred_col_px, wide, self._result)
        if wide and status in (_SEARCH_NONFINITE_PIXELS, _SEARCH_WINDOW_OUTSIDE, _SEARCH_NO_CONTRAST, _SEARCH_NO_FINITE_SCORE):
            # Something only the wider window holds (a NaN pixel, a flat region): it must
            # not keep the tracker from the normal window for good.
            wide = False
            status = self._search(image, pred_row_px, pred_col_px, False, self._result)
        if wide and predicted_mm is None and not self._confirmed(status, self._result) and (
            abs(pred_row_px) > self._search_rows_px or abs(pred_col_px) > self._search_cols_px
        ):
            # Lost, and nothing confirmed around the last confident position: the target
            # may be back near the reference position (it breathes about it) but beyond
            # this window, or on its very edge. Search the re-acquisition window there too;
            # a confirmed match there wins, else the higher peak.
            alt = self._search(image, 0.0, 0.0, True, self._result_alt)
            if self._confirmed(alt, self._result_alt) or (
                alt == _SEARCH_OK and (status != _SEARCH_OK or self._result_alt[_R_PEAK] > self._result[_R_PEAK])
            ):
                status = alt
                np.copyto(self._result, self._result_alt)
        if status != _SEARCH_OK:
            self._lost = True
            return TrackResult.invalid(_REASONS[status])
        res = self._result
        row_px = float(res[_R_ROW_PX])
        col_px = float(res[_R_COL_PX])
        peak = float(res[_R_PEAK])
        at_edge = res[_R_AT_EDGE] != 0.0
        refiner = self._refiner
        if refiner is not None and not at_edge and refiner.refine(image, row_px, col_px) == 0:
            row_px = float(refiner.result[0])
            col_px = float(refiner.result[1])
        inconsistent = False
        disagreement_mm = target_zncc = math.nan
        target_refiner = self._target_refiner
        if target_refiner is not None and not at_edge:
            # Second estimate, from the target itself: it gives the position; if it
            # disagrees with the context match, or the target does not align, the match
            # is not vouched for.
            status_t = target_refiner.refine(image, row_px, col_px)
            target_zncc = target_refiner.zncc
            if status_t == 0:
                t_row, t_col = float(target_refiner.result[0]), float(target_refiner.result[1])
                disagreement_mm = math.hypot(
                    (t_row - row_px) * self._spacing_row_mm, (t_col - col_px) * self._spacing_col_mm
                )
                model = self._disagreement
                fit_r, fit_c = model.predict(row_px, col_px)
                # The per-frame check: the target lies where its usual relation to the
                # context says, within max_disagreement_mm.
                residual_mm = math.hypot(
                    (t_row - row_px - fit_r) * self._spacing_row_mm, (t_col - col_px - fit_c) * self._spacing_col_mm
                )
                if (peak >= self.trust_floor and not wide and residual_mm <= self.max_disagreement_mm
                        and target_zncc >= self.min_target_zncc):
                    model.add(row_px, col_px, t_row - row_px, t_col - col_px)
                    fit_r, fit_c = model.predict(row_px, col_px)
                disagreement_mm = residual_mm
                row_px, col_px = row_px + fit_r, col_px + fit_c
                inconsistent = disagreement_mm > self.max_disagreement_mm or not target_zncc >= self.min_target_zncc
            else:
                inconsistent = True
        confidence = min(max(peak, 0.0), 1.0)
        unconfirmed = False
        if wide:
            # Re-acquiring in a window several times the normal area: only a match inside
            # it at reacquire_floor or above is the target found again. A weaker one may be
            # a look-alike: reported as unconfirmed (the gate holds), and never followed.
            if not at_edge and not inconsistent and confidence >= self.reacquire_floor:
                self._last_row_px, self._last_col_px = row_px, col_px
                self._lost = False
            else:
                unconfirmed = not at_edge and confidence >= self.trust_floor
                self._lost = True
        else:
            # A weak match never moves the window: a window that followed one could walk
            # away from the target. A confident match on the window's edge does move it
            # (the target is beyond, e.g. jumping away), but leaves the tracker lost.
            if confidence >= self.trust_floor and not inconsistent:
                self._last_row_px, self._last_col_px = row_px, col_px
            self._lost = at_edge or inconsistent or not confidence >= self.trust_floor
        return TrackResult(
            row_mm=row_px * self._spacing_row_mm,
            col_mm=col_px * self._spacing_col_mm,
            row_px=row_px,
            col_px=col_px,
            peak_zncc=peak,
            sharpness=float(res[_R_SHARPNESS]),
            confidence=confidence,
            at_edge=bool(at_edge),
            valid=True,
            reason="",
            unconfirmed=unconfirmed,
            inconsistent=inconsistent,
            disagreement_mm=disagreement_mm,
            target_zncc=target_zncc,
        )

    def _coerce(self, image: object) -> tuple[np.ndarray | None, str]:
        """Turn an off-path frame (other dtype, layout or type) into a C-contiguous array
        of the tracker's dtype, or explain why it cannot be."""
        try:
            array = np.asarray(image)
        except (TypeError, ValueError) as exc:
            return None, f"image is not an array ({exc})"
        if array.ndim != 2:
            return None, f"image must be 2D, got {array.ndim}D"
        if array.dtype.kind not in "biuf":
            return None, f"image dtype must be real numeric, got {array.dtype}"
        return np.ascontiguousarray(array, dtype=self.dtype), ""

    def tracked_mask(self, result: TrackResult) -> np.ndarray:
        """The reference target mask moved by a result's displacement.

        For display and metrics, not the per-frame hot path (it allocates).

        Parameters
        ----------
        result : TrackResult
            A result of :meth:`track`.

        Returns
        -------
        (H, W) bool ndarray
            The mask shifted by the displacement rounded to the nearest pixel per axis
            (no interpolation); pixels shifted out of the image are dropped, pixels
            shifted in are False. All False when ``result`` is invalid.
        """
        out = np.zeros(self._shape, dtype=bool)
        if not result.valid:
            return out
        n_rows, n_cols = self._shape
        dr = int(np.rint(result.row_px))
        dc = int(np.rint(result.col_px))
        if abs(dr) >= n_rows or abs(dc) >= n_cols:
            return out
        out[max(dr, 0) : n_rows + min(dr, 0), max(dc, 0) : n_cols + min(dc, 0)] = self.target_mask[
            max(-dr, 0) : n_rows + min(-dr, 0), max(-dc, 0) : n_cols + min(-dc, 0)
        ]
        return out
