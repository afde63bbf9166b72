"""Tests of the phantom moved by a real series' motion (maestro.phantom.motion).

The synthetic tests apply a known translation or affine field to a synthetic image and
compare the ground truth with analytic values and with naive references (a per-pixel
loop, shapely's exact areas). The tests on the real liver series
(``../shared/data/cine/liver-3T-volunteer-KS81``) skip when ``../shared`` is absent.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely import affinity

from hardware.trackrad import read_case
from maestro.cli import main
from maestro.phantom.motion import (
    KS81_LIVER_POLYGON_PX,
    MIN_JACOBIAN,
    MOTION_CASES,
    MotionField,
    MotionLesion,
    MotionPhantom,
    estimate_motion_field,
    jacobian_determinant,
    series_field,
)

LIVER = "cine/liver-3T-volunteer-KS81"
SRC_SPACING = (2.0, 2.0)
SRC_SHAPE = (96, 80)


# -------------------------------------------------------------------- synthetic references


def _synthetic_series(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A smooth textured 'tissue' image (so the lesion's placement checks pass), n copies."""
    rng = np.random.default_rng(0)
    from scipy import ndimage

    tex = ndimage.gaussian_filter(rng.standard_normal(SRC_SHAPE), 3.0)
    img = 400.0 + 60.0 * tex / tex.std()
    return np.repeat(img[None].astype(np.float32), n, axis=0), np.arange(n) * 0.5


def _field(disp_fn, n: int = 3) -> MotionField:
    """Field k = disp_fn(k, rows, cols), (row, col) source px; frame 0 is 0."""
    rows, cols = np.mgrid[0:SRC_SHAPE[0], 0:SRC_SHAPE[1]].astype(np.float64)
    u = np.zeros((n, *SRC_SHAPE, 2), dtype=np.float32)
    for k in range(1, n):
        u[k] = disp_fn(k, rows, cols)
    return MotionField(u, np.arange(n) * 0.5, SRC_SPACING)


