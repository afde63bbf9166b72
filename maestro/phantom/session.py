"""Sessions driven by the breathing model: :func:`generate_session`."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np

from maestro.phantom.acquisition import prepare_acquisition, render_frame
from maestro.phantom.anatomy import LIVER, LesionParameters, build_anatomy
from maestro.phantom.breathing import BreathingParameters, breathing_displacement_mm, draw_breathing
from maestro.phantom.geometry import Geometry, check_session_arguments

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PhantomSession:
    """A generated cine session with its ground truth.

    The arrays are read-only (the session is frozen); copy them to modify.

    Attributes
    ----------
    frames : (T, H, W) uint16 ndarray
        Magnitude images, row 0 superior, column 0 anterior.
    labels : (T, H, W) uint8 ndarray
        1 where the pixel centre lies inside the lesion at its true position, else 0.
    times_s : (T,) float64 ndarray
        Acquisition time of each frame, ``k / fps``, s.
    trajectory_mm : (T, 2) float64 ndarray
        True lesion displacement (row_mm, col_mm) relative to frame 0: +row is inferior,
        +col is posterior. ``trajectory_mm[0]`` is (0, 0).
    spacing_mm : tuple of float
        Pixel spacing (row, col), mm.
    fps : float
        Frames per second.
    geometry : str
        Name of the :class:`Geometry` used.
    slice_mm : float
        Slice thickness, mm (metadata).
    seed : int
        Seed the session was generated from.
    breathing : BreathingParameters or None
        The breathing trace; ``None`` for a trace-driven session.
    lesion : LesionParameters
        The lesion.
    noise_sigma : float
        Standard deviation of the Gaussian noise on each channel before the magnitude
        (Rician noise), intensity units.
    liver_intensity : float
        Noise-free mean liver intensity at the centre of the field (no coil shading);
        ``liver_intensity / noise_sigma`` is the liver SNR.
    label_fraction : (T, H, W) float32 ndarray or None
        Trace-driven sessions only (:func:`generate_trace_session`): the fraction of each
        voxel (pixel x slice thickness) the lesion occupies, from sub-pixel and
        through-plane partial volume; ``labels`` is then ``label_fraction >= 0.5``.
        ``None`` for :func:`generate_session`.
    through_plane_mm : (T,) float64 ndarray or None
        Trace-driven sessions only: the lesion centre's offset from the slice centre
        (left-right motion), mm; 0 on frame 0.
    trace_source : str or None
        Trace-driven sessions only: where the motion trace came from.
    """

    frames: np.ndarray
    labels: np.ndarray
    times_s: np.ndarray
    trajectory_mm: np.ndarray
    spacing_mm: tuple[float, float]
    fps: float
    geometry: str
    slice_mm: float
    seed: int
    breathing: BreathingParameters | None
    lesion: LesionParameters
    noise_sigma: float
    liver_intensity: float
    label_fraction: np.ndarray | None = None
    through_plane_mm: np.ndarray | None = None
    trace_source: str | None = None

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.frames.shape[0])

    @property
    def lesion_diameter_mm(self) -> float:
        """Equivalent-circle lesion diameter, mm."""
        return self.lesion.diameter_mm

    @property
    def lesion_centre_px(self) -> np.ndarray:
        """(T, 2) float64 true lesion centre per frame as fractional (row, col) indices."""
        spacing = np.asarray(self.spacing_mm, dtype=np.float64)
        return np.asarray(self.lesion.centre0_px) + self.trajectory_mm / spacing


def generate_session(
    geometry: str | Geometry = "mridian-8fps",
    seconds: float = 60.0,
    seed: int = 1,
    lesion_diameter_mm: float | None = None,
) -> PhantomSession:
    """Generate a cine-MR session of a breathing liver with a lesion, with ground truth.

    Parameters
    ----------
    geometry : str or Geometry
        A key of :data:`GEOMETRIES` (``"mridian-8fps"``: 144 x 144 at 2.4 mm, 8 fps;
        ``"mridian-4fps"``: 100 x 100 at 3.5 mm, 4 fps) or a custom :class:`Geometry`
        with a field of view of at most 350 mm.
    seconds : float
        Session length in s, ``0 < seconds <= 1800``; ``floor(seconds * fps)`` frames
        (at least one) are made, frame k at ``k / fps``.
    seed : int
        Non-negative seed; all randomness derives from ``np.random.default_rng(seed)``.
        The anatomy, lesion and breathing depend only on the seed (not on the geometry
        or the length), so one seed shows the same patient in both cine modes.
    lesion_diameter_mm : float or None
        Equivalent-circle lesion diameter in mm, within [10, 40]; ``None`` draws it
        from [15, 35] mm. The ellipse's aspect ratio, orientation, contrast (hypo- or
        hyperintense) and position are always drawn from the seed.

    Returns
    -------
    PhantomSession
        Frames, labels, trajectory and the parameters used (see the module docstring
        for the axis directions and how frames are made).

    Raises
    ------
    ValueError
        If an argument breaks its rule; the message names the argument.
    """
    geo, seconds, seed, lesion_diameter_mm = check_session_arguments(
        geometry, seconds, seed, lesion_diameter_mm
    )
    model = build_anatomy(seed, lesion_diameter_mm)
    lesion_centre, lesion, lesion_angle = model.lesion_centre, model.lesion, model.lesion_angle
    noise_rng = model.noise_rng
    breathing = draw_breathing(model.motion_rng, seconds)
    # Drawn before any per-frame noise so that the session length does not change it.
    noise_sigma = LIVER / float(noise_rng.uniform(12.0, 18.0))

    n_frames = max(int(math.floor(seconds * geo.fps + 1e-9)), 1)
    times_s = np.arange(n_frames, dtype=np.float64) / geo.fps
    displacement = breathing_displacement_mm(breathing, times_s)
    trajectory = displacement - displacement[0]

    blurred, grid = prepare_acquisition(model, geo)
    y, x, shading = grid[0], grid[1], grid[5]
    rows, cols = geo.shape

    la, lb = lesion.semi_axes_mm
    ca, sa = math.cos(lesion_angle), math.sin(lesion_angle)
    frames = np.empty((n_frames, rows, cols), dtype=np.uint16)
    labels = np.empty((n_frames, rows, cols), dtype=np.uint8)
    coords = np.empty((2, rows, cols), dtype=np.float64)
    for k in range(n_frames):
        d_row, d_col = displacement[k]
        frames[k] = render_frame(blurred, grid, d_row, d_col, coords, shading, noise_rng, noise_sigma)
        dy = y - (lesion_centre[0] + d_row)
        dx = x - (lesion_centre[1] + d_col)
        u = dy * ca + dx * sa
        v = -dy * sa + dx * ca
        labels[k] = (u / la) ** 2 + (v / lb) ** 2 <= 1.0

    centre0_px = (
        (lesion_centre[0] + displacement[0, 0]) / geo.spacing_mm + (rows - 1) / 2.0,
        (lesion_centre[1] + displacement[0, 1]) / geo.spacing_mm + (cols - 1) / 2.0,
    )
    lesion = dataclasses.replace(lesion, centre0_px=centre0_px)
    for array in (frames, labels, times_s, trajectory):
        array.setflags(write=False)
    log.debug(
        "phantom %s seed=%d: %d frames, lesion %.1f mm %s",
        geo.name, seed, n_frames, lesion.diameter_mm, lesion.kind,
    )
    return PhantomSession(
        frames=frames,
        labels=labels,
        times_s=times_s,
        trajectory_mm=trajectory,
        spacing_mm=(geo.spacing_mm, geo.spacing_mm),
        fps=geo.fps,
        geometry=geo.name,
        slice_mm=geo.slice_mm,
        seed=seed,
        breathing=breathing,
        lesion=lesion,
        noise_sigma=noise_sigma,
        liver_intensity=LIVER,
    )
