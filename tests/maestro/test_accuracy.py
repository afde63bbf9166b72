"""Fast tests of maestro.accuracy on synthetic traces (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardware.motion_trace import MotionTrace, read_kim_trace
from maestro.accuracy import (
    LARGE_ERROR_MM,
    evaluate_gating,
    evaluate_prediction,
    evaluate_tracking,
    format_gating_table,
    format_prediction_table,
    format_tracking_table,
)
from maestro.cli import main
from maestro.phantom import TracePhantom, excursions_for


def _trace(seconds: float = 40.0, name: str = "Synthetic") -> MotionTrace:
    t = np.arange(0.0, seconds + 1e-9, 0.2)
    phase = np.sin(np.pi * t / 4.2) ** 4
    return MotionTrace(
        times_s=t,
        si_mm=-10.0 * phase,
        ap_mm=3.0 * phase,
        lr_mm=0.8 * np.sin(2 * np.pi * t / 9.0),
        source=f"LiverTraj_{name}_robot.txt",
    )


def _write(path: Path, trace: MotionTrace) -> Path:
    rows = np.column_stack((trace.times_s, trace.lr_mm, trace.si_mm, trace.ap_mm, np.zeros((trace.times_s.size, 3))))
    np.savetxt(path, rows, fmt="%.6f")
    return path


@pytest.fixture(scope="module")
def accuracy_4fps():
    return evaluate_tracking(_trace(), "mridian-4fps", seconds=15.0, seed=3, lesion_diameter_mm=24.0)


def test_tracking_accuracy_on_a_synthetic_trace(accuracy_4fps) -> None:
    acc = accuracy_4fps
    assert acc.frames == 59  # 60 frames, the first is the reference
    assert acc.tracked_mm.shape == acc.true_mm.shape == (60, 2)
    np.testing.assert_array_equal(acc.tracked_mm[0], [0.0, 0.0])
    err = np.hypot(*(acc.tracked_mm[1:] - acc.true_mm[1:]).T)
    assert acc.mean_mm == pytest.approx(err.mean())
    assert acc.p95_mm == pytest.approx(np.percentile(err, 95))
    assert acc.mean_mm <= 0.5 and acc.p95_mm <= 1.0
    assert acc.large == int((err > LARGE_ERROR_MM).sum())
    assert 0.9 <= acc.dice_mean <= 1.0
    assert acc.true_mm[:, 0].max() > 8.0  # the lesion did move


def test_flags_count_when_the_target_is_lost() -> None:
    """A search window too small for the motion loses the target: the large errors must
    then be flagged (peak on the window's edge), and the table says so. The
    re-acquisition window is kept as small, so that the target stays lost."""
    # The rigid tracker's flags (the deformable mode's registration, free to move 5 mm
    # from the rigid match, finds the target again within the small window).
    acc = evaluate_tracking(_trace(), "mridian-4fps", seconds=15.0, seed=3, lesion_diameter_mm=24.0,
                            search_mm=3.0, reacquire_mm=3.0, deformable=False)
    assert acc.large > 0
    assert acc.large_flagged_pct >= 95.0
    assert acc.max_unflagged_mm <= 2.0
    assert 0.0 < acc.flagged_pct < 100.0
    table = format_tracking_table([acc])
    assert "Synthetic" in table and "mridian-4fps" in table
    # With the default re-acquisition window (twice the search window) the target is
    # found again after each flagged frame: fewer large errors, none unflagged.
    found = evaluate_tracking(_trace(), "mridian-4fps", seconds=15.0, seed=3, lesion_diameter_mm=24.0,
                              search_mm=3.0, deformable=False)
    assert found.large < acc.large and found.max_unflagged_mm <= 2.0


def test_prediction_table_on_a_regular_trace() -> None:
    p = evaluate_prediction(_trace(120.0), 8.0, 250.0)
    assert p.ridge_ar_mm <= 0.6 * p.none_mm
    assert p.gain_pct == pytest.approx(100.0 * (1.0 - p.ridge_ar_mm / p.none_mm))
    assert p.velocity_mm < p.none_mm
    table = format_prediction_table([p])
    assert "250 ms" in table and "Synthetic" in table


def test_gating_accuracy_without_and_with_prediction(accuracy_4fps) -> None:
    trace = _trace()
    ref = TracePhantom(trace.times_s, np.stack((trace.si_mm, trace.ap_mm, trace.lr_mm), 1),
                       "mridian-4fps", 1.0, 3, 24.0).label_fraction(0) >= 0.5
    g = evaluate_gating(accuracy_4fps, trace, ref, (3.5, 3.5), 4.0, 250.0)
    for v in (g.wrong_on_pct, g.wrong_on_pred_pct, g.duty_pct, g.duty_pred_pct, g.ideal_duty_pct):
        assert 0.0 <= v <= 100.0
    assert 10.0 < g.ideal_duty_pct < 90.0  # the target leaves and re-enters the boundary
    assert abs(g.duty_pct - g.ideal_duty_pct) < 15.0
    assert "wrong-on" in format_gating_table([g])


def test_accuracy_command_prints_the_three_tables(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    _write(folder / "LiverTraj_A_robot.txt", _trace(30.0))
    code = main(["accuracy", "--traces", str(folder), "--seconds", "5", "--geometry", "mridian-4fps"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Tracking accuracy" in out and "Prediction" in out and "Gating" in out
    assert out.count("A ") >= 3  # one row per table
    assert read_kim_trace(folder / "LiverTraj_A_robot.txt").name == "A"


def test_accuracy_command_refuses_a_folder_without_traces(tmp_path: Path, capsys) -> None:
    assert main(["accuracy", "--traces", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no .txt" in err[0]
    assert main(["accuracy", "--traces", str(tmp_path / "absent")]) == 2
    assert "--traces" in capsys.readouterr().err


def test_excursions_go_towards_the_middle_of_the_si_range() -> None:
    # si = -10 sin(pi t / 4.2)^4: range [-10, 0], middle -5. At 3.0 s (30 % of 10 s) the
    # trace is at -3.74 mm, above the middle: the shift goes inferior (-); at 6.5 s it is at
    # -9.53 mm: superior (+).
    assert excursions_for(_trace(), 10.0, 25.0) == ((3.0, 1.5, -25.0, 0.0), (6.5, 1.5, 25.0, 0.0))
    assert excursions_for(_trace(), 10.0, 0.0) == ()


def test_accuracy_command_stress_run_with_excursions(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    _write(folder / "LiverTraj_A_robot.txt", _trace(30.0))
    code = main(["accuracy", "--traces", str(folder), "--seconds", "12", "--geometry", "mridian-4fps",
                 "--excursion-mm", "25"])
    assert code == 0
    out = capsys.readouterr().out
    assert "two sudden SI shifts of 25 mm per session, at 30 % and 65 % of it, each held 1.5 s" in out
    row = next(line for line in out.splitlines() if line.startswith("A ") and "mridian-4fps" in line).split()
    max_unflagged_mm, large, large_flagged_pct = float(row[6]), int(row[7]), float(row[8])
    # The jumps beyond the +-15 mm window cost large errors, every one flagged, and the
    # target is found again (a few frames per jump and return, not the rest of the session).
    assert 1 <= large <= 8 and large_flagged_pct == 100.0 and max_unflagged_mm <= 2.0
