"""Tests of trace-driven phantom sessions (maestro.phantom.TracePhantom and friends)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from hardware.trackrad import read_case
from maestro.cli import BUNDLED_SESSION, main
from maestro.phantom import (
    GEOMETRIES,
    TracePhantom,
    generate_session,
    generate_trace_session,
    trace_displacement_mm,
)
from maestro.phantom.trace import _lesion_occupancy

PERIOD_S = 4.0


def _trace(seconds: float = 30.0, lr_mm: float = 0.0, si_mm: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """A 5 Hz trace like the KIM files: SI negative on inhale (+ superior), AP positive
    (+ anterior), LR constant ``lr_mm`` plus a small sinusoid when nonzero."""
    t = np.arange(0.0, seconds + 1e-9, 0.2)
    phase = np.sin(np.pi * t / PERIOD_S) ** 2
    si = -si_mm * phase
    ap = 0.35 * si_mm * phase
    lr = lr_mm * np.sin(2.0 * np.pi * t / 7.0)
    return t, np.stack((si, ap, lr), axis=1)


@pytest.fixture(scope="module")
def session():
    t, xyz = _trace()
    return generate_trace_session(t, xyz, "mridian-4fps", seconds=12.0, seed=5, lesion_diameter_mm=25.0)


# -------------------------------------------------------------------- the bundled session


def test_generate_session_still_reproduces_the_bundled_session_bit_for_bit() -> None:
    """`maestro phantom replay_data/mridian-8fps-seed1 --geometry mridian-8fps --seconds 30
    --seed 1` must keep producing the pixels in the repository."""
    case = read_case(BUNDLED_SESSION)
    s = generate_session("mridian-8fps", seconds=30.0, seed=1)
    np.testing.assert_array_equal(case.frames, s.frames.astype(np.float32))
    assert case.labels is not None
    np.testing.assert_array_equal(case.labels, s.labels.astype(bool))
    assert s.label_fraction is None and s.through_plane_mm is None and s.trace_source is None


# --------------------------------------------------------------------------- resampling


def test_resampling_passes_through_the_samples_with_image_signs() -> None:
    t, xyz = _trace(10.0, lr_mm=2.0)
    out = trace_displacement_mm(t, xyz, t - t[0])
    np.testing.assert_allclose(out[:, 0], -xyz[:, 0], atol=1e-12)  # + superior -> + inferior
    np.testing.assert_allclose(out[:, 1], -xyz[:, 1], atol=1e-12)  # + anterior -> + posterior
    np.testing.assert_allclose(out[:, 2], xyz[:, 2], atol=1e-12)


def test_resampling_to_8_fps_is_smooth_and_close_to_the_motion() -> None:
    t, xyz = _trace(20.0)
    fine = np.arange(0.0, 19.0, 0.125)
    out = trace_displacement_mm(t, xyz, fine)
    truth = 12.0 * np.sin(np.pi * fine / PERIOD_S) ** 2
    assert np.abs(out[:, 0] - truth).max() < 0.05  # cubic spline of a smooth curve


def test_loop_plays_the_trace_back_and_forth_continuously() -> None:
    t, xyz = _trace(10.0, lr_mm=1.0)
    d = t[-1]
    times = np.array([d - 1.0, d, d + 1.0, 2 * d, 2 * d + 1.0])
    out = trace_displacement_mm(t, xyz, times, loop=True)
    direct = trace_displacement_mm(t, xyz, np.array([d - 1.0, d, d - 1.0, 0.0, 1.0]))
    np.testing.assert_allclose(out, direct, atol=1e-12)
    with pytest.raises(ValueError, match="^times_s: must lie within"):
        trace_displacement_mm(t, xyz, np.array([d + 1.0]))


@pytest.mark.parametrize(
    ("t", "xyz", "times", "name"),
    [
        (np.arange(3.0), np.zeros((3, 3)), np.zeros(1), "trace_times_s"),
        (np.array([0.0, 1.0, 1.0, 2.0]), np.zeros((4, 3)), np.zeros(1), "trace_times_s"),
        (np.arange(5.0), np.zeros((5, 2)), np.zeros(1), "trace_mm"),
        (np.arange(5.0), np.full((5, 3), np.nan), np.zeros(1), "trace_mm"),
        (np.arange(5.0), np.zeros((5, 3)), np.array([-1.0]), "times_s"),
        (np.arange(5.0), np.zeros((5, 3)), np.array([np.nan]), "times_s"),
    ],
)
def test_resampling_refuses_bad_input(t, xyz, times, name) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: must"):
        trace_displacement_mm(t, xyz, times)


# ---------------------------------------------------------------------------- occupancy


def test_occupancy_hand_computed() -> None:
    # Sphere of radius 10 mm centred in a 7 mm slice: full occupancy at the centre; at
    # rho = 0.9 the chord half-length is 10 sqrt(0.19) = 4.36 mm > 3.5: still full; at
    # rho = 0.99, 10 sqrt(0.0199) = 1.41 mm: occupancy 2.82 / 7.
    dy = np.array([0.0, 9.0, 9.9, 10.5])
    occ = _lesion_occupancy(dy, np.zeros(4), 10.0, 10.0, 0.0, 0.0, 0.0, 7.0)
    np.testing.assert_allclose(occ, [1.0, 1.0, 2.0 * 10.0 * math.sqrt(1 - 0.99**2) / 7.0, 0.0], atol=1e-12)
    # Moved 6 mm through the plane: at the centre the chord spans [-4, 16]: 7.5 of 7 -> 1;
    # moved 12 mm: [2, 22] overlaps [-3.5, 3.5] by 1.5 mm.
    occ = _lesion_occupancy(np.zeros(2), np.zeros(2), 10.0, 10.0, 0.0, 0.0, 0.0, 7.0)
    assert occ[0] == 1.0
    far = _lesion_occupancy(np.zeros(1), np.zeros(1), 10.0, 10.0, 0.0, 0.0, 12.0, 7.0)
    assert far[0] == pytest.approx(1.5 / 7.0)
    # Strain 0.1 stretches rows: a point 10.5 mm inferior is inside (10.5 / 1.1 < 10).
    stretched = _lesion_occupancy(np.array([10.5]), np.zeros(1), 10.0, 10.0, 0.0, 0.1, 0.0, 7.0)
    assert stretched[0] > 0.0


# ---------------------------------------------------------------------------- sessions


def test_session_shapes_and_ground_truth(session) -> None:
    geo = GEOMETRIES["mridian-4fps"]
    n = 48
    assert session.frames.shape == (n, *geo.shape) and session.frames.dtype == np.uint16
    assert session.labels.dtype == np.uint8
    assert session.label_fraction.dtype == np.float32
    np.testing.assert_array_equal(session.labels, session.label_fraction >= 0.5)
    assert session.breathing is None
    t, xyz = _trace()
    expected = trace_displacement_mm(t, xyz, session.times_s)[:, :2]
    np.testing.assert_allclose(session.trajectory_mm, expected - expected[0], atol=1e-12)
    assert session.trajectory_mm[:, 0].max() > 10.0  # inhale moves the lesion inferior
    assert session.trajectory_mm[:, 1].min() < -3.0  # ... and anterior


def test_partial_volume_centroid_is_the_true_centre(session) -> None:
    """The sub-pixel label's centroid follows the trace to a small fraction of a pixel."""
    rows, cols = np.mgrid[0 : session.frames.shape[1], 0 : session.frames.shape[2]]
    for k in range(0, session.n_frames, 5):
        f = session.label_fraction[k].astype(np.float64)
        centroid = np.array([(f * rows).sum(), (f * cols).sum()]) / f.sum()
        np.testing.assert_allclose(centroid, session.lesion_centre_px[k], atol=0.02)


