"""Tests of the cine-MR phantom: geometry, determinism, ground truth, motion, noise."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from matplotlib.path import Path
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from maestro.phantom import (
    CYCLE_AMPLITUDE_RANGE_MM,
    CYCLE_PERIOD_RANGE_S,
    GEOMETRIES,
    LESION_DIAMETER_DRAW_MM,
    BreathingParameters,
    Geometry,
    PhantomSession,
    breathing_displacement_mm,
    generate_session,
)

SECONDS = 8.0  # covers at least one full breathing cycle (periods are <= 5 s)


def _liver_ring(label: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Pixels about 2.5-7 mm outside the lesion: liver (the phantom keeps the lesion at
    least 10 mm inside the liver, and clear of vessels where the anatomy allows)."""
    inner = max(1, round(3.0 / spacing_mm))
    outer = inner + max(1, round(5.0 / spacing_mm))
    return ndimage.binary_dilation(label, iterations=outer) & ~ndimage.binary_dilation(
        label, iterations=inner
    )


@pytest.fixture(scope="module", params=sorted(GEOMETRIES))
def session(request: pytest.FixtureRequest) -> PhantomSession:
    return generate_session(request.param, seconds=SECONDS, seed=11)


@pytest.fixture(scope="module")
def session_8fps() -> PhantomSession:
    return generate_session("mridian-8fps", seconds=SECONDS, seed=11)


# ------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize(
    ("name", "fps", "spacing_mm", "shape"),
    [("mridian-8fps", 8.0, 2.4, (144, 144)), ("mridian-4fps", 4.0, 3.5, (100, 100))],
)
def test_geometries_match_the_mridian_cine_modes(
    name: str, fps: float, spacing_mm: float, shape: tuple[int, int]
) -> None:
    geo = GEOMETRIES[name]
    assert (geo.name, geo.fps, geo.spacing_mm, geo.shape, geo.slice_mm) == (
        name, fps, spacing_mm, shape, 7.0,
    )


def test_shapes_dtypes_and_metadata(session: PhantomSession) -> None:
    geo = GEOMETRIES[session.geometry]
    n = int(math.floor(SECONDS * geo.fps))
    assert session.frames.shape == (n, *geo.shape)
    assert session.labels.shape == (n, *geo.shape)
    assert session.frames.dtype == np.uint16
    assert session.labels.dtype == np.uint8
    assert set(np.unique(session.labels)) <= {0, 1}
    assert session.trajectory_mm.shape == (n, 2)
    assert session.trajectory_mm.dtype == np.float64
    np.testing.assert_allclose(session.times_s, np.arange(n) / geo.fps)
    assert session.spacing_mm == (geo.spacing_mm, geo.spacing_mm)
    assert session.fps == geo.fps
    assert session.slice_mm == geo.slice_mm
    assert session.seed == 11
    assert session.n_frames == n
    assert session.lesion_diameter_mm == session.lesion.diameter_mm


def test_arrays_are_read_only(session_8fps: PhantomSession) -> None:
    for array in (session_8fps.frames, session_8fps.labels, session_8fps.trajectory_mm):
        with pytest.raises(ValueError):
            array[0] = 0


def test_intensities_stay_in_a_modest_range(session: PhantomSession) -> None:
    """The bundled session is compressed MetaImage: no inflated bit depth."""
    assert 200 <= int(session.frames.max()) < 1000
    assert int(session.frames.min()) < 5  # Rayleigh noise in the air reaches ~0


def test_one_frame_is_made_for_a_short_session() -> None:
    s = generate_session("mridian-4fps", seconds=0.25, seed=0)
    assert s.n_frames == 1
    np.testing.assert_array_equal(s.trajectory_mm, [[0.0, 0.0]])


def test_custom_geometry() -> None:
    geo = Geometry("custom", fps=5.0, spacing_mm=3.0, shape=(64, 80), slice_mm=5.0)
    s = generate_session(geo, seconds=1.0, seed=0)
    assert s.frames.shape == (5, 64, 80)
    assert s.geometry == "custom"
    assert s.labels.any(axis=(1, 2)).all()


