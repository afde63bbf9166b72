"""The MRIdian cine modes a phantom is rendered in, and the checks every generator makes on its arguments."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """An MRIdian cine acquisition mode.

    Attributes
    ----------
    name : str
        Key in :data:`GEOMETRIES`.
    fps : float
        Frames per second.
    spacing_mm : float
        In-plane pixel spacing in mm (square pixels).
    shape : tuple of int
        Frame shape (rows, cols).
    slice_mm : float
        Slice thickness in mm (metadata; the phantom is a 2D model).
    """

    name: str
    fps: float
    spacing_mm: float
    shape: tuple[int, int]
    slice_mm: float


#: The two MRIdian cine modes (Gach et al., AAPM 2020; see ``domain.md``).
GEOMETRIES: dict[str, Geometry] = {
    "mridian-8fps": Geometry("mridian-8fps", 8.0, 2.4, (144, 144), 7.0),
    "mridian-4fps": Geometry("mridian-4fps", 4.0, 3.5, (100, 100), 7.0),
}


#: Range of lesion diameters accepted by :func:`generate_session`, mm.
LESION_DIAMETER_RANGE_MM = (10.0, 40.0)
#: Longest session accepted, s (memory: 8 fps x 144 x 144 x 3 bytes is ~0.5 MB/s).
MAX_SECONDS = 1800.0


def check_session_arguments(
    geometry: str | Geometry, seconds: float, seed: int, lesion_diameter_mm: float | None
) -> tuple[Geometry, float, int, float | None]:
    if isinstance(geometry, Geometry):
        geo = geometry
        if not (math.isfinite(geo.fps) and geo.fps > 0):
            raise ValueError(f"geometry.fps: must be finite and > 0, got {geo.fps!r}")
        # Below ~1 mm the 0.8 mm anatomy grid, not the geometry, would set the detail.
        if not (math.isfinite(geo.spacing_mm) and 1.0 <= geo.spacing_mm <= 10.0):
            raise ValueError(
                f"geometry.spacing_mm: must be within [1, 10] mm, got {geo.spacing_mm!r}"
            )
        rows, cols = geo.shape
        if not (8 <= rows and 8 <= cols and max(rows, cols) * geo.spacing_mm <= 350.0 + 1e-9):
            raise ValueError(
                "geometry.shape: must be at least 8 x 8 with a field of view of at most "
                f"350 mm, got {geo.shape} at {geo.spacing_mm} mm"
            )
    elif isinstance(geometry, str):
        if geometry not in GEOMETRIES:
            raise ValueError(
                f"geometry: must be one of {sorted(GEOMETRIES)}, got {geometry!r}"
            )
        geo = GEOMETRIES[geometry]
    else:
        raise ValueError(f"geometry: must be a name or a Geometry, got {type(geometry).__name__}")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise ValueError(f"seconds: must be a real number, got {seconds!r}")
    seconds = float(seconds)
    if not (math.isfinite(seconds) and 0.0 < seconds <= MAX_SECONDS):
        raise ValueError(f"seconds: must be finite, > 0 and <= {MAX_SECONDS:g}, got {seconds!r}")
    if seconds * geo.fps < 1.0:
        raise ValueError(
            f"seconds: must cover at least one frame (>= {1.0 / geo.fps:g} s at "
            f"{geo.fps:g} fps), got {seconds!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    if lesion_diameter_mm is not None:
        real = isinstance(lesion_diameter_mm, numbers.Real)
        if isinstance(lesion_diameter_mm, bool) or not real:
            raise ValueError(
                f"lesion_diameter_mm: must be a real number or None, got {lesion_diameter_mm!r}"
            )
        lo, hi = LESION_DIAMETER_RANGE_MM
        if not (math.isfinite(lesion_diameter_mm) and lo <= lesion_diameter_mm <= hi):
            raise ValueError(
                f"lesion_diameter_mm: must be within [{lo:g}, {hi:g}] mm, "
                f"got {lesion_diameter_mm!r}"
            )
        lesion_diameter_mm = float(lesion_diameter_mm)
    return geo, seconds, int(seed), lesion_diameter_mm
