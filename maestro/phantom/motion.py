"""A validation phantom whose anatomy moves with the motion measured on a real cine series.

:class:`maestro.phantom.TracePhantom` moves a painted anatomy rigidly with a recorded
lesion trajectory. This module instead takes the *dense, deforming* motion of a real
sagittal cine-MR series (e.g. ``../shared/data/cine/liver-3T-volunteer-KS81``, a 3 T
TrueFISP navigator slice of a healthy volunteer, from the public "Liver 2D MR navigator
frames" set of Otto-von-Guericke University Magdeburg, prepared by
``pohl-michel/2D-MR-image-prediction``), inserts a synthetic lesion into the series'
first frame, and re-renders the real anatomy, lesion included, as an MRIdian-like cine
with exact sub-pixel ground truth. Application layer: files are read only through
:mod:`hardware` (:func:`hardware.dicom_series.read_series`).

Motion field
------------
:func:`estimate_motion_field` measures, for every frame k of the series, the backward
displacement ``u_k`` of shape (H, W, 2) (row, col) in source pixels such that

    ``frame_k(x) ~= frame_0(x + u_k(x))``

with OpenCV's DIS optical flow (preset MEDIUM, finest scale 0) computed directly from
frame k to frame 0 (no chaining, so errors do not accumulate). Intensities are
normalised robustly per frame (1st and 99.5th percentiles to 0-255, after a 1 px
Gaussian blur that suppresses the 3 T series' noise, SNR ~10 in liver) because the
flow needs 8-bit input and the 12-bit data have a few very bright vessels. The field is
smoothed by a Gaussian of :data:`FIELD_SIGMA_MM` (5 mm) so that it is physically plausible;
where the smoothed field still compresses a neighbourhood too much (Jacobian
determinant of ``x -> x + u_k(x)`` below :data:`MIN_JACOBIAN`, which happens at the
noisy image borders and at a few sliding interfaces) it is smoothed further locally
until it does not. On the liver series the mapping never folds (minimum Jacobian
determinant over all 498 frames 0.250; ``tests/maestro/test_motion_phantom.py``).

How DIS was chosen (measured on the liver series inside the body, frame 0 excluded):
the mean ``|frame_k - frame_0|`` is 23.95 (12.3 on images smoothed by 1.5 px, which
removes most of the noise); after warping frame 0 by the smoothed field it is 15.16,
i.e. 0.63 of the unwarped difference (per frame: 0.84 at the 95th percentile, 0.92 at
worst; on the smoothed images 6.7, i.e. 0.55). The noise floor (the quietest pair of
consecutive frames) is ~9.6 unsmoothed, so the field removes ~60 % of what motion
adds. Farneback (5 levels, window 15, Gaussian) did about as well (0.63; 0.53 smoothed)
but folded much more (Jacobian down to -1.8 after the same smoothing) and took 14 ms
per pair against DIS's 12 ms; DIS presets FAST/ULTRAFAST left 0.83/0.91. The remaining
residual is mostly through-plane motion (vessels entering and leaving the 4 mm slice)
and the sliding of the liver along the body wall, which a smooth field cannot represent.

Folding: after the 5 mm smoothing alone, DIS's field still folded on a few frames
(minimum Jacobian -0.23, at the noisy image borders and in the low-signal anterior
region); the local repair lifts every frame to at least :data:`MIN_JACOBIAN`, so the
minimum Jacobian determinant over all 498 frames and pixels is 0.250. Estimating the
whole series takes ~8 s (cached per process by :func:`series_field`).

Rendering
---------
:class:`MotionPhantom` renders frame k at ``t = k / fps`` (8 or 4 frames/s, the MRIdian
cine modes of :data:`maestro.phantom.GEOMETRIES`). The field is interpolated linearly in
time between the two series frames around ``t`` (the series' own acquisition times). For
each output pixel, S x S = 5 x 5 sub-samples p (in source pixel coordinates) are mapped
to ``q = p + u(p)`` in frame 0, the lesioned frame 0 is sampled at q (bicubic,
``cv2.remap``: coordinates quantised to 1/32 source pixel) and the samples are averaged:
area resampling, i.e. partial volume. The lesioned frame 0 is the (lightly denoised)
source frame 0 with the lesion composited analytically at q, so the lesion's edge is not
limited by the source's 1.8 mm pixels.

The output grid has the MRIdian's pixel spacing (2.4 or 3.5 mm) but covers only the
source series' field of view (centred on it): the MRIdian's 350 mm field is larger
than the source's (320 x 255 mm for the liver series), and there is no anatomy to show
outside it. The liver series gives 133 x 106 pixels at 2.4 mm and 91 x 72 at 3.5 mm
(instead of the MRIdian's 144 x 144 and 100 x 100).

Intensities are scaled so that the liver around the lesion is 100 (as in
:mod:`maestro.phantom`), and 0.35 T-like Rician noise is added: the magnitude of the
complex signal with Gaussian noise of ``100 / SNR`` on both channels, SNR drawn in
12-18 from the seed. The source's own noise, lightly denoised and then averaged by the
area resampling, remains as a faint texture that moves with the anatomy.

Ground truth
------------
``label_fraction(k)`` is the fraction of each output pixel's 5 x 5 sub-samples whose q
lies inside the lesion ellipse: the exactly warped lesion, with sub-pixel partial
volume. ``trajectory_mm`` is the displacement of the centroid of ``label_fraction``
from frame 0's, (row, col) mm in the output image's axes. The lesion deforms with the
field, so this is the motion of the lesion's centre of area, which is what a tracker of
the lesion should report.

Orientation
-----------
Output images follow the project's convention: row index toward inferior, column index
toward posterior. The liver series already is: its ``ImageOrientationPatient`` is
(0, 1, 0, 0, 0, -1) with the patient head first supine (rows run toward the feet,
columns toward the back), and on the image the lung is at the top and the spine on the
right. For a series stored otherwise, pass ``flip_rows`` / ``flip_cols``: the series is
flipped first, and lesion coordinates refer to the flipped frames.

Determinism: the flow, the smoothing and the rendering are deterministic, and all
randomness (SNR, noise) comes from ``np.random.default_rng(seed)``, so equal arguments
give bit-identical frames.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import cv2
import numpy as np
from scipy import ndimage

from maestro.phantom.acquisition import rician_uint16
from maestro.phantom.geometry import GEOMETRIES, Geometry
from maestro.phantom.trace import TraceFrame

if TYPE_CHECKING:
    from hardware.dicom_series import DicomSeries

__all__ = [
    "FIELD_SIGMA_MM",
    "KS81_LIVER_POLYGON_PX",
    "MIN_JACOBIAN",
    "MOTION_CASES",
    "MotionCase",
    "MotionField",
    "MotionLesion",
    "MotionPhantom",
    "MotionSession",
    "SUPERSAMPLE",
    "estimate_motion_field",
    "generate_motion_session",
    "lesion_for",
    "liver_polygon_for",
    "jacobian_determinant",
    "motion_case",
    "motion_case_phantom",
    "series_field",
]

#: Standard deviation of the Gaussian that smooths the optical-flow field, mm.
FIELD_SIGMA_MM = 5.0
#: Smallest Jacobian determinant of ``x -> x + u(x)`` the field is repaired up to.
MIN_JACOBIAN = 0.25
#: Sub-samples per output pixel along each axis (image and labels).
SUPERSAMPLE = 5
#: Gaussian blur of the source frame 0 before it is re-rendered, mm: it halves the
#: source's own noise, which would otherwise be a frozen texture moving with the anatomy.
SOURCE_DENOISE_MM = 1.0
#: Liver intensity of the output (noise-free), as in maestro.phantom.
LIVER_INTENSITY = 100.0
#: Liver SNR range of the added noise (0.35 T-like).
SNR_RANGE = (12.0, 18.0)

_FLOW_BLUR_PX = 1.0  # pre-flow blur (noise); measured best of 0, 1, 1.5 px
_FLOW_PERCENTILES = (1.0, 99.5)


# --------------------------------------------------------------------------------------
# The motion field
# --------------------------------------------------------------------------------------


def jacobian_determinant(displacement_px: np.ndarray) -> np.ndarray:
    """Jacobian determinant of the mapping ``x -> x + u(x)``.

    Parameters
    ----------
    displacement_px : (..., H, W, 2) ndarray
        (row, col) displacement in pixels.

    Returns
    -------
    (..., H, W) float64 ndarray
        ``(1 + du_r/dr)(1 + du_c/dc) - du_r/dc du_c/dr`` by central differences
        (one-sided at the borders). Positive everywhere means the mapping does not fold.
    """
    u = np.asarray(displacement_px, dtype=np.float64)
    dr_dr, dr_dc = np.gradient(u[..., 0], axis=(-2, -1))
    dc_dr, dc_dc = np.gradient(u[..., 1], axis=(-2, -1))
    return np.asarray((1.0 + dr_dr) * (1.0 + dc_dc) - dr_dc * dc_dr)


@dataclass(frozen=True, eq=False)
class MotionField:
    """The dense motion of a series: frame 0 to every frame, backward convention.

    Attributes
    ----------
    displacement_px : (T, H, W, 2) float32 ndarray
        ``u_k``: ``frame_k(x) ~= frame_0(x + u_k(x))``, (row, col) in source pixels;
        ``u_0`` is 0.
    times_s : (T,) float64 ndarray
        Acquisition time of each series frame, s (0 for frame 0).
    spacing_mm : (float, float)
        Source pixel spacing (row, col), mm.
    sigma_mm : float
        Gaussian smoothing applied to the flow, mm (0 for a given field).
    method : str
        How the field was made.
    unwarped : (T,) float64 ndarray
        Mean ``|frame_k - frame_0|`` inside ``body_mask`` (source intensities); empty
        for a given field.
    residual : (T,) float64 ndarray
        Mean ``|frame_k - warp(frame_0, u_k)|`` inside ``body_mask``; empty for a given field.
    body_mask : (H, W) bool ndarray or None
        Where the residuals are measured: frame 0's tissue (Otsu threshold of the
        smoothed frame, holes filled).
    """

    displacement_px: np.ndarray
    times_s: np.ndarray
    spacing_mm: tuple[float, float]
    sigma_mm: float = 0.0
    method: str = "given"
    unwarped: np.ndarray = dataclass_field(default_factory=lambda: np.zeros(0))
    residual: np.ndarray = dataclass_field(default_factory=lambda: np.zeros(0))
    body_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        u = np.asarray(self.displacement_px, dtype=np.float32)
        t = np.asarray(self.times_s, dtype=np.float64)
        if u.ndim != 4 or u.shape[-1] != 2 or u.shape[0] < 2:
            raise ValueError(f"displacement_px: must have shape (T >= 2, H, W, 2), got {u.shape}")
        if t.shape != (u.shape[0],) or not np.all(np.diff(t) > 0.0) or not np.isfinite(u).all():
            raise ValueError("times_s: must be strictly increasing, one per field frame (and the field finite)")
        object.__setattr__(self, "displacement_px", u)
        object.__setattr__(self, "times_s", t)
        object.__setattr__(self, "spacing_mm", (float(self.spacing_mm[0]), float(self.spacing_mm[1])))

    @property
    def shape(self) -> tuple[int, int]:
        """Source frame shape (H, W)."""
        return (int(self.displacement_px.shape[1]), int(self.displacement_px.shape[2]))

    def min_jacobian(self) -> float:
        """Smallest Jacobian determinant of ``x -> x + u_k(x)`` over all frames and pixels."""
        return float(min(jacobian_determinant(u).min() for u in self.displacement_px))

    def at(self, t_s: float) -> np.ndarray:
        """(H, W, 2) float32 field at time ``t_s``, linear in time between series frames."""
        t = self.times_s
        i = int(np.clip(np.searchsorted(t, t_s, side="right") - 1, 0, t.size - 2))
        w = float(np.clip((t_s - t[i]) / (t[i + 1] - t[i]), 0.0, 1.0))
        u0, u1 = self.displacement_px[i], self.displacement_px[i + 1]
        if w == 0.0:
            return u0
        return (u0 + np.float32(w) * (u1 - u0)).astype(np.float32, copy=False)


def _flow_input(frame: np.ndarray) -> np.ndarray:
    """8-bit flow input: blurred, robust per-frame percentile window (12-bit data have a
    few very bright vessels that would otherwise compress the liver into a few levels)."""
    x = ndimage.gaussian_filter(np.asarray(frame, dtype=np.float32), _FLOW_BLUR_PX)
    lo, hi = np.percentile(x, _FLOW_PERCENTILES)
    y = np.clip((x - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    return (y * 255.0 + 0.5).astype(np.uint8)


def _smooth(u: np.ndarray, sigma_px: tuple[float, float]) -> np.ndarray:
    return np.stack([ndimage.gaussian_filter(u[..., c], sigma_px, mode="nearest") for c in range(2)], axis=-1)


def _unfold(u: np.ndarray, sigma_px: tuple[float, float], min_jacobian: float) -> np.ndarray:
    """Smooth ``u`` further where its Jacobian is below ``min_jacobian`` (local repair)."""
    for _ in range(30):
        jac = jacobian_determinant(u)
        low = jac < min_jacobian
        if not low.any():
            break
        # A soft mask around the low-Jacobian pixels: blend toward a twice-as-smooth field
        # there only, so the rest of the measured motion is kept.
        grown = ndimage.binary_dilation(low, iterations=3)
        mask = np.clip(ndimage.gaussian_filter(grown.astype(np.float64), 2.0) * 2.0, 0.0, 1.0)[..., None]
        smoother = _smooth(u, (2.0 * sigma_px[0], 2.0 * sigma_px[1]))
        u = u + mask * (smoother - u)
    return u


def _body_mask(frame0: np.ndarray, threshold_factor: float = 1.0) -> np.ndarray:
    """Bright tissue of a frame: its 3 px-smoothed intensity above ``threshold_factor``
    times the Otsu threshold, opened and hole-filled. With the factor 0.5 it also takes
    in the liver's low-signal anterior part (the lung stays out: on the liver series
    lung ~32, anterior liver ~64, the half threshold ~39)."""
    sm = ndimage.gaussian_filter(np.asarray(frame0, dtype=np.float64), 3.0)
    lo, hi = float(sm.min()), float(sm.max())
    as8 = np.clip((sm - lo) / max(hi - lo, 1e-9) * 255.0, 0, 255).astype(np.uint8)
    thr, _ = cv2.threshold(as8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    body = as8 > thr * threshold_factor
    body = ndimage.binary_opening(body, iterations=2)
    return cast(np.ndarray, ndimage.binary_fill_holes(body))  # the stubs allow None (output=...)


def _warp(image: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``image(x + u(x))`` (bilinear, replicated border)."""
    h, w = image.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(np.asarray(image, dtype=np.float32), cols + u[..., 1], rows + u[..., 0],
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def estimate_motion_field(
    frames: np.ndarray,
    times_s: np.ndarray,
    spacing_mm: tuple[float, float],
    sigma_mm: float = FIELD_SIGMA_MM,
    min_jacobian: float = MIN_JACOBIAN,
) -> MotionField:
    """Dense motion from frame 0 to every frame of a cine series (DIS optical flow).

    Parameters
    ----------
    frames : (T, H, W) array_like
        The series (any real dtype, e.g. 12-bit data as float32), T >= 2.
    times_s : (T,) array_like of float
        Acquisition times, s, strictly increasing.
    spacing_mm : (float, float)
        Pixel spacing (row, col), mm.
    sigma_mm : float
        Gaussian smoothing of the flow, mm (> 0).
    min_jacobian : float
        The field is smoothed further, locally, where ``det(I + grad u)`` is below this.

    Returns
    -------
    MotionField
        With the residuals inside the body (see the module doc for the figures).

    Notes
    -----
    The flow is computed from frame k to frame 0 (OpenCV's ``calc(I0, I1)`` returns f
    with ``I0(x) ~= I1(x + f(x))``, (x, y) order), which is the backward convention
    directly. Deterministic (single-threaded DIS; ~12 ms per frame at 176 x 140).
    """
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim != 3 or f.shape[0] < 2:
        raise ValueError(f"frames: must have shape (T >= 2, H, W), got {f.shape}")
    if not (isinstance(sigma_mm, numbers.Real) and math.isfinite(sigma_mm) and sigma_mm > 0):
        raise ValueError(f"sigma_mm: must be finite and > 0, got {sigma_mm!r}")
    spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
    sigma_px = (sigma_mm / spacing[0], sigma_mm / spacing[1])
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # pyright: ignore[reportAttributeAccessIssue]  # not in cv2's stubs
    dis.setFinestScale(0)  # full resolution: 1.8 mm pixels are already coarse
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # bit-identical results whatever the machine's core count
    try:
        ref = _flow_input(f[0])
        u = np.zeros((*f.shape, 2), dtype=np.float32)
        for k in range(1, f.shape[0]):
            flow = dis.calc(_flow_input(f[k]), ref, None)
            uk = _smooth(flow[..., ::-1].astype(np.float64), sigma_px)
            u[k] = _unfold(uk, sigma_px, min_jacobian)
    finally:
        cv2.setNumThreads(previous_threads)
    body = _body_mask(f[0])
    unwarped = np.array([np.abs(fk - f[0])[body].mean() for fk in f])
    residual = np.array([np.abs(fk - _warp(f[0], uk))[body].mean() for fk, uk in zip(f, u)])  # pyright: ignore[reportArgumentType]  # uk: (H, W, 2)
    return MotionField(u, np.asarray(times_s, dtype=np.float64), spacing, float(sigma_mm),
                       "DIS optical flow (medium, finest scale 0), Gaussian-smoothed", unwarped, residual, body)


# --------------------------------------------------------------------------------------
# Lesion and cases
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionLesion:
    """A lesion ellipse in frame-0 coordinates of the (oriented) source series.

    Attributes
    ----------
    centre_mm : (float, float)
        Centre (row_mm, col_mm) from the centre of source pixel (0, 0), mm.
    semi_axes_mm : (float, float)
        Semi-axes (a, b), mm.
    angle_deg : float
        Angle of the ``a`` axis from the row (inferior) axis toward the column
        (posterior) axis, degrees.
    contrast : float
        Lesion intensity over the local liver intensity (< 1 hypo-, > 1 hyperintense).
    edge_mm : float
        Logistic scale of the soft edge (the ellipse is the half-contrast line), mm.
    """

    centre_mm: tuple[float, float]
    semi_axes_mm: tuple[float, float]
    angle_deg: float = 0.0
    contrast: float = 0.55
    edge_mm: float = 1.0

    @property
    def diameter_mm(self) -> float:
        """Equivalent-circle diameter ``2 sqrt(a b)``, mm."""
        return 2.0 * math.sqrt(self.semi_axes_mm[0] * self.semi_axes_mm[1])

    @property
    def kind(self) -> str:
        """``"hypointense"`` or ``"hyperintense"``."""
        return "hyperintense" if self.contrast > 1.0 else "hypointense"

    @classmethod
    def at_px(cls, row_px: float, col_px: float, spacing_mm: tuple[float, float], diameter_mm: float,
              aspect: float = 1.0, angle_deg: float = 0.0, contrast: float = 0.55) -> MotionLesion:
        """A lesion centred on source pixel (row_px, col_px) of diameter ``diameter_mm``
        (``a / b = aspect``)."""
        a = 0.5 * diameter_mm * math.sqrt(aspect)
        b = 0.5 * diameter_mm / math.sqrt(aspect)
        return cls((row_px * spacing_mm[0], col_px * spacing_mm[1]), (a, b), angle_deg, contrast)

    def signed_distance_mm(self, row_mm: np.ndarray, col_mm: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the ellipse (negative inside), mm; exact on the
        boundary to first order, capped at ``-min(a, b)`` near the centre."""
        a, b = self.semi_axes_mm
        th = math.radians(self.angle_deg)
        dy, dx = row_mm - self.centre_mm[0], col_mm - self.centre_mm[1]
        u = dy * math.cos(th) + dx * math.sin(th)
        v = -dy * math.sin(th) + dx * math.cos(th)
        f = (u / a) ** 2 + (v / b) ** 2 - 1.0
        grad = 2.0 * np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
        return np.maximum(f / np.maximum(grad, 1e-9), -min(a, b))

    def inside(self, row_mm: np.ndarray, col_mm: np.ndarray) -> np.ndarray:
        """True where (row_mm, col_mm) lies inside the ellipse (the hard truth)."""
        a, b = self.semi_axes_mm
        th = math.radians(self.angle_deg)
        dy, dx = row_mm - self.centre_mm[0], col_mm - self.centre_mm[1]
        u = dy * math.cos(th) + dx * math.sin(th)
        v = -dy * math.sin(th) + dx * math.cos(th)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0


#: Outline of the liver on frame 0 of liver-3T-volunteer-KS81, (row, col) source pixels,
#: drawn by eye on a zoomed frame (dome at row ~47, kidney below row ~107 posteriorly,
#: the anterior part fades into the coil's low-signal region near column 45).
KS81_LIVER_POLYGON_PX: tuple[tuple[float, float], ...] = (
    (58, 55), (50, 68), (47, 80), (50, 92), (56, 102), (63, 109), (75, 112), (95, 111),
    (104, 106), (107, 95), (110, 85), (116, 75), (118, 62), (110, 50), (90, 46), (70, 48),
)
_KS81_SPACING_MM = (1.8181818723679, 1.8181818723679)
_KS81_FOLDER_NAME = "liver-3T-volunteer-KS81"


@dataclass(frozen=True)
class MotionCase:
    """A named lesion placement on the liver series.

    Attributes
    ----------
    name : str
    role : str
        ``"tuning"`` (may be looked at while tuning) or ``"held-out"`` (only reported).
    lesion : MotionLesion
    where : str
        Where it sits, in words.
    """

    name: str
    role: str
    lesion: MotionLesion
    where: str


def _ks81(name: str, role: str, row: float, col: float, d_mm: float, contrast: float, where: str,
          aspect: float = 1.0, angle_deg: float = 0.0) -> MotionCase:
    return MotionCase(name, role, MotionLesion.at_px(row, col, _KS81_SPACING_MM, d_mm, aspect, angle_deg, contrast), where)


#: Six lesion placements in the liver of liver-3T-volunteer-KS81, half tuning, half
#: held-out, each inside the liver polygon with >= 3 mm to spare and in the field of
#: view over the whole series (checked by the tests). Positions are source pixels.
MOTION_CASES: tuple[MotionCase, ...] = (
    _ks81("dome-hypo-20", "tuning", 60.0, 84.0, 20.0, 0.55, "under the liver dome, near the lung boundary"),
    _ks81("central-hyper-30", "tuning", 86.0, 90.0, 30.0, 1.7, "central liver, over bright vessels",
          aspect=1.2, angle_deg=30.0),
    _ks81("posterior-hypo-25", "tuning", 82.0, 101.0, 24.0, 0.5, "posterior liver, near the body wall",
          aspect=1.25, angle_deg=-10.0),
    _ks81("vessel-hyper-15", "held-out", 90.0, 64.0, 15.0, 1.8, "beside the large hepatic vessel (row 84, col 73)"),
    _ks81("inferior-hypo-22", "held-out", 104.0, 70.0, 22.0, 0.5, "inferior liver, above the liver's lower edge",
          aspect=1.15, angle_deg=60.0),
    _ks81("anterior-hyper-35", "held-out", 80.0, 68.0, 35.0, 1.6, "large, anterior-central liver",
          aspect=1.1, angle_deg=-40.0),
)


def motion_case(name: str) -> MotionCase:
    """The :data:`MOTION_CASES` entry called ``name`` (ValueError naming the choices)."""
    for case in MOTION_CASES:
        if case.name == name:
            return case
    raise ValueError(f"motion case: must be one of {', '.join(c.name for c in MOTION_CASES)}, got {name!r}")


# --------------------------------------------------------------------------------------
# The phantom
# --------------------------------------------------------------------------------------


def _polygon_mask(polygon_px: tuple[tuple[float, float], ...], shape: tuple[int, int], scale: int) -> np.ndarray:
    """Polygon (row, col) rasterised at ``scale`` sub-pixels per pixel."""
    pts = np.array([[c * scale + (scale - 1) / 2.0, r * scale + (scale - 1) / 2.0] for r, c in polygon_px])
    mask = np.zeros((shape[0] * scale, shape[1] * scale), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def _interp_matrix(positions: np.ndarray, n: int) -> np.ndarray:
    """(len(positions), n) float32 linear-interpolation weights (edge values replicated),
    so that ``M @ v`` samples v at fractional indices ``positions``."""
    p = np.clip(positions, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(p).astype(np.int64), n - 2) if n > 1 else np.zeros(p.size, dtype=np.int64)
    w = p - i0
    m = np.zeros((p.size, n), dtype=np.float64)
    m[np.arange(p.size), i0] += 1.0 - w
    if n > 1:
        m[np.arange(p.size), i0 + 1] += w
    return m.astype(np.float32)


class MotionPhantom:
    """An MRIdian-like cine of a real series' anatomy and motion, with an inserted lesion.

    See the module doc for the method. Frames are rendered lazily, in order, by
    :meth:`frames` (about 6.3 ms per frame at 133 x 106 output pixels, 3.2 ms at 91 x 72,
    measured on this machine; 665 x 530 cubic samples per 8 fps frame).

    Parameters
    ----------
    series_frames : (T, H, W) array_like
        The source series, oriented as the project's images (see ``flip_rows``).
    series_times_s : (T,) array_like of float
        Its acquisition times, s.
    series_spacing_mm : (float, float)
        Its pixel spacing (row, col), mm.
    geometry : str or Geometry
        ``"mridian-8fps"`` (8 frames/s, 2.4 mm) or ``"mridian-4fps"`` (4 frames/s,
        3.5 mm); the output covers the source's field of view (not 350 mm).
    seconds : float or None
        Session length, s; at most the series' duration (``None``: all of it).
    seed : int
        Noise seed (SNR and noise).
    lesion : MotionLesion or str
        The lesion, or the name of one of :data:`MOTION_CASES`.
    field : MotionField or None
        Precomputed field of this series (e.g. :func:`series_field`'s); estimated when None.
    liver_polygon_px : sequence of (row, col) or None
        The liver's outline on frame 0 (source pixels); when given, the lesion must lie
        inside it with 3 mm to spare. A named case on the liver series uses
        :data:`KS81_LIVER_POLYGON_PX`.
    flip_rows, flip_cols : bool
        Flip the series (and a given field) so that rows run toward inferior and columns
        toward posterior.

    Attributes
    ----------
    n_frames, fps, spacing_mm, shape, slice_mm, times_s, seed, noise_sigma, geometry
        As in :class:`maestro.phantom.TracePhantom`.
    trajectory_mm : (T, 2) float64 ndarray
        Displacement of the centroid of ``label_fraction`` from frame 0's, (row, col) mm,
        + inferior, + posterior.
    lesion : MotionLesion
    lesion_diameter_mm : float
    lesion_centre0_px : (float, float)
        The lesion centre on frame 0 as fractional output (row, col) indices.
    field : MotionField
    liver_scale : float
        Output intensity per source intensity (liver around the lesion -> 100).

    Raises
    ------
    ValueError
        Bad arguments, a lesion outside the body/liver/field of view, or ``seconds``
        beyond the series. The message starts with the field's name and a colon.
    """

    def __init__(
        self,
        series_frames: np.ndarray,
        series_times_s: np.ndarray,
        series_spacing_mm: tuple[float, float],
        geometry: str | Geometry = "mridian-8fps",
        seconds: float | None = None,
        seed: int = 1,
        lesion: MotionLesion | str = "dome-hypo-20",
        field: MotionField | None = None,
        liver_polygon_px: tuple[tuple[float, float], ...] | None = None,
        flip_rows: bool = False,
        flip_cols: bool = False,
    ) -> None:
        src = np.asarray(series_frames, dtype=np.float32)
        if src.ndim != 3 or src.shape[0] < 2 or min(src.shape[1:]) < 8:
            raise ValueError(f"series_frames: must have shape (T >= 2, H >= 8, W >= 8), got {src.shape}")
        times = np.asarray(series_times_s, dtype=np.float64)
        if times.shape != (src.shape[0],) or not np.all(np.diff(times) > 0):
            raise ValueError("series_times_s: must be strictly increasing, one per frame")
        times = times - times[0]
        spacing_src = tuple(float(s) for s in series_spacing_mm)
        if len(spacing_src) != 2 or not all(math.isfinite(s) and s > 0 for s in spacing_src):
            raise ValueError(f"series_spacing_mm: must be two values > 0 mm, got {series_spacing_mm!r}")
        if isinstance(geometry, str):
            if geometry not in GEOMETRIES:
                raise ValueError(f"geometry: must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
            geo = GEOMETRIES[geometry]
        else:
            geo = geometry
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
        duration = float(times[-1])
        if seconds is None:
            seconds = duration
        if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not (0 < seconds < math.inf):
            raise ValueError(f"seconds: must be a finite number > 0, got {seconds!r}")
        if seconds > duration + 1e-9:
            raise ValueError(f"seconds: must be at most the series' {duration:g} s, got {seconds!r}")
        if isinstance(lesion, str):
            case = motion_case(lesion)
            lesion = case.lesion
            if liver_polygon_px is None:
                liver_polygon_px = KS81_LIVER_POLYGON_PX
        if not isinstance(lesion, MotionLesion):
            raise ValueError(f"lesion: must be a MotionLesion or a case name, got {lesion!r}")
        a, b = lesion.semi_axes_mm
        if not (0 < b and 0 < a and math.isfinite(a * b) and 0.05 <= lesion.contrast <= 5.0 and lesion.edge_mm > 0):
            raise ValueError(f"lesion: semi-axes and edge must be > 0 and contrast within [0.05, 5], got {lesion!r}")

        if flip_rows or flip_cols:
            src = src[:, ::-1 if flip_rows else 1, ::-1 if flip_cols else 1].copy()
        if field is None:
            field = estimate_motion_field(src, times, spacing_src)
        elif flip_rows or flip_cols:
            u = field.displacement_px[:, ::-1 if flip_rows else 1, ::-1 if flip_cols else 1].copy()
            if flip_rows:
                u[..., 0] *= -1.0
            if flip_cols:
                u[..., 1] *= -1.0
            field = MotionField(u, field.times_s, field.spacing_mm, field.sigma_mm, field.method + ", flipped")
        if field.shape != src.shape[1:] or field.times_s.size != src.shape[0]:
            raise ValueError(f"field: must match the series ({src.shape}), got {field.displacement_px.shape}")
        self.field = field

        h_src, w_src = src.shape[1:]
        s = SUPERSAMPLE
        sp = geo.spacing_mm
        # Output grid: the MRIdian's spacing over the source's field of view, centred.
        rows = int(math.floor(h_src * spacing_src[0] / sp + 1e-9))
        cols = int(math.floor(w_src * spacing_src[1] / sp + 1e-9))
        self.shape = (rows, cols)
        sub = ((np.arange(s) + 0.5) / s - 0.5)
        # Sub-sample centres in source pixel coordinates, separable along rows and columns.
        out_r = (np.arange(rows)[:, None] - (rows - 1) / 2.0 + sub[None, :]).ravel()
        out_c = (np.arange(cols)[:, None] - (cols - 1) / 2.0 + sub[None, :]).ravel()
        self._p_row = (out_r * sp / spacing_src[0] + (h_src - 1) / 2.0).astype(np.float32)
        self._p_col = (out_c * sp / spacing_src[1] + (w_src - 1) / 2.0).astype(np.float32)
        # u(p) = R u C^T exactly (bilinear is separable on a separable grid): two small
        # matrix products instead of a gather, exact and fast.
        self._r_mat = _interp_matrix(self._p_row.astype(np.float64), h_src)
        self._c_mat_t = np.ascontiguousarray(_interp_matrix(self._p_col.astype(np.float64), w_src).T)
        self._spacing_src = spacing_src
        self.lesion = lesion

        # Where is the lesion on the output grid at frame 0 (fractional indices)?
        centre_src_px = (lesion.centre_mm[0] / spacing_src[0], lesion.centre_mm[1] / spacing_src[1])
        self.lesion_centre0_px = (
            (centre_src_px[0] - (h_src - 1) / 2.0) * spacing_src[0] / sp + (rows - 1) / 2.0,
            (centre_src_px[1] - (w_src - 1) / 2.0) * spacing_src[1] / sp + (cols - 1) / 2.0,
        )
        self._check_placement(src[0], liver_polygon_px)

        # The source frame 0, lightly denoised, scaled so that the liver around the lesion is 100.
        frame0 = ndimage.gaussian_filter(src[0].astype(np.float64),
                                         (SOURCE_DENOISE_MM / spacing_src[0], SOURCE_DENOISE_MM / spacing_src[1]))
        local = self._local_liver(frame0, liver_polygon_px)
        self.liver_scale = LIVER_INTENSITY / local
        self._frame0 = (frame0 * self.liver_scale).astype(np.float32)
        self._lesion_value = float(lesion.contrast * LIVER_INTENSITY)

        self.geometry = geo.name
        self.fps = float(geo.fps)
        self.spacing_mm = (float(sp), float(sp))
        self.slice_mm = float(geo.slice_mm)
        self.seed = int(seed)
        self.n_frames = max(int(math.floor(seconds * geo.fps + 1e-9)), 1)
        self.times_s = np.arange(self.n_frames, dtype=np.float64) / geo.fps
        self._rng = np.random.default_rng(self.seed)
        self._noise_sigma = LIVER_INTENSITY / float(self._rng.uniform(*SNR_RANGE))

        # Truth: the centroid of label_fraction on every frame (windowed, see _window).
        centroids = np.empty((self.n_frames, 2))
        self._windows: list[tuple[slice, slice]] = []
        for k in range(self.n_frames):
            window = self._window(k)
            frac, _ = self._labels(k, window)
            total = frac.sum()
            if total <= 0:
                raise ValueError(f"lesion: leaves the field of view at t = {self.times_s[k]:.2f} s")
            r_idx = np.arange(window[0].start, window[0].stop)[:, None]
            c_idx = np.arange(window[1].start, window[1].stop)[None, :]
            centroids[k] = ((frac * r_idx).sum() / total, (frac * c_idx).sum() / total)
            self._windows.append(window)
        self.trajectory_mm = (centroids - centroids[0]) * np.asarray(self.spacing_mm)
        self._centroid0_px = centroids[0]
        for array in (self.times_s, self.trajectory_mm):
            array.setflags(write=False)
        self._started = False

    # -- public ---------------------------------------------------------------------------
    @property
    def noise_sigma(self) -> float:
        """Gaussian noise sigma per channel before the magnitude (Rician), intensity units."""
        return self._noise_sigma

    @property
    def lesion_diameter_mm(self) -> float:
        """Equivalent-circle lesion diameter on frame 0, mm."""
        return self.lesion.diameter_mm

    @property
    def lesion_centre_px(self) -> np.ndarray:
        """(T, 2) float64 true lesion centroid per frame as fractional output (row, col) indices."""
        return self._centroid0_px + self.trajectory_mm / np.asarray(self.spacing_mm)

    def label_fraction(self, k: int) -> np.ndarray:
        """(H, W) float32 fraction of each pixel's 5 x 5 sub-samples inside the warped lesion."""
        if not (0 <= k < self.n_frames):
            raise ValueError(f"k: must be within [0, {self.n_frames}), got {k!r}")
        frac, window = self._labels(k, self._windows[k])
        out = np.zeros(self.shape, dtype=np.float32)
        out[window] = frac
        return out

    def lesion_sample_points_px(self, k: int) -> np.ndarray:
        """The exactly warped lesion of frame ``k`` as points: the centres of the 5 x 5
        sub-samples of each output pixel that lie inside it (the sub-samples that
        ``label_fraction`` counts), in output pixel coordinates.

        Returns
        -------
        (N, 2) float64 ndarray
            (row, col) positions; a pixel wholly inside gives the points
            ``maestro.evaluation.gating_metrics.label_sample_points_px(..., samples_per_px=5)`` gives it.
        """
        if not (0 <= k < self.n_frames):
            raise ValueError(f"k: must be within [0, {self.n_frames}), got {k!r}")
        window = self._windows[k]
        rows, cols = np.nonzero(self._inside(k, window))
        s = SUPERSAMPLE
        return np.column_stack([window[0].start + (rows + 0.5) / s - 0.5,
                                window[1].start + (cols + 0.5) / s - 0.5]).astype(np.float64)

    def frames(self) -> Iterator[TraceFrame]:
        """Render every frame in order (the noise sequence is drawn as it goes).

        Can be called once per instance: the noise generator is consumed.
        """
        if self._started:
            raise RuntimeError("frames() can be iterated once per MotionPhantom")
        self._started = True
        s = SUPERSAMPLE
        rows, cols = self.shape
        for k in range(self.n_frames):
            q_row, q_col = self._q(k)
            # Bicubic sampling of the lesion-free frame 0 at q; cubic overshoot is clipped.
            sub = cv2.remap(self._frame0, q_col, q_row, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
            window = self._windows[k]
            wr = slice(window[0].start * s, window[0].stop * s)
            wc = slice(window[1].start * s, window[1].stop * s)
            sd = self.lesion.signed_distance_mm(q_row[wr, wc] * self._spacing_src[0],
                                                q_col[wr, wc] * self._spacing_src[1])
            alpha = 1.0 / (1.0 + np.exp(np.clip(sd / self.lesion.edge_mm, -50.0, 50.0)))
            sub[wr, wc] += (alpha * (self._lesion_value - sub[wr, wc])).astype(np.float32)
            clean = np.maximum(sub.reshape(rows, s, cols, s).mean(axis=(1, 3), dtype=np.float64), 0.0)
            pixels = rician_uint16(clean, self._rng, self._noise_sigma)
            frac, _ = self._labels(k, window, q_row[wr, wc], q_col[wr, wc])
            label = np.zeros(self.shape, dtype=np.float32)
            label[window] = frac
            yield TraceFrame(k, pixels, label)

    # -- internals ------------------------------------------------------------------------
    def _q(self, k: int, window: tuple[slice, slice] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """q = p + u(p) of the sub-samples (of ``window``, output pixels), source pixels."""
        u = self.field.at(float(self.times_s[k]))
        s = SUPERSAMPLE
        if window is None:
            r_mat, c_mat_t, p_row, p_col = self._r_mat, self._c_mat_t, self._p_row, self._p_col
        else:
            wr = slice(window[0].start * s, window[0].stop * s)
            wc = slice(window[1].start * s, window[1].stop * s)
            r_mat, c_mat_t, p_row, p_col = self._r_mat[wr], self._c_mat_t[:, wc], self._p_row[wr], self._p_col[wc]
        q_row = (r_mat @ u[..., 0] @ c_mat_t) + p_row[:, None]
        q_col = (r_mat @ u[..., 1] @ c_mat_t) + p_col[None, :]
        return q_row.astype(np.float32), q_col.astype(np.float32)

    def _inside(self, k: int, window: tuple[slice, slice], q_row: np.ndarray | None = None,
                q_col: np.ndarray | None = None) -> np.ndarray:
        """Which sub-samples of ``window`` (output pixels) lie inside the warped lesion."""
        if q_row is None or q_col is None:
            q_row, q_col = self._q(k, window)
        return self.lesion.inside(q_row.astype(np.float64) * self._spacing_src[0],
                                  q_col.astype(np.float64) * self._spacing_src[1])

    def _labels(self, k: int, window: tuple[slice, slice], q_row: np.ndarray | None = None,
                q_col: np.ndarray | None = None) -> tuple[np.ndarray, tuple[slice, slice]]:
        inside = self._inside(k, window, q_row, q_col)
        s = SUPERSAMPLE
        h, w = inside.shape[0] // s, inside.shape[1] // s
        return inside.reshape(h, s, w, s).mean(axis=(1, 3)).astype(np.float32), window

    def _window(self, k: int) -> tuple[slice, slice]:
        """Output pixels that can hold the lesion (or its soft edge) on frame k.

        The lesion centre's position is found by inverting the field at one point
        (fixed point x = c - u(x)); the window adds the lesion's size, 50 % for
        deformation and 10 mm of soft edge. Its border must be free of lesion, else the
        lesion is leaving the field of view.
        """
        u = self.field.at(float(self.times_s[k]))
        c = np.array(self.lesion.centre_mm) / np.array(self._spacing_src)
        x = c.copy()
        for _ in range(20):
            ux = ndimage.map_coordinates(u[..., 0], x[:, None], order=1, mode="nearest")[0]
            uc = ndimage.map_coordinates(u[..., 1], x[:, None], order=1, mode="nearest")[0]
            x = c - np.array([ux, uc])
        h_src, w_src = self.field.shape
        rows, cols = self.shape
        out_sp = self.spacing_mm[0]
        centre_out = ((x[0] - (h_src - 1) / 2.0) * self._spacing_src[0] / out_sp + (rows - 1) / 2.0,
                      (x[1] - (w_src - 1) / 2.0) * self._spacing_src[1] / out_sp + (cols - 1) / 2.0)
        reach = (1.5 * max(self.lesion.semi_axes_mm) + 10.0) / out_sp + 1.0
        r0, r1 = int(math.floor(centre_out[0] - reach)), int(math.ceil(centre_out[0] + reach)) + 1
        c0, c1 = int(math.floor(centre_out[1] - reach)), int(math.ceil(centre_out[1] + reach)) + 1
        if r0 < 0 or c0 < 0 or r1 > rows or c1 > cols:
            raise ValueError(f"lesion: leaves the field of view at t = {self.times_s[k]:.2f} s "
                             f"(it must stay {reach * out_sp:.0f} mm inside the image)")
        window = (slice(r0, r1), slice(c0, c1))
        frac, _ = self._labels(k, window)
        if frac[0].any() or frac[-1].any() or frac[:, 0].any() or frac[:, -1].any():
            raise ValueError(f"lesion: deforms beyond its expected reach at t = {self.times_s[k]:.2f} s")
        return window

    def _check_placement(self, frame0: np.ndarray, polygon: tuple[tuple[float, float], ...] | None) -> None:
        """The lesion must be in tissue (not lung or air), and inside the liver outline
        with 3 mm to spare when one is known."""
        h_src, w_src = frame0.shape
        scale = 4
        rr = (np.arange(h_src * scale) - (scale - 1) / 2.0) / scale * self._spacing_src[0]
        cc = (np.arange(w_src * scale) - (scale - 1) / 2.0) / scale * self._spacing_src[1]
        grown = MotionLesion(self.lesion.centre_mm, (self.lesion.semi_axes_mm[0] + 3.0, self.lesion.semi_axes_mm[1] + 3.0),
                             self.lesion.angle_deg)
        footprint = grown.inside(rr[:, None], cc[None, :])
        centre = self.lesion.centre_mm
        if not footprint.any() or footprint[0].any() or footprint[-1].any() or footprint[:, 0].any() or footprint[:, -1].any():
            raise ValueError(f"lesion: centre ({centre[0]:.1f}, {centre[1]:.1f}) mm must lie inside the source frame "
                             f"with its 3 mm rim ({h_src * self._spacing_src[0]:.0f} x {w_src * self._spacing_src[1]:.0f} mm)")
        if polygon is not None:
            liver = _polygon_mask(tuple(polygon), (h_src, w_src), scale)
            if not liver[footprint].all():
                raise ValueError(f"lesion: must lie inside the liver outline with 3 mm to spare "
                                 f"(centre at source pixel {centre[0] / self._spacing_src[0]:.0f}, "
                                 f"{centre[1] / self._spacing_src[1]:.0f})")
        body = _body_mask(frame0, 0.5)
        tissue = np.repeat(np.repeat(body, scale, 0), scale, 1)
        if tissue[footprint].mean() < 0.5:
            raise ValueError("lesion: must lie in tissue (more than half of it is in lung, air or low-signal region)")

    def _local_liver(self, frame0: np.ndarray, polygon: tuple[tuple[float, float], ...] | None) -> float:
        """Median source intensity in a 3-10 mm ring around the lesion (inside the liver
        outline when known): the 'local liver intensity' the contrast refers to."""
        h_src, w_src = frame0.shape
        rr = np.arange(h_src)[:, None] * self._spacing_src[0]
        cc = np.arange(w_src)[None, :] * self._spacing_src[1]
        a, b = self.lesion.semi_axes_mm
        outer = MotionLesion(self.lesion.centre_mm, (a + 10.0, b + 10.0), self.lesion.angle_deg).inside(rr, cc)
        inner = MotionLesion(self.lesion.centre_mm, (a + 3.0, b + 3.0), self.lesion.angle_deg).inside(rr, cc)
        ring = outer & ~inner
        if polygon is not None:
            ring &= _polygon_mask(tuple(polygon), (h_src, w_src), 1)
        value = float(np.median(frame0[ring])) if ring.any() else 0.0
        if not value > 0.0:
            raise ValueError("lesion: the liver around it has no signal")
        return value


# --------------------------------------------------------------------------------------
# The liver series and its cached field
# --------------------------------------------------------------------------------------

_FIELD_CACHE: dict[str, tuple[DicomSeries, MotionField]] = {}


def series_field(series_folder: str | Path) -> tuple[DicomSeries, MotionField]:
    """The DICOM series in ``series_folder`` and its motion field, computed once per process.

    Returns
    -------
    (hardware.dicom_series.DicomSeries, MotionField)

    Raises
    ------
    hardware.InputError
        The folder is missing or does not hold one readable series.
    """
    from hardware.dicom_series import read_series

    key = str(Path(series_folder).resolve())
    if key not in _FIELD_CACHE:
        series = read_series(series_folder)
        field = estimate_motion_field(series.frames, series.times_s, series.spacing_mm)
        _FIELD_CACHE[key] = (series, field)
    return _FIELD_CACHE[key]


def motion_case_phantom(
    case_name: str,
    geometry: str | Geometry = "mridian-8fps",
    seconds: float | None = 40.0,
    seed: int = 1,
    series_folder: str | Path | None = None,
) -> MotionPhantom:
    """A :class:`MotionPhantom` of a named case on the liver series (field cached).

    ``series_folder`` defaults to ``../shared/data/cine/liver-3T-volunteer-KS81`` seen
    from the project root.
    """
    if series_folder is None:
        series_folder = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cine" / _KS81_FOLDER_NAME
    series, field = series_field(series_folder)
    case = motion_case(case_name)
    return MotionPhantom(series.frames, series.times_s, series.spacing_mm, geometry, seconds, seed,
                         case.lesion, field, liver_polygon_px=KS81_LIVER_POLYGON_PX)


def liver_polygon_for(series_folder: str | Path) -> tuple[tuple[float, float], ...] | None:
    """The known liver outline of a series folder (the liver series'), else None."""
    return KS81_LIVER_POLYGON_PX if Path(series_folder).resolve().name == _KS81_FOLDER_NAME else None


@dataclass(frozen=True, eq=False)
class MotionSession:
    """A whole :class:`MotionPhantom` session in memory (what ``maestro phantom
    --motion-from`` writes).

    Attributes
    ----------
    frames : (T, H, W) uint16 ndarray
    label_fraction : (T, H, W) float32 ndarray
    labels : (T, H, W) uint8 ndarray
        ``label_fraction >= 0.5``.
    trajectory_mm : (T, 2) float64 ndarray
    times_s : (T,) float64 ndarray
    spacing_mm : (float, float)
    fps : float
    geometry : str
    seed : int
    lesion : MotionLesion
    lesion_diameter_mm : float
    noise_sigma : float
    """

    frames: np.ndarray
    label_fraction: np.ndarray
    labels: np.ndarray
    trajectory_mm: np.ndarray
    times_s: np.ndarray
    spacing_mm: tuple[float, float]
    fps: float
    geometry: str
    seed: int
    lesion: MotionLesion
    lesion_diameter_mm: float
    noise_sigma: float


def generate_motion_session(phantom: MotionPhantom) -> MotionSession:
    """Render every frame of ``phantom`` (consumes its :meth:`~MotionPhantom.frames`)."""
    frames = np.empty((phantom.n_frames, *phantom.shape), dtype=np.uint16)
    fraction = np.empty((phantom.n_frames, *phantom.shape), dtype=np.float32)
    for f in phantom.frames():
        frames[f.index] = f.pixels
        fraction[f.index] = f.label_fraction
    labels = (fraction >= 0.5).astype(np.uint8)
    return MotionSession(frames, fraction, labels, phantom.trajectory_mm, phantom.times_s, phantom.spacing_mm,
                         phantom.fps, phantom.geometry, phantom.seed, phantom.lesion, phantom.lesion_diameter_mm,
                         phantom.noise_sigma)


def lesion_for(case_name: str | None, at_px: tuple[float, float] | None, diameter_mm: float | None,
               spacing_mm: tuple[float, float]) -> MotionLesion:
    """A named case's lesion (default the first), moved to source pixel ``at_px`` and
    resized to ``diameter_mm`` (aspect kept) when given: the ``maestro phantom`` options."""
    lesion = motion_case(case_name).lesion if case_name is not None else MOTION_CASES[0].lesion
    centre = lesion.centre_mm if at_px is None else (at_px[0] * spacing_mm[0], at_px[1] * spacing_mm[1])
    axes = lesion.semi_axes_mm
    if diameter_mm is not None:
        scale = diameter_mm / lesion.diameter_mm
        axes = (axes[0] * scale, axes[1] * scale)
    return MotionLesion((float(centre[0]), float(centre[1])), axes, lesion.angle_deg, lesion.contrast, lesion.edge_mm)