def test_lesion_moves_with_the_trajectory_in_the_image(session) -> None:
    """Registration oracle: the rendered lesion neighbourhood moves by trajectory_mm."""
    from skimage.registration import phase_cross_correlation

    spacing = session.spacing_mm[0]
    frames = session.frames.astype(np.float64)
    c0 = np.round(session.lesion.centre0_px).astype(int)
    h = int(math.ceil((session.lesion.semi_axes_mm[0] + 12.0) / spacing))
    ref = frames[0, c0[0] - h : c0[0] + h + 1, c0[1] - h : c0[1] + h + 1]
    errors = []
    for k in range(1, session.n_frames):
        shift_px = session.trajectory_mm[k] / spacing
        r = np.round(shift_px).astype(int)
        moved = frames[k, c0[0] - h + r[0] : c0[0] + h + 1 + r[0], c0[1] - h + r[1] : c0[1] + h + 1 + r[1]]
        estimate, _, _ = phase_cross_correlation(moved, ref, upsample_factor=20, normalization=None)
        errors.append(estimate - (shift_px - r))
    errors_px = np.array(errors)
    assert np.all(np.abs(errors_px.mean(axis=0)) < 0.15)
    assert np.abs(errors_px).max() < 0.75


def test_through_plane_motion_fades_the_lesion() -> None:
    t, xyz = _trace(20.0, lr_mm=0.0, si_mm=0.5)
    xyz[:, 2] = np.linspace(0.0, 16.0, t.size)  # walks 16 mm out of the slice
    s = generate_trace_session(t, xyz, "mridian-8fps", seconds=20.0, seed=2, lesion_diameter_mm=20.0,
                               intensity_drift=0.0)
    assert s.through_plane_mm[0] == 0.0 and s.through_plane_mm[-1] > 15.0
    volume = s.label_fraction.sum(axis=(1, 2))
    assert np.all(np.diff(volume[:: 8]) <= 1e-6)  # never grows while leaving the slice
    assert volume[-1] < 0.2 * volume[0]
    # The image shows it: the lesion's contrast against the liver around it shrinks.
    frames = s.frames.astype(np.float64)
    core = ndimage.binary_erosion(s.label_fraction[0] >= 0.9)
    ring = ndimage.binary_dilation(core, iterations=8) & ~ndimage.binary_dilation(core, iterations=5)

    def contrast(k: int) -> float:
        return abs(np.median(frames[k][core]) - np.median(frames[k][ring]))

    assert contrast(s.n_frames - 1) < 0.4 * contrast(0)


