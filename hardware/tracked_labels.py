"""Write tracked target masks in the TrackRAD2025 layout, for the challenge's own evaluation.

The TrackRAD2025 evaluation compares a predicted ``targets/<id>_labels.mha`` (uint8, one
mask per frame, frame index on ITK's first axis: see :mod:`hardware.trackrad`) with the
expert labels of the same case. :func:`write_tracked_labels` writes exactly that file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hardware.errors import InputError
from hardware.trackrad import LABELS_SUFFIX, check_spacing_argument, write_mha

__all__ = ["write_tracked_labels"]

log = logging.getLogger(__name__)


def write_tracked_labels(
    folder: str | Path, case_id: str, masks: np.ndarray, spacing_mm: tuple[float, float]
) -> Path:
    """Write ``folder/targets/<case_id>_labels.mha``.

    Parameters
    ----------
    folder : str or Path
        Output folder (created if missing); other files in it are left alone.
    case_id : str
        Letters, digits, ``-`` and ``_`` (the id of the case the masks were tracked on).
    masks : (T, H, W) bool or uint8 ndarray
        The tracked target on every frame; nonzero is target.
    spacing_mm : (float, float)
        Pixel spacing (row, col), mm.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        If an argument breaks its rule.
    InputError
        If the folder cannot be written.
    """
    if not isinstance(case_id, str) or not case_id or not all(c.isalnum() or c in "-_" for c in case_id):
        raise ValueError(f"case_id: must be a non-empty string of letters, digits, '-' or '_', got {case_id!r}")
    masks = np.asarray(masks)
    if masks.ndim != 3 or 0 in masks.shape or masks.dtype not in (np.bool_, np.uint8):
        raise ValueError(f"masks: must be a non-empty (T, H, W) bool or uint8 array, got {masks.dtype} {masks.shape}")
    try:
        spacing = check_spacing_argument(spacing_mm)
    except (TypeError, ValueError):
        spacing = None
    if spacing is None:
        raise ValueError(f"spacing_mm: must be two finite values > 0 mm (row, col), got {spacing_mm!r}")
    targets = Path(folder) / "targets"
    path = targets / f"{case_id}{LABELS_SUFFIX}"
    try:
        targets.mkdir(parents=True, exist_ok=True)
        write_mha(path, (masks != 0).astype(np.uint8), spacing)
    except OSError as exc:
        raise InputError(targets, "--labels-out", f"cannot write there ({exc.strerror or exc})") from None
    log.info("wrote %d tracked masks to %s", masks.shape[0], path)
    return path