# --------------------------------------------------------------------------- determinism


def test_same_arguments_give_bit_identical_sessions() -> None:
    a = generate_session("mridian-4fps", seconds=1.0, seed=5)
    b = generate_session("mridian-4fps", seconds=1.0, seed=5)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.trajectory_mm, b.trajectory_mm)
    assert a.breathing == b.breathing
    assert a.lesion == b.lesion
    assert a.noise_sigma == b.noise_sigma


def test_different_seed_gives_a_different_session() -> None:
    a = generate_session("mridian-4fps", seconds=1.0, seed=5)
    b = generate_session("mridian-4fps", seconds=1.0, seed=6)
    assert not np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.trajectory_mm, b.trajectory_mm)
    assert a.lesion != b.lesion


def test_global_random_state_is_neither_used_nor_changed() -> None:
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    a = generate_session("mridian-4fps", seconds=1.0, seed=5)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.random.seed(123)
    b = generate_session("mridian-4fps", seconds=1.0, seed=5)
    np.testing.assert_array_equal(a.frames, b.frames)


def test_a_shorter_session_is_a_prefix_of_a_longer_one(session_8fps: PhantomSession) -> None:
    short = generate_session("mridian-8fps", seconds=3.0, seed=11)
    n = short.n_frames
    np.testing.assert_array_equal(short.frames, session_8fps.frames[:n])
    np.testing.assert_array_equal(short.labels, session_8fps.labels[:n])
    np.testing.assert_array_equal(short.trajectory_mm, session_8fps.trajectory_mm[:n])


def test_one_seed_is_one_patient_in_both_geometries() -> None:
    a = generate_session("mridian-8fps", seconds=2.0, seed=3)
    b = generate_session("mridian-4fps", seconds=2.0, seed=3)
    assert a.breathing == b.breathing
    assert dataclasses.replace(a.lesion, centre0_px=(0.0, 0.0)) == dataclasses.replace(
        b.lesion, centre0_px=(0.0, 0.0)
    )
    # Same physical position of the lesion (pixel centres are symmetric about the middle).
    centre_mm = [
        (np.asarray(s.lesion.centre0_px) - (np.asarray(s.frames.shape[1:]) - 1) / 2)
        * s.spacing_mm[0]
        for s in (a, b)
    ]
    np.testing.assert_allclose(centre_mm[0], centre_mm[1], atol=1e-9)
    np.testing.assert_allclose(a.trajectory_mm[::2], b.trajectory_mm, atol=1e-12)


# -------------------------------------------------------------------------- ground truth


def test_labels_are_never_empty(session: PhantomSession) -> None:
    assert session.labels.any(axis=(1, 2)).all()


def test_label_centroid_follows_the_trajectory(session: PhantomSession) -> None:
    spacing = session.spacing_mm[0]
    centroids = np.array([ndimage.center_of_mass(label) for label in session.labels])
    np.testing.assert_allclose(centroids, session.lesion_centre_px, atol=0.5)
    np.testing.assert_allclose(
        centroids - centroids[0], session.trajectory_mm / spacing, atol=0.5
    )


def test_labels_match_a_polygon_oracle(session: PhantomSession) -> None:
    """Labels mark pixel centres inside the documented ellipse (independent oracle)."""
    a, b = session.lesion.semi_axes_mm
    angle = math.radians(session.lesion.angle_deg)
    spacing = session.spacing_mm[0]
    e_a = np.array([math.cos(angle), math.sin(angle)])  # (row, col) of the a axis
    e_b = np.array([-math.sin(angle), math.cos(angle)])
    t = np.linspace(0.0, 2.0 * np.pi, 2000, endpoint=False)[:, None]
    outline_px = (a * np.cos(t) * e_a + b * np.sin(t) * e_b) / spacing
    reach = int(math.ceil(a / spacing)) + 2  # the lesion lies within this many pixels
    mismatches = 0
    for k in range(0, session.n_frames, 3):
        centre = session.lesion_centre_px[k]
        r0, c0 = np.round(centre).astype(int) - reach
        rows, cols = np.mgrid[r0 : r0 + 2 * reach + 1, c0 : c0 + 2 * reach + 1]
        points = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
        oracle = Path(centre + outline_px).contains_points(points).reshape(rows.shape)
        label = session.labels[k].astype(bool)
        window = label[r0 : r0 + 2 * reach + 1, c0 : c0 + 2 * reach + 1]
        assert np.count_nonzero(window) == np.count_nonzero(label)  # nothing outside
        mismatches += int(np.count_nonzero(oracle != window))
    # The 2000-gon is inside the ellipse by < 1e-3 mm: only a centre that close can differ.
    assert mismatches <= 1