def test_lesion_deforms_with_breathing() -> None:
    t, xyz = _trace(12.0, si_mm=20.0)
    ph = TracePhantom(t, xyz, "mridian-8fps", seconds=4.0, seed=3, lesion_diameter_mm=30.0,
                      strain_per_mm=0.005)
    k_in = int(np.argmax(ph.trajectory_mm[:, 0]))
    assert ph.trajectory_mm[k_in, 0] > 19.0
    rows, cols = np.mgrid[0 : ph.shape[0], 0 : ph.shape[1]]

    def second_moments(k: int) -> tuple[float, float]:
        f = ph.label_fraction(k).astype(np.float64)
        cr = (f * rows).sum() / f.sum()
        cc = (f * cols).sum() / f.sum()
        return (f * (rows - cr) ** 2).sum() / f.sum(), (f * (cols - cc) ** 2).sum() / f.sum()

    r0, c0 = second_moments(0)
    r1, c1 = second_moments(k_in)
    # Stretch 1.1 along rows and 1 / 1.1 along columns: variances scale by 1.21 and 1/1.21.
    assert r1 / r0 == pytest.approx(1.21, rel=0.05)
    assert c1 / c0 == pytest.approx(1.0 / 1.21, rel=0.05)


def test_intensity_drift_changes_the_signal_slowly() -> None:
    t, xyz = _trace(200.0, si_mm=0.0)
    kw = dict(geometry="mridian-4fps", seconds=200.0, seed=4, lesion_diameter_mm=20.0)
    drifting = TracePhantom(t, xyz, intensity_drift=0.1, **kw)
    steady = TracePhantom(t, xyz, intensity_drift=0.0, **kw)
    ratios = []
    for a, b in zip(drifting.frames(), steady.frames()):
        if a.index % 40 == 0:
            ratios.append(a.pixels.astype(np.float64).sum() / b.pixels.astype(np.float64).sum())
    ratios_a = np.array(ratios)
    assert ratios_a[0] == pytest.approx(1.0, abs=1e-3)
    assert np.abs(ratios_a - 1.0).max() > 0.02  # it drifts
    assert np.abs(np.diff(ratios_a)).max() < 0.03  # slowly: < 3 % per 10 s


def test_equal_arguments_give_equal_sessions() -> None:
    t, xyz = _trace(6.0, lr_mm=1.0)
    a = generate_trace_session(t, xyz, "mridian-4fps", seconds=3.0, seed=9)
    b = generate_trace_session(t, xyz, "mridian-4fps", seconds=3.0, seed=9)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.label_fraction, b.label_fraction)


