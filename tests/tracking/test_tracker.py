"""Tests of tracking.tracker: known translations in mm with anisotropic pixels, search
window clipping, invalid frames, a target leaving the image, construction errors, the
tracked mask, and the allocation-free hot path."""

from __future__ import annotations

import dataclasses
import math
import tracemalloc

import numba
import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys
from scipy import ndimage

from tracking.refine import _refine_kernel
from tracking.tracker import TemplateTracker, TrackResult
from tracking.zncc import _search_kernel

SPACING_MM = (2.4, 3.0)  # anisotropic: rows 2.4 mm, columns 3.0 mm
FRAME_SHAPE = (144, 144)
CANVAS_SIZE = 300
LESION_RADIUS_MM = 15.0


def _canvas(seed: int = 0) -> np.ndarray:
    """Smooth anatomy-like texture with a bright round (in mm) lesion at the centre."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:CANVAS_SIZE, 0:CANVAS_SIZE].astype(float)
    centre = CANVAS_SIZE / 2.0
    lesion = (
        ((rows - centre) * SPACING_MM[0]) ** 2 + ((cols - centre) * SPACING_MM[1]) ** 2
    ) <= LESION_RADIUS_MM**2
    texture = ndimage.gaussian_filter(rng.normal(size=rows.shape), 2.5)
    texture *= 15.0 / texture.std()
    return 100.0 + texture + 30.0 * ndimage.gaussian_filter(lesion.astype(float), 0.7)


def _crop(
    canvas: np.ndarray, lesion_px: tuple[int, int], shift_px: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """A frame with the lesion centre at ``lesion_px`` plus ``shift_px`` (content moves by
    +shift). Integer shifts are exact crops; fractional ones use a cubic spline shift."""
    top = CANVAS_SIZE // 2 - lesion_px[0]
    left = CANVAS_SIZE // 2 - lesion_px[1]
    if float(shift_px[0]).is_integer() and float(shift_px[1]).is_integer():
        top -= int(shift_px[0])
        left -= int(shift_px[1])
    else:
        canvas = ndimage.shift(canvas, shift_px, order=3, mode="nearest")
    return canvas[top : top + FRAME_SHAPE[0], left : left + FRAME_SHAPE[1]].astype(np.float32)


def _lesion_mask(lesion_px: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[0 : FRAME_SHAPE[0], 0 : FRAME_SHAPE[1]].astype(float)
    return (
        ((rows - lesion_px[0]) * SPACING_MM[0]) ** 2 + ((cols - lesion_px[1]) * SPACING_MM[1]) ** 2
    ) <= (LESION_RADIUS_MM - 0.5) ** 2


@pytest.fixture(scope="module")
def canvas() -> np.ndarray:
    return _canvas()


@pytest.fixture
def tracker(canvas: np.ndarray) -> TemplateTracker:
    centre = (72, 72)
    return TemplateTracker(_crop(canvas, centre), _lesion_mask(centre), SPACING_MM)


# --------------------------------------------------------------------------- geometry


def test_attributes_follow_the_definitions(tracker: TemplateTracker) -> None:
    mask = _lesion_mask((72, 72))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    ctx_r = math.ceil(20.0 / SPACING_MM[0])  # default context_mm = 20
    ctx_c = math.ceil(20.0 / SPACING_MM[1])
    assert ctx_r != ctx_c  # the anisotropic conversion is exercised
    assert tracker.template_origin_px == (rows[0] - ctx_r, cols[0] - ctx_c)
    assert tracker.template_shape == (
        rows[-1] - rows[0] + 1 + 2 * ctx_r,
        cols[-1] - cols[0] + 1 + 2 * ctx_c,
    )
    assert tracker.search_px == (math.ceil(15.0 / SPACING_MM[0]), math.ceil(15.0 / SPACING_MM[1]))
    assert tracker.spacing_mm == SPACING_MM
    np.testing.assert_array_equal(tracker.target_mask, mask)
    assert not tracker.target_mask.flags.writeable
    r, c = np.nonzero(mask)
    assert tracker.reference_centroid_px == pytest.approx((r.mean(), c.mean()))


def test_reference_frame_gives_zero_displacement(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    result = tracker.track(_crop(canvas, (72, 72)))
    assert result.valid and result.reason == ""
    assert (result.row_px, result.col_px) == pytest.approx((0.0, 0.0), abs=0.05)
    assert result.peak_zncc == pytest.approx(1.0, abs=1e-6)
    assert result.confidence == pytest.approx(1.0, abs=1e-6)
    assert not result.at_edge
    assert result.sharpness > 0.5


@pytest.mark.parametrize("shift_px", [(3, -2), (-5, 4), (6, -4), (-6, 4)])
def test_recovers_integer_translation_in_mm(
    tracker: TemplateTracker, canvas: np.ndarray, shift_px: tuple[int, int]
) -> None:
    result = tracker.track(_crop(canvas, (72, 72), shift_px))
    assert result.valid and not result.at_edge
    assert result.row_px == pytest.approx(shift_px[0], abs=0.05)
    assert result.col_px == pytest.approx(shift_px[1], abs=0.05)
    assert result.row_mm == pytest.approx(shift_px[0] * SPACING_MM[0], abs=0.05 * SPACING_MM[0])
    assert result.col_mm == pytest.approx(shift_px[1] * SPACING_MM[1], abs=0.05 * SPACING_MM[1])
    assert result.row_mm == result.row_px * SPACING_MM[0]
    assert result.col_mm == result.col_px * SPACING_MM[1]
    assert result.confidence > 0.99


@pytest.mark.parametrize("shift_px", [(1.3, -0.6), (-2.45, 2.2), (0.5, 0.5), (4.7, -3.25)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recovers_subpixel_translation_in_mm(
    canvas: np.ndarray, shift_px: tuple[float, float], dtype: type[np.floating]
) -> None:
    tracker = TemplateTracker(
        _crop(canvas, (72, 72)), _lesion_mask((72, 72)), SPACING_MM, dtype=dtype
    )
    result = tracker.track(_crop(canvas, (72, 72), shift_px).astype(dtype))
    assert result.valid and not result.at_edge
    assert result.row_mm == pytest.approx(shift_px[0] * SPACING_MM[0], abs=0.1 * SPACING_MM[0])
    assert result.col_mm == pytest.approx(shift_px[1] * SPACING_MM[1], abs=0.1 * SPACING_MM[1])
    assert result.confidence > 0.95


def test_float32_and_float64_trackers_agree(canvas: np.ndarray) -> None:
    ref = _crop(canvas, (72, 72))
    frame = _crop(canvas, (72, 72), (2.3, -1.7))
    r32 = TemplateTracker(ref, _lesion_mask((72, 72)), SPACING_MM, dtype=np.float32).track(frame)
    r64 = TemplateTracker(ref, _lesion_mask((72, 72)), SPACING_MM, dtype=np.float64).track(
        frame.astype(np.float64)
    )
    assert (r32.row_px, r32.col_px) == pytest.approx((r64.row_px, r64.col_px), abs=1e-4)
    assert r32.peak_zncc == pytest.approx(r64.peak_zncc, abs=1e-5)


def test_default_prediction_follows_the_last_result(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    """Each step (4 px) is inside the search range (7 px); their sum is not."""
    for step in range(1, 6):
        result = tracker.track(_crop(canvas, (72, 72), (4 * step, 0)))
        assert result.valid and not result.at_edge
        assert result.row_px == pytest.approx(4 * step, abs=0.05)
    tracker.reset()
    result = tracker.track(_crop(canvas, (72, 72), (20, 0)))
    # centred on 0 again, the target is beyond the window: not found, and it shows
    assert abs(result.row_px - 20) > 3
    assert result.at_edge or result.confidence < 0.6


def test_explicit_prediction_centres_the_search(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    frame = _crop(canvas, (72, 72), (15, -9))
    missed = tracker.track(frame, predicted_mm=(0.0, 0.0))
    assert abs(missed.row_px - 15) > 3 and (missed.at_edge or missed.confidence < 0.6)
    assert tracker.lost
    # The normal window when asked for; by default, while lost, the re-acquisition window.
    for wide, (search_r, search_c) in ((False, tracker.search_px), (None, tracker.reacquire_px)):
        tracker.track(frame, predicted_mm=(0.0, 0.0), wide=False)
        assert tracker.lost
        result = tracker.track(frame, predicted_mm=(14 * SPACING_MM[0], -8 * SPACING_MM[1]), wide=wide)
        assert result.valid and not result.at_edge and not tracker.lost
        assert (result.row_px, result.col_px) == pytest.approx((15, -9), abs=0.05)
        row0, col0, n_rows, n_cols = tracker.last_search_window_px
        origin_r, origin_c = tracker.template_origin_px
        assert (row0, col0) == (origin_r + 14 - search_r, origin_c - 8 - search_c)
        assert (n_rows, n_cols) == (2 * search_r + 1, 2 * search_c + 1)


def test_search_window_is_clipped_at_the_image_border(canvas: np.ndarray) -> None:
    centre = (14, 16)  # lesion close to the top-left corner
    # 10 mm of context keeps the template itself clear of the left border
    tracker = TemplateTracker(_crop(canvas, centre), _lesion_mask(centre), SPACING_MM, context_mm=10.0)
    origin_r, origin_c = tracker.template_origin_px
    search_r, search_c = tracker.search_px
    assert origin_r < search_r  # the window must be clipped at the top

    result = tracker.track(_crop(canvas, centre, (-2, 1)))
    assert result.valid and not result.at_edge
    assert (result.row_px, result.col_px) == pytest.approx((-2, 1), abs=0.05)
    row0, col0, n_rows, n_cols = tracker.last_search_window_px
    assert row0 == 0 and n_rows == origin_r + search_r + 1
    assert col0 == origin_c - search_c and n_cols == 2 * search_c + 1

    # The template touching the image border: found, but flagged (it may lie beyond).
    tracker.reset()
    result = tracker.track(_crop(canvas, centre, (-origin_r, 0)))
    assert result.valid and result.at_edge
    assert result.row_px == -origin_r
    # Beyond the border: the best match is stuck on the border, and flagged.
    tracker.reset()
    result = tracker.track(_crop(canvas, centre, (-origin_r - 4, 0)))
    assert result.at_edge or not result.valid or result.confidence < 0.5


def test_target_leaving_the_image_is_flagged(canvas: np.ndarray) -> None:
    """The lesion drifts down and out of the frame in 6 px steps, tracked with the
    default prediction: tracked while the template fits, then flagged."""
    tracker = TemplateTracker(_crop(canvas, (72, 72)), _lesion_mask((72, 72)), SPACING_MM)
    h = tracker.template_shape[0]
    last_fit = FRAME_SHAPE[0] - h - tracker.template_origin_px[0]  # largest shift that fits
    flagged = []
    for shift in range(0, last_fit + 19, 6):
        result = tracker.track(_crop(canvas, (72, 72), (shift, 0)))
        if shift < last_fit:
            assert result.valid and not result.at_edge, shift
            assert result.row_px == pytest.approx(shift, abs=0.05)
        else:
            flagged.append(result.at_edge or not result.valid or result.confidence < 0.5)
    assert len(flagged) >= 3 and all(flagged)


# --------------------------------------------------------------------------- bad frames


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_pixels_in_the_window_give_an_invalid_result(
    tracker: TemplateTracker, canvas: np.ndarray, bad: float
) -> None:
    frame = _crop(canvas, (72, 72), (2, 1))
    frame[75, 70] = bad
    result = tracker.track(frame)
    assert not result.valid
    assert "NaN or inf" in result.reason
    assert result.confidence == 0.0 and not result.at_edge
    assert math.isnan(result.row_mm) and math.isnan(result.col_px) and math.isnan(result.peak_zncc)
    whole = np.full(FRAME_SHAPE, bad, dtype=np.float32)
    assert not tracker.track(whole).valid
    # a bad pixel outside the searched region does not matter
    frame = _crop(canvas, (72, 72), (2, 1))
    frame[2, 3] = bad
    result = tracker.track(frame)
    assert result.valid and result.row_px == pytest.approx(2, abs=0.05)


def test_invalid_frame_keeps_the_last_valid_prediction(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    assert tracker.track(_crop(canvas, (72, 72), (5, 0))).valid
    assert not tracker.track(np.full(FRAME_SHAPE, np.nan, dtype=np.float32)).valid
    result = tracker.track(_crop(canvas, (72, 72), (10, 0)))  # 10 px: only reachable from 5
    assert result.valid and not result.at_edge
    assert result.row_px == pytest.approx(10, abs=0.05)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (np.zeros(FRAME_SHAPE, np.float32), "no contrast"),
        (np.full(FRAME_SHAPE, 7.0, np.float32), "no contrast"),
        (np.zeros((100, 144), np.float32), "image shape"),
        (np.zeros((144, 144, 3), np.float32), "image shape"),
        (np.zeros(144, np.float32), "image shape"),
        (np.zeros((144, 144, 3), np.float64), "2D"),
        (np.array([["a", "b"], ["c", "d"]]), "real numeric"),
        ([[1.0, 2.0], [3.0]], "not an array"),
        ("not a frame", "2D"),
        (None, "2D"),
        (np.zeros(FRAME_SHAPE, np.complex64), "real numeric"),
    ],
)
def test_untrackable_frames_are_invalid_not_errors(
    tracker: TemplateTracker, frame: object, reason: str
) -> None:
    result = tracker.track(frame)
    assert not result.valid
    assert reason in result.reason
    assert result.confidence == 0.0


def test_other_dtypes_and_layouts_are_converted(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    frame = _crop(canvas, (72, 72), (3, -2))
    expected = tracker.track(frame)
    readonly = frame.copy()
    readonly.flags.writeable = False
    for variant in (
        frame.astype(np.float64),
        np.asfortranarray(frame),
        np.round(frame).astype(np.uint16),
        readonly,
        frame.tolist(),
    ):
        tracker.reset()
        result = tracker.track(variant)
        assert result.valid
        assert (result.row_px, result.col_px) == pytest.approx(
            (expected.row_px, expected.col_px), abs=0.05
        )


@pytest.mark.parametrize(
    ("predicted_mm", "reason"),
    [
        ((math.nan, 0.0), "not finite"),
        ((0.0, math.inf), "not finite"),
        ((1000.0, 0.0), "outside the image"),
        ((0.0, -1e300), "outside the image"),
    ],
)
def test_unusable_predictions_give_an_invalid_result(
    tracker: TemplateTracker, canvas: np.ndarray, predicted_mm: tuple[float, float], reason: str
) -> None:
    result = tracker.track(_crop(canvas, (72, 72)), predicted_mm=predicted_mm)
    assert not result.valid and reason in result.reason
    assert 0 in tracker.last_search_window_px[2:]


def test_malformed_prediction_is_a_programming_error(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    with pytest.raises(ValueError, match="predicted_mm: must be"):
        tracker.track(
            _crop(canvas, (72, 72)), predicted_mm=(1.0, 2.0, 3.0)
        )


# --------------------------------------------------------------------------- construction


def _construct(canvas: np.ndarray, **changes: object) -> TemplateTracker:
    kwargs: dict[str, object] = dict(
        reference=_crop(canvas, (72, 72)),
        target_mask=_lesion_mask((72, 72)),
        spacing_mm=SPACING_MM,
    )
    kwargs.update(changes)
    return TemplateTracker(**kwargs)


def _with_nan(frame: np.ndarray, row: int, col: int) -> np.ndarray:
    frame = frame.copy()
    frame[row, col] = np.nan
    return frame


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(target_mask=np.zeros(FRAME_SHAPE, bool)), "target_mask: must contain"),
        (dict(target_mask=np.ones((144, 100), bool)), "target_mask: shape"),
        (dict(target_mask=_lesion_mask((72, 72)).astype(np.uint8)), "target_mask: dtype"),
        (
            dict(reference=_with_nan(_crop(_canvas(), (72, 72)), 72, 72)),
            "reference: must be finite",
        ),
        (dict(reference=np.full(FRAME_SHAPE, 5.0)), "reference: no contrast"),
        (dict(reference=np.zeros((144, 144, 2))), "reference: must be a 2D"),
        (dict(context_mm=200.0), "context_mm: template"),
        (dict(target_mask=np.ones(FRAME_SHAPE, bool), context_mm=0.0), "context_mm: template"),
        (dict(context_mm=-1.0), "context_mm: must be finite and >= 0"),
        (dict(context_mm=math.nan), "context_mm: must be finite"),
        (dict(context_mm=None), "context_mm: must be a number"),
        (dict(spacing_mm=(0.0, 3.0)), r"spacing_mm\[0\]: must be finite and > 0"),
        (dict(spacing_mm=(2.4, -3.0)), r"spacing_mm\[1\]: must be finite and > 0"),
        (dict(spacing_mm=(math.nan, 3.0)), r"spacing_mm\[0\]"),
        (dict(spacing_mm=(2.4,)), "spacing_mm: must be"),
        (dict(spacing_mm=("a", 3.0)), r"spacing_mm\[0\]: must be a number"),
        (dict(search_mm=0.0), "search_mm: must be finite and > 0"),
        (dict(search_mm=math.inf), "search_mm"),
        (dict(dtype=np.int32), "dtype: must be float32 or float64"),
    ],
)
def test_bad_construction_raises_value_error(
    canvas: np.ndarray, changes: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        _construct(canvas, **changes)


def test_nonfinite_reference_outside_the_template_is_accepted(canvas: np.ndarray) -> None:
    tracker = _construct(canvas, reference=_with_nan(_crop(canvas, (72, 72)), 2, 2))
    assert tracker.track(_crop(canvas, (72, 72), (1, 1))).valid


def test_template_is_clipped_to_the_image(canvas: np.ndarray) -> None:
    centre = (14, 16)
    tracker = TemplateTracker(
        _crop(canvas, centre), _lesion_mask(centre), SPACING_MM, context_mm=40.0
    )
    mask = _lesion_mask(centre)
    assert tracker.template_origin_px == (0, 0)
    assert tracker.template_shape == (
        np.flatnonzero(mask.any(axis=1))[-1] + math.ceil(40.0 / SPACING_MM[0]) + 1,
        np.flatnonzero(mask.any(axis=0))[-1] + math.ceil(40.0 / SPACING_MM[1]) + 1,
    )


# --------------------------------------------------------------------------- results


def test_track_result_is_frozen_with_slots() -> None:
    result = TrackResult.invalid("why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.valid = True
    assert not hasattr(result, "__dict__")
    assert result.reason == "why" and result.confidence == 0.0 and not result.at_edge


def test_result_fields_are_plain_python_types(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    result = tracker.track(_crop(canvas, (72, 72), (1, 1)))
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        assert type(value) in (float, bool, str), (field.name, type(value))


def test_tracked_mask_is_the_reference_mask_moved(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    result = tracker.track(_crop(canvas, (72, 72), (4.4, -2.6)))
    moved = tracker.tracked_mask(result)
    np.testing.assert_array_equal(moved, _lesion_mask((76, 69)))  # rounded to (4, -3)
    assert not tracker.tracked_mask(TrackResult.invalid("x")).any()


@pytest.mark.parametrize("shift_px", [(60.0, 0.0), (-80.0, 0.0), (0.0, 75.0), (200.0, 0.0)])
def test_tracked_mask_drops_pixels_moved_out_of_the_image(
    tracker: TemplateTracker, shift_px: tuple[float, float]
) -> None:
    result = dataclasses.replace(
        TrackResult.invalid(""), row_px=shift_px[0], col_px=shift_px[1], valid=True
    )
    moved = tracker.tracked_mask(result)
    expected = np.zeros(FRAME_SHAPE, bool)
    rows, cols = np.nonzero(tracker.target_mask)
    rows = rows + int(shift_px[0])
    cols = cols + int(shift_px[1])
    inside = (rows >= 0) & (rows < FRAME_SHAPE[0]) & (cols >= 0) & (cols < FRAME_SHAPE[1])
    expected[rows[inside], cols[inside]] = True
    np.testing.assert_array_equal(moved, expected)


# --------------------------------------------------------------------------- hot path


def test_track_allocates_nothing_but_the_result(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    frame = _crop(canvas, (72, 72), (2.5, 1.5))
    for _ in range(3):
        tracker.track(frame)
    tracemalloc.start()
    try:
        for _ in range(20):  # first traced calls may fill interpreter caches
            result = tracker.track(frame)
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(200):
            result = tracker.track(frame)
        current, peak = tracemalloc.get_traced_memory()
        # control: the instrument does see a numpy buffer the size of the score map
        tracemalloc.reset_peak()
        scratch = np.zeros(tracker._scores.shape)
        _, control_peak = tracemalloc.get_traced_memory()
        del scratch
    finally:
        tracemalloc.stop()
    assert result.valid
    assert current - base < 512  # nothing retained across frames
    # At most a few small objects at a time (the result and its floats, ~0.5 kB): less
    # than any array holding the score map or a copy of the search window would need.
    assert peak - base < tracker._scores.nbytes
    assert control_peak - current >= tracker._scores.nbytes


def test_track_kernel_allocates_no_buffers(tracker: TemplateTracker, canvas: np.ndarray) -> None:
    """Numba's runtime allocates only the per-argument MemInfo wrappers of the arrays
    passed in (one per array and call), never a buffer inside the kernels (the search,
    then the sub-pixel refinement, then the target-focused alignment: the refinement
    kernel again)."""
    frame = _crop(canvas, (72, 72), (2.5, 1.5))
    assert not tracker.track(frame).at_edge  # so that the refinement runs too
    n_array_args = 0
    assert tracker._target_refiner is not None
    for kernel, calls in ((_search_kernel, 1), (_refine_kernel, 2)):
        (signature,) = [s for s in kernel.signatures if s[0] == numba.typeof(frame)]
        n_array_args += calls * sum(isinstance(t, numba.types.Array) for t in signature)
    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats()
        for _ in range(20):
            tracker.track(frame)
        after = rtsys.get_allocation_stats()
    finally:
        if not was_enabled:
            _nrt_python.memsys_disable_stats()
    assert after.alloc - before.alloc == 20 * n_array_args
    assert after.alloc - before.alloc == after.free - before.free


# --------------------------------------------------------------------------- re-acquisition
def test_a_target_that_jumps_out_of_the_window_and_back_is_flagged_then_found_again(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    # 10 rows = 24 mm: beyond the +-15 mm window (7 rows), within the +-30 mm
    # re-acquisition window (13 rows). Out, stay, back, stay.
    assert tracker.search_px[0] < 10 <= tracker.reacquire_px[0]
    path = [0, 10, 10, 10, 0, 0, 0]
    results = [tracker.track(_crop(canvas, (72, 72), (d, 0))) for d in path]
    lost = [r.at_edge or r.confidence < tracker.trust_floor for r in results]
    # The frame of each jump is flagged; the next is found in the re-acquisition window.
    assert lost == [False, True, False, False, True, False, False]
    for d, r, flagged in zip(path, results, lost):
        if not flagged:
            assert (r.row_px, r.col_px) == pytest.approx((d, 0), abs=0.05)
    assert not tracker.lost


def test_a_target_back_at_the_reference_beyond_the_reacquisition_window_is_found(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    # Followed in 6-row steps to row 18, then back at 0 at once: 18 rows is beyond the
    # re-acquisition window around row 18 (13 rows), so it takes the second search, around
    # the reference position.
    assert 18 - tracker.reacquire_px[0] > 0
    path = [0, 6, 12, 18, 0, 0]
    results = [tracker.track(_crop(canvas, (72, 72), (d, 0))) for d in path]
    lost = [r.at_edge or r.confidence < tracker.trust_floor for r in results]
    assert lost == [False, False, False, False, True, False]
    for d, r, flagged in zip(path, results, lost):
        if not flagged:
            assert (r.row_px, r.col_px) == pytest.approx((d, 0), abs=0.05)


def test_a_weak_match_never_moves_the_window(tracker: TemplateTracker, canvas: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    assert tracker.track(_crop(canvas, (72, 72), (2, 0))).row_px == pytest.approx(2, abs=0.05)
    # Frames without the target (noise): each best match is weak and lies anywhere; a
    # window that followed them would wander off.
    for _ in range(10):
        r = tracker.track((100.0 + 15.0 * rng.normal(size=FRAME_SHAPE)).astype(np.float32))
        assert r.confidence < tracker.trust_floor and tracker.lost
    # Searched around the last confident position (row 2) in the re-acquisition window.
    r = tracker.track(_crop(canvas, (72, 72), (-9, 0)))
    row0, _, n_rows, _ = tracker.last_search_window_px
    assert row0 == tracker.template_origin_px[0] + 2 - tracker.reacquire_px[0]
    assert n_rows == 2 * tracker.reacquire_px[0] + 1
    assert r.row_px == pytest.approx(-9, abs=0.05) and not tracker.lost


def test_reacquisition_settings_are_checked(canvas: np.ndarray) -> None:
    frame, mask = _crop(canvas, (72, 72)), _lesion_mask((72, 72))
    with pytest.raises(ValueError, match="trust_floor"):
        TemplateTracker(frame, mask, SPACING_MM, trust_floor=1.5)
    with pytest.raises(ValueError, match="reacquire_mm: must be at least search_mm"):
        TemplateTracker(frame, mask, SPACING_MM, search_mm=15.0, reacquire_mm=10.0)
    assert TemplateTracker(frame, mask, SPACING_MM, reacquire_mm=15.0).reacquire_px == (7, 5)


def test_a_weak_match_while_reacquiring_is_unconfirmed_and_not_followed(canvas: np.ndarray) -> None:
    centre = (72, 72)
    tracker = TemplateTracker(_crop(canvas, centre), _lesion_mask(centre), SPACING_MM, reacquire_floor=0.99)
    rng = np.random.default_rng(2)
    tracker.track(_crop(canvas, centre, (20, 0)))  # beyond the window: lost
    assert tracker.lost
    # Found in the re-acquisition window, but noisy (ZNCC ~0.9 < 0.99): not vouched for.
    noisy = _crop(canvas, centre, (3, 0)) + rng.normal(0.0, 8.0, FRAME_SHAPE).astype(np.float32)
    r = tracker.track(noisy)
    assert tracker.trust_floor <= r.confidence < 0.99 and not r.at_edge
    assert r.unconfirmed and tracker.lost
    assert r.row_px == pytest.approx(3, abs=0.5)
    # Not followed: the next search is again the re-acquisition window around 0.
    r = tracker.track(_crop(canvas, centre, (3, 0)))
    row0, _, n_rows, _ = tracker.last_search_window_px
    assert row0 == tracker.template_origin_px[0] - tracker.reacquire_px[0]
    assert r.confidence >= 0.99 and not r.unconfirmed and not tracker.lost  # confirmed


def test_a_bad_pixel_only_the_reacquisition_window_holds_does_not_keep_the_tracker_lost(
    tracker: TemplateTracker, canvas: np.ndarray
) -> None:
    rng = np.random.default_rng(4)
    tracker.track((100.0 + 15.0 * rng.normal(size=FRAME_SHAPE)).astype(np.float32))
    assert tracker.lost
    frame = _crop(canvas, (72, 72), (2, 0))
    # A NaN row inside the re-acquisition window, outside the normal one.
    frame[tracker.template_origin_px[0] - tracker.search_px[0] - 3, :] = np.nan
    r = tracker.track(frame)
    assert r.valid and r.row_px == pytest.approx(2, abs=0.05)
    assert tracker.last_search_window_px[2] == 2 * tracker.search_px[0] + 1  # the normal window


# --------------------------------------------------------------------------- target-focused alignment
def _sliding_frame(
    shift_texture_px: tuple[float, float], shift_lesion_px: tuple[float, float], seed: int = 3,
    lesion_contrast: float = 20.0, texture_sd: float = 25.0,
) -> np.ndarray:
    """Texture and a lesion that move by different amounts (the lesion slides against its
    surroundings), on a 144 x 144 frame with the lesion at (72, 72) at rest."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:CANVAS_SIZE, 0:CANVAS_SIZE].astype(float)
    texture = ndimage.gaussian_filter(rng.normal(size=rows.shape), 2.5)
    texture = texture_sd * texture / texture.std()
    texture = ndimage.shift(texture, shift_texture_px, order=3, mode="nearest")
    centre = CANVAS_SIZE / 2.0
    r = rows - centre - shift_lesion_px[0]
    c = cols - centre - shift_lesion_px[1]
    disk = np.hypot(r * SPACING_MM[0], c * SPACING_MM[1])
    lesion = 0.5 * (1.0 - np.tanh((disk - LESION_RADIUS_MM) / 1.5))
    image = 100.0 + texture * (1.0 - lesion) + lesion_contrast * lesion
    top = int(centre) - 72
    return image[top : top + FRAME_SHAPE[0], top : top + FRAME_SHAPE[1]].astype(np.float32)


