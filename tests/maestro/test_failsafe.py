"""Fail-safe behaviour of the loop: every fault holds the beam, with a reason, in time,
and the record of what happened survives."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardware import BeamState, Frame, SimulatedBeam
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

    def __init__(self, frames: list[Frame], n_before: int, stall_s: float, label, fault: str | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(frames, reference_label=label)
        self.stall_fault = fault
        self.n_before = n_before
        self.stall_s = stall_s
        self.hold_seen_after_s: float | None = None
        self.beam: SimulatedBeam | None = None

    def __iter__(self) -> Iterator[Frame]:  # type: ignore[override]
        t_acq = 0.0
        for i, f in enumerate(self._frames):
            if i == self.n_before:
                t_stall = time.perf_counter()
                self._fault = self.stall_fault
                while time.perf_counter() - t_stall < self.stall_s:
                    time.sleep(0.005)
                    if self.hold_seen_after_s is None and self.beam.commanded is BeamState.HOLD:  # type: ignore[union-attr]
                        self.hold_seen_after_s = time.perf_counter() - t_stall
                    yield None  # type: ignore[misc]  # heartbeat: no frame this period
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
    GatingSession(source, config, beam, recorder, on_record=records.append).run()
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


def test_watchdog_names_the_source_fault(tmp_path) -> None:
    frames = moving_blob_frames(6, amplitude_px=0.0)
    source = StallingSource(frames, n_before=3, stall_s=0.5, label=centre_mask((96, 96)), fault="disconnected")
    beam = SimulatedBeam()
    source.beam = beam
    recorder = SessionRecorder(tmp_path)
    records = []
    GatingSession(source, SessionConfig(), beam, recorder, on_record=records.append).run()
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
        frames.insert(3, Frame(7, f2.t_acq_s - 0.05, 0.0, f2.pixels, f2.spacing_mm))
    recorder = SessionRecorder(tmp_path)
    source = ListSource(frames, reference_label=centre_mask((96, 96)))
    records = []
    GatingSession(source, SessionConfig(), SimulatedBeam(), recorder, on_record=records.append).run()
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
    real_fh = recorder._fh  # noqa: SLF001
    beam = SimulatedBeam()
    records = []

    def fill_disk_after_three(record) -> None:  # type: ignore[no-untyped-def]
        records.append(record)
        if len(records) == 3:
            real_fh.close()
            recorder._fh = open("/dev/full", "w", buffering=1)  # noqa: SLF001, SIM115

    source = ListSource(frames, reference_label=centre_mask((96, 96)))
    session = GatingSession(source, SessionConfig(), beam, recorder, on_record=fill_disk_after_three)
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
