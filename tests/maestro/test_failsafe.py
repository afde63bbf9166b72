"""Fail-safe behaviour of the loop: every fault holds the beam, with a reason, in time,
and the record of what happened survives."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardware import BeamState, Frame, SimulatedBeam
from maestro.observer import EachRecord
from maestro.recording import EVENT_COLUMNS, SessionRecorder
from maestro.session import GatingSession, RecordingFault, SessionConfig
from tests.maestro.sources import ListSource, centre_mask, moving_blob_frames

ROOT = Path(__file__).resolve().parents[2]


def _events(out: Path) -> list[dict[str, str]]:
    with open(out / "events.csv", newline="") as fh:
        return list(csv.DictReader(fh))


class StallingSource(ListSource):
    """Hands over its frames, then goes silent for ``stall_s`` (heartbeats only), then
    hands over ``after`` more frames."""

    def __init__(self, frames: list[Frame], n_before: int, stall_s: float, label, fault: str | None = None) -> None:
        super().__init__(frames, reference_label=label)
        self.stall_fault = fault
        self.n_before = n_before
        self.stall_s = stall_s
        self.hold_seen_after_s: float | None = None
        self.beam: SimulatedBeam | None = None

    def __iter__(self) -> Iterator[Frame]:
        t_acq = 0.0
        for i, f in enumerate(self._frames):
            if i == self.n_before:
                t_stall = time.perf_counter()
                self._fault = self.stall_fault
                while time.perf_counter() - t_stall < self.stall_s:
                    time.sleep(0.005)
                    if self.hold_seen_after_s is None and self.beam.commanded is BeamState.HOLD:
                        self.hold_seen_after_s = time.perf_counter() - t_stall
                    yield None  # heartbeat: no frame this period
                t_acq += self.stall_s
                self._fault = None
            yield Frame(f.index, t_acq, time.perf_counter(), f.pixels, f.spacing_mm, f.label)
            t_acq += self.frame_period_s


def test_watchdog_holds_within_its_timeout_when_frames_stop(tmp_path) -> None:
    frames = moving_blob_frames(8, amplitude_px=0.0)
    source = StallingSource(frames, n_before=4, stall_s=0.6, label=centre_mask((96, 96)))
    beam = SimulatedBeam()
    source.beam = beam
    recorder = SessionRecorder(tmp_path)
    config = SessionConfig(watchdog_periods=2.0)  # 2 x 125 ms
    records = []
    GatingSession(source, config, beam, recorder, observers=[EachRecord(records.append)]).run()
    recorder.close()
    assert [r.beam for r in records[:4]] == ["on"] * 4
    # Held within the watchdog timeout plus its poll interval (25 %) and scheduling slack.
    assert source.hold_seen_after_s is not None
    assert source.hold_seen_after_s <= 0.25 * 1.25 + 0.1, source.hold_seen_after_s
    events = _events(tmp_path)
    assert tuple(events[0].keys()) == EVENT_COLUMNS
    watchdog = [e for e in events if e["event"] == "watchdog"]
    assert len(watchdog) == 1 and watchdog[0]["reason"] == "stale_frame" and watchdog[0]["beam"] == "hold"
    # Gating resumes when frames flow again.
    assert records[-1].beam == "on"
    assert [e["event"] for e in events][0] == "session_start" and events[-1]["event"] == "session_end"


def test_offline_analysis_runs_without_a_watchdog(tmp_path) -> None:
    """watchdog_periods=None (maestro validate only): a pause of the analysing machine
    changes no decision."""
    frames = moving_blob_frames(8, amplitude_px=0.0)
    source = StallingSource(frames, n_before=4, stall_s=0.6, label=centre_mask((96, 96)))
    beam = SimulatedBeam()
    source.beam = beam
    recorder = SessionRecorder(tmp_path)
    records = []
    GatingSession(source, SessionConfig(watchdog_periods=None), beam, recorder, observers=[EachRecord(records.append)]).run()
    recorder.close()
    assert source.hold_seen_after_s is None
    assert [r.beam for r in records] == ["on"] * len(records)
    assert not [e for e in _events(tmp_path) if e["event"] == "watchdog"]


class AgedSource(ListSource):
    """Hands over each frame as if it had been received ``age_s`` ago: a machine that
    took that long to get to it."""

    def __init__(self, frames: list[Frame], label, age_s: float) -> None:
        super().__init__(frames, reference_label=label)
        self.age_s = age_s

    def __iter__(self) -> Iterator[Frame]:
        for f in self._frames:
            yield Frame(f.index, f.t_acq_s, time.perf_counter() - self.age_s, f.pixels, f.spacing_mm, f.label)


@pytest.mark.parametrize("check_frame_age", [True, False])
def test_offline_analysis_ignores_the_analysing_machines_delay(check_frame_age) -> None:
    """check_frame_age=False (maestro validate only): a frame decided late by the
    analysing machine is not stale; a frame out of order still is."""
    frames = moving_blob_frames(6, amplitude_px=0.0)
    frames.insert(3, frames[2])  # a duplicate
    source = AgedSource(frames, centre_mask((96, 96)), age_s=1.0)  # 4x max_frame_age_ms
    records = []
    config = SessionConfig(watchdog_periods=None, check_frame_age=check_frame_age)
    GatingSession(source, config, SimulatedBeam(), None, observers=[EachRecord(records.append)]).run()
    if check_frame_age:
        assert [(r.beam, r.reason) for r in records] == [("hold", "stale_frame")] * len(records)
    else:
        assert [r.beam for r in records] == ["on", "on", "on", "hold", "on", "on", "on"]
        assert records[3].reason == "stale_frame"


def test_watchdog_names_the_source_fault(tmp_path) -> None:
    frames = moving_blob_frames(6, amplitude_px=0.0)
    source = StallingSource(frames, n_before=3, stall_s=0.5, label=centre_mask((96, 96)), fault="disconnected")
    beam = SimulatedBeam()
    source.beam = beam
    recorder = SessionRecorder(tmp_path)
    records = []
    GatingSession(source, SessionConfig(), beam, recorder, observers=[EachRecord(records.append)]).run()
    recorder.close()
    events = _events(tmp_path)
    watchdog = [e for e in events if e["event"] == "watchdog"]
    assert len(watchdog) == 1 and watchdog[0]["reason"] == "source_fault"
    assert records[-1].beam == "on"  # the fault cleared and frames flow again


@pytest.mark.parametrize("kind", ["duplicate", "backwards"])
def test_out_of_order_frames_hold_as_stale(kind, tmp_path) -> None:
    frames = moving_blob_frames(6, amplitude_px=0.0)
    f2 = frames[2]
    if kind == "duplicate":
        frames.insert(3, f2)
    else:
        # The scanner's clock steps back 50 ms: frame 3 carries a time before frame 2's;
        # the frames after it continue from there.
        later = [Frame(f.index + 1, f.t_acq_s - 0.05, 0.0, f.pixels, f.spacing_mm) for f in frames[3:]]
        frames = frames[:3] + [Frame(3, f2.t_acq_s - 0.05, 0.0, f2.pixels, f2.spacing_mm)] + later
    recorder = SessionRecorder(tmp_path)
    source = ListSource(frames, reference_label=centre_mask((96, 96)))
    records = []
    GatingSession(source, SessionConfig(), SimulatedBeam(), recorder, observers=[EachRecord(records.append)]).run()
    recorder.close()
    assert records[3].beam == "hold" and records[3].reason == "stale_frame"
    assert records[4].beam == "on"
    assert any(e["event"] == "frame_out_of_order" for e in _events(tmp_path))


def test_disk_full_holds_the_beam_and_stops(tmp_path) -> None:
    """The record of delivery cannot be kept (ENOSPC): hold, then end the session."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is needed to simulate a full disk")
    frames = moving_blob_frames(10, amplitude_px=0.0)
    recorder = SessionRecorder(tmp_path)
    real_fh = recorder._fh
    beam = SimulatedBeam()
    records = []

    def fill_disk_after_three(record) -> None:
        records.append(record)
        if len(records) == 3:
            real_fh.close()
            recorder._fh = open("/dev/full", "w", buffering=1)

    source = ListSource(frames, reference_label=centre_mask((96, 96)))
    session = GatingSession(source, SessionConfig(), beam, recorder, observers=[EachRecord(fill_disk_after_three)])
    with pytest.raises(RecordingFault, match="No space left"):
        session.run()
    recorder.close()
    assert beam.commanded is BeamState.HOLD
    assert any(t.reason == "recording_fault" for t in beam.transitions)
    assert session.summary.stopped_by == "recording fault"
    assert len(records) == 3  # the frame whose record failed was not reported as recorded
    assert any(e["event"] == "recording_fault" for e in _events(tmp_path))