@pytest.mark.parametrize("seed", range(6))
def test_drawn_lesion_diameter_is_in_range(seed: int) -> None:
    s = generate_session("mridian-4fps", seconds=0.5, seed=seed)
    lo, hi = LESION_DIAMETER_DRAW_MM
    assert lo <= s.lesion_diameter_mm <= hi
    a, b = s.lesion.semi_axes_mm
    assert a >= b > 0
    assert math.isclose(2.0 * math.sqrt(a * b), s.lesion_diameter_mm)
    assert s.lesion.kind in {"hypointense", "hyperintense"}
    assert (s.lesion.contrast > 1.0) == (s.lesion.kind == "hyperintense")


@pytest.mark.parametrize(
    ("geometry", "diameter_mm"),
    [
        ("mridian-8fps", 10.0),
        ("mridian-8fps", 40.0),
        ("mridian-4fps", 10.0),
        ("mridian-4fps", 27.5),
    ],
)
def test_label_area_matches_the_requested_diameter(geometry: str, diameter_mm: float) -> None:
    s = generate_session(geometry, seconds=5.0, seed=7, lesion_diameter_mm=diameter_mm)
    assert s.lesion_diameter_mm == diameter_mm
    assert s.labels.any(axis=(1, 2)).all()
    pixel_area_mm2 = s.spacing_mm[0] * s.spacing_mm[1]
    mean_area_mm2 = s.labels.sum(axis=(1, 2)).mean() * pixel_area_mm2
    expected_mm2 = math.pi * diameter_mm**2 / 4.0
    # Sub-pixel positions vary with the motion, so the mean count is close to the area.
    assert abs(mean_area_mm2 - expected_mm2) <= 0.12 * expected_mm2


def test_image_motion_matches_the_trajectory(session: PhantomSession) -> None:
    """The rendered lesion neighbourhood moves by trajectory_mm (registration oracle)."""
    spacing = session.spacing_mm[0]
    frames = session.frames.astype(np.float64)
    c0 = np.round(session.lesion.centre0_px).astype(int)
    h = int(math.ceil((session.lesion.semi_axes_mm[0] + 12.0) / spacing))
    ref = frames[0, c0[0] - h : c0[0] + h + 1, c0[1] - h : c0[1] + h + 1]
    errors = []
    for k in range(1, session.n_frames):
        shift_px = session.trajectory_mm[k] / spacing
        r = np.round(shift_px).astype(int)
        moved = frames[
            k, c0[0] - h + r[0] : c0[0] + h + 1 + r[0], c0[1] - h + r[1] : c0[1] + h + 1 + r[1]
        ]
        estimate, _, _ = phase_cross_correlation(
            moved, ref, upsample_factor=20, normalization=None
        )
        errors.append(estimate - (shift_px - r))
    # Per frame the estimate is noise-limited; over the session it must be unbiased.
    errors_px = np.array(errors)
    assert np.all(np.abs(errors_px.mean(axis=0)) < 0.1)
    assert np.sqrt(np.mean(errors_px**2)) < 0.3
    assert np.abs(errors_px).max() < 0.75


def test_lesion_contrast_shows_inside_the_label(session: PhantomSession) -> None:
    frames = session.frames.astype(np.float64)
    for frame, label in zip(frames, session.labels.astype(bool)):
        core = ndimage.binary_erosion(label) if label.sum() > 12 else label  # skip the edge
        inside = np.median(frame[core])
        around = np.median(frame[_liver_ring(label, session.spacing_mm[0])])
        if session.lesion.kind == "hyperintense":
            assert inside > 1.2 * around
        else:
            assert inside < 0.85 * around