def _out_px(phantom: MotionPhantom, src_row_px: np.ndarray, src_col_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel coordinates -> output pixel coordinates (the grids share their centre)."""
    rows, cols = phantom.shape
    s = SRC_SPACING[0] / phantom.spacing_mm[0]
    return ((src_row_px - (SRC_SHAPE[0] - 1) / 2.0) * s + (rows - 1) / 2.0,
            (src_col_px - (SRC_SHAPE[1] - 1) / 2.0) * s + (cols - 1) / 2.0)


def _naive_fraction(phantom: MotionPhantom, k: int, u_fn) -> np.ndarray:
    """Per-pixel loop: the share of 5 x 5 sub-samples p whose p + u(p) is in the ellipse."""
    rows, cols = phantom.shape
    out_sp, src_sp = phantom.spacing_mm[0], SRC_SPACING[0]
    les = phantom.lesion
    frac = np.zeros(phantom.shape)
    for i in range(rows):
        for j in range(cols):
            hits = 0
            for si in range(5):
                for sj in range(5):
                    r = (i - (rows - 1) / 2 + (si + 0.5) / 5 - 0.5) * out_sp / src_sp + (SRC_SHAPE[0] - 1) / 2
                    c = (j - (cols - 1) / 2 + (sj + 0.5) / 5 - 0.5) * out_sp / src_sp + (SRC_SHAPE[1] - 1) / 2
                    ur, uc = u_fn(r, c)
                    hits += bool(les.inside(np.array((r + ur) * src_sp), np.array((c + uc) * src_sp)))
            frac[i, j] = hits / 25.0
    return frac


def _centroid(frac: np.ndarray) -> np.ndarray:
    r, c = np.indices(frac.shape)
    return np.array([(frac * r).sum(), (frac * c).sum()]) / frac.sum()


LESION = MotionLesion((96.0, 78.0), (9.0, 6.0), angle_deg=25.0, contrast=0.5)


def test_translation_moves_the_lesion_by_minus_u_and_matches_the_naive_loop() -> None:
    shift = np.array([3.3, -1.7])  # source px, frame 2; frame 1 half of it (0.5 s)
    field = _field(lambda k, r, c: np.stack(np.broadcast_arrays(*(shift * (k / 2.0))), -1) * np.ones((*r.shape, 1)))
    frames, times = _synthetic_series()
    ph = MotionPhantom(frames, times, SRC_SPACING, "mridian-4fps", 1.0, 1, LESION, field)
    assert ph.n_frames == 4  # t = 0, 0.25, 0.5, 0.75 s: the field interpolated linearly in time
    for k in range(ph.n_frames):
        u_now = shift * (ph.times_s[k] / 1.0)  # field reaches `shift` at t = 1 s
        expected_mm = -u_now * SRC_SPACING[0]  # frame_k(x) = frame_0(x + u): the lesion moves by -u
        # 5 x 5 sub-samples of a 3.5 mm pixel are 0.7 mm apart: the sampled ellipse's
        # centroid (this small lesion covers ~13 pixels) is within 0.05 px of the analytic one.
        np.testing.assert_allclose(ph.trajectory_mm[k], expected_mm, atol=0.05 * ph.spacing_mm[0])
        naive = _naive_fraction(ph, k, lambda r, c, u=u_now: tuple(u))
        np.testing.assert_allclose(ph.label_fraction(k), naive, atol=1e-6)
        naive_mm = (_centroid(naive) - _centroid(_naive_fraction(ph, 0, lambda r, c: (0.0, 0.0)))) * ph.spacing_mm[0]
        np.testing.assert_allclose(ph.trajectory_mm[k], naive_mm, atol=1e-4)  # float32 sums


def test_affine_field_gives_the_analytic_centroid_and_area() -> None:
    a_mat = np.array([[0.06, -0.04], [0.03, -0.05]])  # gentle strain/shear per source px
    x0 = np.array([48.0, 39.0])
    b = np.array([2.5, -1.5])

    def disp(k: int, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        w = k / 2.0
        return np.stack((w * (a_mat[0, 0] * (r - x0[0]) + a_mat[0, 1] * (c - x0[1]) + b[0]),
                         w * (a_mat[1, 0] * (r - x0[0]) + a_mat[1, 1] * (c - x0[1]) + b[1])), -1)

    field = _field(disp)
    frames, times = _synthetic_series()
    ph = MotionPhantom(frames, times, SRC_SPACING, "mridian-8fps", 1.0, 1, LESION, field)
    k = ph.n_frames // 2  # t = 0.5 s: field frame 1 exactly (w = 1/2)
    m = np.eye(2) + 0.5 * a_mat
    centre_src = np.array(LESION.centre_mm) / SRC_SPACING[0]
    # x + u(x) = c  <=>  x = x0 + M^-1 (c - x0 - b/2)
    x_star = x0 + np.linalg.solve(m, centre_src - x0 - 0.5 * b)
    frac = ph.label_fraction(k)
    np.testing.assert_allclose(_centroid(frac), _out_px(ph, *x_star), atol=0.03)
    area_mm2 = frac.sum() * ph.spacing_mm[0] ** 2
    expected_mm2 = math.pi * LESION.semi_axes_mm[0] * LESION.semi_axes_mm[1] / np.linalg.det(m)
    assert abs(area_mm2 / expected_mm2 - 1.0) < 0.01
    np.testing.assert_allclose(ph.trajectory_mm[k], (_out_px(ph, *x_star) - np.array(ph.lesion_centre0_px))
                               * ph.spacing_mm[0], atol=0.05 * ph.spacing_mm[0])  # two frames' sampling


def test_label_fraction_is_the_exact_area_fraction_within_sampling() -> None:
    """Against shapely: the area of each pixel square inside the (untransformed) ellipse."""
    field = _field(lambda k, r, c: np.zeros((*r.shape, 2)))
    frames, times = _synthetic_series()
    ph = MotionPhantom(frames, times, SRC_SPACING, "mridian-4fps", 0.5, 1, LESION, field)
    frac = ph.label_fraction(0)
    ellipse = affinity.rotate(
        affinity.scale(shapely.Point(0, 0).buffer(1.0, quad_segs=256), LESION.semi_axes_mm[0], LESION.semi_axes_mm[1]),
        LESION.angle_deg, origin=(0, 0))  # (x = row mm, y = col mm): angle from row toward col
    ellipse = affinity.translate(ellipse, *LESION.centre_mm)
    sp = ph.spacing_mm[0]
    exact = np.zeros(ph.shape)
    rows, cols = np.nonzero(np.pad(frac > 0, 1)[1:-1, 1:-1] | (frac > 0))
    r0, c0 = _out_px(ph, np.array(0.0), np.array(0.0))  # output index of source pixel (0, 0)
    for i in range(max(rows.min() - 2, 0), rows.max() + 3):
        for j in range(max(cols.min() - 2, 0), cols.max() + 3):
            y, x = (i - r0) * sp, (j - c0) * sp  # mm from source pixel (0, 0)
            exact[i, j] = ellipse.intersection(shapely.box(y - sp / 2, x - sp / 2, y + sp / 2, x + sp / 2)).area / sp**2
    assert np.abs(frac - exact).max() <= 0.2  # 25 samples per pixel along a curved edge
    assert abs(frac.sum() / exact.sum() - 1.0) < 0.01
    np.testing.assert_allclose(_centroid(frac), _centroid(exact), atol=0.02)
    np.testing.assert_allclose(_centroid(frac), ph.lesion_centre0_px, atol=0.02)


def test_lesion_sample_points_are_the_subsamples_the_label_fraction_counts() -> None:
    """The exact lesion as points: per pixel, 25 x label_fraction of them, inside its
    square, and wholly-inside pixels on label_sample_points_px's 5 x 5 grid."""
    from maestro.evaluation.gating_metrics import label_sample_points_px

    shift = np.array([2.2, -1.3])
    field = _field(lambda k, r, c: np.stack(np.broadcast_arrays(*(shift * (k / 2.0))), -1) * np.ones((*r.shape, 1)))
    frames, times = _synthetic_series()
    ph = MotionPhantom(frames, times, SRC_SPACING, "mridian-4fps", 1.0, 1, LESION, field)
    for k in (0, ph.n_frames - 1):
        points = ph.lesion_sample_points_px(k)
        frac = ph.label_fraction(k)
        pix = np.rint(points).astype(int)
        counts = np.zeros(ph.shape)
        np.add.at(counts, (pix[:, 0], pix[:, 1]), 1.0)
        np.testing.assert_array_equal(counts, np.rint(frac * 25.0))
        assert np.all(np.abs(points - pix) < 0.5)
        full = frac == 1.0
        grid = label_sample_points_px(full, samples_per_px=5)
        in_full = points[full[pix[:, 0], pix[:, 1]]]
        np.testing.assert_allclose(np.sort(in_full.view("f8,f8"), axis=0).view(float),
                                   np.sort(grid.view("f8,f8"), axis=0).view(float), atol=1e-12)
    with pytest.raises(ValueError, match="k: must be within"):
        ph.lesion_sample_points_px(ph.n_frames)


def test_jacobian_of_a_known_affine_map() -> None:
    rows, cols = np.mgrid[0:20, 0:30].astype(np.float64)
    u = np.stack((0.1 * rows + 0.2 * cols, -0.3 * rows + 0.05 * cols), -1)
    np.testing.assert_allclose(jacobian_determinant(u), 1.1 * 1.05 + 0.2 * 0.3)


def test_synthetic_phantom_is_deterministic_and_frames_iterate_once() -> None:
    field = _field(lambda k, r, c: np.stack((0.02 * k * (r - 40), 0.5 * k + 0 * c), -1))
    frames, times = _synthetic_series()
    a = MotionPhantom(frames, times, SRC_SPACING, "mridian-8fps", 1.0, 7, LESION, field)
    b = MotionPhantom(frames, times, SRC_SPACING, "mridian-8fps", 1.0, 7, LESION, field)
    fa, fb = list(a.frames()), list(b.frames())
    assert all(np.array_equal(x.pixels, y.pixels) and np.array_equal(x.label_fraction, y.label_fraction)
               for x, y in zip(fa, fb))
    assert fa[0].pixels.dtype == np.uint16 and fa[0].label_fraction.dtype == np.float32
    with pytest.raises(RuntimeError):
        next(a.frames())
    c = MotionPhantom(frames, times, SRC_SPACING, "mridian-8fps", 1.0, 8, LESION, field)
    assert not np.array_equal(next(c.frames()).pixels, fa[0].pixels)


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"seconds": 5.0}, "seconds"),
        ({"geometry": "unity"}, "geometry"),
        ({"lesion": MotionLesion((2.0, 2.0), (8.0, 8.0))}, "lesion"),
        ({"lesion": "no-such-case"}, "motion case"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field_name: str) -> None:
    frames, times = _synthetic_series()
    field = _field(lambda k, r, c: np.zeros((*r.shape, 2)))
    args: dict[str, object] = {"geometry": "mridian-4fps", "seconds": 1.0, "lesion": LESION, "field": field}
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{field_name}: "):
        MotionPhantom(frames, times, SRC_SPACING, **args)


