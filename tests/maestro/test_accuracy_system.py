"""The accuracy targets of issue 5 on phantoms driven by the nine real KIM liver traces,
in both MRIdian cine modes, plus prediction and a 20-minute no-drift check.

Bounded: 60 s of each trace (the 20-minute session at 4 fps). Skips when ../shared is
absent. Reproduce the tables with ``maestro accuracy`` (README, "Accuracy").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardware.motion_trace import read_kim_trace
from maestro.accuracy import evaluate_prediction, evaluate_tracking
from maestro.phantom import excursions_for

pytestmark = pytest.mark.system

KIM = "motion/kim-liver"
TRACES = [
    "BaselineWanderWithCardiac70s",
    "BreathHold1",
    "Erratic70s",
    "LargeSI70s",
    "LargeSIandAP70s",
    "LargeSIandAPWithBreathHold",
    "RegularBreathing70s",
    "Transient70s",
    "TransientWithBreathHold",
]
GEOMETRIES = ["mridian-8fps", "mridian-4fps"]


def _trace(shared_data: Path, name: str):
    return read_kim_trace(shared_data / KIM / f"LiverTraj_{name}_robot.txt")


def test_all_nine_traces_are_there(shared_data: Path) -> None:
    names = sorted(p.stem.removeprefix("LiverTraj_").removesuffix("_robot") for p in (shared_data / KIM).glob("*.txt"))
    assert names == sorted(TRACES)


#: Sessions that miss the targets (mean <= 0.5 mm, p95 <= 1.0 mm, every frame > 2 mm
#: flagged), measured 2026-12-07 with ``maestro accuracy --seconds 60 [--slide-pct 10]
#: [--rigid]``. The sliding Erratic70s at 4 fps: a lesion moving 10 % more than its
#: surroundings through an erratic trace, sampled at 4 fps.
MISSED = {
    ("deformable", 0.1, "Erratic70s", "mridian-4fps"): "p95 1.38 mm",
    ("rigid", 0.1, "Erratic70s", "mridian-4fps"): "p95 1.03 mm",
}


@pytest.mark.parametrize("slide", [0.0, 0.1], ids=["moving-with-anatomy", "sliding-10pct"])
@pytest.mark.parametrize("mode", ["deformable", "rigid"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("index", range(len(TRACES)), ids=TRACES)
def test_tracking_meets_the_accuracy_targets(shared_data: Path, index: int, geometry: str, mode: str, slide: float,
                                             request: pytest.FixtureRequest) -> None:
    missed = MISSED.get((mode, slide, TRACES[index], geometry))
    if missed:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"issue 12, not met: {missed}"))
    # The same seeds as `maestro accuracy` (seed 1 + trace index): lesions 15-35 mm.
    acc = evaluate_tracking(_trace(shared_data, TRACES[index]), geometry, seconds=60.0, seed=1 + index,
                            slide=slide, deformable=mode == "deformable")
    summary = (
        f"{acc.trace} {geometry} {acc.mode} slide {slide:g}: lesion {acc.lesion_mm:.1f} mm, mean {acc.mean_mm:.2f}, "
        f"p95 {acc.p95_mm:.2f}, max unflagged {acc.max_unflagged_mm:.2f}, >2 mm {acc.large} "
        f"({acc.large_flagged_pct:.0f} % flagged), dice {acc.dice_mean:.3f}"
    )
    assert acc.frames >= 239
    assert acc.mode == mode
    assert acc.mean_mm <= 0.5, summary
    assert acc.p95_mm <= 1.0, summary
    assert acc.max_unflagged_mm <= 2.0, summary
    assert acc.large_flagged_pct >= 95.0, summary
    if acc.lesion_mm >= 20.0:
        assert acc.dice_mean >= 0.90, summary


@pytest.mark.parametrize("fps", [4.0, 8.0])
@pytest.mark.parametrize("name", TRACES)
def test_prediction_is_never_worse_than_none(shared_data: Path, name: str, fps: float) -> None:
    p = evaluate_prediction(_trace(shared_data, name), fps, 250.0)
    assert p.ridge_ar_mm <= p.none_mm, p


@pytest.mark.parametrize("fps", [4.0, 8.0])
def test_prediction_cuts_the_error_by_40_pct_on_regular_breathing(shared_data: Path, fps: float) -> None:
    p = evaluate_prediction(_trace(shared_data, "RegularBreathing70s"), fps, 250.0)
    assert p.gain_pct >= 40.0, p


@pytest.mark.parametrize("max_references", [1, 3], ids=["fixed", "3-references"])
def test_error_does_not_grow_over_a_20_minute_session(shared_data: Path, max_references: int) -> None:
    """Neither the default fixed reference nor the multi-reference option drifts: a 1200 s
    session (the regular breathing trace played back and forth, with intensity drift and
    lesion deformation) at 4 fps."""
    acc = evaluate_tracking(_trace(shared_data, "RegularBreathing70s"), "mridian-4fps",
                            seconds=1200.0, seed=7, loop=True, max_references=max_references)
    err = np.hypot(*(acc.tracked_mm[1:] - acc.true_mm[1:]).T)
    quarter = err.size // 4  # about 5 minutes each
    means = err[: 4 * quarter].reshape(4, quarter).mean(axis=1)
    assert acc.frames == 4799
    assert acc.mean_mm <= 0.5 and acc.p95_mm <= 1.0
    assert means[-1] <= means[0] + 0.1, means
    # no trend: the slope of the error over the session is below 0.05 mm per 10 min
    slope_mm_per_s = np.polyfit(np.arange(err.size) / 4.0, err, 1)[0]
    assert abs(slope_mm_per_s) * 600.0 < 0.05, slope_mm_per_s


@pytest.mark.parametrize("shift_mm", [20.0, 30.0, 45.0])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("index", range(len(TRACES)), ids=TRACES)
def test_a_target_lost_in_a_sudden_shift_is_flagged_and_found_again(
    shared_data: Path, index: int, geometry: str, shift_mm: float
) -> None:
    # Two whole-liver SI shifts beyond the +-15 mm window, held 1.5 s then back
    # (`maestro accuracy --excursion-mm 30`). Before re-acquisition (the window followed
    # every match), 30 mm shifts left 4 of these 18 sessions lost for the rest of the
    # session, and 45 mm ones gave unflagged errors of ~60 mm.
    trace = _trace(shared_data, TRACES[index])
    seconds = 30.0
    excursions = excursions_for(trace, seconds, shift_mm)
    acc = evaluate_tracking(trace, geometry, seconds=seconds, seed=1 + index, excursions=excursions)
    err = np.hypot(*(acc.tracked_mm - acc.true_mm).T)
    err[~np.isfinite(err)] = np.inf
    large_unflagged = int(np.count_nonzero((err[1:] > 2.0) & ~acc.flagged[1:]))
    summary = (f"{acc.trace} {geometry} {shift_mm:g} mm: >2 mm {acc.large} ({acc.large_flagged_pct:.0f} % flagged), "
               f"max unflagged {acc.max_unflagged_mm:.2f}, flagged {acc.flagged_pct:.1f} %")
    # Found again: from the second frame after each return, every frame is within 2 mm.
    fps = 8.0 if geometry == "mridian-8fps" else 4.0
    for start_s, duration_s, _, _ in excursions:
        k = int(np.ceil((start_s + duration_s) * fps - 1e-9)) + 2
        assert (err[k : k + int(3 * fps)] <= 2.0).all(), summary
    # Every frame > 2 mm flagged, but one: on a 30 mm jump's first frame in Transient70s at
    # 8 fps, a 0.54 ZNCC look-alike 16.5 mm off lies inside the normal window (README,
    # "Losing the target and finding it again").
    assert large_unflagged <= (1 if shift_mm == 30.0 else 0), summary
    assert acc.flagged_pct <= 25.0, summary
