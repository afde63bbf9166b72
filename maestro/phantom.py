"""A deterministic MRIdian-like sagittal cine-MR phantom of the liver with a moving lesion.

The phantom stands in for a recorded cine session when no patient data may be bundled:
it has the geometry of the MRIdian cine modes (see ``domain.md``), bSSFP-like contrast
at 0.35 T-like SNR, anatomy that moves with an irregular breathing trace, and a
ground-truth lesion mask on every frame. Pure computation: no files, no clocks.

Conventions
-----------
Image axes (sagittal slice, head at the top, as the MRIdian displays it):

* row index increases toward **inferior** (the feet); row 0 is the most superior row;
* column index increases toward **posterior** (the patient's back); anterior is on the
  left of the image.

Displacements are given as ``(row_mm, col_mm)`` in the same directions: on inhalation
the liver moves inferior (``row_mm > 0``) and anterior (``col_mm < 0``).

How a frame is made
-------------------
1. A static anatomy model is painted once on a fine grid (0.8 mm pitch, the same for
   every geometry, so one seed gives the same anatomy in both cine modes): body outline
   with subcutaneous fat, muscle and ribs; lung above the diaphragm dome; liver with a
   mottled texture and bright vessels; gall bladder; kidney; bowel loops; the lesion.
2. That model is blurred once by the acquisition's point-spread function (a Gaussian of
   half a pixel standard deviation, which stands for the pixel's partial volume plus a
   little reconstruction blur).
3. Each frame samples the blurred model at the pixel centres displaced by the breathing
   motion, ``source = centre - w(centre) * d(t)``, with bilinear interpolation. The
   weight ``w`` is 1 over the liver and everything inside the abdominal cavity, about
   0.1 in the body wall (which therefore moves by at most ~2.5 mm, so the liver slides
   along it), and tapers toward the top of the lung and the bottom of the field; it
   varies slowly enough that the warp never folds. The lesion always lies where ``w``
   is 1, so its motion is exactly the rigid displacement ``d(t)``: the ground truth.
4. A static coil-shading field multiplies the image, Rician noise is added (magnitude of
   a complex signal with Gaussian noise on both channels), and values are rounded to
   uint16. Liver is ~100 and nothing exceeds ~450, so that noisy frames still compress
   well (about 6 MB for 40 s at 8 fps in zlib-compressed MetaImage).

The label of a frame marks the pixels whose **centre** lies inside the lesion ellipse at
its true position (the ellipse is where the lesion's soft edge crosses half contrast).

Breathing model (Lujan et al., Med Phys 1999): within breathing cycle ``k`` of period
``tau_k`` and amplitude ``A_k``, the superior-inferior displacement is
``A_k * sin(pi * u)**(2 n)`` with ``u`` the fraction of the cycle elapsed — the same as
``z0 - b cos**(2n)(pi t / tau - phi)`` with the sign flipped so that inhalation is
positive, ``b = A_k``, and ``phi`` chosen so that every cycle starts at end-exhale. The
anterior-posterior component is ``-ap_ratio`` times the same curve, delayed by a small
phase lag (hysteresis). Period and amplitude vary from cycle to cycle, and a slow,
bounded baseline drift (two slow sinusoids per axis) is added. Frame 0 is acquired at
end-exhale of the first cycle, so the trajectory starts at (0, 0).

Randomness comes only from ``np.random.default_rng(seed)`` and its spawned children
(anatomy, lesion, vessels, breathing, noise), drawn in a fixed order, so equal arguments
give bit-identical arrays; a shorter session is a prefix of a longer one.

Sessions driven by a recorded trajectory
----------------------------------------
:class:`TracePhantom` / :func:`generate_trace_session` replace the breathing model by a
recorded 3D trajectory (e.g. a KIM liver trace read by
:func:`hardware.motion_trace.read_kim_trace`): SI and AP move the anatomy in the plane,
LR moves the lesion (an ellipsoid) through the slice with partial-volume fading, the
lesion deforms with breathing, and a slow intensity drift is added. The lesion is
composited per frame onto the warped anatomy, and its ground truth is the voxel
occupancy with sub-pixel partial volume. :func:`generate_session` is untouched by this.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

__all__ = [
    "CYCLE_AMPLITUDE_RANGE_MM",
    "CYCLE_PERIOD_RANGE_S",
    "GEOMETRIES",
    "LESION_DIAMETER_DRAW_MM",
    "LESION_DIAMETER_RANGE_MM",
    "MAX_SECONDS",
    "BreathingParameters",
    "Geometry",
    "LesionParameters",
    "TRACE_INTENSITY_DRIFT",
    "TRACE_STRAIN_PER_MM",
    "PhantomSession",
    "TraceFrame",
    "TracePhantom",
    "breathing_displacement_mm",
    "generate_session",
    "generate_trace_session",
    "trace_displacement_mm",
    "excursion_offsets_mm",
    "excursions_for",
    "EXCURSION_AT",
    "EXCURSION_MAX_MM",
    "EXCURSION_S",
    "SLIDE_MAX",
]


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Public parameter records and the session
# --------------------------------------------------------------------------------------

#: Range of lesion diameters accepted by :func:`generate_session`, mm.
LESION_DIAMETER_RANGE_MM = (10.0, 40.0)
#: Range the lesion diameter is drawn from when not given, mm.
LESION_DIAMETER_DRAW_MM = (15.0, 35.0)
#: Per-cycle superior-inferior breathing amplitude (peak-to-peak, drift excluded), mm.
CYCLE_AMPLITUDE_RANGE_MM = (8.0, 20.0)
#: Per-cycle breathing period, s.
CYCLE_PERIOD_RANGE_S = (3.5, 5.0)
#: Longest session accepted, s (memory: 8 fps x 144 x 144 x 3 bytes is ~0.5 MB/s).
MAX_SECONDS = 1800.0


@dataclass(frozen=True)
class BreathingParameters:
    """The breathing trace used for a session.

    Attributes
    ----------
    n : int
        Lujan shape exponent (the curve is ``sin**(2 n)``); larger means a longer rest at
        exhale and a sharper inhalation peak.
    mean_period_s : float
        Centre of the per-cycle period distribution, s.
    mean_amplitude_mm : float
        Centre of the per-cycle superior-inferior amplitude distribution, mm.
    ap_ratio : float
        Anterior-posterior amplitude as a fraction of the superior-inferior one.
    ap_lag_cycles : float
        Delay of the anterior-posterior curve behind the superior-inferior one, in
        fractions of a cycle (gives the trajectory a hysteresis loop).
    cycle_periods_s : tuple of float
        Period of each cycle, s; cycle 0 starts at t = 0 at end-exhale.
    cycle_amplitudes_mm : tuple of float
        Superior-inferior peak-to-peak amplitude of each cycle, mm.
    drift_amplitudes_mm : tuple of float
        Amplitudes (SI slow, SI faster, AP slow, AP faster) of the drift sinusoids, mm.
    drift_periods_s : tuple of float
        Periods of the same four sinusoids, s.
    drift_phases_rad : tuple of float
        Phases of the same four sinusoids, rad.
    """

    n: int
    mean_period_s: float
    mean_amplitude_mm: float
    ap_ratio: float
    ap_lag_cycles: float
    cycle_periods_s: tuple[float, ...]
    cycle_amplitudes_mm: tuple[float, ...]
    drift_amplitudes_mm: tuple[float, float, float, float]
    drift_periods_s: tuple[float, float, float, float]
    drift_phases_rad: tuple[float, float, float, float]

    @property
    def duration_s(self) -> float:
        """Time covered by the drawn cycles, s."""
        return float(sum(self.cycle_periods_s))


@dataclass(frozen=True)
class LesionParameters:
    """The lesion of a session.

    Attributes
    ----------
    diameter_mm : float
        Equivalent-circle diameter ``2 sqrt(a b)``, mm.
    semi_axes_mm : tuple of float
        Semi-axes (a, b) of the ellipse, mm, ``a >= b``.
    angle_deg : float
        Angle of the ``a`` axis from the row (inferior) axis toward the column
        (posterior) axis, degrees.
    kind : str
        ``"hypointense"`` or ``"hyperintense"`` relative to liver.
    contrast : float
        Lesion intensity divided by the liver's (noise-free).
    centre0_px : tuple of float
        Centre of the ellipse on frame 0 as fractional (row, col) pixel indices.
    edge_mm : float
        Width parameter of the soft edge (logistic scale), mm.
    """

    diameter_mm: float
    semi_axes_mm: tuple[float, float]
    angle_deg: float
    kind: str
    contrast: float
    centre0_px: tuple[float, float]
    edge_mm: float


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


# --------------------------------------------------------------------------------------
# Breathing
# --------------------------------------------------------------------------------------

# Bounds that the lesion placement relies on: the largest displacement any session can
# have (cycle amplitude bound + drift bound, and the AP share of it).
_AP_RATIO_RANGE = (0.3, 0.5)
_DRIFT_SI_AMPLITUDES_MM = ((0.5, 1.5), (0.2, 0.6))
_DRIFT_AP_AMPLITUDES_MM = ((0.25, 0.75), (0.1, 0.3))
# Each drift sinusoid is offset to start at 0, so it spans at most twice its amplitude.
_SI_BOUND_MM = CYCLE_AMPLITUDE_RANGE_MM[1] + 2.0 * sum(hi for _, hi in _DRIFT_SI_AMPLITUDES_MM)
_AP_BOUND_MM = _AP_RATIO_RANGE[1] * CYCLE_AMPLITUDE_RANGE_MM[1] + 2.0 * sum(
    hi for _, hi in _DRIFT_AP_AMPLITUDES_MM
)


def _draw_breathing(rng: np.random.Generator, seconds: float) -> BreathingParameters:
    """Draw a breathing trace covering at least ``seconds`` (plus a margin)."""
    n = int(rng.integers(2, 4))  # 2 or 3: liver traces rest longer at exhale than n=1
    mean_period_s = float(rng.uniform(3.8, 4.6))
    mean_amplitude_mm = float(rng.uniform(9.0, 17.0))
    ap_ratio = float(rng.uniform(*_AP_RATIO_RANGE))
    ap_lag_cycles = float(rng.uniform(0.02, 0.08))
    drift_amplitudes = (
        float(rng.uniform(*_DRIFT_SI_AMPLITUDES_MM[0])),
        float(rng.uniform(*_DRIFT_SI_AMPLITUDES_MM[1])),
        float(rng.uniform(*_DRIFT_AP_AMPLITUDES_MM[0])),
        float(rng.uniform(*_DRIFT_AP_AMPLITUDES_MM[1])),
    )
    drift_periods = (
        float(rng.uniform(60.0, 180.0)),
        float(rng.uniform(25.0, 50.0)),
        float(rng.uniform(60.0, 180.0)),
        float(rng.uniform(25.0, 50.0)),
    )
    drift_phases = tuple(float(p) for p in rng.uniform(0.0, 2.0 * math.pi, size=4))
    # Cycles drawn one at a time so that a longer session extends a shorter one.
    periods: list[float] = []
    amplitudes: list[float] = []
    covered_s = 0.0
    while covered_s <= seconds + 1.0:
        period = mean_period_s * (1.0 + 0.08 * rng.standard_normal())
        amplitude = mean_amplitude_mm * math.exp(0.12 * rng.standard_normal())
        periods.append(float(np.clip(period, *CYCLE_PERIOD_RANGE_S)))
        amplitudes.append(float(np.clip(amplitude, *CYCLE_AMPLITUDE_RANGE_MM)))
        covered_s += periods[-1]
    return BreathingParameters(
        n=n,
        mean_period_s=mean_period_s,
        mean_amplitude_mm=mean_amplitude_mm,
        ap_ratio=ap_ratio,
        ap_lag_cycles=ap_lag_cycles,
        cycle_periods_s=tuple(periods),
        cycle_amplitudes_mm=tuple(amplitudes),
        drift_amplitudes_mm=drift_amplitudes,
        drift_periods_s=drift_periods,
        drift_phases_rad=drift_phases,  # type: ignore[arg-type]
    )


def breathing_displacement_mm(
    breathing: BreathingParameters, times_s: np.ndarray
) -> np.ndarray:
    """Absolute liver displacement of a breathing trace at given times.

    Parameters
    ----------
    breathing : BreathingParameters
        The trace (e.g. ``session.breathing``).
    times_s : (T,) array_like of float
        Times in s, within ``[0, breathing.duration_s]``.

    Returns
    -------
    (T, 2) float64 ndarray
        Displacement (row_mm, col_mm), +row inferior, +col posterior, relative to the
        end-exhale position of cycle 0 without drift. A session's ``trajectory_mm`` is
        this minus its value at t = 0.

    Raises
    ------
    ValueError
        If ``times_s`` is not a finite 1-D array inside the covered time range.
    """
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"times_s: must be 1-D, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("times_s: must be finite")
    if t.size and (t.min() < 0.0 or t.max() > breathing.duration_s):
        raise ValueError(
            f"times_s: must lie within [0, {breathing.duration_s:.3f}] s "
            "(the cycles the trace covers)"
        )
    periods = np.asarray(breathing.cycle_periods_s, dtype=np.float64)
    amplitudes = np.asarray(breathing.cycle_amplitudes_mm, dtype=np.float64)
    starts = np.concatenate(([0.0], np.cumsum(periods)))
    cycle = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, periods.size - 1)
    # Continuous phase in cycles: integer part = cycle index, fraction = position.
    phase = cycle + (t - starts[cycle]) / periods[cycle]

    def lujan(phase_cycles: np.ndarray) -> np.ndarray:
        k = np.clip(np.floor(phase_cycles).astype(np.int64), 0, periods.size - 1)
        return amplitudes[k] * np.sin(np.pi * phase_cycles) ** (2 * breathing.n)

    si = lujan(phase)
    ap = -breathing.ap_ratio * lujan(phase - breathing.ap_lag_cycles)
    amp = breathing.drift_amplitudes_mm
    per = breathing.drift_periods_s
    phi = breathing.drift_phases_rad
    drift = [
        amp[i] * (np.sin(2.0 * np.pi * t / per[i] + phi[i]) - math.sin(phi[i]))
        for i in range(4)
    ]
    return np.stack((si + drift[0] + drift[1], ap + drift[2] + drift[3]), axis=1)


# --------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------

# bSSFP-like intensities at 0.35 T, liver = 100: contrast follows T2/T1, so fluid and
# blood are bright, fat is bright, liver intermediate, muscle darker, lung dark. The
# scale is small on purpose: with the noise, frames stay below ~400 and compress well.
_AIR = 0.0
_LUNG = 10.0
_LUNG_VESSEL = 28.0
_MUSCLE = 58.0
_DIAPHRAGM = 50.0
_LIVER = 100.0
_VESSEL = 260.0
_FAT = 235.0
_MESENTERY = 165.0
_FLUID = 335.0
_KIDNEY = 155.0
_RENAL_SINUS = 255.0
_MARROW = 165.0
_CORTEX = 22.0
_BOWEL_WALL = 110.0
_BOWEL_CONTENT = 128.0
_GAS = 8.0

# Fine anatomy grid: the same for every geometry (covers the 350 mm field of view plus
# room for the largest displacement and the blur kernel).
_PITCH_MM = 0.8
_GRID_N = 540
_GRID_ORIGIN_MM = -(_GRID_N - 1) / 2.0 * _PITCH_MM  # mm coordinate of index 0
_EDGE_MM = 0.5  # soft-edge scale of organ boundaries before the PSF blur
_PSF_SIGMA_PX = 0.5  # PSF standard deviation in output pixels
_SHADING_GAIN = 0.2  # coil shading: +20 % at x = +-175 mm (anterior/posterior coils)

# Spacing of the candidate centres tried when placing the lesion, mm (2 fine pixels).
_COARSE_MM = 1.6


@dataclass(frozen=True)
class _Body:
    """Static shape parameters of the anatomy (mm; y inferior, x posterior, 0 = centre)."""

    ant_skin_mm: float
    ant_slope: float
    ant_arc_mm: float
    belly_mm: float
    belly_y_mm: float
    post_skin_mm: float
    back_curve_mm: float
    fat_ant_mm: float
    muscle_ant_mm: float
    fat_post_mm: float
    muscle_post_mm: float
    dome_apex_y_mm: float
    dome_apex_x_mm: float
    dome_drop_ant_mm: float
    dome_drop_post_mm: float
    liver_inf_mm: float
    liver_inf_tilt_mm: float
    liver_inf_curve_mm: float
    kidney_centre_mm: tuple[float, float]
    kidney_axes_mm: tuple[float, float]
    kidney_angle_rad: float
    gallbladder: tuple[float, float, float, float, float] | None  # y, x, a, b, angle

    def skin(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anterior and posterior skin x at rows y."""
        # The abdomen bulges anteriorly below the costal margin; the back is flat on the
        # couch with a little lordosis.
        belly = self.belly_mm * np.exp(-(((y - self.belly_y_mm) / 90.0) ** 2))
        arc = self.ant_arc_mm * (y / 175.0) ** 2
        ant = self.ant_skin_mm + self.ant_slope * y + arc - belly
        post = self.post_skin_mm - self.back_curve_mm * (((y - 40.0) / 175.0) ** 2)
        return ant, post

    def cavity(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anterior and posterior inner boundary of the body wall at rows y."""
        ant, post = self.skin(y)
        return (
            ant + self.fat_ant_mm + self.muscle_ant_mm,
            post - self.fat_post_mm - self.muscle_post_mm,
        )

    def dome(self, x: np.ndarray) -> np.ndarray:
        """Diaphragm (lung/liver boundary) y at columns x; higher (smaller y) centrally."""
        ant_in, post_in = self.cavity(np.zeros(1))
        dx = x - self.dome_apex_x_mm
        ant_scale = (self.dome_apex_x_mm - ant_in[0]) ** 2
        post_scale = (post_in[0] - self.dome_apex_x_mm) ** 2
        drop = np.where(
            dx < 0.0,
            self.dome_drop_ant_mm * dx**2 / ant_scale,
            self.dome_drop_post_mm * dx**2 / post_scale,
        )
        return self.dome_apex_y_mm + drop

    def liver_inferior(self, x: np.ndarray) -> np.ndarray:
        """Inferior liver edge y at columns x."""
        xn = x / 80.0
        return self.liver_inf_mm + self.liver_inf_tilt_mm * xn + self.liver_inf_curve_mm * xn**2


def _draw_body(rng: np.random.Generator) -> _Body:
    post_skin = float(rng.uniform(110.0, 122.0))
    fat_post = float(rng.uniform(8.0, 16.0))
    muscle_post = float(rng.uniform(20.0, 30.0))
    kidney_x = post_skin - fat_post - muscle_post - float(rng.uniform(24.0, 32.0))
    body = _Body(
        ant_skin_mm=float(rng.uniform(-120.0, -105.0)),
        ant_slope=float(rng.uniform(0.0, 0.05)),
        ant_arc_mm=float(rng.uniform(5.0, 20.0)),
        belly_mm=float(rng.uniform(0.0, 15.0)),
        belly_y_mm=float(rng.uniform(80.0, 160.0)),
        post_skin_mm=post_skin,
        back_curve_mm=float(rng.uniform(0.0, 12.0)),
        fat_ant_mm=float(rng.uniform(10.0, 22.0)),
        muscle_ant_mm=float(rng.uniform(8.0, 13.0)),
        fat_post_mm=fat_post,
        muscle_post_mm=muscle_post,
        dome_apex_y_mm=float(rng.uniform(-80.0, -55.0)),
        dome_apex_x_mm=float(rng.uniform(-10.0, 20.0)),
        dome_drop_ant_mm=float(rng.uniform(25.0, 45.0)),
        dome_drop_post_mm=float(rng.uniform(50.0, 80.0)),
        liver_inf_mm=float(rng.uniform(60.0, 80.0)),
        # The inferior edge rises posteriorly, where the liver sits on the kidney, and
        # ends in a sharp tip anteriorly.
        liver_inf_tilt_mm=float(rng.uniform(-40.0, -20.0)),
        liver_inf_curve_mm=float(rng.uniform(-10.0, 5.0)),
        kidney_centre_mm=(float(rng.uniform(75.0, 95.0)), kidney_x),
        kidney_axes_mm=(float(rng.uniform(45.0, 55.0)), float(rng.uniform(22.0, 28.0))),
        kidney_angle_rad=math.radians(float(rng.uniform(-15.0, 5.0))),
        gallbladder=None,
    )
    if rng.uniform() < 0.7:
        x_g = float(body.cavity(np.zeros(1))[0][0]) + float(rng.uniform(25.0, 45.0))
        y_g = float(body.liver_inferior(np.array([x_g]))[0]) - float(rng.uniform(0.0, 10.0))
        gall = (
            y_g,
            x_g,
            float(rng.uniform(22.0, 32.0)),
            float(rng.uniform(9.0, 14.0)),
            math.radians(float(rng.uniform(20.0, 50.0))),
        )
        body = dataclasses.replace(body, gallbladder=gall)
    return body


def _smoothstep(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    s = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _inside(signed_distance_mm: np.ndarray, edge_mm: float = _EDGE_MM) -> np.ndarray:
    """Soft membership from a signed distance (negative inside): 0.5 on the boundary."""
    return 0.5 - 0.5 * np.tanh(signed_distance_mm / edge_mm)


def _ellipse_sd(
    y: np.ndarray, x: np.ndarray, cy: float, cx: float, a: float, b: float, angle: float
) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipse; exact on the boundary to first order.

    ``a`` lies along the direction ``angle`` measured from +y toward +x.
    """
    ca, sa = math.cos(angle), math.sin(angle)
    u = (y - cy) * ca + (x - cx) * sa
    v = -(y - cy) * sa + (x - cx) * ca
    f = (u / a) ** 2 + (v / b) ** 2 - 1.0
    grad = 2.0 * np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
    # Far inside (near the centre) the gradient vanishes: cap the depth at -min axis.
    return np.maximum(f / np.maximum(grad, 1e-9), -min(a, b))


def _mm_to_index(mm: float) -> float:
    return (mm - _GRID_ORIGIN_MM) / _PITCH_MM


class _Canvas:
    """The fine anatomy grid and painting helpers (windowed to keep painting cheap)."""

    def __init__(self) -> None:
        axis = _GRID_ORIGIN_MM + _PITCH_MM * np.arange(_GRID_N)
        self.axis_mm = axis
        self.image = np.full((_GRID_N, _GRID_N), _AIR, dtype=np.float64)

    def window(
        self, y0: float, y1: float, x0: float, x1: float
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        """Slices and (y, x) mm coordinates of the grid part covering a box in mm."""
        i0 = max(int(math.floor(_mm_to_index(y0))), 0)
        i1 = min(int(math.ceil(_mm_to_index(y1))) + 1, _GRID_N)
        j0 = max(int(math.floor(_mm_to_index(x0))), 0)
        j1 = min(int(math.ceil(_mm_to_index(x1))) + 1, _GRID_N)
        sl = (slice(i0, max(i1, i0)), slice(j0, max(j1, j0)))
        return sl, self.axis_mm[sl[0]][:, None], self.axis_mm[sl[1]][None, :]

    def paint(
        self, sl: tuple[slice, slice], alpha: np.ndarray, value: float | np.ndarray
    ) -> None:
        region = self.image[sl]
        region += alpha * (value - region)


def _capsule_alpha(
    y: np.ndarray, x: np.ndarray, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float
) -> np.ndarray:
    """Soft membership of a tapered tube segment from p0 (radius r0) to p1 (radius r1)."""
    d = p1 - p0
    length2 = float(d @ d)
    t = np.clip(((y - p0[0]) * d[0] + (x - p0[1]) * d[1]) / max(length2, 1e-12), 0.0, 1.0)
    dist = np.hypot(y - (p0[0] + t * d[0]), x - (p0[1] + t * d[1]))
    return _inside(dist - (r0 + t * (r1 - r0)))


def _bezier(p0: np.ndarray, c: np.ndarray, p1: np.ndarray, n: int) -> np.ndarray:
    s = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * c + s**2 * p1


def _weight(body: _Body, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Share of the liver displacement that each point of the field takes (0.1 .. 1).

    Ramps are long enough that ``d . grad(w) < 1`` (checked numerically: at most ~0.86)
    for every displacement the breathing model can produce, so the warp never folds.
    """
    ant_in, post_in = body.cavity(y)
    depth = np.minimum(x - ant_in, post_in - x)
    w_wall = 0.1 + 0.9 * _smoothstep(depth, -5.0, 20.0)
    top = body.dome_apex_y_mm
    w_lung = 0.35 + 0.65 * _smoothstep(y, top - 80.0, top - 10.0)
    w_low = 1.0 - 0.4 * _smoothstep(y, 125.0, 190.0)
    return w_wall * w_lung * w_low


def _liver_sd(body: _Body, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the liver region (negative inside), mm."""
    ant_in, post_in = body.cavity(y)
    sd = np.maximum.reduce(
        [
            ant_in - x,
            x - post_in,
            body.dome(x) + 3.0 - y,  # 3 mm diaphragm between lung and liver
            y - body.liver_inferior(x),
        ]
    )
    ky, kx = body.kidney_centre_mm
    ka, kb = body.kidney_axes_mm
    kidney = _ellipse_sd(y, x, ky, kx, ka + 5.0, kb + 5.0, body.kidney_angle_rad)
    sd = np.maximum(sd, -kidney)
    if body.gallbladder is not None:
        gy, gx, ga, gb, gang = body.gallbladder
        sd = np.maximum(sd, -_ellipse_sd(y, x, gy, gx, ga + 1.5, gb + 1.5, gang))
    return sd


def _place_lesion(
    body: _Body,
    rng: np.random.Generator,
    diameter_mm: float | None,
    liver_sd: np.ndarray,
    liver_vessels: np.ndarray,
) -> tuple[tuple[float, float], LesionParameters, float]:
    """Draw the lesion and put it deep in the liver where the weight field is 1.

    ``liver_sd`` and ``liver_vessels`` are on the fine grid. The lesion goes where it
    stays inside the liver, where ``w`` is 1 over every position it can reach during a
    session, and preferably clear of the vessels (if nowhere is clear, as far from them
    as the anatomy allows).
    """
    drawn_d = float(rng.uniform(*LESION_DIAMETER_DRAW_MM))
    d = drawn_d if diameter_mm is None else float(diameter_mm)
    aspect = float(rng.uniform(1.0, 1.35))
    a, b = 0.5 * d * math.sqrt(aspect), 0.5 * d / math.sqrt(aspect)
    angle = float(rng.uniform(-math.pi / 2, math.pi / 2))
    hyper = bool(rng.uniform() < 0.5)
    contrast = float(rng.uniform(1.5, 2.0)) if hyper else float(rng.uniform(0.45, 0.65))
    # Candidate centres on a coarse subsample of the fine grid.
    step = int(round(_COARSE_MM / _PITCH_MM))
    axis = (_GRID_ORIGIN_MM + _PITCH_MM * np.arange(_GRID_N))[::step]
    # (cast: the stubs allow None, for out=...)
    liver_depth = cast(np.ndarray, ndimage.distance_transform_edt(liver_sd < 0.0))[::step, ::step] * _PITCH_MM
    vessel_clear = cast(np.ndarray, ndimage.distance_transform_edt(liver_vessels < 0.5))[::step, ::step]
    vessel_clear = vessel_clear * _PITCH_MM - a
    rigid = _weight(body, axis[:, None], axis[None, :]) >= 1.0 - 1e-12
    spacing = _PITCH_MM * step
    reach = (
        2 * int(math.ceil((a + _SI_BOUND_MM + 2.0) / spacing)) + 1,
        2 * int(math.ceil((a + _AP_BOUND_MM + 2.0) / spacing)) + 1,
    )
    rigid_all = ndimage.minimum_filter(rigid.astype(np.uint8), size=reach, mode="constant")
    valid = (liver_depth >= a + 10.0) & (rigid_all > 0)
    if not valid.any():  # cannot happen within the drawn anatomy ranges
        raise RuntimeError(f"no room for a {d:.1f} mm lesion in this anatomy")
    clear_mm = min(8.0, float(np.percentile(vessel_clear[valid], 90)))
    candidates = np.flatnonzero(valid & (vessel_clear >= clear_mm))
    k = int(candidates[rng.integers(candidates.size)])
    jitter = rng.uniform(-0.5, 0.5, size=2) * spacing
    cy = float(axis[k // axis.size] + jitter[0])
    cx = float(axis[k % axis.size] + jitter[1])
    lesion = LesionParameters(
        diameter_mm=d,
        semi_axes_mm=(a, b),
        angle_deg=math.degrees(angle),
        kind="hyperintense" if hyper else "hypointense",
        contrast=contrast,
        centre0_px=(math.nan, math.nan),
        edge_mm=1.0,
    )
    return (cy, cx), lesion, angle


def _texture(rng: np.random.Generator, sigma_mm: float) -> np.ndarray:
    field = ndimage.gaussian_filter(
        rng.standard_normal((_GRID_N, _GRID_N)), sigma_mm / _PITCH_MM, mode="wrap"
    )
    return field / field.std()


def _paint_anatomy(
    body: _Body,
    anatomy_rng: np.random.Generator,
    canvas: _Canvas,
    liver_sd: np.ndarray,
    lung_vessels: np.ndarray,
    liver_vessels: np.ndarray,
    lesion_centre: tuple[float, float],
    lesion: LesionParameters,
    lesion_angle: float,
) -> np.ndarray:
    y_all = canvas.axis_mm[:, None]
    x_all = canvas.axis_mm[None, :]
    full = (slice(None), slice(None))
    tex_fine = _texture(anatomy_rng, 1.5)
    tex_coarse = _texture(anatomy_rng, 6.0)

    # Body: fat inside the skin, then the muscle layer, then the abdominal cavity.
    ant_skin, post_skin = body.skin(y_all)
    canvas.paint(full, _inside(np.maximum(ant_skin - x_all, x_all - post_skin)), _FAT)
    ant_mus = ant_skin + body.fat_ant_mm
    post_mus = post_skin - body.fat_post_mm
    canvas.paint(full, _inside(np.maximum(ant_mus - x_all, x_all - post_mus)), _MUSCLE)
    ant_in, post_in = body.cavity(y_all)
    cavity = _inside(np.maximum(ant_in - x_all, x_all - post_in))
    canvas.paint(full, cavity, _MESENTERY * (1.0 + 0.08 * tex_coarse))

    # Ribs cut across in the chest wall: dark cortex around fatty marrow.
    for side in (-1, 1):
        y_rib = -190.0 + anatomy_rng.uniform(0.0, 20.0)
        while y_rib < 30.0:
            if side < 0:
                x_rib = float(body.skin(np.array([y_rib]))[0][0]) + body.fat_ant_mm + 4.0
            else:
                x_rib = body.post_skin_mm - body.fat_post_mm - 6.0
            ra, rb = anatomy_rng.uniform(5.0, 7.0), anatomy_rng.uniform(3.0, 4.5)
            sl, y, x = canvas.window(y_rib - 10, y_rib + 10, x_rib - 10, x_rib + 10)
            canvas.paint(sl, _inside(_ellipse_sd(y, x, y_rib, x_rib, ra, rb, 0.3)), _CORTEX)
            inner = _ellipse_sd(y, x, y_rib, x_rib, ra - 1.5, rb - 1.5, 0.3)
            canvas.paint(sl, _inside(inner), _MARROW)
            y_rib += anatomy_rng.uniform(24.0, 32.0)

    # Bowel loops below the liver: walls, contents of fluid, chyme or gas.
    for _ in range(90):
        cy = anatomy_rng.uniform(30.0, 215.0)
        cx = anatomy_rng.uniform(-110.0, 70.0)
        ra, rb = anatomy_rng.uniform(6.0, 16.0), anatomy_rng.uniform(4.5, 10.0)
        ang = anatomy_rng.uniform(0.0, math.pi)
        content = (_FLUID, _BOWEL_CONTENT, _GAS)[int(anatomy_rng.choice(3, p=[0.4, 0.4, 0.2]))]
        sl, y, x = canvas.window(cy - ra - 3, cy + ra + 3, cx - ra - 3, cx + ra + 3)
        clip = cavity[sl]
        canvas.paint(sl, clip * _inside(_ellipse_sd(y, x, cy, cx, ra, rb, ang)), _BOWEL_WALL)
        inner = _ellipse_sd(y, x, cy, cx, ra - 2.0, rb - 2.0, ang)
        canvas.paint(sl, clip * _inside(inner), content)

    # Kidney in its fat, with a bright renal sinus.
    ky, kx = body.kidney_centre_mm
    ka, kb = body.kidney_axes_mm
    kang = body.kidney_angle_rad
    sl, y, x = canvas.window(ky - ka - 10, ky + ka + 10, kx - ka - 10, kx + ka + 10)
    canvas.paint(sl, _inside(_ellipse_sd(y, x, ky, kx, ka + 5.0, kb + 5.0, kang)), _FAT)
    canvas.paint(sl, _inside(_ellipse_sd(y, x, ky, kx, ka, kb, kang)), _KIDNEY)
    sinus = _ellipse_sd(y, x, ky, kx + 0.25 * kb, 0.5 * ka, 0.3 * kb, kang)
    canvas.paint(sl, _inside(sinus, 1.5), _RENAL_SINUS)

    # Liver with mottled texture; the lung above the dome; the diaphragm between them.
    liver = _inside(liver_sd)
    liver_value = _LIVER * (1.0 + 0.03 * tex_fine + 0.04 * tex_coarse)
    canvas.paint(full, liver, liver_value)
    dome = body.dome(x_all)
    canvas.paint(full, cavity * _inside(np.abs(y_all - dome - 1.5) - 1.5), _DIAPHRAGM)
    lung = cavity * _inside(y_all - dome)
    canvas.paint(full, lung, _LUNG * (1.0 + 0.3 * tex_coarse))
    if body.gallbladder is not None:
        gy, gx, ga, gb, gang = body.gallbladder
        sl, y, x = canvas.window(gy - ga - 3, gy + ga + 3, gx - ga - 3, gx + ga + 3)
        canvas.paint(sl, cavity[sl] * _inside(_ellipse_sd(y, x, gy, gx, ga, gb, gang)), _FLUID)

    canvas.paint(full, lung_vessels * lung, _LUNG_VESSEL)

    # Liver vessels fade out next to the lesion (only when it had to be placed near
    # them), so that the lesion's outline is its own.
    la, lb = lesion.semi_axes_mm
    keep_out = _smoothstep(
        _ellipse_sd(y_all, x_all, *lesion_centre, la, lb, lesion_angle), 3.0, 6.0
    )
    canvas.paint(full, liver_vessels * liver * keep_out, _VESSEL)

    # The lesion: its own value (slightly textured) with a soft edge.
    cy, cx = lesion_centre
    sl, y, x = canvas.window(cy - la - 8, cy + la + 8, cx - la - 8, cx + la + 8)
    sd = _ellipse_sd(y, x, cy, cx, la, lb, lesion_angle)
    alpha = 1.0 / (1.0 + np.exp(np.clip(sd / lesion.edge_mm, -50.0, 50.0)))
    canvas.paint(sl, alpha, _LIVER * lesion.contrast * (1.0 + 0.05 * tex_fine[sl]))

    # Every tissue has a little texture (no structure is perfectly flat in vivo).
    canvas.image *= 1.0 + 0.02 * tex_fine
    return canvas.image


def _vessel_maps(
    body: _Body, vessel_rng: np.random.Generator, canvas: _Canvas, liver_sd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Soft membership maps (fine grid) of the lung vessels and of the liver vessels."""
    # Faint lung vessels fanning down from the hilum.
    hilum = np.array([-175.0, 30.0])
    lung_vessels = np.zeros_like(canvas.image)
    for _ in range(9):
        start = hilum + vessel_rng.uniform(-20.0, 20.0, size=2)
        end_y = body.dome_apex_y_mm + vessel_rng.uniform(-30.0, 10.0)
        end = np.array([end_y, vessel_rng.uniform(-80.0, 60.0)])
        ctrl = 0.5 * (start + end) + vessel_rng.uniform(-25.0, 25.0, size=2)
        _union_tube(canvas, lung_vessels, _bezier(start, ctrl, end, 10), 1.5, 0.5)

    # Liver vessels: tapering trunks with side branches, and vessels cut across.
    vessels = np.zeros_like(canvas.image)
    inside_idx = np.flatnonzero(liver_sd < -8.0)
    # Hepatic veins fan out anteriorly and inferiorly from near the IVC (posterior,
    # under the dome); portal branches fan superiorly and anteriorly from the hilum
    # (inferior, central). Directions: angle from +y (inferior) toward +x (posterior).
    _, post_in0 = body.cavity(np.zeros(1))
    hv_x = float(post_in0[0]) - float(vessel_rng.uniform(15.0, 30.0))
    hv_root = np.array([float(body.dome(np.array([hv_x]))[0]) + 12.0, hv_x])
    pv_x = float(vessel_rng.uniform(-10.0, 25.0))
    pv_root = np.array([float(body.liver_inferior(np.array([pv_x]))[0]) - 15.0, pv_x])
    for root, fan_deg, radius in (
        (hv_root, (-120.0, -30.0), float(vessel_rng.uniform(4.0, 5.5))),
        (pv_root, (-200.0, -110.0), float(vessel_rng.uniform(4.5, 6.0))),
    ):
        for _ in range(int(vessel_rng.integers(2, 4))):
            phi = math.radians(float(vessel_rng.uniform(*fan_deg)))
            direction = np.array([math.cos(phi), math.sin(phi)])
            length = float(vessel_rng.uniform(50.0, 110.0))
            start = root + vessel_rng.uniform(-4.0, 4.0, size=2)
            end = start + length * direction
            bend = np.array([-direction[1], direction[0]]) * vessel_rng.uniform(-15.0, 15.0)
            path = _bezier(start, 0.5 * (start + end) + bend, end, 14)
            r0 = radius * float(vessel_rng.uniform(0.7, 1.0))
            _union_tube(canvas, vessels, path, r0, 1.0)
            for _ in range(int(vessel_rng.integers(1, 4))):
                i = int(vessel_rng.integers(3, 11))
                tangent = path[i + 1] - path[i]
                turn = math.radians(float(vessel_rng.uniform(25.0, 55.0))) * vessel_rng.choice(
                    [-1.0, 1.0]
                )
                c, s_ = math.cos(turn), math.sin(turn)
                b_dir = np.array(
                    [c * tangent[0] - s_ * tangent[1], s_ * tangent[0] + c * tangent[1]]
                ) / max(float(np.hypot(*tangent)), 1e-9)
                b_end = path[i] + float(vessel_rng.uniform(20.0, 45.0)) * b_dir
                b_ctrl = 0.5 * (path[i] + b_end) + vessel_rng.uniform(-5.0, 5.0, size=2)
                r_branch = r0 * (1.0 - i / 14.0) * 0.7 + 0.5
                _union_tube(canvas, vessels, _bezier(path[i], b_ctrl, b_end, 8), r_branch, 0.8)
    for _ in range(int(vessel_rng.integers(8, 15))):
        c = _random_point(vessel_rng, inside_idx, canvas.axis_mm)
        r = float(vessel_rng.uniform(1.2, 3.5))
        sl, y, x = canvas.window(c[0] - r - 3, c[0] + r + 3, c[1] - r - 3, c[1] + r + 3)
        dot = _inside(_ellipse_sd(y, x, c[0], c[1], 1.3 * r, r, vessel_rng.uniform(0, np.pi)))
        np.maximum(vessels[sl], dot, out=vessels[sl])
    return lung_vessels, vessels


def _random_point(
    rng: np.random.Generator, flat_indices: np.ndarray, axis_mm: np.ndarray
) -> np.ndarray:
    k = int(flat_indices[rng.integers(flat_indices.size)])
    return np.array([axis_mm[k // axis_mm.size], axis_mm[k % axis_mm.size]])


def _union_tube(
    canvas: _Canvas, target: np.ndarray, path: np.ndarray, r_start: float, r_end: float
) -> None:
    """Max-combine a tapered tube along ``path`` into ``target`` (soft membership)."""
    radii = np.linspace(r_start, r_end, len(path))
    for p0, p1, r0, r1 in zip(path[:-1], path[1:], radii[:-1], radii[1:]):
        pad = max(r0, r1) + 3.0
        sl, y, x = canvas.window(
            min(p0[0], p1[0]) - pad, max(p0[0], p1[0]) + pad,
            min(p0[1], p1[1]) - pad, max(p0[1], p1[1]) + pad,
        )
        np.maximum(target[sl], _capsule_alpha(y, x, p0, p1, r0, r1), out=target[sl])


# --------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------


def _validate(
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


@dataclass(frozen=True, eq=False)
class _Anatomy:
    """The static model of one seed, with the random streams its frames still draw from."""

    body: _Body
    lesion_centre: tuple[float, float]
    lesion: LesionParameters
    lesion_angle: float
    fine: np.ndarray  # the painted anatomy on the fine grid
    motion_rng: np.random.Generator  # breathing (generate_session) or drift (TracePhantom)
    noise_rng: np.random.Generator


def _anatomy(seed: int, lesion_diameter_mm: float | None, painted_lesion_contrast: float | None = None) -> _Anatomy:
    """Body, vessels, lesion and the painted fine-grid image of a seed.

    ``default_rng(seed)`` is spawned into five streams used in this order: anatomy,
    lesion, vessels, motion, noise. The order is part of every phantom's identity:
    changing it changes every session, the bundled one included (CI regenerates that
    bit for bit). ``painted_lesion_contrast`` overrides the contrast the lesion is
    painted with (the trace phantom paints liver there and composites the lesion later).
    """
    anatomy_rng, lesion_rng, vessel_rng, motion_rng, noise_rng = np.random.default_rng(seed).spawn(5)
    body = _draw_body(anatomy_rng)
    canvas = _Canvas()
    liver_sd = _liver_sd(body, canvas.axis_mm[:, None], canvas.axis_mm[None, :])
    lung_vessels, liver_vessels = _vessel_maps(body, vessel_rng, canvas, liver_sd)
    lesion_centre, lesion, lesion_angle = _place_lesion(
        body, lesion_rng, lesion_diameter_mm, liver_sd, liver_vessels
    )
    painted = lesion if painted_lesion_contrast is None else dataclasses.replace(lesion, contrast=painted_lesion_contrast)
    fine = _paint_anatomy(
        body, anatomy_rng, canvas, liver_sd, lung_vessels, liver_vessels, lesion_centre, painted, lesion_angle,
    )
    return _Anatomy(body, lesion_centre, lesion, lesion_angle, fine, motion_rng, noise_rng)


def _acquisition(model: _Anatomy, geo: Geometry) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
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
    blurred = ndimage.gaussian_filter(model.fine, _PSF_SIGMA_PX * geo.spacing_mm / _PITCH_MM)
    rows, cols = geo.shape
    y = ((np.arange(rows) - (rows - 1) / 2.0) * geo.spacing_mm)[:, None] + np.zeros((1, cols))
    x = np.zeros((rows, 1)) + ((np.arange(cols) - (cols - 1) / 2.0) * geo.spacing_mm)[None, :]
    w_px = _weight(model.body, y, x) / _PITCH_MM
    row_index = (y - _GRID_ORIGIN_MM) / _PITCH_MM
    col_index = (x - _GRID_ORIGIN_MM) / _PITCH_MM
    shading = 1.0 + _SHADING_GAIN * (x / 175.0) ** 2
    return blurred, (y, x, w_px, row_index, col_index, shading)


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
    geo, seconds, seed, lesion_diameter_mm = _validate(
        geometry, seconds, seed, lesion_diameter_mm
    )
    model = _anatomy(seed, lesion_diameter_mm)
    lesion_centre, lesion, lesion_angle = model.lesion_centre, model.lesion, model.lesion_angle
    noise_rng = model.noise_rng
    breathing = _draw_breathing(model.motion_rng, seconds)
    # Drawn before any per-frame noise so that the session length does not change it.
    noise_sigma = _LIVER / float(noise_rng.uniform(12.0, 18.0))

    n_frames = max(int(math.floor(seconds * geo.fps + 1e-9)), 1)
    times_s = np.arange(n_frames, dtype=np.float64) / geo.fps
    displacement = breathing_displacement_mm(breathing, times_s)
    trajectory = displacement - displacement[0]

    blurred, (y, x, w_px, row_index, col_index, shading) = _acquisition(model, geo)
    rows, cols = geo.shape

    la, lb = lesion.semi_axes_mm
    ca, sa = math.cos(lesion_angle), math.sin(lesion_angle)
    frames = np.empty((n_frames, rows, cols), dtype=np.uint16)
    labels = np.empty((n_frames, rows, cols), dtype=np.uint8)
    coords = np.empty((2, rows, cols), dtype=np.float64)
    for k in range(n_frames):
        d_row, d_col = displacement[k]
        np.subtract(row_index, w_px * d_row, out=coords[0])
        np.subtract(col_index, w_px * d_col, out=coords[1])
        clean = ndimage.map_coordinates(blurred, coords, order=1, mode="nearest") * shading
        noise = noise_rng.standard_normal((2, rows, cols)) * noise_sigma
        magnitude = np.hypot(clean + noise[0], noise[1])
        frames[k] = np.clip(np.rint(magnitude), 0, np.iinfo(np.uint16).max)
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
        liver_intensity=_LIVER,
    )


# --------------------------------------------------------------------------------------
# Sessions driven by a recorded motion trace
# --------------------------------------------------------------------------------------

#: Default lesion strain per mm of superior-inferior displacement from frame 0: the
#: lesion lengthens along SI and shortens along AP by ``1 + strain`` (area preserved),
#: so a 20 mm excursion deforms it by 6 %.
TRACE_STRAIN_PER_MM = 0.003
#: Default amplitude of the slow intensity drift (fraction of the signal): a global
#: receive-gain drift plus an anterior-posterior shading tilt of the same size.
TRACE_INTENSITY_DRIFT = 0.05
#: Sub-samples per pixel side used to render the lesion's in-plane partial volume.
TRACE_SUPERSAMPLE = 5


def trace_displacement_mm(
    trace_times_s: np.ndarray,
    trace_mm: np.ndarray,
    times_s: np.ndarray,
    loop: bool = False,
) -> np.ndarray:
    """Resample a recorded 3D trajectory at given times, in the phantom's axes.

    The trace (e.g. 5 Hz KIM samples) is interpolated with a cubic spline, which is
    smooth across samples where linear interpolation would put a kink at every one.

    Parameters
    ----------
    trace_times_s : (N,) array_like of float
        Sample times of the trace, s, strictly increasing, N >= 4.
    trace_mm : (N, 3) array_like of float
        Positions (si_mm + superior, ap_mm + anterior, lr_mm) at those times, mm, finite.
    times_s : (T,) array_like of float
        Times to sample, s from the trace's first sample, >= 0.
    loop : bool
        Past the trace's end, play it backward, then forward again (a ping-pong loop:
        the position stays continuous where a plain wrap-around would jump). Without
        it, every time must lie within the trace.

    Returns
    -------
    (T, 3) float64 ndarray
        (row_mm + inferior, col_mm + posterior, through_mm) absolute positions: the SI
        and AP signs are flipped into the image's row and column directions.

    Raises
    ------
    ValueError
        If an argument breaks its rule; the message names it.
    """
    from scipy.interpolate import CubicSpline

    tt = np.asarray(trace_times_s, dtype=np.float64)
    xyz = np.asarray(trace_mm, dtype=np.float64)
    t = np.asarray(times_s, dtype=np.float64)
    if tt.ndim != 1 or tt.size < 4:
        raise ValueError(f"trace_times_s: must be 1D with at least 4 samples, got shape {tt.shape}")
    if not (np.isfinite(tt).all() and np.all(np.diff(tt) > 0.0)):
        raise ValueError("trace_times_s: must be finite and strictly increasing")
    if xyz.shape != (tt.size, 3) or not np.isfinite(xyz).all():
        raise ValueError(
            f"trace_mm: must be finite with shape ({tt.size}, 3), got shape {xyz.shape}"
        )
    if t.ndim != 1 or not np.isfinite(t).all() or (t.size and t.min() < 0.0):
        raise ValueError("times_s: must be a 1D array of finite times >= 0")
    duration = float(tt[-1] - tt[0])
    if loop:
        period = 2.0 * duration
        tau = np.mod(t, period)
        t = np.where(tau > duration, period - tau, tau)
    elif t.size and t.max() > duration + 1e-9:
        raise ValueError(
            f"times_s: must lie within the trace's {duration:g} s (or set loop), "
            f"got up to {t.max():g} s"
        )
    spline = CubicSpline(tt - tt[0], xyz, axis=0)
    out = spline(np.clip(t, 0.0, duration))
    out[:, 0] *= -1.0  # + superior -> + inferior (row index grows toward the feet)
    out[:, 1] *= -1.0  # + anterior -> + posterior (column index grows toward the back)
    return out


#: Largest relative sliding of the lesion against its surroundings (:class:`TracePhantom`).
SLIDE_MAX = 0.5


#: Largest excursion along SI or AP, mm: the lesion and its context stay in the frame.
EXCURSION_MAX_MM = 60.0


def excursion_offsets_mm(excursions: object, times_s: np.ndarray) -> np.ndarray:
    """Row/column offsets of sudden whole-liver shifts at given times.

    Parameters
    ----------
    excursions : sequence of (start_s, duration_s, si_mm, ap_mm)
        Each shifts the anatomy and the lesion by ``si_mm`` (+ superior) and ``ap_mm``
        (+ anterior) from ``start_s`` (> 0, s from the session start) for
        ``duration_s`` (> 0), then back: a cough or a sudden shift of the patient. The
        shift is a step, not interpolated; shifts that overlap add. ``|si_mm|`` and
        ``|ap_mm|`` at most :data:`EXCURSION_MAX_MM`.
    times_s : (T,) array_like of float
        Times, s from the session start.

    Returns
    -------
    (T, 2) float64 ndarray
        (row_mm + inferior, col_mm + posterior) offsets, the phantom's axes.

    Raises
    ------
    ValueError
        If an excursion breaks its rule; the message names it.
    """
    t = np.asarray(times_s, dtype=np.float64)
    out = np.zeros((t.size, 2))
    try:
        items = [tuple(float(v) for v in e) for e in excursions]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"excursions: must be a sequence of (start_s, duration_s, si_mm, ap_mm), got {excursions!r}") from None
    for k, e in enumerate(items):
        if len(e) != 4 or not all(math.isfinite(v) for v in e):
            raise ValueError(f"excursions[{k}]: must be 4 finite numbers (start_s, duration_s, si_mm, ap_mm), got {e!r}")
        start, duration, si, ap = e
        if start <= 0.0 or duration <= 0.0:
            raise ValueError(f"excursions[{k}]: start_s and duration_s must be > 0 (the first frame is the reference), got {e!r}")
        if max(abs(si), abs(ap)) > EXCURSION_MAX_MM:
            raise ValueError(f"excursions[{k}]: |si_mm| and |ap_mm| must be at most {EXCURSION_MAX_MM:g} mm, got {e!r}")
        inside = (t >= start) & (t < start + duration)
        out[inside] -= (si, ap)  # + superior / + anterior -> rows + inferior / cols + posterior
    return out


#: When the stress excursions of :func:`excursions_for` happen (fractions of the session)
#: and how long each lasts (s).
EXCURSION_AT = (0.3, 0.65)
EXCURSION_S = 1.5


def excursions_for(trace, seconds: float, size_mm: float, duration_s: float = EXCURSION_S) -> tuple[tuple[float, float, float, float], ...]:
    """Two sudden SI shifts of ``size_mm`` (a cough-like excursion), at 30 % and 65 % of a
    ``seconds``-long session, each held ``duration_s`` then back; each goes from where
    the trace is towards the middle of its SI range, so the lesion stays in the anatomy.
    Empty when ``size_mm`` is 0. ``trace`` is a :class:`hardware.motion_trace.MotionTrace`
    (its ``times_s`` and ``si_mm``)."""
    if size_mm == 0.0:
        return ()
    t = trace.times_s - trace.times_s[0]
    mid = 0.5 * (trace.si_mm.min() + trace.si_mm.max())
    out = []
    for fraction in EXCURSION_AT:
        start = fraction * seconds
        si_now = float(np.interp(start, t, trace.si_mm))
        out.append((start, duration_s, size_mm if si_now < mid else -size_mm, 0.0))
    return tuple(out)


def _lesion_occupancy(
    dy: np.ndarray,
    dx: np.ndarray,
    a: float,
    b: float,
    angle: float,
    strain: float,
    through_mm: float,
    slice_mm: float,
) -> np.ndarray:
    """Fraction of the slice thickness the lesion ellipsoid occupies at in-plane offsets.

    ``dy``, ``dx`` (mm) are offsets from the lesion centre. The lesion is an ellipsoid
    with in-plane semi-axes (a, b) at ``angle`` and left-right semi-axis ``sqrt(a b)``,
    stretched by ``1 + strain`` along rows and shrunk by the same factor along columns,
    its centre ``through_mm`` from the slice centre. At an in-plane point of
    ellipse-normalised radius ``rho`` the ellipsoid spans ``+-c sqrt(1 - rho^2)``
    through the plane; the result is the length of that span inside the slice divided
    by the slice thickness (a rectangular slice profile).
    """
    g = 1.0 + strain
    sy = dy / g
    sx = dx * g
    ca, sa = math.cos(angle), math.sin(angle)
    u = sy * ca + sx * sa
    v = -sy * sa + sx * ca
    rho2 = (u / a) ** 2 + (v / b) ** 2
    half = math.sqrt(a * b) * np.sqrt(np.maximum(1.0 - rho2, 0.0))
    half_slice = 0.5 * slice_mm
    overlap = np.minimum(half_slice, through_mm + half) - np.maximum(-half_slice, through_mm - half)
    return np.clip(overlap / slice_mm, 0.0, 1.0)


def _validate_trace(
    trace_times_s: np.ndarray, trace_mm: np.ndarray, strain_per_mm: float, intensity_drift: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    tt = np.asarray(trace_times_s, dtype=np.float64)
    xyz = np.asarray(trace_mm, dtype=np.float64)
    if tt.ndim != 1 or tt.size < 4:
        raise ValueError(f"trace_times_s: must be 1D with at least 4 samples, got shape {tt.shape}")
    if not (np.isfinite(tt).all() and np.all(np.diff(tt) > 0.0)):
        raise ValueError("trace_times_s: must be finite and strictly increasing")
    if xyz.shape != (tt.size, 3) or not np.isfinite(xyz).all():
        raise ValueError(f"trace_mm: must be finite with shape ({tt.size}, 3), got {xyz.shape}")
    centred = xyz - 0.5 * (xyz.min(axis=0) + xyz.max(axis=0))
    # The lesion is placed where the anatomy moves rigidly over +-_SI_BOUND_MM.
    if np.abs(centred[:, 0]).max() > _SI_BOUND_MM or np.abs(centred[:, 1]).max() > _AP_BOUND_MM:
        raise ValueError(
            f"trace_mm: SI range must be within {2 * _SI_BOUND_MM:g} mm and AP range within "
            f"{2 * _AP_BOUND_MM:g} mm peak to peak"
        )
    for name, value, hi in (
        ("strain_per_mm", strain_per_mm, 0.02),
        ("intensity_drift", intensity_drift, 0.3),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name}: must be a real number, got {value!r}")
        if not (math.isfinite(value) and 0.0 <= value <= hi):
            raise ValueError(f"{name}: must be within [0, {hi:g}], got {value!r}")
    return tt, xyz, float(strain_per_mm), float(intensity_drift)


@dataclass(frozen=True)
class TraceFrame:
    """One rendered frame of a :class:`TracePhantom`.

    Attributes
    ----------
    index : int
        Frame number k, acquired at ``k / fps``.
    pixels : (H, W) uint16 ndarray
        The magnitude image.
    label_fraction : (H, W) float32 ndarray
        Voxel fraction occupied by the lesion (sub-pixel and through-plane partial volume).
    """

    index: int
    pixels: np.ndarray
    label_fraction: np.ndarray


class TracePhantom:
    """A phantom session whose lesion follows a recorded 3D trajectory, rendered lazily.

    The anatomy, lesion draw, noise level and noise sequence come from ``seed`` exactly as
    in :func:`generate_session`; the breathing model is replaced by the trace. Frames are
    rendered in order by :meth:`frames`, so a long session (e.g. 20 minutes) can be
    tracked without holding it in memory.

    Motion model
    ------------
    * SI and AP move the anatomy in the sagittal plane (the same warp as
      :func:`generate_session`, centred on the middle of the trace's range so that the
      lesion stays where the anatomy moves rigidly); the lesion's centre moves exactly by
      the trace: ``trajectory_mm`` is the ground truth.
    * LR moves the lesion through the 7 mm slice: the lesion is an ellipsoid and each
      voxel shows the fraction of the slice thickness it occupies, so the lesion fades
      and shrinks as it leaves the slice (partial volume).
    * The lesion deforms with breathing: stretched along SI by ``1 + strain_per_mm *
      row_mm`` and shrunk along AP by the same factor (area kept), about its centre, so
      its centroid is still the trace position.
    * Slow intensity drift: a global gain ``1 + A (sin(2 pi t / P1 + p1) - sin p1)`` and
      an anterior-posterior shading tilt ``A (x / 175 mm) (sin(2 pi t / P2 + p2) - sin p2)``
      with ``A = intensity_drift`` and periods of 2-5 minutes drawn from the seed.
    * Rician noise at a liver SNR of 12-18 (0.35 T-like), as in :func:`generate_session`.

    Parameters
    ----------
    trace_times_s : (N,) array_like of float
        Trace sample times, s, strictly increasing (e.g. 5 Hz), N >= 4.
    trace_mm : (N, 3) array_like of float
        (si_mm + superior, ap_mm + anterior, lr_mm) at those times.
    geometry : str or Geometry
        As for :func:`generate_session`.
    seconds : float or None
        Session length; ``None`` for the trace's whole duration. Longer than the trace
        only with ``loop``.
    seed : int
        Anatomy, lesion, drift and noise seed.
    lesion_diameter_mm : float or None
        As for :func:`generate_session`.
    loop : bool
        Ping-pong the trace to cover ``seconds`` (see :func:`trace_displacement_mm`).
    strain_per_mm : float
        Lesion deformation per mm of SI displacement, within [0, 0.02].
    intensity_drift : float
        Amplitude of the slow intensity drift, within [0, 0.3].
    excursions : sequence of (start_s, duration_s, si_mm, ap_mm)
        Sudden whole-liver shifts added to the trace (:func:`excursion_offsets_mm`);
        ``trajectory_mm`` includes them.
    slide : float
        Lesion motion relative to its surroundings, within +-:data:`SLIDE_MAX`: the
        lesion moves by the trace (``trajectory_mm`` is still the truth) while the
        anatomy around it moves by the trace / (1 + slide), about the middle of the
        trace's range. 0.1 = the lesion moves 10 % more than the liver around it (a
        lesion sliding against the tissue that a template's context holds on to);
        0 (default) = the whole anatomy moves rigidly with the lesion, as before.

    Attributes
    ----------
    n_frames, fps, spacing_mm, shape, slice_mm, times_s, trajectory_mm, through_plane_mm,
    lesion, noise_sigma, geometry
        As in :class:`PhantomSession`; ``trajectory_mm`` (T, 2) is the lesion centre's
        displacement from frame 0 (row + inferior, col + posterior), ``through_plane_mm``
        (T,) its offset from the slice centre.
    """

    def __init__(
        self,
        trace_times_s: np.ndarray,
        trace_mm: np.ndarray,
        geometry: str | Geometry = "mridian-8fps",
        seconds: float | None = None,
        seed: int = 1,
        lesion_diameter_mm: float | None = None,
        loop: bool = False,
        strain_per_mm: float = TRACE_STRAIN_PER_MM,
        intensity_drift: float = TRACE_INTENSITY_DRIFT,
        excursions: object = (),
        slide: float = 0.0,
    ) -> None:
        tt, xyz, strain_per_mm, intensity_drift = _validate_trace(
            trace_times_s, trace_mm, strain_per_mm, intensity_drift
        )
        if isinstance(slide, bool) or not isinstance(slide, numbers.Real) or not (
            math.isfinite(slide) and -SLIDE_MAX <= slide <= SLIDE_MAX
        ):
            raise ValueError(f"slide: must be a number within [-{SLIDE_MAX:g}, {SLIDE_MAX:g}], got {slide!r}")
        duration = float(tt[-1] - tt[0])
        if seconds is None:
            seconds = duration
        geo, seconds, seed, lesion_diameter_mm = _validate(
            geometry, seconds, seed, lesion_diameter_mm
        )
        if not loop and seconds > duration + 1e-9:
            raise ValueError(
                f"seconds: must be at most the trace's {duration:g} s unless loop is set, "
                f"got {seconds!r}"
            )
        # The static model holds liver where the lesion is (contrast 1): the lesion is
        # composited per frame, deformed and faded, on top of the warped anatomy.
        model = _anatomy(seed, lesion_diameter_mm, painted_lesion_contrast=1.0)
        lesion_centre, lesion, lesion_angle = model.lesion_centre, model.lesion, model.lesion_angle
        noise_rng, drift_rng = model.noise_rng, model.motion_rng
        self._noise_sigma = _LIVER / float(noise_rng.uniform(12.0, 18.0))
        self._drift_periods_s = (float(drift_rng.uniform(120.0, 300.0)), float(drift_rng.uniform(120.0, 300.0)))
        self._drift_phases = tuple(float(p) for p in drift_rng.uniform(0.0, 2.0 * math.pi, size=2))
        self._noise_rng = noise_rng
        self._intensity_drift = intensity_drift
        self._strain_per_mm = strain_per_mm

        n_frames = max(int(math.floor(seconds * geo.fps + 1e-9)), 1)
        times_s = np.arange(n_frames, dtype=np.float64) / geo.fps
        absolute = trace_displacement_mm(tt, xyz, times_s, loop=loop)
        absolute[:, :2] += excursion_offsets_mm(excursions, times_s)
        # Centre the warp on the middle of the whole trace's range (the lesion's
        # placement allows +- the model's bounds around its rest position).
        full = trace_displacement_mm(tt, xyz, tt - tt[0])
        mid = 0.5 * (full.min(axis=0) + full.max(axis=0))
        self._warp_mm = absolute[:, :2] - mid[:2]
        # Sliding: the lesion follows the trace (the ground truth), the anatomy around it
        # moves 1 / (1 + slide) as far, so the lesion slides across its own context.
        self._anatomy_warp_mm = self._warp_mm / (1.0 + float(slide))
        self.slide = float(slide)
        trajectory = absolute[:, :2] - absolute[0, :2]
        through = absolute[:, 2] - absolute[0, 2]

        self._blurred, grid = _acquisition(model, geo)
        self._y, self._x, self._w_px, self._row_index, self._col_index, self._shading = grid
        rows, cols = geo.shape
        self._lesion_centre_mm = lesion_centre
        self._lesion_angle = lesion_angle
        centre0_px = (
            (lesion_centre[0] + self._warp_mm[0, 0]) / geo.spacing_mm + (rows - 1) / 2.0,
            (lesion_centre[1] + self._warp_mm[0, 1]) / geo.spacing_mm + (cols - 1) / 2.0,
        )
        self.lesion = dataclasses.replace(lesion, centre0_px=centre0_px)
        self.geometry = geo.name
        self.fps = geo.fps
        self.spacing_mm = (geo.spacing_mm, geo.spacing_mm)
        self.shape = geo.shape
        self.slice_mm = geo.slice_mm
        self.seed = seed
        self.n_frames = n_frames
        self.times_s = times_s
        self.trajectory_mm = trajectory
        self.through_plane_mm = through
        for array in (times_s, trajectory, through):
            array.setflags(write=False)
        self._started = False

    @property
    def noise_sigma(self) -> float:
        """Gaussian noise sigma per channel before the magnitude (Rician), intensity units."""
        return self._noise_sigma

    @property
    def lesion_centre_px(self) -> np.ndarray:
        """(T, 2) float64 true lesion centre per frame as fractional (row, col) indices."""
        return np.asarray(self.lesion.centre0_px) + self.trajectory_mm / np.asarray(self.spacing_mm)

    def label_fraction(self, k: int) -> np.ndarray:
        """(H, W) float32 lesion voxel occupancy on frame k (noise-free, deterministic)."""
        if not (0 <= k < self.n_frames):
            raise ValueError(f"k: must be within [0, {self.n_frames}), got {k!r}")
        return self._occupancy(k)[0].astype(np.float32)

    def _occupancy(self, k: int) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Lesion occupancy on frame k over the whole frame, and the window it lies in."""
        spacing = self.spacing_mm[0]
        rows, cols = self.shape
        a, b = self.lesion.semi_axes_mm
        strain = self._strain_per_mm * float(self.trajectory_mm[k, 0])
        cy = self._lesion_centre_mm[0] + self._warp_mm[k, 0]
        cx = self._lesion_centre_mm[1] + self._warp_mm[k, 1]
        reach_mm = a * (1.0 + abs(strain)) + 2.0 * spacing
        r0 = max(int(math.floor((cy - reach_mm) / spacing + (rows - 1) / 2.0)), 0)
        r1 = min(int(math.ceil((cy + reach_mm) / spacing + (rows - 1) / 2.0)) + 1, rows)
        c0 = max(int(math.floor((cx - reach_mm) / spacing + (cols - 1) / 2.0)), 0)
        c1 = min(int(math.ceil((cx + reach_mm) / spacing + (cols - 1) / 2.0)) + 1, cols)
        occupancy = np.zeros(self.shape, dtype=np.float64)
        window = (slice(r0, max(r1, r0)), slice(c0, max(c1, c0)))
        if r1 <= r0 or c1 <= c0:
            return occupancy, window
        s = TRACE_SUPERSAMPLE
        offsets = ((np.arange(s) + 0.5) / s - 0.5) * spacing
        y = self._y[r0:r1, c0:c1][:, None, :, None] + offsets[None, :, None, None]
        x = self._x[r0:r1, c0:c1][:, None, :, None] + offsets[None, None, None, :]
        occ = _lesion_occupancy(
            y - cy, x - cx, a, b, self._lesion_angle, strain,
            float(self.through_plane_mm[k]), self.slice_mm,
        )
        occupancy[window] = occ.mean(axis=(1, 3))
        return occupancy, window

    def frames(self) -> Iterator[TraceFrame]:
        """Render every frame in order (the noise sequence is drawn as it goes).

        Can be called once per instance: the noise generator is consumed.
        """
        if self._started:
            raise RuntimeError("frames() can be iterated once per TracePhantom")
        self._started = True
        coords = np.empty((2, *self.shape), dtype=np.float64)
        lesion_value = _LIVER * self.lesion.contrast
        drift = self._intensity_drift
        (p1, p2), (f1, f2) = self._drift_periods_s, self._drift_phases
        tilt = self._x / 175.0
        pad = 3  # PSF half-width in pixels (sigma is half a pixel)
        for k in range(self.n_frames):
            d_row, d_col = self._anatomy_warp_mm[k]
            np.subtract(self._row_index, self._w_px * d_row, out=coords[0])
            np.subtract(self._col_index, self._w_px * d_col, out=coords[1])
            clean = ndimage.map_coordinates(self._blurred, coords, order=1, mode="nearest")
            occupancy, (rs, cs) = self._occupancy(k)
            # Composite the lesion through the same PSF as the anatomy.
            r0, r1 = max(rs.start - pad, 0), min(rs.stop + pad, self.shape[0])
            c0, c1 = max(cs.start - pad, 0), min(cs.stop + pad, self.shape[1])
            alpha = ndimage.gaussian_filter(occupancy[r0:r1, c0:c1], _PSF_SIGMA_PX, mode="constant")
            clean[r0:r1, c0:c1] += alpha * (lesion_value - clean[r0:r1, c0:c1])
            t = self.times_s[k]
            gain = 1.0 + drift * (math.sin(2.0 * math.pi * t / p1 + f1) - math.sin(f1))
            gain_tilt = drift * (math.sin(2.0 * math.pi * t / p2 + f2) - math.sin(f2))
            clean *= self._shading * (gain + gain_tilt * tilt)
            noise = self._noise_rng.standard_normal((2, *self.shape)) * self._noise_sigma
            magnitude = np.hypot(clean + noise[0], noise[1])
            pixels = np.clip(np.rint(magnitude), 0, np.iinfo(np.uint16).max).astype(np.uint16)
            yield TraceFrame(k, pixels, occupancy.astype(np.float32))


def generate_trace_session(
    trace_times_s: np.ndarray,
    trace_mm: np.ndarray,
    geometry: str | Geometry = "mridian-8fps",
    seconds: float | None = None,
    seed: int = 1,
    lesion_diameter_mm: float | None = None,
    loop: bool = False,
    strain_per_mm: float = TRACE_STRAIN_PER_MM,
    intensity_drift: float = TRACE_INTENSITY_DRIFT,
    trace_source: str | None = None,
    excursions: object = (),
    slide: float = 0.0,
) -> PhantomSession:
    """Generate a whole trace-driven session in memory (see :class:`TracePhantom`).

    Parameters are those of :class:`TracePhantom`, plus ``trace_source`` (recorded in the
    result). ``labels`` are ``label_fraction >= 0.5`` as uint8.

    Returns
    -------
    PhantomSession
        With ``label_fraction``, ``through_plane_mm`` and ``trace_source`` set and
        ``breathing`` None.
    """
    phantom = TracePhantom(
        trace_times_s, trace_mm, geometry, seconds, seed, lesion_diameter_mm,
        loop, strain_per_mm, intensity_drift, excursions, slide,
    )
    frames = np.empty((phantom.n_frames, *phantom.shape), dtype=np.uint16)
    fraction = np.empty((phantom.n_frames, *phantom.shape), dtype=np.float32)
    for f in phantom.frames():
        frames[f.index] = f.pixels
        fraction[f.index] = f.label_fraction
    labels = (fraction >= 0.5).astype(np.uint8)
    for array in (frames, fraction, labels):
        array.setflags(write=False)
    return PhantomSession(
        frames=frames,
        labels=labels,
        times_s=phantom.times_s,
        trajectory_mm=phantom.trajectory_mm,
        spacing_mm=phantom.spacing_mm,
        fps=phantom.fps,
        geometry=phantom.geometry,
        slice_mm=phantom.slice_mm,
        seed=phantom.seed,
        breathing=None,
        lesion=phantom.lesion,
        noise_sigma=phantom.noise_sigma,
        liver_intensity=_LIVER,
        label_fraction=fraction,
        through_plane_mm=phantom.through_plane_mm,
        trace_source=trace_source,
    )