def test_a_lesion_pushed_out_of_the_field_of_view_is_refused() -> None:
    frames, times = _synthetic_series()
    field = _field(lambda k, r, c: np.stack((0 * r - 40.0 * k, 0 * c), -1))  # lesion moves 160 mm down
    with pytest.raises(ValueError, match="^lesion: leaves the field of view"):
        MotionPhantom(frames, times, SRC_SPACING, "mridian-4fps", 1.0, 1, LESION, field)


# -------------------------------------------------------------------- the real liver series


@pytest.fixture(scope="module")
def liver(shared_data: Path):
    return series_field(shared_data / LIVER)  # computed once per process (cached)


def test_the_field_explains_the_real_motion_and_never_folds(liver) -> None:
    series, field = liver
    assert field.displacement_px.shape == (498, 176, 140, 2)
    assert not field.displacement_px[0].any()
    # Measured: unwarped 23.95, residual 15.16 (0.63); the noise floor is ~9.6.
    ratio = field.residual[1:].mean() / field.unwarped[1:].mean()
    assert ratio < 0.7, ratio
    assert np.all(field.residual[1:] < field.unwarped[1:])
    # Breathing is large here: up to ~20 mm superior-inferior.
    assert 8.0 < np.abs(field.displacement_px[..., 0]).max() * series.spacing_mm[0] < 40.0
    # Never folds: min det over every frame and pixel is MIN_JACOBIAN (0.250 measured).
    assert field.min_jacobian() >= MIN_JACOBIAN - 1e-3


