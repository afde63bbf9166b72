"""Compile (or load from Numba's on-disk cache) every tracking kernel before the first
frame, so that no frame pays for a compilation: the rigid tracker's and, unless asked
not to, the deformable step's (:class:`tracking.deformable.AffineRegistration`)."""

from __future__ import annotations

import logging

import numpy as np

from tracking.deformable import AffineRegistration, propagate_mask
from tracking.tracker import TemplateTracker
from tracking.zncc import subpixel_peak, zncc_map

__all__ = ["warm_up"]

log = logging.getLogger(__name__)

_SIZE_PX = 24  # dummy frame size: small, but large enough for a window of >= 8 columns


def _dummy_frame(dtype: type[np.floating]) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian blob on a gentle ramp, and the blob's mask."""
    rows, cols = np.mgrid[0:_SIZE_PX, 0:_SIZE_PX].astype(np.float64)
    centre = (_SIZE_PX - 1) / 2.0
    blob = np.exp(-((rows - centre) ** 2 + (cols - centre) ** 2) / 8.0)
    frame = (blob + 0.01 * rows + 0.02 * cols).astype(dtype)
    mask = blob > 0.5
    return frame, mask


def warm_up(
    dtypes: tuple[type[np.floating], ...] = (np.float32, np.float64),
    map_functions: bool = True,
    deformable: bool = True,
) -> None:
    """Compile or load every kernel for the signatures the tracker, the deformable
    registration and :func:`zncc_map` use.

    Runs the entry points on small dummy frames of each dtype, with writeable and
    read-only images (Numba types the two differently), so that the first real frame
    dispatches straight to machine code. Takes seconds on the first run after a source
    change (compilation); once Numba's cache is filled each kernel variant still costs
    ~25 ms to load, which is why a session asks only for what it runs.

    Parameters
    ----------
    dtypes : tuple of {numpy.float32, numpy.float64}
        Tracker dtypes to prepare (a session's tracker works in float32).
    map_functions : bool
        Also prepare :func:`zncc_map`, :func:`subpixel_peak` and
        :func:`tracking.deformable.propagate_mask` (not used per frame).
    deformable : bool
        Also prepare :meth:`AffineRegistration.register` (the deformable mode's step):
        one more kernel variant per dtype and writeability.
    """
    registration = None
    if deformable and dtypes:
        # Its constructor registers a float32 copy of the reference (writeable) itself.
        reference, reference_mask = _dummy_frame(np.float32)
        registration = AffineRegistration(reference, reference_mask, (1.0, 1.0), context_mm=4.0)
    for dtype in dtypes:
        frame, mask = _dummy_frame(dtype)
        readonly = frame.copy()
        readonly.flags.writeable = False
        tracker = TemplateTracker(
            frame, mask, (1.0, 1.0), context_mm=2.0, search_mm=5.0, dtype=dtype
        )
        template = frame[8:16, 8:16]
        for image in (frame, readonly):
            if map_functions:
                subpixel_peak(zncc_map(image, template))
            tracker.track(image)
            tracker.reset()
            if registration is not None:
                registration.register(image, 0.0, 0.0)
    if map_functions:
        propagate_mask(_dummy_frame(np.float64)[1], np.eye(2, 3))
    log.debug("tracking kernels compiled or loaded from cache")