def test_same_seed_same_anatomy_and_noise_level_as_generate_session() -> None:
    t, xyz = _trace(6.0, si_mm=0.0)
    a = generate_trace_session(t, xyz, "mridian-4fps", seconds=1.0, seed=6)
    b = generate_session("mridian-4fps", seconds=1.0, seed=6)
    assert a.noise_sigma == b.noise_sigma
    assert a.lesion.diameter_mm == b.lesion.diameter_mm and a.lesion.kind == b.lesion.kind
    # Away from the lesion, the frames show the same anatomy (within the noise).
    far = ~ndimage.binary_dilation(b.labels[0].astype(bool), iterations=6)
    diff = a.frames[0].astype(np.float64)[far] - b.frames[0].astype(np.float64)[far]
    assert abs(np.median(diff)) < 0.5 * a.noise_sigma


def test_frames_iterate_once() -> None:
    t, xyz = _trace(6.0)
    ph = TracePhantom(t, xyz, "mridian-4fps", seconds=1.0)
    list(ph.frames())
    with pytest.raises(RuntimeError, match="once"):
        list(ph.frames())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"seconds": 100.0}, "seconds"),
        ({"strain_per_mm": -0.1}, "strain_per_mm"),
        ({"strain_per_mm": math.nan}, "strain_per_mm"),
        ({"intensity_drift": 0.5}, "intensity_drift"),
        ({"intensity_drift": True}, "intensity_drift"),
        ({"geometry": "mridian-6fps"}, "geometry"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], name: str) -> None:
    t, xyz = _trace(30.0)
    with pytest.raises(ValueError, match=rf"^{name}: must"):
        TracePhantom(t, xyz, **kwargs)


def test_trace_beyond_the_rigid_range_is_refused() -> None:
    t, xyz = _trace(30.0, si_mm=60.0)
    with pytest.raises(ValueError, match="^trace_mm: SI range"):
        TracePhantom(t, xyz)


def test_looped_session_can_outlast_the_trace() -> None:
    t, xyz = _trace(10.0)
    ph = TracePhantom(t, xyz, "mridian-4fps", seconds=25.0, loop=True)
    assert ph.n_frames == 100
    step = np.abs(np.diff(ph.trajectory_mm, axis=0)).max() * ph.fps
    assert step < 30.0  # no jump at the turn-around (mm/s)


# ---------------------------------------------------------------------------------- CLI


def _write_trace(path: Path, t: np.ndarray, xyz: np.ndarray) -> Path:
    rows = np.column_stack((t, xyz[:, 2], xyz[:, 0], xyz[:, 1], np.zeros((t.size, 3))))
    np.savetxt(path, rows, fmt="%.6f")
    return path


