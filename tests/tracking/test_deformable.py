"""Tests of the affine registration of the deformable tracking mode (tracking/deformable.py):
against the naive reference (tests/tracking/naive.py), against OpenCV's ECC affine
registration, on known affine maps, on bad frames, and of the mask propagation."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

from maestro.phantom import generate_session
from tests.tracking.naive import affine_ic_naive
from tracking.deformable import (
    REG_BAD_START,
    REG_DIVERGED,
    REG_FLAT,
    REG_NO_MATCH,
    REG_NONFINITE,
    REG_OK,
    REG_OUTSIDE,
    AffineRegistration,
    fused_affine,
    propagate_mask,
    propagated_centroid_px,
)
from tracking.tracker import TemplateTracker

SHAPE = (144, 144)
SPACING = (2.4, 2.4)
CENTRE = (70.3, 74.6)
RADIUS_PX = 5.2  # 25 mm target at 2.4 mm


def _scene(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """A smooth, band-limited scene evaluated analytically: a soft disk (the target),
    an asymmetric dot inside it, and blobs and a soft edge in the context."""
    y, x = r - CENTRE[0], c - CENTRE[1]
    rho = np.hypot(y, x)
    disk = 0.5 * (1.0 + np.tanh((RADIUS_PX - rho) / 0.8))
    dot = np.exp(-(((y - 2.0) / 1.5) ** 2 + ((x + 1.5) / 1.5) ** 2))
    ctx = (np.exp(-(((y + 8.0) / 2.5) ** 2 + ((x - 7.0) / 2.0) ** 2))
           + 0.7 * np.exp(-(((y - 9.0) / 2.0) ** 2 + ((x + 6.0) / 3.0) ** 2)))
    edge = 0.5 * (1.0 + np.tanh((x + 0.4 * y - 10.0) / 1.5))
    return 100.0 + 80.0 * disk + 40.0 * dot + 50.0 * ctx + 30.0 * edge


def _grid() -> tuple[np.ndarray, np.ndarray]:
    r, c = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float64)
    return r, c


def _known_affine(lin: np.ndarray, shift_px: tuple[float, float]) -> np.ndarray:
    """The 2 x 3 affine with linear part ``lin`` about the target centre that moves the
    centre by ``shift_px``."""
    centre = np.asarray(CENTRE)
    return np.column_stack([lin, centre + np.asarray(shift_px) - lin @ centre])


def _warped_scene(affine: np.ndarray, gain: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """The scene moved by ``affine`` (reference -> frame), evaluated exactly: frame(p) =
    scene(affine^-1 (p))."""
    r, c = _grid()
    lin_inv = np.linalg.inv(affine[:, :2])
    pr, pc = r - affine[0, 2], c - affine[1, 2]
    src_r = lin_inv[0, 0] * pr + lin_inv[0, 1] * pc
    src_c = lin_inv[1, 0] * pr + lin_inv[1, 1] * pc
    return gain * _scene(src_r, src_c) + offset


@pytest.fixture(scope="module")
def reference_and_mask() -> tuple[np.ndarray, np.ndarray]:
    r, c = _grid()
    mask = np.hypot(r - CENTRE[0], c - CENTRE[1]) <= RADIUS_PX
    return _scene(r, c), mask


AFFINES = [
    (np.array([[1.08, 0.0], [0.0, 0.94]]), (1.3, -0.7)),  # stretch along rows, shrink columns
    (np.array([[1.0, 0.06], [0.0, 1.0]]), (-0.4, 2.2)),  # shear
    (np.array([[0.95, -0.04], [0.05, 1.07]]), (2.6, 1.1)),  # stretch, shear, rotation
]


@pytest.mark.parametrize(("lin", "shift"), AFFINES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recovers_known_affine(reference_and_mask, lin, shift, dtype) -> None:
    reference, mask = reference_and_mask
    truth = _known_affine(lin, shift)
    frame = np.ascontiguousarray(_warped_scene(truth, gain=1.1, offset=-7.0), dtype=dtype)
    reg = AffineRegistration(reference, mask, SPACING)
    # Start from a rounded rigid displacement, as a coarse tracker would give.
    status = reg.register(frame, round(shift[0]), round(shift[1]))
    assert status == REG_OK, reg.status_text(status)
    assert reg.converged
    got = reg.affine
    # At the target: its centroid and the corners of its bounding box land within 0.05 px.
    r, c = np.nonzero(mask)
    pts = np.array([[r.mean(), c.mean()], [r.min(), c.min()], [r.min(), c.max()], [r.max(), c.min()], [r.max(), c.max()]])
    err = np.abs(pts @ got[:, :2].T + got[:, 2] - (pts @ truth[:, :2].T + truth[:, 2]))
    assert err.max() < 0.05, err
    np.testing.assert_allclose(got[:, :2], truth[:, :2], atol=5e-3)
    assert reg.zncc > 0.999
    assert reg.gain == pytest.approx(1.1, rel=0.02)
    cen = propagated_centroid_px(reg.reference_centroid_px, got)
    assert np.hypot(*(np.array(cen) - pts[0] @ truth[:, :2].T - truth[:, 2])) < 0.05


@pytest.mark.parametrize("context_weight", [1.0, 0.3])
def test_matches_naive_reference(reference_and_mask, context_weight) -> None:
    reference, mask = reference_and_mask
    rng = np.random.default_rng(7)
    truth = _known_affine(np.array([[1.06, 0.03], [-0.02, 0.96]]), (1.7, -1.2))
    frame = _warped_scene(truth) + rng.normal(0.0, 2.0, SHAPE)  # noise: no exact optimum
    tol = 1e-6
    reg = AffineRegistration(reference, mask, SPACING, context_weight=context_weight, tol_px=tol, max_iter=40)
    assert reg.register(frame, 1.0, -1.0) == REG_OK
    naive, steps = affine_ic_naive(reference, reg.region_origin_px, reg.region_shape, reg.weights,
                                   frame, (1.0, -1.0), 40, tol)
    np.testing.assert_allclose(reg.affine, naive, atol=1e-5)
    assert abs(reg.iterations - steps) <= 1  # the kernel bounds the corner movement


def _ecc_affine(reference: np.ndarray, frame: np.ndarray, reg: AffineRegistration, start: np.ndarray) -> np.ndarray:
    """cv2.findTransformECC (MOTION_AFFINE, no pre-blur) on the same region, started from
    ``start`` (2 x 3 in (row, col)), converted back to (row, col)."""
    r0, c0 = reg.region_origin_px
    h, w = reg.region_shape
    template = np.ascontiguousarray(reference[r0 : r0 + h, c0 : c0 + w], dtype=np.float32)
    # ECC's warp maps template (x = col - c0, y = row - r0) to input (x, y): swap axes.
    lin = start[:, :2]
    t = start[:, 2] + lin @ np.array([r0, c0])
    warp = np.array([[lin[1, 1], lin[1, 0], t[1]], [lin[0, 1], lin[0, 0], t[0]]], dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-8)
    _, warp = cv2.findTransformECC(template, np.ascontiguousarray(frame, dtype=np.float32), warp,
                                   cv2.MOTION_AFFINE, criteria, None, 1)
    w64 = warp.astype(np.float64)
    lin = np.array([[w64[1, 1], w64[1, 0]], [w64[0, 1], w64[0, 0]]])
    t = np.array([w64[1, 2], w64[0, 2]]) - lin @ np.array([r0, c0])
    return np.column_stack([lin, t])


def _target_points(mask: np.ndarray) -> np.ndarray:
    r, c = np.nonzero(mask)
    return np.array([[r.mean(), c.mean()], [r.min(), c.min()], [r.min(), c.max()], [r.max(), c.min()], [r.max(), c.max()]],
                    dtype=np.float64)


def _apply(affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ affine[:, :2].T + affine[:, 2]


@pytest.mark.parametrize(("lin", "shift"), AFFINES)
def test_agrees_with_ecc_on_synthetic(reference_and_mask, lin, shift) -> None:
    reference, mask = reference_and_mask
    truth = _known_affine(lin, shift)
    frame = _warped_scene(truth)
    reg = AffineRegistration(reference, mask, SPACING)
    assert reg.register(frame, round(shift[0]), round(shift[1])) == REG_OK
    start = np.array([[1.0, 0.0, round(shift[0])], [0.0, 1.0, round(shift[1])]])
    ecc = _ecc_affine(reference, frame, reg, start)
    pts = _target_points(mask)
    # ECC samples bilinearly: it lands within a few hundredths of a pixel of ours.
    assert np.abs(_apply(ecc, pts) - _apply(reg.affine, pts)).max() < 0.1
    assert np.abs(_apply(ecc, pts) - _apply(truth, pts)).max() < 0.1


@pytest.mark.parametrize("geometry", ["mridian-8fps", "mridian-4fps"])
def test_agrees_with_ecc_on_phantom(geometry: str) -> None:
    s = generate_session(geometry, seconds=6.0, seed=2, lesion_diameter_mm=25.0)
    frames = [np.ascontiguousarray(f, dtype=np.float32) for f in s.frames]
    mask = s.labels[0].astype(bool)
    tracker = TemplateTracker(frames[0], mask, s.spacing_mm)
    reg = AffineRegistration(frames[0], mask, s.spacing_mm)
    pts = _target_points(mask)
    centre_diff, corner_diff, ours_err, ecc_err = [], [], [], []
    for k in range(1, len(frames), 2):
        frame = frames[k]
        rigid = tracker.track(frame)
        assert rigid.valid
        assert reg.register(frame, rigid.row_px, rigid.col_px) == REG_OK
        start = np.array([[1.0, 0.0, rigid.row_px], [0.0, 1.0, rigid.col_px]])
        ecc = _ecc_affine(frames[0], frame, reg, start)
        diff = np.abs(_apply(ecc, pts) - _apply(reg.affine, pts)).max(axis=1)
        centre_diff.append(diff[0])
        corner_diff.append(diff[1:].max())
        # The phantom's lesion moves rigidly: the truth is the trajectory.
        true_c = pts[0] + s.trajectory_mm[k] / np.asarray(s.spacing_mm)
        ours_err.append(np.hypot(*(_apply(reg.affine, pts[:1])[0] - true_c)))
        ecc_err.append(np.hypot(*(_apply(ecc, pts[:1])[0] - true_c)))
    # Noisy frames and a small region: two interpolators (Keys cubic vs bilinear) and two
    # objectives (least squares with gain and offset vs correlation) reach slightly
    # different optima (measured: centroid median 0.08-0.09 px, max 0.26 px; bounding
    # box corners median 0.25-0.28 px); neither is closer to the truth.
    assert np.median(centre_diff) < 0.15, centre_diff
    assert max(centre_diff) < 0.4, centre_diff
    assert np.median(corner_diff) < 0.4, corner_diff
    assert np.median(ours_err) <= 1.2 * np.median(ecc_err) + 0.02, (ours_err, ecc_err)


def test_bad_frames_give_a_status(reference_and_mask) -> None:
    reference, mask = reference_and_mask
    reg = AffineRegistration(reference, mask, SPACING)
    frame = _warped_scene(_known_affine(np.eye(2), (1.0, 0.5)))
    nan_frame = frame.copy()
    nan_frame[int(CENTRE[0]), int(CENTRE[1])] = np.nan
    inf_frame = frame.copy()
    inf_frame[int(CENTRE[0]) + 2, int(CENTRE[1])] = np.inf
    cases = {
        "nan": (nan_frame, 1.0, 0.5, REG_NONFINITE),
        "inf": (inf_frame, 1.0, 0.5, REG_NONFINITE),
        "zero": (np.zeros(SHAPE), 1.0, 0.5, REG_FLAT),
        "constant": (np.full(SHAPE, 300.0), 1.0, 0.5, REG_FLAT),
        "negative": (600.0 - frame, 1.0, 0.5, REG_NO_MATCH),
        "off image": (frame, 80.0, 0.0, REG_OUTSIDE),
        "far off image": (frame, -1e300, 1e300, REG_OUTSIDE),
        "nan start": (frame, math.nan, 0.0, REG_BAD_START),
        "inf start": (frame, 0.0, math.inf, REG_BAD_START),
    }
    for name, (img, dr, dc, expected) in cases.items():
        for dtype in (np.float32, np.float64):
            status = reg.register(np.ascontiguousarray(img, dtype=dtype), dr, dc)
            assert status == expected, (name, dtype, reg.status_text(status))
            assert np.isnan(reg.affine).all(), name
            assert not reg.converged
    # Noise with no relation to the template: bounded, so it ends diverged or not matched.
    noise = np.random.default_rng(0).normal(200.0, 30.0, SHAPE)
    assert reg.register(noise, 0.0, 0.0) in (REG_OK, REG_DIVERGED, REG_NO_MATCH)
    # And a good frame still registers after all that.
    assert reg.register(frame, 1.0, 0.5) == REG_OK


def test_deformation_bound_reports_diverged(reference_and_mask) -> None:
    reference, mask = reference_and_mask
    frame = _warped_scene(_known_affine(np.array([[1.2, 0.0], [0.0, 1.0]]), (0.0, 0.0)))
    tight = AffineRegistration(reference, mask, SPACING, max_linear_deviation=0.1)
    assert tight.register(frame, 0.0, 0.0) == REG_DIVERGED
    loose = AffineRegistration(reference, mask, SPACING)
    assert loose.register(frame, 0.0, 0.0) == REG_OK
    assert loose.affine[0, 0] == pytest.approx(1.2, abs=5e-3)


def test_register_allocates_nothing_per_frame(reference_and_mask) -> None:
    import tracemalloc

    reference, mask = reference_and_mask
    reg = AffineRegistration(reference, mask, SPACING)
    frame = np.ascontiguousarray(_warped_scene(_known_affine(np.eye(2), (0.6, 0.3))), dtype=np.float32)
    result = reg.result
    reg.register(frame, 0.0, 0.0)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(200):
        reg.register(frame, 0.0, 0.0)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert grown < 4096, grown
    assert reg.result is result


def test_constructor_rejects_bad_input(reference_and_mask) -> None:
    reference, mask = reference_and_mask
    with pytest.raises(ValueError, match="target_mask"):
        AffineRegistration(reference, np.zeros(SHAPE, dtype=bool), SPACING)
    with pytest.raises(ValueError, match="target_mask"):
        AffineRegistration(reference, mask.astype(np.uint8), SPACING)
    with pytest.raises(ValueError, match="spacing_mm"):
        AffineRegistration(reference, mask, (0.0, 2.4))
    with pytest.raises(ValueError, match="context_weight"):
        AffineRegistration(reference, mask, SPACING, context_weight=0.0)
    with pytest.raises(ValueError, match="reference"):
        AffineRegistration(np.full(SHAPE, 5.0), mask, SPACING)


def _propagate_naive(reference: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Bilinear sample of the reference at each pixel centre mapped back, >= 1/2."""
    ref = reference.astype(float)
    out = np.zeros(ref.shape, dtype=bool)
    lin_inv = np.linalg.inv(affine[:, :2])

    def at(i: int, j: int) -> float:
        return float(ref[i, j]) if 0 <= i < ref.shape[0] and 0 <= j < ref.shape[1] else 0.0

    for r in range(ref.shape[0]):
        for c in range(ref.shape[1]):
            x = lin_inv @ (np.array([r, c], dtype=float) - affine[:, 2])
            i, j = math.floor(x[0]), math.floor(x[1])
            a, b = x[0] - i, x[1] - j
            v = ((1 - a) * (1 - b) * at(i, j) + (1 - a) * b * at(i, j + 1)
                 + a * (1 - b) * at(i + 1, j) + a * b * at(i + 1, j + 1))
            out[r, c] = v >= 0.5
    return out