def test_field_estimation_is_deterministic(liver) -> None:
    series, field = liver
    again = estimate_motion_field(series.frames[:6], series.times_s[:6], series.spacing_mm)
    np.testing.assert_array_equal(again.displacement_px, field.displacement_px[:6])


def test_cases_are_half_tuning_half_held_out_and_distinct() -> None:
    roles = [c.role for c in MOTION_CASES]
    assert roles.count("tuning") == roles.count("held-out") == len(MOTION_CASES) // 2
    assert len({c.name for c in MOTION_CASES}) == len(MOTION_CASES)
    d = [c.lesion.diameter_mm for c in MOTION_CASES]
    assert min(d) >= 15.0 - 1e-9 and max(d) <= 35.0 + 1e-9
    assert {c.lesion.kind for c in MOTION_CASES} == {"hypointense", "hyperintense"}


@pytest.mark.parametrize("case", MOTION_CASES, ids=lambda c: c.name)
def test_each_case_stays_in_the_liver_and_the_field_of_view_for_the_whole_series(liver, case) -> None:
    series, field = liver
    # The constructor refuses a lesion outside the liver outline or leaving the image on
    # any frame; seconds=None covers the whole series.
    ph = MotionPhantom(series.frames, series.times_s, series.spacing_mm, "mridian-8fps", None, 1, case.lesion,
                       field, liver_polygon_px=KS81_LIVER_POLYGON_PX)
    assert ph.n_frames == int(82.965 * 8)
    assert ph.shape == (133, 106)
    # Frame 0's label centroid is the lesion centre (within the 5 x 5 sampling, 0.03 px).
    np.testing.assert_allclose(_centroid(ph.label_fraction(0)), ph.lesion_centre0_px, atol=0.03)
    assert ph.trajectory_mm[0].tolist() == [0.0, 0.0]
    # The lesion moves with breathing, mostly superior-inferior.
    ptp = np.ptp(ph.trajectory_mm, axis=0)
    assert 10.0 < ptp[0] < 40.0 and ptp[1] < ptp[0]
    area = ph.label_fraction(0).sum() * ph.spacing_mm[0] ** 2
    assert abs(area / (math.pi * np.prod(case.lesion.semi_axes_mm)) - 1.0) < 0.02