def test_cli_phantom_with_trace_writes_a_trackrad_case(tmp_path: Path, capsys) -> None:
    t, xyz = _trace(10.0, lr_mm=1.0)
    trace = _write_trace(tmp_path / "LiverTraj_Test_robot.txt", t, xyz)
    out = tmp_path / "case1"
    assert main(["phantom", str(out), "--trace", str(trace), "--seconds", "3",
                 "--geometry", "mridian-4fps", "--seed", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    case = read_case(out)
    s = generate_trace_session(t, xyz, "mridian-4fps", seconds=3.0, seed=2)
    np.testing.assert_allclose(s.trajectory_mm, s.trajectory_mm)
    np.testing.assert_array_equal(case.frames, s.frames.astype(np.float32))
    np.testing.assert_array_equal(case.labels, s.labels.astype(bool))
    assert case.fps == 4.0


def test_cli_phantom_refuses_a_bad_trace_in_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1 2\n")
    assert main(["phantom", str(tmp_path / "c"), "--trace", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "7 columns" in err[0]
    t, xyz = _trace(10.0)
    trace = _write_trace(tmp_path / "short.txt", t, xyz)
    assert main(["phantom", str(tmp_path / "c"), "--trace", str(trace), "--seconds", "60"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seconds" in err[0] and "loop" in err[0]


# -- sudden whole-liver shifts (excursions) ----------------------------------------------------
def test_excursion_offsets_are_steps_in_the_image_axes() -> None:
    from maestro.phantom import excursion_offsets_mm

    t = np.arange(10) * 0.25  # 4 frames/s
    off = excursion_offsets_mm([(0.5, 0.75, 20.0, -4.0), (1.0, 1.0, -5.0, 0.0)], t)
    # 20 mm superior = -20 mm along rows (+ inferior); 4 mm posterior = +4 along columns.
    expected_rows = [0, 0, -20, -20, -20 + 5, 5, 5, 5, 0, 0]  # the second starts at 1.0 s and overlaps
    assert off[:, 0].tolist() == expected_rows
    assert off[:, 1].tolist() == [0, 0, 4, 4, 4, 0, 0, 0, 0, 0]
    assert not excursion_offsets_mm((), t).any()


@pytest.mark.parametrize(
    ("excursions", "rule"),
    [
        ([(0.0, 1.0, 5.0, 0.0)], "start_s and duration_s must be > 0"),
        ([(1.0, -1.0, 5.0, 0.0)], "start_s and duration_s must be > 0"),
        ([(1.0, 1.0, 61.0, 0.0)], "at most 60 mm"),
        ([(1.0, 1.0, 5.0)], "4 finite numbers"),
        ([(1.0, 1.0, math.nan, 0.0)], "4 finite numbers"),
        (5, "must be a sequence"),
    ],
)
def test_bad_excursions_are_refused(excursions: object, rule: str) -> None:
    t, xyz = _trace(12.0)
    with pytest.raises(ValueError, match=rule):
        TracePhantom(t, xyz, "mridian-4fps", seconds=4.0, excursions=excursions)


def test_an_excursion_moves_anatomy_and_lesion_together() -> None:
    t, xyz = _trace(12.0, si_mm=6.0)
    kw = dict(geometry="mridian-4fps", seconds=6.0, seed=2, lesion_diameter_mm=30.0)
    plain = TracePhantom(t, xyz, **kw)
    jumped = TracePhantom(t, xyz, excursions=[(2.0, 1.0, 21.0, 0.0)], **kw)
    step = jumped.trajectory_mm - plain.trajectory_mm
    inside = (plain.times_s >= 2.0) & (plain.times_s < 3.0)
    assert np.allclose(step[inside], (-21.0, 0.0)) and not step[~inside].any()
    # The whole frame moved: the jumped frame is the plain one 6 rows (21 mm at 3.5 mm) up,
    # away from the borders, up to noise.
    k = int(np.flatnonzero(inside)[0])
    a = next(f for f in plain.frames() if f.index == k).pixels.astype(float)
    b = next(f for f in jumped.frames() if f.index == k).pixels.astype(float)
    inner = (slice(20, 80), slice(20, 80))
    moved = b[14:74, 20:80]
    assert np.corrcoef(moved.ravel(), a[inner].ravel())[0, 1] > 0.9
    assert np.corrcoef(b[inner].ravel(), a[inner].ravel())[0, 1] < np.corrcoef(moved.ravel(), a[inner].ravel())[0, 1]


def test_cli_phantom_refuses_an_excursion_without_a_trace(tmp_path: Path, capsys) -> None:
    assert main(["phantom", str(tmp_path / "c"), "--excursion-mm", "30"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--excursion-mm" in err[0] and "needs --trace" in err[0]
    assert not (tmp_path / "c").exists()


def test_a_cough_beyond_the_window_holds_the_beam_and_gating_resumes(tmp_path: Path, capsys, shared_data: Path) -> None:
    # End to end through the files and the session: a real KIM trace with two 30 mm
    # excursions (twice the search window) written by `maestro phantom`, replayed by
    # `maestro replay`. The beam must never be on while the tracked position is wrong, must
    # be held while the target is away, and gating must resume after each return.
    import csv

    trace = shared_data / "motion" / "kim-liver" / "LiverTraj_RegularBreathing70s_robot.txt"
    case = tmp_path / "cough"
    assert main(["phantom", str(case), "--trace", str(trace), "--seconds", "30", "--geometry", "mridian-8fps",
                 "--seed", "7", "--lesion-mm", "30", "--excursion-mm", "30"]) == 0
    rec = tmp_path / "rec"
    assert main(["replay", str(case), "--out", str(rec), "--margin-mm", "5"]) == 0
    capsys.readouterr()
    with (rec / "frames.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 240
    true_si = np.array([float(r["true_row_mm"]) for r in rows])
    error = np.array([float(r["error_mm"]) if r["error_mm"] not in ("", "nan") else np.inf for r in rows])
    on = np.array([r["beam"] == "on" for r in rows])
    away = np.abs(true_si) > 20.0  # only the excursions move the target this far
    assert 20 <= away.sum() <= 26  # 2 x 1.5 s at 8 frames/s
    assert not on[away].any()
    assert (error[on] <= 2.0).all()  # never on a wrong position
    returns = np.flatnonzero(away[:-1] & ~away[1:]) + 1
    assert len(returns) == 2
    for k in returns:
        assert on[k : k + 24].any(), f"gating did not resume within 3 s of the return at frame {k}"