def test_propagate_mask_matches_naive_loop_and_scipy() -> None:
    rng = np.random.default_rng(3)
    r, c = np.mgrid[0:48, 0:40]
    mask = ((r - 20) / 7.0) ** 2 + ((c - 18) / 5.0) ** 2 <= 1.0
    mask[8:12, 30:36] = True  # a second, rectangular part
    mask[0:3, 0:4] = True  # at the grid's corner: taps off the grid count as outside
    fraction = ndimage.gaussian_filter(mask.astype(float), 0.8)
    for _ in range(20):
        lin = np.eye(2) + rng.uniform(-0.3, 0.3, (2, 2))
        affine = np.column_stack([lin, rng.uniform(-6.0, 6.0, 2)])
        for reference in (mask, fraction):
            got = propagate_mask(reference, affine)
            np.testing.assert_array_equal(got, _propagate_naive(reference, affine))
            # The same sampling by SciPy (bilinear, zero beyond the grid), away from the
            # 1/2 level where rounding may differ.
            inv = np.linalg.inv(affine[:, :2])
            value = ndimage.affine_transform(reference.astype(float), inv, offset=-inv @ affine[:, 2],
                                             order=1, mode="grid-constant", cval=0.0)
            clear = np.abs(value - 0.5) > 1e-9
            np.testing.assert_array_equal(got[clear], (value >= 0.5)[clear])
    out = np.ones_like(mask)
    assert propagate_mask(mask, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), out=out) is out
    np.testing.assert_array_equal(out, mask)
    shifted = propagate_mask(mask, np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]]))
    np.testing.assert_array_equal(shifted[3:, :-2], mask[:-3, 2:])
    assert not propagate_mask(mask, np.full((2, 3), np.nan)).any()
    assert not propagate_mask(mask, np.zeros((2, 3))).any()  # singular
    assert not propagate_mask(mask, np.array([[1.0, 0.0, 500.0], [0.0, 1.0, 0.0]])).any()
    with pytest.raises(ValueError, match="reference"):
        propagate_mask(mask.astype(np.int32), np.eye(2, 3))


