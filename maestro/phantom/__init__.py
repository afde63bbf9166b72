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

The package
-----------
:mod:`~maestro.phantom.geometry` (cine modes, argument checks),
:mod:`~maestro.phantom.breathing`, :mod:`~maestro.phantom.anatomy`,
:mod:`~maestro.phantom.acquisition` (the PSF, the cine grid, the warp of the anatomy
and the noise step every generator ends with), then the generators: :mod:`~maestro.phantom.session` (breathing
model), :mod:`~maestro.phantom.trace` (recorded traces) and :mod:`~maestro.phantom.motion`
(the motion field of a real cine series; imported on its own, as it needs OpenCV).
"""

from maestro.phantom.anatomy import LESION_DIAMETER_DRAW_MM, LesionParameters
from maestro.phantom.breathing import CYCLE_AMPLITUDE_RANGE_MM, CYCLE_PERIOD_RANGE_S, BreathingParameters, breathing_displacement_mm
from maestro.phantom.geometry import GEOMETRIES, LESION_DIAMETER_RANGE_MM, MAX_SECONDS, Geometry
from maestro.phantom.session import PhantomSession, generate_session
from maestro.phantom.trace import (
    EXCURSION_AT,
    EXCURSION_MAX_MM,
    EXCURSION_S,
    SLIDE_MAX,
    TRACE_INTENSITY_DRIFT,
    TRACE_STRAIN_PER_MM,
    TraceFrame,
    TracePhantom,
    excursion_offsets_mm,
    excursions_for,
    generate_trace_session,
    trace_displacement_mm,
)

__all__ = [
    "BreathingParameters",
    "CYCLE_AMPLITUDE_RANGE_MM",
    "CYCLE_PERIOD_RANGE_S",
    "EXCURSION_AT",
    "EXCURSION_MAX_MM",
    "EXCURSION_S",
    "GEOMETRIES",
    "Geometry",
    "LESION_DIAMETER_DRAW_MM",
    "LESION_DIAMETER_RANGE_MM",
    "LesionParameters",
    "MAX_SECONDS",
    "PhantomSession",
    "SLIDE_MAX",
    "TRACE_INTENSITY_DRIFT",
    "TRACE_STRAIN_PER_MM",
    "TraceFrame",
    "TracePhantom",
    "breathing_displacement_mm",
    "excursion_offsets_mm",
    "excursions_for",
    "generate_session",
    "generate_trace_session",
    "trace_displacement_mm",
]
