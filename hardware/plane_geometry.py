"""Where a cine frame lies in the patient: the DICOM plane geometry of a 2D frame.

Coordinates are DICOM patient coordinates (LPS: x to the patient's left, y posterior,
z superior), in mm. A frame of ``rows x cols`` pixels, row 0 at the top, lies in the plane
given by three DICOM attributes:

- ``ImagePositionPatient``: the centre of pixel (0, 0);
- ``ImageOrientationPatient``: the row direction (towards increasing column index) and
  the column direction (towards increasing row index), unit vectors;
- ``PixelSpacing``: (between rows, between columns) in mm.

Pixel (r, c) is then at ``position + c * spacing_col * row_dir + r * spacing_row * col_dir``.

SendExternal records give the plane as ``DICOM.PosVec.0/1/2`` (a point of the plane),
``DICOM.RowVec.0/1/2`` and ``DICOM.ColVec.0/1/2``. The vendor-derived DICOM-to-SendExternal
script published with TrackRAD2025 (``DicomToSendExternalSimpleCine.m``) writes
RowVec = IOP[0:3], ColVec = IOP[3:6] and PosVec = ImagePositionPatient moved by half the
frame: the centre of pixel (rows / 2, cols / 2). This module uses that convention (in its
consistent form: the script's z component takes the column count where the x and y
components take the row count, which is the same on the MRIdian's square frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Tolerance on unit length and orthogonality of the two direction cosines. DICOM
#: writers round them (to 6 decimals in the vendor's ``%f``); 1e-3 accepts that rounding
#: and refuses a real error (1e-3 is 0.06 degree).
DIRECTION_TOLERANCE = 1e-3


def _vector3(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.shape != (3,) or not np.isfinite(v).all():
        raise ValueError(f"{what} must be three finite numbers, got {list(values)!r}")
    return v


@dataclass(frozen=True, eq=False)
class PlaneGeometry:
    """The patient-space plane of a cine frame.

    Attributes
    ----------
    position_mm : (3,) float64 ndarray
        Centre of pixel (0, 0) in patient coordinates (DICOM ``ImagePositionPatient``, mm).
    row_direction : (3,) float64 ndarray
        Unit vector along a row, towards increasing column index (IOP[0:3]).
    col_direction : (3,) float64 ndarray
        Unit vector along a column, towards increasing row index (IOP[3:6]).
    spacing_mm : (float, float)
        Pixel spacing (between rows, between columns) in mm.
    shape : (int, int)
        (rows, cols) of the frame.
    frame_of_reference_uid : str or None
        DICOM ``FrameOfReferenceUID``: which patient coordinate system the plane is in.
    slice_thickness_mm : float or None
        The slice's thickness across the plane (mm), when known.
    slice_location_mm : float or None
        DICOM ``SliceLocation`` as the file gives it (mm), when known.

    Raises
    ------
    ValueError
        From the constructor, when a direction is not a unit vector, the two are not
        orthogonal, or a size or spacing is not positive.
    """

    position_mm: np.ndarray
    row_direction: np.ndarray
    col_direction: np.ndarray
    spacing_mm: tuple[float, float]
    shape: tuple[int, int]
    frame_of_reference_uid: str | None = None
    slice_thickness_mm: float | None = None
    slice_location_mm: float | None = None

    def __post_init__(self) -> None:
        position = _vector3(self.position_mm, "position_mm")
        row_dir = _vector3(self.row_direction, "row_direction")
        col_dir = _vector3(self.col_direction, "col_direction")
        for name, v in (("row_direction", row_dir), ("col_direction", col_dir)):
            if abs(float(np.linalg.norm(v)) - 1.0) > DIRECTION_TOLERANCE:
                raise ValueError(f"{name} {v.tolist()} must be a unit vector (length {np.linalg.norm(v):.6g})")
        if abs(float(row_dir @ col_dir)) > DIRECTION_TOLERANCE:
            raise ValueError(f"row_direction {row_dir.tolist()} and col_direction {col_dir.tolist()} must be "
                             f"orthogonal (dot product {row_dir @ col_dir:.6g})")
        spacing = tuple(float(s) for s in self.spacing_mm)
        if len(spacing) != 2 or not all(math.isfinite(s) and s > 0.0 for s in spacing):
            raise ValueError(f"spacing_mm must be two finite values > 0 mm, got {self.spacing_mm!r}")
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be two sizes >= 1, got {self.shape!r}")
        if self.slice_thickness_mm is not None:
            t = float(self.slice_thickness_mm)
            if not (math.isfinite(t) and t >= 0.0):
                raise ValueError(f"slice_thickness_mm must be finite and >= 0, got {self.slice_thickness_mm!r}")
            object.__setattr__(self, "slice_thickness_mm", t)
        if self.slice_location_mm is not None:
            loc = float(self.slice_location_mm)
            if not math.isfinite(loc):
                raise ValueError(f"slice_location_mm must be finite, got {self.slice_location_mm!r}")
            object.__setattr__(self, "slice_location_mm", loc)
        uid = self.frame_of_reference_uid
        object.__setattr__(self, "frame_of_reference_uid", (str(uid).strip() or None) if uid is not None else None)
        for name, v in (("position_mm", position), ("row_direction", row_dir), ("col_direction", col_dir)):
            v.flags.writeable = False
            object.__setattr__(self, name, v)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "shape", shape)

    @property
    def normal(self) -> np.ndarray:
        """(3,) unit normal of the plane, ``row_direction x col_direction``."""
        n = np.cross(self.row_direction, self.col_direction)
        return n / np.linalg.norm(n)

    @property
    def orientation(self) -> tuple[float, ...]:
        """The six DICOM ``ImageOrientationPatient`` values (row, then column direction)."""
        return (*self.row_direction.tolist(), *self.col_direction.tolist())

    @property
    def centre_mm(self) -> np.ndarray:
        """(3,) patient position of pixel (rows / 2, cols / 2): SendExternal's ``PosVec``."""
        rows, cols = self.shape
        return self.pixel_to_patient_mm(np.array([[rows / 2.0, cols / 2.0]]))[0]

    @property
    def axis_location_mm(self) -> float:
        """The plane's position along the patient axis closest to its normal (mm).

        x for a sagittal plane, y for a coronal one, z for an axial one: what the
        vendor-derived script's comments say ``SliceLocation`` holds, and what the
        Siemens series in the test data write. Used when a file gives no ``SliceLocation``.
        """
        axis = int(np.argmax(np.abs(self.normal)))
        return float(self.position_mm[axis])

    def pixel_to_patient_mm(self, rc: np.ndarray) -> np.ndarray:
        """Patient positions (N, 3) mm of pixel coordinates ``rc`` (N, 2) = (row, col)."""
        rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
        return (self.position_mm
                + np.outer(rc[:, 1] * self.spacing_mm[1], self.row_direction)
                + np.outer(rc[:, 0] * self.spacing_mm[0], self.col_direction))

    def patient_to_pixel(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """In-plane pixel coordinates (N, 2) = (row, col) and distance from the plane (N,) mm
        of patient positions ``points_mm`` (N, 3)."""
        d = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3) - self.position_mm
        rc = np.column_stack([d @ self.col_direction / self.spacing_mm[0], d @ self.row_direction / self.spacing_mm[1]])
        return rc, d @ self.normal

    @classmethod
    def from_centre(cls, centre_mm: Sequence[float], row_direction: Sequence[float], col_direction: Sequence[float],
                    spacing_mm: tuple[float, float], shape: tuple[int, int], **kwargs: object) -> PlaneGeometry:
        """The geometry whose :attr:`centre_mm` (SendExternal's ``PosVec``) is ``centre_mm``."""
        rows, cols = int(shape[0]), int(shape[1])
        row_dir = _vector3(row_direction, "row_direction")
        col_dir = _vector3(col_direction, "col_direction")
        position = (_vector3(centre_mm, "centre_mm") - (cols / 2.0) * float(spacing_mm[1]) * row_dir
                    - (rows / 2.0) * float(spacing_mm[0]) * col_dir)
        return cls(position, row_dir, col_dir, spacing_mm, (rows, cols), **kwargs)  # type: ignore[arg-type]

    def same_plane(self, other: PlaneGeometry, tol_mm: float = 0.01) -> bool:
        """Whether ``other`` puts every pixel of this frame within ``tol_mm`` of where this does."""
        if self.shape != other.shape:
            return False
        rows, cols = self.shape
        corners = np.array([[0, 0], [0, cols - 1], [rows - 1, 0], [rows - 1, cols - 1]], dtype=np.float64)
        return bool(np.abs(self.pixel_to_patient_mm(corners) - other.pixel_to_patient_mm(corners)).max() <= tol_mm)