# ----------------------------------------------------------------------------- breathing


def test_frame_0_is_at_end_exhale(session: PhantomSession) -> None:
    np.testing.assert_array_equal(session.trajectory_mm[0], [0.0, 0.0])
    d0 = breathing_displacement_mm(session.breathing, np.array([0.0]))
    assert d0[0, 0] == 0.0


def test_breathing_parameters_are_in_range(session: PhantomSession) -> None:
    b = session.breathing
    assert b.n in (2, 3)
    assert b.duration_s >= SECONDS
    assert all(CYCLE_PERIOD_RANGE_S[0] <= p <= CYCLE_PERIOD_RANGE_S[1] for p in b.cycle_periods_s)
    amplitudes = b.cycle_amplitudes_mm
    assert all(CYCLE_AMPLITUDE_RANGE_MM[0] <= a <= CYCLE_AMPLITUDE_RANGE_MM[1] for a in amplitudes)
    assert 0.3 <= b.ap_ratio <= 0.5
    # Irregular: cycles differ from each other.
    assert len(set(b.cycle_periods_s)) == len(b.cycle_periods_s)
    assert len(set(amplitudes)) == len(amplitudes)


def test_si_peak_to_peak_is_in_range(session: PhantomSession) -> None:
    rows_mm, cols_mm = session.trajectory_mm.T
    si_ptp = float(np.ptp(rows_mm))
    # One full cycle lies in the session; drift is bounded by 2 * (1.5 + 0.6) mm.
    assert 0.95 * CYCLE_AMPLITUDE_RANGE_MM[0] - 0.5 <= si_ptp <= CYCLE_AMPLITUDE_RANGE_MM[1] + 4.2
    # AP moves anteriorly on inhalation by 30-50 % of SI (plus drift and hysteresis).
    assert np.corrcoef(rows_mm, cols_mm)[0, 1] < -0.8
    assert 0.2 <= np.ptp(cols_mm) / si_ptp <= 0.6


def test_each_cycle_peaks_at_its_amplitude(session: PhantomSession) -> None:
    b = session.breathing
    starts = np.concatenate(([0.0], np.cumsum(b.cycle_periods_s)[:-1]))
    mids = starts + 0.5 * np.asarray(b.cycle_periods_s)
    d_start = breathing_displacement_mm(b, starts)
    d_mid = breathing_displacement_mm(b, mids)
    # Over half a cycle (< 2.5 s) the drift changes by well under 0.5 mm.
    np.testing.assert_allclose(d_mid[:, 0] - d_start[:, 0], b.cycle_amplitudes_mm, atol=0.5)


def test_motion_is_smooth_frame_to_frame(session: PhantomSession) -> None:
    step = np.diff(session.trajectory_mm, axis=0) * session.fps  # mm/s
    # Fastest Lujan slope: 20 mm * pi / 3.5 s * 1.55 (n = 3) is about 28 mm/s.
    assert np.abs(step).max() < 30.0
    accel = np.diff(session.trajectory_mm, n=2, axis=0) * session.fps**2  # mm/s^2
    assert np.abs(accel).max() < 120.0
    # No jumps: the largest step is a small multiple of the typical one.
    speed = np.hypot(*step.T)
    assert speed.max() < 6.0 * np.sqrt(np.mean(speed**2))


