"""The tracker step and the gate step on the 8 fps geometry (144 x 144, 2.4 mm, +-15 mm).

Frames follow the phantom's breathing motion (ping-pong over 60 s), so the search window
moves with the target as in a session. Timed with pytest-benchmark (one call per round);
the tracker step is also compared, interleaved, with the same step done by OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

from gating.boundary import GatingGeometry
from gating.gate import Gate, GateConfig
from maestro.decision import GateInputs, decide
from tracking.tracker import TemplateTracker

from . import workload


def _tracker(w: workload.Workload) -> TemplateTracker:
    return TemplateTracker(w.frames[0], w.reference_mask, w.spacing_mm, context_mm=workload.CONTEXT_MM, search_mm=15.0)


class _Frames:
    """Hands out the workload's frames in ping-pong order."""

    def __init__(self, w: workload.Workload) -> None:
        self.frames = w.frames
        self.k = 0

    def next(self) -> np.ndarray:
        frame = self.frames[workload.ping_pong_index(self.k, len(self.frames))]
        self.k += 1
        return frame


def _stats_us(benchmark) -> tuple[float, float]:
    data = np.asarray(benchmark.stats.stats.data) * 1e6
    return float(np.median(data)), float(np.percentile(data, 99))


def test_tracker_step(benchmark, figures, quick: bool, phantom_8fps: workload.Workload) -> None:
    tracker = _tracker(phantom_8fps)
    frames = _Frames(phantom_8fps)
    rounds = 2000 if quick else 8000
    benchmark.pedantic(tracker.track, setup=lambda: ((frames.next(),), {}), rounds=rounds, warmup_rounds=20)
    median_us, p99_us = _stats_us(benchmark)

    # The same step with OpenCV: window around the last position, matchTemplate, minMaxLoc.
    h, w = tracker.template_shape
    r0, c0 = tracker.template_origin_px
    sr, sc = tracker.search_px
    template = np.ascontiguousarray(phantom_8fps.frames[0][r0 : r0 + h, c0 : c0 + w])
    n_img_rows, n_img_cols = phantom_8fps.frames[0].shape
    last = [0, 0]
    cv_frames = _Frames(phantom_8fps)
    np_frames = _Frames(phantom_8fps)

    def opencv_step() -> None:
        frame = cv_frames.next()
        a = max(r0 + last[0] - sr, 0)
        b = max(c0 + last[1] - sc, 0)
        window = frame[a : min(r0 + last[0] + sr, n_img_rows - h) + h, b : min(c0 + last[1] + sc, n_img_cols - w) + w]
        scores = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
        _, peak, _, loc = cv2.minMaxLoc(scores)
        last[0] = a + loc[1] - r0
        last[1] = b + loc[0] - c0

    tracker.reset()
    cv2.setNumThreads(1)
    _, _, ratio = workload.interleaved_ratio(lambda: tracker.track(np_frames.next()), opencv_step, 10, 150 if quick else 400)

    result = tracker.track(phantom_8fps.frames[5])
    mask_us = workload.per_call_times_us(lambda k: tracker.tracked_mask(result), 500)
    figures.record(
        tracker_step_us=median_us,
        tracker_step_p99_us=p99_us,
        tracker_step_speedup_vs_opencv=ratio,
        tracked_mask_us=float(np.median(mask_us)),
    )
    figures.check("tracker_step_speedup_vs_opencv")


def test_gate_step(benchmark, figures, quick: bool, phantom_8fps: workload.Workload) -> None:
    w = phantom_8fps
    tracker = _tracker(w)
    displacements = [(r.row_mm, r.col_mm) for r in (tracker.track(f) for f in w.frames)]
    geometry = GatingGeometry(w.reference_mask, w.spacing_mm, margin_mm=3.0)
    gate = Gate(GateConfig())
    state = {"k": 0}

    def step() -> None:
        k = state["k"]
        state["k"] = k + 1
        row_mm, col_mm = displacements[workload.ping_pong_index(k, len(displacements))]
        outside = geometry.outside_pct(row_mm, col_mm)
        decide(gate, None, k * 0.125, GateInputs(outside, 0.9, True), 1e-3)

    benchmark.pedantic(step, rounds=2000 if quick else 8000, warmup_rounds=20)
    median_us, p99_us = _stats_us(benchmark)
    figures.record(gate_step_us=median_us, gate_step_p99_us=p99_us)
