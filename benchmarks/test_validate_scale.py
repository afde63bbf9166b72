"""``maestro validate`` at cohort scale: 50 phantom sessions of 60 s at 8 frames/s, each
gated in 36 configurations (4 margins x 3 thresholds x 3 beam latencies), report included,
in under 5 minutes on 2 cores.

The default run validates fewer sessions (``MAESTRO_VALIDATE_BENCH_SESSIONS``, default 6;
2 with ``--bench-quick``) and extrapolates linearly to 50: the pool runs two cases at a
time, so the wall time grows with the number of cases, and the fixed start-up (worker
processes, warm-up) is counted in full in the extrapolation, which only overstates it.
Set ``MAESTRO_VALIDATE_BENCH_SESSIONS=50`` to measure the whole goal directly. Phantom
generation is set-up, not timed.

Two figures are extrapolated: the wall time, and the CPU time of the parent and its worker
processes divided by the 2 cores — what the wall time is on a machine the run has to
itself. The goal is judged on the second, because this machine is shared with other jobs
(the load average is printed with the result); both are printed.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from hardware.trackrad import write_case
from maestro.phantom import generate_session
from maestro.validation import ValidationSettings, run_cohort, write_outputs

GOAL_SESSIONS = 50
GOAL_SECONDS = 300.0
SESSION_S = 60.0
WORKERS = 2
SETTINGS = ValidationSettings(
    margins_mm=(2.0, 3.0, 4.0, 5.0), thresholds_pct=(5.0, 10.0, 20.0), latencies_ms=(0.0, 100.0, 250.0)
)


def _sessions(quick: bool) -> int:
    return int(os.environ.get("MAESTRO_VALIDATE_BENCH_SESSIONS", "2" if quick else "6"))


def test_cohort_of_50_sessions_x_36_configurations_under_5_minutes(
    quick: bool, figures, tmp_path: Path
) -> None:
    n = _sessions(quick)
    assert len(SETTINGS.configurations()) == 36
    paths = []
    for seed in range(1, n + 1):
        s = generate_session("mridian-8fps", seconds=SESSION_S, seed=seed)
        paths.append(write_case(tmp_path / "cohort" / f"s{seed:02d}", f"s{seed:02d}", s.frames, s.labels,
                                spacing_mm=s.spacing_mm, fps=s.fps))
    load_before = os.getloadavg()[0]
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    results = run_cohort(paths, SETTINGS, workers=WORKERS, progress=None)
    t_cases = time.perf_counter() - t0
    write_outputs(tmp_path / "report", results, SETTINGS, {"source": str(tmp_path / "cohort"), "elapsed_s": t_cases})
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0  # the pool's workers have exited (and been waited for) by now
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    frames = sum(r.n_frames for r in results)
    assert frames == n * int(SESSION_S * 8)
    worker_s = sum(r.seconds for r in results)
    extrapolated = wall * GOAL_SESSIONS / n
    dedicated = cpu / WORKERS * GOAL_SESSIONS / n
    print(
        f"\nvalidate: {n} sessions x {SESSION_S:g} s x 8 fps ({frames} frames) x 36 configurations on {WORKERS} "
        f"workers: {wall:.1f} s wall ({t_cases:.1f} s cases, {wall - t_cases:.1f} s report), "
        f"{frames / wall:.0f} frames/s, {worker_s / n:.1f} s of worker time per case; "
        f"CPU {cpu:.1f} s ({cpu / n:.1f} s per case); extrapolated to {GOAL_SESSIONS} sessions: wall "
        f"{extrapolated:.0f} s here, {dedicated:.0f} s on {WORKERS} dedicated cores (goal {GOAL_SECONDS:.0f} s); "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    figures.record(validate_sessions=n, validate_wall_s=wall, validate_cpu_s_per_case=cpu / n,
                   validate_50_sessions_wall_s=extrapolated, validate_50_sessions_dedicated_s=dedicated)
    assert dedicated < GOAL_SECONDS


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
