"""The whole loop (``GatingSession.process`` as ``GatingSession.run`` drives it) and offline
replay throughput.

Latency per frame is the session's own figure: from the frame's receive stamp to the
beam command issued (``FrameRecord.latency_us``), collected by a session observer into a
preallocated array so that the benchmark adds no allocation of its own.

The loop runs in the rigid mode (:data:`RIGID`): the whole-loop budgets (p99 <= 500 us,
p99.9 <= 1 ms) are the rigid mode's; the deformable mode's extra step, replay's default,
has its own budget in ``benchmarks/test_deformable.py`` (<= 2 ms per frame).
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys

from hardware import SimulatedBeam
from hardware.replay import ReplaySource
from hardware.trackrad import write_case
from maestro.phantom import generate_session
from maestro.recording import SessionRecorder
from maestro.session import GatingSession, SessionConfig, session_description

from . import workload

#: The session configuration of the loop benchmarks: replay's defaults in the rigid mode.
RIGID = SessionConfig(deformable=False)

#: Frames after which retained memory blocks start being counted (interpreter caches and
#: the first growth of the session's lists are done by then).
SETTLE_FRAMES = 1000


class _Collector:
    """Session observer: latency per frame, time of the first and last decisions,
    and Python's allocated-block count at ``SETTLE_FRAMES`` and at the end."""

    def __init__(self, n_frames: int) -> None:
        self.n = n_frames
        self.latency_us = np.full(n_frames, np.nan)
        self.count = 0
        self.t_first = self.t_last = 0.0
        self.cpu_first = self.cpu_last = 0.0
        self.blocks_settled = self.blocks_end = 0

    def frame_decided(self, session, frame, record) -> None:
        k = self.count
        self.count = k + 1
        self.latency_us[k] = record.latency_us
        now = time.perf_counter()
        cpu = time.thread_time()
        if k == 0:
            self.t_first = now
            self.cpu_first = cpu
        self.t_last = now
        self.cpu_last = cpu
        if k == SETTLE_FRAMES:
            self.blocks_settled = sys.getallocatedblocks()
        if k == self.n - 1:
            self.blocks_end = sys.getallocatedblocks()

    def fps(self) -> float:
        """Decisions per second from the first decided frame to the last."""
        return (self.count - 1) / (self.t_last - self.t_first)

    def cpu_fps(self) -> float:
        """Decisions per second of this thread's CPU time: what the code costs, without
        the time the operating system gave to other processes."""
        return (self.count - 1) / (self.cpu_last - self.cpu_first)


def test_loop_step_distribution(figures, quick: bool, phantom_8fps: workload.Workload) -> None:
    n = 10_000 if quick else 30_000
    collector = _Collector(n)
    session = GatingSession(workload.PingPongSource(phantom_8fps, n), RIGID, SimulatedBeam(), None, observers=[collector])
    session.run()
    assert collector.count == n
    lat = collector.latency_us[1:]  # frame 0 is the reference: its latency includes set-up
    figures.record(
        loop_frames=lat.size,
        loop_p50_us=float(np.percentile(lat, 50)),
        loop_p99_us=float(np.percentile(lat, 99)),
        loop_p999_us=float(np.percentile(lat, 99.9)),
        loop_max_us=float(lat.max()),
        loop_preloaded_fps=collector.fps(),
        loop_preloaded_fps_cpu=collector.cpu_fps(),
        loop_retained_blocks_per_frame=(collector.blocks_end - collector.blocks_settled) / (n - 1 - SETTLE_FRAMES),
    )
    figures.check("loop_p99_us", "loop_p999_us", "loop_retained_blocks_per_frame")


def test_loop_step_cpu_time(figures, quick: bool, phantom_8fps: workload.Workload) -> None:
    """CPU time of each whole ``process`` call (tracking, gate, beam command and the
    bookkeeping after it), which leaves out time the operating system gave to other
    processes: on a shared machine this is what the code costs; the wall-clock latency
    above is what the machine delivered."""
    n = 10_000 if quick else 30_000
    session = GatingSession(workload.PingPongSource(phantom_8fps, n), RIGID, SimulatedBeam())
    frames = iter(session.source)
    session._set_up(next(frames))
    cpu_us = np.empty(n - 1)
    clock = time.thread_time
    gc.collect()
    gc.disable()
    try:
        for k, frame in enumerate(frames):
            t0 = clock()
            session.process(frame)
            cpu_us[k] = clock() - t0
    finally:
        gc.enable()
    cpu_us *= 1e6
    figures.record(
        loop_cpu_p50_us=float(np.percentile(cpu_us, 50)),
        loop_cpu_p99_us=float(np.percentile(cpu_us, 99)),
        loop_cpu_p999_us=float(np.percentile(cpu_us, 99.9)),
        loop_cpu_max_us=float(cpu_us.max()),
    )


def test_loop_numba_allocations(figures, phantom_8fps: workload.Workload) -> None:
    """Numba runtime allocations per frame: only the wrappers of the arrays passed to the
    kernels may appear, never a buffer inside a kernel."""
    n = 2000
    session = GatingSession(workload.PingPongSource(phantom_8fps, n), RIGID, SimulatedBeam())
    frames = iter(session.source)
    session._set_up(next(frames))  # set-up is not per frame; the loop is what is counted
    for _ in range(10):
        session.process(next(frames))
    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats()
        counted = 0
        for frame in frames:
            session.process(frame)
            counted += 1
        after = rtsys.get_allocation_stats()
    finally:
        if not was_enabled:
            _nrt_python.memsys_disable_stats()
    assert after.alloc - before.alloc == after.free - before.free, "the loop leaks Numba memory"
    figures.record(loop_nrt_allocs_per_frame=(after.alloc - before.alloc) / counted)
    figures.check("loop_nrt_allocs_per_frame")


@pytest.fixture(scope="module")
def long_session(tmp_path_factory: pytest.TempPathFactory, quick: bool) -> Path:
    """A long 8 fps phantom recording on disk (TrackRAD2025 layout)."""
    seconds = 120.0 if quick else 300.0
    s = generate_session("mridian-8fps", seconds=seconds, seed=2, lesion_diameter_mm=workload.LESION_MM)
    folder = tmp_path_factory.mktemp("replay") / "long-8fps"
    write_case(folder, folder.name, s.frames, s.labels, spacing_mm=s.spacing_mm, fps=s.fps)
    return folder


def _replay(path: Path, out: Path | None) -> tuple[_Collector, float, int]:
    t0 = time.perf_counter()
    source = ReplaySource(path)
    collector = _Collector(source.n_frames)
    recorder = SessionRecorder(out) if out is not None else None
    session = GatingSession(source, RIGID, SimulatedBeam(), recorder, observers=[collector])
    meta = session_description(source, RIGID)
    if recorder is not None:
        recorder.start(meta)
    try:
        session.run()
    finally:
        source.close()
        if recorder is not None:
            recorder.finish({**meta, "status": "complete", "summary": session.summary.as_dict()})
    return collector, time.perf_counter() - t0, source.n_frames


def test_offline_replay_throughput(figures, long_session: Path, tmp_path: Path) -> None:
    collector, wall_s, n = _replay(long_session, None)
    assert collector.count == n
    recording, _, _ = _replay(long_session, tmp_path / "out")
    assert (tmp_path / "out" / "frames.csv").is_file()
    figures.record(
        replay_frames=n,
        replay_fps=collector.fps(),
        replay_fps_cpu=collector.cpu_fps(),
        replay_fps_with_startup=n / wall_s,
        replay_fps_recording=recording.fps(),
    )
    figures.check("replay_fps")
