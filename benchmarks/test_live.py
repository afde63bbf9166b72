"""The live path over loopback: ``maestro scanner-sim`` -> :class:`MRIdianSource` ->
:class:`GatingSession` -> :class:`TcpBeam` -> ``maestro beam-sim``.

The scanner and the beam endpoint are the project's own commands, run as separate
processes (as on a treatment day, where they are other machines); the source and the
beam client are the ones ``maestro live`` uses, with its defaults. The session is the
rigid mode of the loop benchmarks (:data:`benchmarks.test_loop.RIGID`), on the bundled
session, served at 4, 8 and 40 frames/s.

Per frame:

- frame received -> beam command issued: the session's ``latency_us``. "Received" is
  the kernel's receive timestamp of the read that completed the frame's record
  (``SO_TIMESTAMPNS``), so the time the bytes waited in the socket buffer for the loop
  thread to wake is counted;
- frame received -> the endpoint's acknowledgement read back: ``TcpBeam.wait_acked``
  after the command, in a session observer (outside the decision; the next frame is a frame
  period away).

Frame 0 (which builds the tracker) is left out. The replay p99 of the same case
(ReplaySource, simulated beam, same configuration) is measured in the same run, for the
ratio.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hardware import SimulatedBeam
from hardware.beam_tcp import TcpBeam
from hardware.mridian_source import MRIdianSource
from hardware.replay import ReplaySource
from hardware.trackrad import read_case
from maestro.cli import BUNDLED_SESSION
from maestro.observer import EachFrame, EachRecord
from maestro.session import GatingSession

from .test_loop import RIGID

#: Frames served per rate: (full run, --bench-quick).
LIVE_FRAMES = {4: (600, 60), 8: (1200, 240), 40: (4000, 400)}
#: Replays of the bundled session (240 frames each) for the replay p99: (full, quick).
REPLAY_PASSES = (10, 3)

_RUN_MAESTRO = "import sys; from maestro.cli import main; sys.exit(main())"


class _Command:
    """A ``maestro`` command in its own process, whose first output line names its port."""

    def __init__(self, args: list[str], port_pattern: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _RUN_MAESTRO, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(port_pattern, line)
        if match is None:
            self.stop()
            pytest.fail(f"maestro {args[0]} did not start: {line!r} {self.proc.stderr.read()!r}", pytrace=False)
        self.port = int(match.group(1))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=10.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def _live(fps: int, n_frames: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Serve the bundled session at ``fps`` for ``n_frames`` frames through the real live
    path. Returns (received -> command, received -> acknowledged) in us per frame after
    frame 0, and the frames whose acknowledgement did not come within 50 ms."""
    reference = read_case(BUNDLED_SESSION).labels[0] != 0
    beam_sim = _Command(["beam-sim", "--port", "0", "--once"], r":(\d+) \(")
    scanner = None
    try:
        scanner = _Command(["scanner-sim", str(BUNDLED_SESSION), "--port", "0", "--fps", str(fps), "--loop",
                            "--max-frames", str(n_frames)], r":(\d+)\s*$")
        source = MRIdianSource("127.0.0.1", scanner.port, frame_period_s=1.0 / fps, reference_label=reference)
        beam = TcpBeam("127.0.0.1", beam_sim.port)
        command_us = np.full(n_frames, np.nan)
        ack_us = np.full(n_frames, np.nan)
        missed = 0

        def on_frame(session, frame, record) -> None:
            nonlocal missed
            k = frame.index
            if k < n_frames:
                command_us[k] = record.latency_us
                if beam.wait_acked(0.05):
                    ack_us[k] = (time.perf_counter() - frame.t_recv_s) * 1e6
                else:
                    missed += 1

        session = GatingSession(source, RIGID, beam, observers=[EachFrame(on_frame)])
        # A scanner that stays connected but stops sending would stall the source for
        # ever: close it (ending the run, and failing the count below) well after time.
        deadline = threading.Timer(n_frames / fps + 60.0, source.close)
        deadline.start()
        try:
            session.run(max_frames=n_frames)
        finally:
            deadline.cancel()
            source.close()
            beam.close()
    finally:
        if scanner is not None:
            scanner.stop()
        beam_sim.stop()
    received = int(np.count_nonzero(np.isfinite(command_us)))
    assert received == n_frames, f"{received} of {n_frames} frames decided at {fps} frames/s"
    return command_us[1:], ack_us[1:][np.isfinite(ack_us[1:])], missed


def _replay_latency_us(passes: int) -> np.ndarray:
    """Received -> command (us) of replays of the bundled session, frame 0 of each left out."""
    out = []
    for _ in range(passes):
        latencies: list[float] = []
        source = ReplaySource(BUNDLED_SESSION)
        session = GatingSession(source, RIGID, SimulatedBeam(), observers=[EachRecord(lambda r, out=latencies: out.append(r.latency_us))])
        try:
            session.run()
        finally:
            source.close()
        out += latencies[1:]
    return np.asarray(out)


def _percentiles(prefix: str, values_us: np.ndarray) -> dict[str, float]:
    return {f"{prefix}_p50_us": float(np.percentile(values_us, 50)),
            f"{prefix}_p99_us": float(np.percentile(values_us, 99)),
            f"{prefix}_p999_us": float(np.percentile(values_us, 99.9))}


def test_live_path_over_loopback(figures, quick: bool) -> None:
    if not Path(BUNDLED_SESSION).is_dir():
        pytest.skip(f"the bundled session {BUNDLED_SESSION} is not installed")
    replay_us = _replay_latency_us(REPLAY_PASSES[quick])
    replay_p99_us = float(np.percentile(replay_us, 99))
    figures.record(live_replay_p99_us=replay_p99_us)
    names = ["live_replay_p99_ratio"]
    for fps, frames in LIVE_FRAMES.items():
        command_us, ack_us, missed = _live(fps, frames[quick])
        figures.record(**{f"live_{fps}fps_frames": command_us.size + 1, f"live_{fps}fps_ack_missed": missed},
                       **_percentiles(f"live_{fps}fps", command_us), **_percentiles(f"live_{fps}fps_ack", ack_us))
        names += [f"live_{fps}fps_p99_us", f"live_{fps}fps_p999_us"]
        if fps == 8:
            figures.record(live_replay_p99_ratio=float(np.percentile(command_us, 99)) / replay_p99_us)
    figures.check(*names)
