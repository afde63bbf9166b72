"""Tests of tracking.warmup (with gating.warmup for the deformable mode's gate): after
warm_up(), the first tracked frame compiles nothing, rigid or deformable.

Each check runs in a fresh interpreter: in this test process earlier tests have already
compiled the kernels, which would hide a signature that warm_up() forgot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# For each case (dtype, read-only frame or not), in that order, prints how many
# compilations Numba reported during the first track() of a new tracker, and how many new
# overloads (compiled or loaded from the on-disk cache) the tracking dispatchers gained;
# then the same for the deformable mode's first frame, as a session's set-up and first
# frame run it: AffineRegistration and DeformedOutside built (their constructors run their
# kernels), the frame registered from the rigid match and its outside percentage taken.
# The cases use distinct argument types, so an earlier case cannot hide a later one.
_PROBE = textwrap.dedent(
    """
    import json, sys
    import numba
    import numpy as np
    from numba.core import event
    import gating.deformed_outside, tracking.deformable, tracking.refine, tracking.tracker, tracking.zncc
    from gating.deformed_outside import DeformedOutside
    from gating.warmup import warm_up as warm_up_gating
    from tracking import TemplateTracker, warm_up
    from tracking.deformable import REG_OK, AffineRegistration

    warm = sys.argv[1]
    cases = [(np.dtype(arg.split(":")[0]), arg.endswith(":ro")) for arg in sys.argv[2:]]

    def dispatchers(modules):
        return [
            obj
            for module in modules
            for obj in vars(module).values()
            if isinstance(obj, numba.core.dispatcher.Dispatcher)
        ]

    RIGID = (tracking.zncc, tracking.tracker)
    DEFORMABLE = (tracking.refine, tracking.deformable, gating.deformed_outside)

    if warm == "all":
        warm_up()
        warm_up_gating()
    elif warm == "session":  # what GatingSession.run() calls
        warm_up(dtypes=(np.float32,), map_functions=False)
        warm_up_gating()
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:144, 0:144]
    lesion = (rows - 70) ** 2 + (cols - 75) ** 2 < 40
    reports = []
    for dtype, readonly in cases:
        reference = (rng.normal(size=(144, 144)) + 3.0 * lesion).astype(dtype)
        tracker = TemplateTracker(reference, lesion, (2.4, 2.4), dtype=dtype)
        frame = np.roll(reference, (2, -1), axis=(0, 1)).copy()
        frame.flags.writeable = not readonly

        before = {d: len(d.overloads) for d in dispatchers(RIGID)}
        with event.install_recorder("numba:compile") as recorder:
            result = tracker.track(frame)
        report = {
            "case": f"{dtype}{':ro' if readonly else ''}",
            "compile_events": len(recorder.buffer),
            "new_overloads": sum(len(d.overloads) - n for d, n in before.items()),
            "n_dispatchers": len(before),
            "valid": result.valid,
            "row_px": result.row_px,
        }

        before = {d: len(d.overloads) for d in dispatchers(DEFORMABLE)}
        with event.install_recorder("numba:compile") as recorder:
            registration = AffineRegistration(reference, lesion, (2.4, 2.4))
            outside = DeformedOutside(lesion, (2.4, 2.4), 3.0)
            status = registration.register(frame, result.row_px, result.col_px)
            pct = outside.outside_pct(registration.affine)
        report.update({
            "deformable_compile_events": len(recorder.buffer),
            "deformable_new_overloads": sum(len(d.overloads) - n for d, n in before.items()),
            "deformable_n_dispatchers": len(before),
            "registered": status == REG_OK,
            "affine_row_px": float(registration.affine[0, 2]),
            "outside_pct": pct,
        })
        reports.append(report)
    print(json.dumps(reports))
    """
)

CASES = ("float32", "float32:ro", "float64", "float64:ro")


def _probe(warm: str, cases: tuple[str, ...]) -> list[dict[str, object]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, warm, *cases],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_no_compilation_on_first_frame_after_warm_up() -> None:
    """float32 and float64 trackers and registrations, writeable and read-only frames
    (Numba types the two differently; frames handed over by a source are often read-only)."""
    _assert_nothing_compiled(_probe("all", CASES), CASES)


def test_a_sessions_warm_up_covers_its_float32_tracker() -> None:
    """GatingSession warms up float32 tracking only (its tracker's dtype), the
    deformable step included."""
    cases = ("float32", "float32:ro")
    _assert_nothing_compiled(_probe("session", cases), cases)


def _assert_nothing_compiled(reports: list[dict[str, object]], cases: tuple[str, ...]) -> None:
    assert [r["case"] for r in reports] == list(cases)
    for report in reports:
        assert report["n_dispatchers"] >= 5, report
        assert report["compile_events"] == 0, report
        assert report["new_overloads"] == 0, report
        assert report["valid"] and abs(report["row_px"] - 2.0) < 0.05, report
        assert report["deformable_n_dispatchers"] >= 4, report
        assert report["deformable_compile_events"] == 0, report
        assert report["deformable_new_overloads"] == 0, report
        assert report["registered"] and abs(report["affine_row_px"] - 2.0) < 0.05, report
        assert 0.0 <= report["outside_pct"] <= 100.0, report


def test_probe_detects_the_first_frame_dispatch_without_warm_up() -> None:
    """Control: without warm_up() the same first frame does add kernels (compiled, or
    loaded from Numba's cache), so the probe above can fail."""
    (report,) = _probe("none", ("float32",))
    assert report["new_overloads"] > 0
    assert report["valid"]
    # Built and run on the first frame, the registration and DeformedOutside load theirs.
    assert report["deformable_new_overloads"] > 0
    assert report["registered"]