def test_a_fifth_pixel_shift_moves_a_partial_volume_edge() -> None:
    """A straight edge whose boundary pixels are 60 % inside: a 0.2 px shift toward them
    takes them out (0.6 -> 0.48), a nearest look-up would keep them."""
    ref = np.zeros((10, 10))
    ref[:, :4] = 1.0
    ref[:, 4] = 0.6
    moved_in = propagate_mask(ref, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -0.2]]))
    assert moved_in[:, :4].all() and not moved_in[:, 4:].any()
    moved_out = propagate_mask(ref, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.2]]))
    assert moved_out[:, :5].all() and not moved_out[:, 5:].any()


def _disk_scene(r: np.ndarray, c: np.ndarray, centre: tuple[float, float], radius_px: float) -> np.ndarray:
    y, x = r - centre[0], c - centre[1]
    disk = 0.5 * (1.0 + np.tanh((radius_px - np.hypot(y, x)) / 0.8))
    texture = np.sin(0.5 * y + 0.2 * x) * np.cos(0.35 * x - 0.15 * y)
    return 100.0 + 80.0 * disk + 15.0 * texture


@pytest.mark.parametrize("radius_px", [RADIUS_PX, 12.0])
def test_propagated_disk_dice(radius_px: float) -> None:
    """A disk deformed by a known affine: the propagated reference mask against the pixels
    whose centres lie in the deformed disk. Dice >= 0.95 on a 24-px disk; on the 25 mm
    target at 2.4 mm (10 px across) the pixelised reference mask itself caps Dice at
    0.94-0.96, so there the propagation must match the true affine's, pixel for pixel."""
    r, c = _grid()
    centre = CENTRE
    mask = np.hypot(r - centre[0], c - centre[1]) <= radius_px
    reg = AffineRegistration(_disk_scene(r, c, centre, radius_px), mask, SPACING)
    for lin, shift in AFFINES:
        truth_affine = _known_affine(lin, shift)
        lin_inv = np.linalg.inv(truth_affine[:, :2])
        src = np.einsum("ij,jhw->ihw", lin_inv, np.stack([r - truth_affine[0, 2], c - truth_affine[1, 2]]))
        frame = _disk_scene(src[0], src[1], centre, radius_px)
        assert reg.register(frame, round(shift[0]), round(shift[1])) == REG_OK
        truth = np.hypot(src[0] - centre[0], src[1] - centre[1]) <= radius_px
        got = propagate_mask(mask, reg.affine)
        dice = 2.0 * np.count_nonzero(got & truth) / (np.count_nonzero(got) + np.count_nonzero(truth))
        if radius_px >= 12.0:
            assert dice >= 0.95, (lin, dice)
        else:
            assert dice >= 0.93, (lin, dice)
            assert np.count_nonzero(got != propagate_mask(mask, truth_affine)) <= 1


