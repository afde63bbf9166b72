"""The monitoring display's cost to the loop: loop p99 latency with and without it.

The same paced replay (8 fps phantom at x8 playback, so the display is drawing all the
time) runs without and then with the display, interleaved in pairs so that both see the
same machine load; the figure is the ratio of the loop's p99 latency (frame received ->
beam command, frame 0 excluded). Goal: within 10 % (the display runs in its own process
and the hand-off never waits; see maestro/display.py).

Figures: ``display_loop_p99_us``, ``nodisplay_loop_p99_us`` (medians over the pairs),
``display_p99_ratio`` (median of the per-pair ratios), ``display_frames_drawn``.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from hardware import SimulatedBeam
from maestro.display import run_with_display
from maestro.display_feed import ReplayControl
from maestro.observer import EachRecord
from maestro.session import GatingSession, SessionConfig

from . import workload

#: Playback speed: 64 frames/s of an 8 fps recording.
SPEED = 8.0
#: Goal: loop p99 with the display within this factor of without (plus a few µs of timer
#: resolution and scheduling noise).
RATIO_GOAL = 1.10
SLACK_US = 20.0


def _run(w: workload.Workload, n: int, display: bool) -> tuple[np.ndarray, int]:
    latency_us = np.full(n, np.nan)
    count = [0]

    def collect(record) -> None:
        latency_us[count[0]] = record.latency_us
        count[0] += 1

    control = ReplayControl(workload.PingPongSource(w, n), speed=SPEED)
    session = GatingSession(control, SessionConfig(deformable=False), SimulatedBeam(), None, observers=[EachRecord(collect)])
    drawn = 0
    if display:
        result = run_with_display(session, control=control, keep_open=False)
        drawn = result.frames_drawn
    else:
        session.run()
    assert count[0] == n
    return latency_us[1:], drawn  # frame 0 is the reference: its latency includes set-up


def test_display_overhead(benchmark, figures, quick: bool, phantom_8fps: workload.Workload) -> None:
    n = 240 if quick else 480
    pairs: list[tuple[float, float, int]] = []

    def pair() -> None:
        without, _ = _run(phantom_8fps, n, display=False)
        with_display, drawn = _run(phantom_8fps, n, display=True)
        pairs.append((float(np.percentile(with_display, 99)), float(np.percentile(without, 99)), drawn))

    benchmark.pedantic(pair, rounds=1 if quick else 3, iterations=1)
    p99_with = np.array([p[0] for p in pairs])
    p99_without = np.array([p[1] for p in pairs])
    ratio = float(np.median(p99_with / p99_without))
    figures.record(
        display_loop_p99_us=float(np.median(p99_with)),
        nodisplay_loop_p99_us=float(np.median(p99_without)),
        display_p99_ratio=ratio,
        display_frames_drawn=float(np.median([p[2] for p in pairs])),
    )
    assert min(p[2] for p in pairs) > 0, "the display drew nothing: the comparison is void"
    median_with, median_without = float(np.median(p99_with)), float(np.median(p99_without))
    if median_with > RATIO_GOAL * median_without + SLACK_US:
        pytest.fail(
            f"loop p99 with the display {median_with:.0f} us vs {median_without:.0f} us without "
            f"(ratio {ratio:.2f}, goal <= {RATIO_GOAL}); pairs (with, without, drawn): {pairs}",
            pytrace=False,
        )