def test_real_phantom_renders_fast_deterministically_and_looks_like_liver(liver) -> None:
    series, field = liver
    case = MOTION_CASES[1]  # hyperintense
    make = lambda: MotionPhantom(series.frames, series.times_s, series.spacing_mm, "mridian-8fps", 5.0, 3,  # noqa: E731
                                 case.lesion, field, liver_polygon_px=KS81_LIVER_POLYGON_PX)
    a = make()
    t0 = time.perf_counter()
    fa = list(a.frames())
    ms = (time.perf_counter() - t0) / len(fa) * 1e3
    print(f"render {ms:.1f} ms per frame at {a.shape}")
    assert ms < 50.0  # ~6 ms measured at 133 x 106 (5 x 5 sub-samples)
    fb = list(make().frames())
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(fa, fb))
    f0 = fa[0].pixels.astype(np.float64)
    inside = fa[0].label_fraction >= 0.99
    ring = (fa[0].label_fraction == 0) & (np.hypot(*(np.indices(a.shape) - np.array(a.lesion_centre0_px)[:, None, None]))
                                           < case.lesion.semi_axes_mm[0] / a.spacing_mm[0] + 5)
    assert np.median(f0[inside]) > 1.3 * np.median(f0[ring])  # hyperintense, relative to local liver
    assert 12.0 <= 100.0 / a.noise_sigma <= 18.0
    # Orientation: lung (dark) above the liver dome, rows toward inferior.
    r, c = (int(round(v)) for v in a.lesion_centre0_px)
    assert np.median(f0[max(r - 40, 0):r - 25, c - 5:c + 5]) < 0.6 * np.median(f0[ring])


# -------------------------------------------------------------------- the command line


def test_cli_writes_a_case_that_replay_reads(liver, shared_data: Path, tmp_path: Path, capsys) -> None:
    series, field = liver
    out = tmp_path / "motion1"
    folder = str(shared_data / LIVER)
    assert main(["phantom", str(out), "--motion-from", folder, "--motion-case", "vessel-hyper-15",
                 "--seconds", "5", "--geometry", "mridian-4fps", "--seed", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    case = read_case(out)
    ph = MotionPhantom(series.frames, series.times_s, series.spacing_mm, "mridian-4fps", 5.0, 2,
                       "vessel-hyper-15", field)
    frames = list(ph.frames())
    np.testing.assert_array_equal(case.frames, np.stack([f.pixels for f in frames]).astype(np.float32))
    np.testing.assert_array_equal(case.labels, np.stack([f.label_fraction >= 0.5 for f in frames]))
    assert case.fps == 4.0 and case.spacing_mm == (3.5, 3.5)
    assert main(["replay", str(out)]) == 0
    assert "tracking error" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--lesion-at", "20,70"], ("--lesion-at", "liver")),
        (["--lesion-at", "1,1"], ("--lesion-at", "inside the source frame")),
        (["--seconds", "90"], ("--seconds", "at most")),
        (["--motion-case", "nope"], ("--motion-case", "must be one of")),
        (["--trace", "x.txt"], ("--trace", "cannot be combined")),
    ],
)
def test_cli_refuses_bad_motion_input_in_one_line(liver, shared_data: Path, tmp_path: Path, capsys, extra, words) -> None:
    assert main(["phantom", str(tmp_path / "c"), "--motion-from", str(shared_data / LIVER), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err


def test_cli_refuses_a_missing_series_folder(tmp_path: Path, capsys) -> None:
    assert main(["phantom", str(tmp_path / "c"), "--motion-from", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "series folder" in err[0] and "does not exist" in err[0]
    assert main(["phantom", str(tmp_path / "c"), "--lesion-at", "80,70"]) == 2
    assert "needs --motion-from" in capsys.readouterr().err