def test_target_at_the_image_border_registers() -> None:
    """A region clipped by the image border keeps room for the interpolation taps."""
    r, c = _grid()
    centre = (4.0, SHAPE[1] - 5.0)
    mask = np.hypot(r - centre[0], c - centre[1]) <= 4.0
    reference = _disk_scene(r, c, centre, 4.0) + 20.0 * np.sin(0.4 * r) * np.cos(0.3 * c)
    reg = AffineRegistration(reference, mask, SPACING)
    r0, c0 = reg.region_origin_px
    h, w = reg.region_shape
    assert r0 >= 2 and c0 + w <= SHAPE[1] - 3
    assert reg.register(reference, 0.0, 0.0) == REG_OK
    np.testing.assert_allclose(reg.affine, np.eye(2, 3), atol=1e-6)


def test_fused_affine_moves_the_centroid_between_the_two_estimates() -> None:
    """Hand-computed: reference centroid (10, 20), registration A = [[1.1, 0.2, 3], [-0.1,
    0.9, -4]] carries it to (1.1*10 + 0.2*20 + 3, -0.1*10 + 0.9*20 - 4) = (18, 13); the
    rigid match shifts it by (6, -9) to (16, 11). A quarter of the way to the rigid match
    is (17.5, 12.5); only the translation column changes."""
    affine = np.array([[1.1, 0.2, 3.0], [-0.1, 0.9, -4.0]])
    c0 = (10.0, 20.0)
    assert propagated_centroid_px(c0, affine) == pytest.approx((18.0, 13.0))
    fused = fused_affine(affine, c0, (6.0, -9.0), rigid_share=0.25)
    assert propagated_centroid_px(c0, fused) == pytest.approx((17.5, 12.5))
    np.testing.assert_array_equal(fused[:, :2], affine[:, :2])
    np.testing.assert_allclose(fused[:, 2], (3.0 - 0.5, -4.0 - 0.5))
    np.testing.assert_array_equal(fused_affine(affine, c0, (6.0, -9.0), rigid_share=0.0), affine)
    assert propagated_centroid_px(c0, fused_affine(affine, c0, (6.0, -9.0), rigid_share=1.0)) == pytest.approx((16.0, 11.0))
    assert affine[0, 2] == 3.0  # the input is not changed
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="rigid_share"):
            fused_affine(affine, c0, (0.0, 0.0), rigid_share=bad)


def test_fused_affine_moves_the_propagated_mask_with_its_centroid() -> None:
    """The fused map propagates the target to where its centroid says: the mask's own
    centroid moves by the same translation (to within the pixel grid's rounding)."""
    r, c = _grid()
    mask = np.hypot(r - CENTRE[0], c - CENTRE[1]) <= RADIUS_PX
    affine = np.array([[1.05, 0.03, 2.2], [-0.02, 0.97, -1.4]])
    fused = fused_affine(affine, CENTRE, (4.0, -3.0), rigid_share=0.5)
    want = np.subtract(propagated_centroid_px(CENTRE, fused), propagated_centroid_px(CENTRE, affine))
    moved = [ndimage.center_of_mass(propagate_mask(mask, a)) for a in (affine, fused)]
    np.testing.assert_allclose(np.subtract(moved[1], moved[0]), want, atol=0.15)
