"""Workloads and timers shared by the benchmarks (and by their child processes).

Frames come from :func:`maestro.phantom.generate_session`: the MRIdian cine geometries
with a 3 cm lesion, realistic breathing motion and Rician noise. Long runs replay a
60 s phantom forwards then backwards (ping-pong), so that the motion stays continuous for
any number of frames while memory stays that of 60 s.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from hardware import Frame
from maestro.phantom import generate_session
from tracking.tracker import DEFAULT_CONTEXT_MM

#: Lesion diameter of every benchmark workload (mm): the issue's "3 cm lesion".
LESION_MM = 30.0
#: Context around the lesion's bounding box in the template (mm): the session default.
CONTEXT_MM = DEFAULT_CONTEXT_MM
PHANTOM_SECONDS = 60.0


@dataclass(frozen=True, eq=False)
class Workload:
    """Preloaded phantom frames, ready for the loop.

    Attributes
    ----------
    geometry : str
    frames : list of (H, W) float32 C-contiguous ndarray
    labels : list of (H, W) bool ndarray
    spacing_mm : (float, float)
    fps : float
    """

    geometry: str
    frames: list[np.ndarray]
    labels: list[np.ndarray]
    spacing_mm: tuple[float, float]
    fps: float

    @property
    def reference_mask(self) -> np.ndarray:
        return self.labels[0]


def phantom_workload(geometry: str, seconds: float = PHANTOM_SECONDS, seed: int = 1) -> Workload:
    """A phantom session as float32 frames and bool labels (what a replay hands over)."""
    s = generate_session(geometry, seconds=seconds, seed=seed, lesion_diameter_mm=LESION_MM)
    frames = [np.ascontiguousarray(f, dtype=np.float32) for f in s.frames]
    labels = [lab.astype(bool) for lab in s.labels]
    return Workload(geometry, frames, labels, s.spacing_mm, s.fps)


def ping_pong_index(k: int, n: int) -> int:
    """Index of the k-th frame when ``n`` frames are played forwards, backwards, ..."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    m = k % period
    return m if m < n else period - m


class PingPongSource:
    """A live-like :class:`~hardware.frame.FrameSource` over preloaded frames.

    Yields ``n_frames`` frames (ping-pong over the workload), stamping ``t_recv_s`` when
    each is handed over, as a scanner link would; never faults.
    """

    def __init__(self, workload: Workload, n_frames: int, with_labels: bool = True) -> None:
        self._w = workload
        self._n = int(n_frames)
        self._with_labels = with_labels
        self.description = f"{n_frames} ping-pong frames of a {workload.geometry} phantom"
        self.frame_period_s = 1.0 / workload.fps

    @property
    def reference_label(self) -> np.ndarray | None:
        return self._w.reference_mask

    @property
    def fault(self) -> str | None:
        return None

    def __iter__(self) -> Iterator[Frame]:
        frames, labels, spacing = self._w.frames, self._w.labels, self._w.spacing_mm
        n_src = len(frames)
        period_s = self.frame_period_s
        clock = time.perf_counter
        for k in range(self._n):
            i = ping_pong_index(k, n_src)
            yield Frame(k, k * period_s, clock(), frames[i], spacing, labels[i] if self._with_labels else None)

    def close(self) -> None:
        pass


def interleaved_ratio(
    fast: Callable[[], object],
    peer: Callable[[], object],
    calls: int,
    repeats: int,
) -> tuple[float, float, float]:
    """Time ``fast`` and ``peer`` alternately, in short blocks of ``calls`` calls each.

    Returns
    -------
    fast_s, peer_s : float
        Median per-call time of each side over the ``repeats`` blocks (s).
    ratio : float
        ``min(peer block time) / min(fast block time)``: each side's best block is the one
        least disturbed by other processes, so the ratio of the two compares the code,
        not the machine's load at that moment. On this 2-CPU shared machine it repeats
        to within a few percent where the median of per-block ratios wanders by 20-50 %.
        Interleaving keeps both sides under the same conditions throughout.
    """
    clock = time.perf_counter
    t_fast = np.empty(repeats)
    t_peer = np.empty(repeats)
    fast()
    peer()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for k in range(repeats):
            t0 = clock()
            for _ in range(calls):
                fast()
            t1 = clock()
            for _ in range(calls):
                peer()
            t2 = clock()
            t_fast[k] = (t1 - t0) / calls
            t_peer[k] = (t2 - t1) / calls
    finally:
        if gc_was_enabled:
            gc.enable()
    return float(np.median(t_fast)), float(np.median(t_peer)), float(t_peer.min() / t_fast.min())


def per_call_times_us(fn: Callable[[int], object], n: int) -> np.ndarray:
    """Duration in us of each of ``n`` calls ``fn(k)``, garbage collector off."""
    clock = time.perf_counter
    out = np.empty(n)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for k in range(n):
            t0 = clock()
            fn(k)
            out[k] = clock() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
    return out * 1e6


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm", encoding="ascii") as fh:
        resident_pages = int(fh.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