def test_breathing_hand_computed_case() -> None:
    """One cycle, no drift, n = 1: SI = A sin^2(pi t / tau), AP lags and is negative."""
    b = BreathingParameters(
        n=1,
        mean_period_s=4.0,
        mean_amplitude_mm=10.0,
        ap_ratio=0.4,
        ap_lag_cycles=0.05,
        cycle_periods_s=(4.0,),
        cycle_amplitudes_mm=(10.0,),
        drift_amplitudes_mm=(0.0, 0.0, 0.0, 0.0),
        drift_periods_s=(60.0, 30.0, 60.0, 30.0),
        drift_phases_rad=(0.0, 0.0, 0.0, 0.0),
    )
    d = breathing_displacement_mm(b, np.array([0.0, 1.0, 2.0, 4.0]))
    np.testing.assert_allclose(d[:, 0], [0.0, 5.0, 10.0, 0.0], atol=1e-12)
    expected_ap = -0.4 * 10.0 * np.sin(np.pi * (np.array([0.0, 0.25, 0.5, 1.0]) - 0.05)) ** 2
    np.testing.assert_allclose(d[:, 1], expected_ap, atol=1e-12)


def test_breathing_drift_is_zero_at_start_and_bounded() -> None:
    b = BreathingParameters(
        n=2,
        mean_period_s=4.0,
        mean_amplitude_mm=10.0,
        ap_ratio=0.4,
        ap_lag_cycles=0.0,
        cycle_periods_s=(4.0,) * 30,
        cycle_amplitudes_mm=(0.0,) * 30,  # drift only
        drift_amplitudes_mm=(1.0, 0.5, 0.25, 0.1),
        drift_periods_s=(100.0, 30.0, 80.0, 40.0),
        drift_phases_rad=(1.0, 2.0, 3.0, 4.0),
    )
    t = np.linspace(0.0, 120.0, 1201)
    d = breathing_displacement_mm(b, t)
    np.testing.assert_array_equal(d[0], [0.0, 0.0])
    assert np.abs(d[:, 0]).max() <= 2 * 1.5
    assert np.abs(d[:, 1]).max() <= 2 * 0.35
    assert np.abs(d[:, 0]).max() > 0.5  # it does drift


@pytest.mark.parametrize(
    "times", [np.array([-0.1]), np.array([1e6]), np.array([np.nan]), np.zeros((2, 2))]
)
def test_breathing_displacement_rejects_bad_times(
    session_8fps: PhantomSession, times: np.ndarray
) -> None:
    with pytest.raises(ValueError, match="times_s"):
        breathing_displacement_mm(session_8fps.breathing, times)


# ------------------------------------------------------------------------ image content


def _air_sigma(session: PhantomSession) -> float:
    """Noise sigma from the air in front of the patient (Rayleigh mean = sigma sqrt(pi/2))."""
    air = session.frames[:, :, :4].astype(np.float64)
    return float(air.mean() / math.sqrt(math.pi / 2.0))


def test_noise_is_rician_with_the_reported_sigma(session: PhantomSession) -> None:
    assert _air_sigma(session) == pytest.approx(session.noise_sigma, rel=0.08)


def test_liver_snr_is_like_0_35_T(session: PhantomSession) -> None:
    assert 10.0 <= session.liver_intensity / session.noise_sigma <= 20.0
    # Measured the way MR SNR is usually measured: liver level (median of a ring around
    # the lesion, which ignores the odd vessel) over the noise sigma found in the air.
    sigma = _air_sigma(session)
    frames = session.frames.astype(np.float64)
    snr = []
    for frame, label in zip(frames, session.labels.astype(bool)):
        snr.append(np.median(frame[_liver_ring(label, session.spacing_mm[0])]) / sigma)
    assert 10.0 <= np.median(snr) <= 21.0


def test_contrast_is_bssfp_like(session_8fps: PhantomSession) -> None:
    """Lung dark, liver intermediate, the brightest tissue (fluid, vessels, fat) bright."""
    frame = session_8fps.frames[0].astype(np.float64)
    label = session_8fps.labels[0].astype(bool)
    liver = np.median(frame[_liver_ring(label, session_8fps.spacing_mm[0])])
    # Lung: the top rows inside the body (between the body walls) are lung.
    cols = frame.shape[1]
    lung = np.median(frame[:10, int(0.45 * cols) : int(0.55 * cols)])
    assert lung < 0.3 * liver
    assert np.percentile(frame, 99.5) > 2.0 * liver


