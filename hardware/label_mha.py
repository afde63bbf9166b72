"""Per-frame label masks as one MetaImage (``.mha``), in the TrackRAD2025 layout.

The file holds a (T, H, W) stack of masks with the frame index on ITK's *first* axis, as
``targets/<id>_labels.mha`` in a TrackRAD2025 case (see :mod:`hardware.trackrad`): nonzero
is target.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hardware import trackrad
from hardware.errors import InputError

log = logging.getLogger(__name__)


def read_labels(path: str | Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Read a label stack.

    Returns
    -------
    labels : (T, H, W) bool ndarray
        Nonzero voxels are target.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm.

    Raises
    ------
    InputError
        The file is missing, unreadable, not a 3D single-channel image, or not integer.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "does not exist" if not path.exists() else "is not a file")
    image = trackrad.read_mha(path, "labels")
    view = trackrad.array_thw(image)
    if not np.issubdtype(view.dtype, np.integer) and view.dtype != np.bool_:
        raise InputError(path, "ElementType", f"{view.dtype}: a label image must hold integers (0 = background)")
    labels = np.ascontiguousarray(view != 0)
    return labels, trackrad.spacing_from_image(path, image)


def write_labels(path: str | Path, labels: np.ndarray, spacing_mm: tuple[float, float]) -> None:
    """Write a (T, H, W) bool or uint8 label stack (stored as uint8, 1 = target)."""
    labels = np.asarray(labels)
    if labels.ndim != 3 or 0 in labels.shape or labels.dtype not in (np.bool_, np.uint8):
        raise ValueError(f"labels must be a non-empty (T, H, W) bool or uint8 array, got {labels.dtype} {labels.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trackrad.write_mha(path, (labels != 0).astype(np.uint8), (float(spacing_mm[0]), float(spacing_mm[1])))
    log.info("wrote %d label frames to %s", labels.shape[0], path)
