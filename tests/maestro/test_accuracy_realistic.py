"""The accuracy targets of issue 12 on the realistic cases: lesions in the motion field
of a real volunteer series (:mod:`maestro.phantom.motion`), tracked with replay's defaults
(the deformable mode) at both MRIdian geometries, every case, tuning and held-out.

Bounded: 40 s of each case, as the README's table (``maestro accuracy --realistic
../shared/data/cine/liver-3T-volunteer-KS81 --seconds 40``). Skips when ../shared is
absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maestro.accuracy import evaluate_realistic
from maestro.phantom.motion import MOTION_CASES

pytestmark = pytest.mark.system

SERIES = "cine/liver-3T-volunteer-KS81"
GEOMETRIES = ["mridian-8fps", "mridian-4fps"]
#: With a binary reference (a label image, ``dice_mask_ref``) Dice >= 0.90 on lesions >= 2 cm
#: is missed here (0.899 measured): the 20 mm dome lesion at 3.5 mm pixels, 5-6 pixels
#: across, whose reference edge then moves in whole pixels. From a contour's partial
#: volume (``dice``, what --target-rtstruct gives) it is met (0.937).
DICE_MASK_REF_MISSED = {("dome-hypo-20", "mridian-4fps")}


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("case", [c.name for c in MOTION_CASES])
def test_replay_defaults_meet_the_accuracy_targets_on_realistic_cases(shared_data: Path, case: str, geometry: str) -> None:
    acc = evaluate_realistic(case, geometry, seconds=40.0, deformable=True, series_folder=shared_data / SERIES)
    summary = (
        f"{case} ({acc.role}) {geometry}: mean {acc.mean_mm:.2f}, p95 {acc.p95_mm:.2f}, max unflagged "
        f"{acc.max_unflagged_mm:.2f}, >2 mm {acc.large} ({acc.large_flagged_pct:.0f} % flagged), held "
        f"{acc.flagged_pct:.1f} %, dice {acc.dice:.3f} ({acc.dice_mask_ref:.3f} from a mask), "
        f"beam on {acc.duty_pct:.1f} % with the true target "
        f"> threshold + 2 in {acc.wrong_on_2_pct:.1f} % of them, > + 5 in {acc.wrong_on_5} frames"
    )
    assert acc.frames >= 159, summary
    assert acc.mode == "deformable"
    assert acc.mean_mm <= 0.5, summary
    assert acc.p95_mm <= 1.0, summary
    assert acc.max_unflagged_mm <= 2.0, summary
    assert acc.large_flagged_pct >= 95.0, summary
    assert acc.flagged_pct <= 5.0, summary  # the targets are not met by holding the beam
    # Gating at 3 mm / 10 % with the default 1 mm uncertainty allowance, truth from the
    # exact warped lesion: never on beyond + 5 points, at most 1 % of beam-on beyond + 2.
    assert acc.wrong_on_5 == 0, summary
    assert acc.wrong_on_2_pct <= 1.0, summary
    assert acc.duty_pct >= 0.5 * acc.ideal_duty_pct, summary  # ... and not by never switching it on
    if acc.lesion_mm >= 20.0:
        assert acc.dice >= 0.90, summary
        if (case, geometry) not in DICE_MASK_REF_MISSED:
            assert acc.dice_mask_ref >= 0.90, summary
    # The contour's partial volume is worth propagating: never worse than the mask.
    assert acc.dice >= acc.dice_mask_ref, summary


@pytest.mark.xfail(strict=True, reason="Dice 0.899 < 0.90 from a binary reference mask on the 20 mm dome lesion "
                   "at 4 fps (issue 12, not met; 0.937 from the contour's partial volume)")
def test_dice_target_from_a_binary_mask_on_the_small_dome_lesion_at_4fps(shared_data: Path) -> None:
    acc = evaluate_realistic("dome-hypo-20", "mridian-4fps", seconds=40.0, deformable=True,
                             series_folder=shared_data / SERIES)
    assert acc.dice_mask_ref >= 0.90