def test_the_tracker_follows_a_lesion_that_slides_against_its_context() -> None:
    """The 20 mm context pulls the ZNCC match toward the texture; the target-focused
    alignment (and the disagreement model built over the frames) follows the lesion."""
    ref = _sliding_frame((0.0, 0.0), (0.0, 0.0))
    mask = _lesion_mask((72, 72))
    focused = TemplateTracker(ref, mask, SPACING_MM)
    context_only = TemplateTracker(ref, mask, SPACING_MM, target_context_mm=None)
    errors: dict[str, list[float]] = {"focused": [], "context": []}
    for k in range(1, 40):
        lesion = (5.0 * math.sin(0.4 * k), 2.5 * math.sin(0.4 * k + 0.5))
        texture = (lesion[0] / 1.3, lesion[1] / 1.3)  # the lesion moves 30 % more
        frame = _sliding_frame(texture, lesion)
        for name, tracker in (("focused", focused), ("context", context_only)):
            r = tracker.track(frame)
            assert r.valid and not r.at_edge
            errors[name].append(math.hypot(r.row_px - lesion[0], r.col_px - lesion[1]))
            if name == "focused":
                assert not r.inconsistent, (k, r)
    assert np.mean(errors["focused"][10:]) < 0.2
    assert np.mean(errors["context"][10:]) > 3.0 * np.mean(errors["focused"][10:])


