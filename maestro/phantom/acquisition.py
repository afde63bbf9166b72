"""The acquisition: the point-spread blur, the cine grid, the warp of the anatomy, the
Rician noise and uint16 rounding every generator ends with, and the one function that
renders a breathing-model or trace-driven frame from them (:func:`render_frame`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from maestro.phantom.anatomy import GRID_ORIGIN_MM, PITCH_MM, Anatomy, body_weight
from maestro.phantom.geometry import Geometry

PSF_SIGMA_PX = 0.5  # PSF standard deviation in output pixels
_SHADING_GAIN = 0.2  # coil shading: +20 % at x = +-175 mm (anterior/posterior coils)


def prepare_acquisition(model: Anatomy, geo: Geometry) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The blurred model and the cine grid it is sampled on.

    Returns
    -------
    blurred : ndarray
        The acquisition blur applied once to the static model (the warp is locally a
        translation, so blurring before or after it is the same to within the wall ramp).
    (y, x, w_px, row_index, col_index, shading) : tuple of (rows, cols) ndarray
        Pixel centres (mm from the image centre), fine-grid indices per mm of
        displacement, the fine-grid indices of the pixel centres, and the coil shading.
    """
    blurred = ndimage.gaussian_filter(model.fine, PSF_SIGMA_PX * geo.spacing_mm / PITCH_MM)
    rows, cols = geo.shape
    y = ((np.arange(rows) - (rows - 1) / 2.0) * geo.spacing_mm)[:, None] + np.zeros((1, cols))
    x = np.zeros((rows, 1)) + ((np.arange(cols) - (cols - 1) / 2.0) * geo.spacing_mm)[None, :]
    w_px = body_weight(model.body, y, x) / PITCH_MM
    row_index = (y - GRID_ORIGIN_MM) / PITCH_MM
    col_index = (x - GRID_ORIGIN_MM) / PITCH_MM
    shading = 1.0 + _SHADING_GAIN * (x / 175.0) ** 2
    return blurred, (y, x, w_px, row_index, col_index, shading)


def warped_anatomy(
    blurred: np.ndarray,
    grid: tuple[np.ndarray, ...],
    d_row_mm: float,
    d_col_mm: float,
    coords: np.ndarray,
) -> np.ndarray:
    """The blurred anatomy moved by the breathing: the first step of every breathing-model
    and trace-driven frame.

    The model is sampled (bilinear) at the pixel centres moved back by the anatomy's
    displacement, ``source = centre - w(centre) d``.

    Parameters
    ----------
    blurred, grid
        From :func:`prepare_acquisition`.
    d_row_mm, d_col_mm : float
        The anatomy's displacement (row + inferior, col + posterior), mm.
    coords : (2, rows, cols) float64 ndarray
        Scratch space for the sampling coordinates (overwritten).

    Returns
    -------
    (rows, cols) float64 ndarray
        The clean image before coil shading and noise, intensity units.
    """
    _, _, w_px, row_index, col_index, _ = grid
    np.subtract(row_index, w_px * d_row_mm, out=coords[0])
    np.subtract(col_index, w_px * d_col_mm, out=coords[1])
    return ndimage.map_coordinates(blurred, coords, order=1, mode="nearest")


def rician_uint16(clean: np.ndarray, rng: np.random.Generator, noise_sigma: float) -> np.ndarray:
    """The magnitude image of ``clean`` with Gaussian noise on both channels (Rician),
    rounded to uint16: the last step of every generator's frame (this package's and
    :mod:`maestro.phantom.motion`'s).

    Parameters
    ----------
    clean : (rows, cols) float ndarray
        The noise-free image, intensity units (liver ~100).
    rng : numpy.random.Generator
        Consumed: one (2, rows, cols) standard-normal draw.
    noise_sigma : float
        Sigma per channel, intensity units.

    Returns
    -------
    (rows, cols) uint16 ndarray
    """
    noise = rng.standard_normal((2, *clean.shape)) * noise_sigma
    magnitude = np.hypot(clean + noise[0], noise[1])
    return np.clip(np.rint(magnitude), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def render_frame(
    blurred: np.ndarray,
    grid: tuple[np.ndarray, ...],
    d_row_mm: float,
    d_col_mm: float,
    coords: np.ndarray,
    intensity: np.ndarray,
    rng: np.random.Generator,
    noise_sigma: float,
    lesion: tuple[tuple[slice, slice], np.ndarray, float] | None = None,
) -> np.ndarray:
    """One breathing-model or trace-driven cine frame.

    The anatomy warped by the displacement (:func:`warped_anatomy`), a lesion
    composited into it when given, times the intensity field (coil shading, and a
    generator's drift), then Rician noise and uint16 (:func:`rician_uint16`).

    Parameters
    ----------
    blurred, grid, d_row_mm, d_col_mm, coords
        As :func:`warped_anatomy`.
    intensity : (rows, cols) float ndarray
        Multiplies the clean image (the grid's coil shading, or shading times drift).
    rng, noise_sigma
        As :func:`rician_uint16`.
    lesion : (window, alpha, value) or None
        A lesion drawn over the anatomy: in the pixels ``window`` (a pair of slices),
        each moves toward ``value`` (intensity units) by its ``alpha`` (0-1, the
        lesion's blurred occupancy, shaped like the window). ``None``: the lesion is part
        of the anatomy (the breathing model).

    Returns
    -------
    (rows, cols) uint16 ndarray
    """
    clean = warped_anatomy(blurred, grid, d_row_mm, d_col_mm, coords)
    if lesion is not None:
        window, alpha, value = lesion
        patch = clean[window]
        patch += alpha * (value - patch)
    clean *= intensity
    return rician_uint16(clean, rng, noise_sigma)
