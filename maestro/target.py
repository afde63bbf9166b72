"""Where the target is on the reference frame: from the recording's first label, or
from a box the operator gives."""

from __future__ import annotations

import logging

import numpy as np

from hardware import InputError

log = logging.getLogger(__name__)


def parse_box(text: str) -> tuple[int, int, int, int]:
    """Parse ``ROW,COL,HEIGHT,WIDTH`` (pixels of the first frame).

    Raises
    ------
    InputError
        When the text is not four integers or the size is not positive.
    """
    parts = text.split(",")
    try:
        values = tuple(int(p.strip()) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise InputError("--target-box", text, "must be four integers ROW,COL,HEIGHT,WIDTH")
    row, col, height, width = values
    if height <= 0 or width <= 0:
        raise InputError("--target-box", text, "HEIGHT and WIDTH must be positive")
    return row, col, height, width


def box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """Target mask of a box on a frame of ``shape`` (H, W).

    Raises
    ------
    InputError
        When the box does not lie wholly inside the frame.
    """
    row, col, height, width = box
    n_rows, n_cols = shape
    if row < 0 or col < 0 or row + height > n_rows or col + width > n_cols:
        raise InputError(
            "--target-box",
            f"{row},{col},{height},{width}",
            f"must lie inside the first frame ({n_rows} rows x {n_cols} columns)",
        )
    mask = np.zeros(shape, dtype=bool)
    mask[row : row + height, col : col + width] = True
    return mask


def reference_target(
    source_name: str,
    shape: tuple[int, int],
    label: np.ndarray | None,
    box: tuple[int, int, int, int] | None,
) -> np.ndarray:
    """The target mask on the reference frame.

    The recording's first label wins when there is one (a box given as well is checked,
    then ignored with a warning); a box is used otherwise.

    Raises
    ------
    InputError
        When there is neither, the label's shape does not match the frames, or the
        target is empty.
    """
    if label is not None:
        label = np.asarray(label, dtype=bool)
        if label.shape != shape:
            raise InputError(
                source_name,
                "first label",
                f"has shape {label.shape} but the frames are {shape}: a label must match its frames",
            )
        if not label.any():
            raise InputError(source_name, "first label", "is empty: the target needs at least one pixel")
        if box is not None:
            box_mask(shape, box)  # still refused when it is not even inside the frame
            log.warning("%s: --target-box ignored: the recording's first label defines the target", source_name)
        return label
    if box is None:
        raise InputError(
            source_name,
            "target",
            "the recording has no label: give the target with --target-box ROW,COL,HEIGHT,WIDTH",
        )
    return box_mask(shape, box)