def test_body_wall_moves_little(session_8fps: PhantomSession) -> None:
    s = session_8fps
    k_inhale = int(np.argmax(s.trajectory_mm[:, 0]))
    assert s.trajectory_mm[k_inhale, 0] > 7.0  # the liver moved several pixels

    def anterior_skin_col(frame: np.ndarray, row: int) -> int:
        profile = ndimage.uniform_filter1d(frame[row - 3 : row + 4].astype(np.float64).mean(0), 3)
        return int(np.argmax(profile > 100.0))

    row = int(round(s.lesion.centre0_px[0]))
    skin_exhale = anterior_skin_col(s.frames[0], row)
    assert abs(anterior_skin_col(s.frames[k_inhale], row) - skin_exhale) <= 1


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"geometry": "mridian-6fps"}, "geometry"),
        ({"geometry": 8}, "geometry"),
        ({"geometry": Geometry("g", 0.0, 2.4, (144, 144), 7.0)}, "geometry.fps"),
        ({"geometry": Geometry("g", 8.0, -1.0, (144, 144), 7.0)}, "geometry.spacing_mm"),
        ({"geometry": Geometry("g", 8.0, 2.4, (200, 200), 7.0)}, "geometry.shape"),
        ({"seconds": 0.0}, "seconds"),
        ({"seconds": -5.0}, "seconds"),
        ({"seconds": math.nan}, "seconds"),
        ({"seconds": math.inf}, "seconds"),
        ({"seconds": 1e5}, "seconds"),
        ({"seconds": 0.05}, "seconds"),
        ({"seconds": "10"}, "seconds"),
        ({"seconds": True}, "seconds"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"lesion_diameter_mm": 5.0}, "lesion_diameter_mm"),
        ({"lesion_diameter_mm": 45.0}, "lesion_diameter_mm"),
        ({"lesion_diameter_mm": math.nan}, "lesion_diameter_mm"),
        ({"lesion_diameter_mm": "20"}, "lesion_diameter_mm"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}: must"):
        generate_session(**kwargs)


def test_numpy_integer_seed_is_accepted() -> None:
    a = generate_session("mridian-4fps", seconds=0.5, seed=np.int64(4))
    b = generate_session("mridian-4fps", seconds=0.5, seed=4)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert type(a.seed) is int


def test_render_frame_is_warp_then_lesion_then_intensity_then_noise() -> None:
    """The one render function against its steps done by hand, noise included (same seed)."""
    from maestro.phantom.acquisition import prepare_acquisition, render_frame, warped_anatomy
    from maestro.phantom.anatomy import build_anatomy
    from maestro.phantom.geometry import GEOMETRIES

    geo = GEOMETRIES["mridian-4fps"]
    model = build_anatomy(5, None)
    blurred, grid = prepare_acquisition(model, geo)
    coords = np.empty((2, *geo.shape))
    intensity = grid[5] * 1.1
    window = (slice(40, 44), slice(50, 53))
    alpha = np.linspace(0.0, 1.0, 12).reshape(4, 3)
    got = render_frame(blurred, grid, 3.0, -1.5, coords, intensity, np.random.default_rng(9), 2.0, (window, alpha, 250.0))

    clean = warped_anatomy(blurred, grid, 3.0, -1.5, coords)
    clean[40:44, 50:53] = (1.0 - alpha) * clean[40:44, 50:53] + alpha * 250.0
    clean = clean * intensity
    noise = np.random.default_rng(9).standard_normal((2, *geo.shape)) * 2.0
    want = np.clip(np.rint(np.hypot(clean + noise[0], noise[1])), 0, 65535).astype(np.uint16)
    assert got.dtype == np.uint16 and got.shape == geo.shape
    # The hand-made compositing rounds differently in the last bit: at most 1 count apart.
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert (got[40:44, 52] > got[40:44, 50]).all()  # alpha 1 at the right: the lesion's 250
    no_lesion = render_frame(blurred, grid, 3.0, -1.5, coords, intensity, np.random.default_rng(9), 2.0)
    np.testing.assert_array_equal(no_lesion[:40], got[:40])  # only the window differs