def test_unwritable_output_is_refused_before_the_session(tmp_path, capsys) -> None:
    from maestro.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["replay", "--out", str(blocker / "rec"), "--max-frames", "2"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and len(err.strip().splitlines()) == 1


def _start_realtime_replay(out: Path) -> subprocess.Popen[str]:
    exe = Path(sys.executable).parent / "maestro"
    return subprocess.Popen(
        [str(exe), "replay", "--realtime", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_rows(path: Path, n: int, timeout_s: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} rows in {timeout_s} s")


@pytest.mark.system
def test_sigterm_ends_with_beam_held_and_recording_closed(tmp_path) -> None:
    out = tmp_path / "rec"
    proc = _start_realtime_replay(out)
    try:
        _wait_for_rows(out / "frames.csv", 5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    meta = json.loads((out / "session.json").read_text())
    assert meta["status"] == "interrupted"
    events = _events(out)
    assert [e["event"] for e in events][-2:] == ["operator_stop", "session_end"]
    assert events[-1]["beam"] == "hold"


@pytest.mark.system
def test_kill_9_leaves_a_readable_recording(tmp_path) -> None:
    out = tmp_path / "rec"
    proc = _start_realtime_replay(out)
    try:
        _wait_for_rows(out / "frames.csv", 8)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    with open(out / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 8
    assert [int(r["frame"]) for r in rows] == list(range(len(rows)))
    for r in rows:  # every row complete: the last decided frame is whole
        assert r["latency_us"] not in (None, "") and r["error_mm"] not in (None, "")
    assert json.loads((out / "session.json").read_text())["status"] == "running"


def test_tracker_exception_holds_and_the_loop_goes_on(monkeypatch) -> None:
    frames = moving_blob_frames(6, amplitude_px=0.0)
    source = ListSource(frames, reference_label=centre_mask((96, 96)))
    session = GatingSession(source, SessionConfig(max_frame_age_ms=10_000.0), SimulatedBeam())
    records = []
    session.observers.append(EachRecord(records.append))
    original_set_up = session._set_up

    def set_up_then_break(frame) -> None:
        original_set_up(frame)
        real_track = session.tracker.track

        def track(image, predicted_mm=None):
            if len(records) == 2:
                raise FloatingPointError("injected tracker failure")
            return real_track(image, predicted_mm)

        monkeypatch.setattr(session.tracker, "track", track)

    monkeypatch.setattr(session, "_set_up", set_up_then_break)
    session.run()
    assert [r.beam for r in records] == ["on", "on", "hold", "on", "on", "on"]
    assert records[2].reason == "tracking_fault" and math.isnan(records[2].row_mm)


class FailingBeam(SimulatedBeam):
    """A beam interface whose release command fails on one frame."""

    def __init__(self, fail_on_call: int) -> None:
        super().__init__()
        self.fail_on_call = fail_on_call
        self.calls = 0

    def release(self, t_s: float | None = None) -> None:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise ConnectionResetError("injected: interlock link reset")
        super().release(t_s)


def test_a_failing_beam_command_holds_with_beam_fault(tmp_path) -> None:
    frames = moving_blob_frames(5, amplitude_px=0.0)
    beam = FailingBeam(fail_on_call=3)
    recorder = SessionRecorder(tmp_path)
    source = ListSource(frames, reference_label=centre_mask((96, 96)))
    records = []
    GatingSession(source, SessionConfig(max_frame_age_ms=10_000.0), beam, recorder, observers=[EachRecord(records.append)]).run()
    recorder.close()
    assert [r.beam for r in records] == ["on", "on", "hold", "on", "on"]
    assert records[2].reason == "beam_fault"
    assert any(t.reason == "beam_fault" and t.state is BeamState.HOLD for t in beam.transitions)
    assert any(e["event"] == "beam_fault" for e in _events(tmp_path))


def test_ctrl_c_ends_held_with_the_recording_closed(tmp_path) -> None:
    frames = moving_blob_frames(6, amplitude_px=0.0)

    class InterruptedSource(ListSource):
        def __iter__(self):
            for i, frame in enumerate(super().__iter__()):
                if i == 3:
                    raise KeyboardInterrupt
                yield frame

    beam = SimulatedBeam()
    recorder = SessionRecorder(tmp_path)
    session = GatingSession(InterruptedSource(frames, reference_label=centre_mask((96, 96))),
                            SessionConfig(max_frame_age_ms=10_000.0), beam, recorder)
    with pytest.raises(KeyboardInterrupt):
        session.run()
    recorder.close()
    assert beam.commanded is BeamState.HOLD and beam.reason == "session_end"
    assert session.summary.stopped_by == "operator stop"
    events = [e["event"] for e in _events(tmp_path)]
    assert events[-2:] == ["operator_stop", "session_end"]
    with open(tmp_path / "frames.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3


def test_the_beam_on_delay_restarts_after_a_watchdog_hold(tmp_path) -> None:
    frames = moving_blob_frames(10, amplitude_px=0.0)
    source = StallingSource(frames, n_before=4, stall_s=0.5, label=centre_mask((96, 96)))
    beam = SimulatedBeam()
    source.beam = beam
    records = []
    config = SessionConfig(beam_on_delay_frames=2, max_frame_age_ms=10_000.0)
    GatingSession(source, config, beam, observers=[EachRecord(records.append)]).run()
    on = [r.beam == "on" for r in records]
    first_on = on.index(True)
    assert first_on >= 1 and all(on[first_on:4])  # on before the stall, after the start-up delay
    # After the stall the delay restarts: the first frames are held again, then released.
    assert not on[4], records[4]
    assert records[4].reason == "stale_frame"
    assert on[-1]
