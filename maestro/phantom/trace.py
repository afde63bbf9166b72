"""Sessions driven by a recorded motion trace: :class:`TracePhantom`, with through-plane motion,
lesion deformation, sliding, excursions and intensity drift."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from maestro.phantom.acquisition import PSF_SIGMA_PX, prepare_acquisition, render_frame
from maestro.phantom.anatomy import LIVER, build_anatomy
from maestro.phantom.breathing import AP_BOUND_MM, SI_BOUND_MM
from maestro.phantom.geometry import Geometry, check_session_arguments
from maestro.phantom.session import PhantomSession

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
    # The lesion is placed where the anatomy moves rigidly over +-SI_BOUND_MM.
    if np.abs(centred[:, 0]).max() > SI_BOUND_MM or np.abs(centred[:, 1]).max() > AP_BOUND_MM:
        raise ValueError(
            f"trace_mm: SI range must be within {2 * SI_BOUND_MM:g} mm and AP range within "
            f"{2 * AP_BOUND_MM:g} mm peak to peak"
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
        geo, seconds, seed, lesion_diameter_mm = check_session_arguments(
            geometry, seconds, seed, lesion_diameter_mm
        )
        if not loop and seconds > duration + 1e-9:
            raise ValueError(
                f"seconds: must be at most the trace's {duration:g} s unless loop is set, "
                f"got {seconds!r}"
            )
        # The static model holds liver where the lesion is (contrast 1): the lesion is
        # composited per frame, deformed and faded, on top of the warped anatomy.
        model = build_anatomy(seed, lesion_diameter_mm, painted_lesion_contrast=1.0)
        lesion_centre, lesion, lesion_angle = model.lesion_centre, model.lesion, model.lesion_angle
        noise_rng, drift_rng = model.noise_rng, model.motion_rng
        self._noise_sigma = LIVER / float(noise_rng.uniform(12.0, 18.0))
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

        self._blurred, grid = prepare_acquisition(model, geo)
        self._grid = grid
        self._y, self._x, self._shading = grid[0], grid[1], grid[5]
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
        lesion_value = LIVER * self.lesion.contrast
        drift = self._intensity_drift
        (p1, p2), (f1, f2) = self._drift_periods_s, self._drift_phases
        tilt = self._x / 175.0
        pad = 3  # PSF half-width in pixels (sigma is half a pixel)
        for k in range(self.n_frames):
            d_row, d_col = self._anatomy_warp_mm[k]
            occupancy, (rs, cs) = self._occupancy(k)
            # The lesion goes through the same PSF as the anatomy.
            r0, r1 = max(rs.start - pad, 0), min(rs.stop + pad, self.shape[0])
            c0, c1 = max(cs.start - pad, 0), min(cs.stop + pad, self.shape[1])
            alpha = ndimage.gaussian_filter(occupancy[r0:r1, c0:c1], PSF_SIGMA_PX, mode="constant")
            t = self.times_s[k]
            gain = 1.0 + drift * (math.sin(2.0 * math.pi * t / p1 + f1) - math.sin(f1))
            gain_tilt = drift * (math.sin(2.0 * math.pi * t / p2 + f2) - math.sin(f2))
            pixels = render_frame(self._blurred, self._grid, d_row, d_col, coords, self._shading * (gain + gain_tilt * tilt),
                                  self._noise_rng, self._noise_sigma, ((slice(r0, r1), slice(c0, c1)), alpha, lesion_value))
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
        liver_intensity=LIVER,
        label_fraction=fraction,
        through_plane_mm=phantom.through_plane_mm,
        trace_source=trace_source,
    )