def test_a_match_the_target_does_not_confirm_is_inconsistent() -> None:
    """The context matches (the texture is where it was) but the lesion has moved 2.5
    pixels (7.5 mm) away from it on one frame: the target-focused alignment disagrees
    with the context match beyond max_disagreement_mm, the result is inconsistent, the
    gate may not use its confidence, and the window does not follow it."""
    ref = _sliding_frame((0.0, 0.0), (0.0, 0.0), lesion_contrast=12.0)
    tracker = TemplateTracker(ref, _lesion_mask((72, 72)), SPACING_MM)
    assert not tracker.track(_sliding_frame((0.5, 0.0), (0.5, 0.0), lesion_contrast=12.0)).inconsistent
    slid = _sliding_frame((0.5, 0.0), (0.5, 2.5), lesion_contrast=12.0)
    r = tracker.track(slid)
    assert r.valid and not r.at_edge and r.confidence >= 0.5 and r.inconsistent, r
    assert r.gate_confidence == 0.0 and not r.vouched
    assert tracker.lost


def test_the_disagreement_model_is_the_ridge_least_squares_fit() -> None:
    from tracking.tracker import _DisagreementModel

    rng = np.random.default_rng(4)
    model = _DisagreementModel()
    assert model.predict(1.0, 2.0) == (0.0, 0.0)
    design, target = [], []
    for _ in range(25):
        d = rng.normal(size=2) * 4.0
        dis = (0.3 + 0.1 * d[0] - 0.05 * d[1] + 0.01 * rng.normal(), -0.2 + 0.02 * d[0] + 0.1 * d[1])
        model.add(float(d[0]), float(d[1]), *dis)
        design.append((1.0, *d))
        target.append(dis)
    x, y = np.array(design), np.array(target)
    ridge = np.diag((0.0, model.RIDGE_PX2, model.RIDGE_PX2))
    coef = np.linalg.solve(x.T @ x + ridge, x.T @ y)
    np.testing.assert_allclose(model.predict(1.5, -2.0), coef.T @ (1.0, 1.5, -2.0), atol=1e-12)


def test_target_weight_is_one_on_the_target_and_falls_off() -> None:
    from tracking.tracker import target_weight

    mask = np.zeros((20, 20), dtype=bool)
    mask[8:12, 8:12] = True
    w = target_weight(mask, (2.0, 2.0), 2.0)
    assert (w[mask] == 1.0).all() and w[7, 10] == 1.0  # within one pixel of the target
    # 3 px (6 mm) from the target: 4 mm beyond the one-pixel band, sigma 2 mm
    assert w[10, 14] == pytest.approx(math.exp(-0.5 * (4.0 / 2.0) ** 2))
    assert w[0, 0] == 0.0  # negligible weights are exactly 0
