"""Where the target is on the reference frame: from an RT Structure Set's ROI (the
planning contour), the recording's first label, or a box the operator gives."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hardware import InputError
from hardware.plane_geometry import PlaneGeometry

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


def structure_target(
    source_name: str,
    geometry: PlaneGeometry | None,
    rtstruct_path: str | Path,
    roi_name: str,
) -> np.ndarray:
    """The target on the reference frame from an RT Structure Set's ROI, as the share of
    each pixel inside it (partial volume); the target mask is the pixels at least half
    inside.

    The ROI's contours (patient coordinates) are cut by the cine plane of the reference
    frame (:func:`hardware.contour_plane.fraction_on_plane`). The fractions let the
    deformable mode propagate the contour's edge by fractions of a pixel
    (:func:`tracking.deformable.propagate_mask`).

    Parameters
    ----------
    source_name : str
        The recording, for messages.
    geometry : PlaneGeometry or None
        The reference frame's plane (ImagePositionPatient, ImageOrientationPatient,
        PixelSpacing); ``None`` when the recording does not say where it lies.
    rtstruct_path : str or Path
        The RT Structure Set.
    roi_name : str
        The ROI (``ROIName``) that is the target.

    Returns
    -------
    (H, W) float64 ndarray
        In [0, 1]; at least one pixel is half inside or more.

    Raises
    ------
    InputError
        The recording has no geometry, the structure set or its ROI is not found or
        broken, the frames of reference differ, or the plane does not cut the ROI
        inside the frame.
    """
    from hardware.contour_plane import distance_to_plane_mm, fraction_on_plane
    from hardware.rtstruct import read_roi

    rtstruct_path = Path(rtstruct_path)
    if geometry is None:
        raise InputError(source_name, "geometry", "the recording does not say where its frames lie in the patient "
                         "(no ImagePositionPatient / ImageOrientationPatient, or SendExternal DICOM.PosVec / RowVec / "
                         "ColVec): a structure set's contours cannot be placed on it; give the target with "
                         "--target-box instead")
    roi = read_roi(rtstruct_path, roi_name)
    cine_uid = geometry.frame_of_reference_uid
    if roi.frame_of_reference_uid and cine_uid and roi.frame_of_reference_uid != cine_uid:
        raise InputError(rtstruct_path, f"ROI {roi.name!r} ReferencedFrameOfReferenceUID",
                         f"{roi.frame_of_reference_uid} does not match the cine's FrameOfReferenceUID {cine_uid} "
                         f"({source_name}): the contours are in another patient coordinate system; register them "
                         "to the cine's frame of reference first")
    if not cine_uid:
        log.warning("%s: the cine gives no FrameOfReferenceUID: taking ROI %r of %s as in its patient coordinates",
                    source_name, roi.name, rtstruct_path)
    try:
        fraction = fraction_on_plane(roi.contours, geometry)
    except ValueError as exc:
        raise InputError(rtstruct_path, f"ROI {roi.name!r} ContourData", str(exc)) from None
    mask = fraction >= 0.5
    if not mask.any():
        distance = distance_to_plane_mm(roi.contours, geometry)
        where = (f"its nearest contour point is {distance:.1f} mm from the plane" if distance > 0.5 else
                 "it crosses the plane outside the frame's field of view, or too thinly to cover half a pixel")
        raise InputError(rtstruct_path, f"ROI {roi.name!r}",
                         f"the cine plane of {source_name} does not cut it: {where}")
    log.info("%s: target = ROI %r of %s cut by the cine plane: %d px", source_name, roi.name, rtstruct_path,
             int(mask.sum()))
    return fraction


def check_target_options(box: tuple[int, int, int, int] | None, rtstruct: str | Path | None, roi: str | None) -> None:
    """Refuse target options that contradict each other, before any recording is opened.

    Raises
    ------
    InputError
        ``--target-rtstruct`` without ``--roi`` or the reverse, a ``--target-box``
        given with a structure set, or a structure set that does not hold the ROI.
    """
    if rtstruct is not None and roi is None:
        raise InputError("--target-rtstruct", str(rtstruct), "needs --roi NAME: which ROI of the structure set is "
                         "the target")
    if roi is not None and rtstruct is None:
        raise InputError("--roi", roi, "needs --target-rtstruct FILE: the RT Structure Set the ROI is in")
    if rtstruct is not None and box is not None:
        raise InputError("--target-box", ",".join(str(v) for v in box), "cannot be given with --target-rtstruct: "
                         "give the target one way")
    if rtstruct is not None and roi is not None:
        from hardware.rtstruct import read_roi

        read_roi(rtstruct, roi)  # a missing file or ROI is refused now, not at the first frame
