"""``maestro live`` end to end on loopback: scanner-sim -> live -> beam-sim.

- Without faults, the live session decides every frame exactly as ``maestro replay``
  does on the same recording, and the beam endpoint receives those decisions.
- With each injected fault, the beam endpoint is held within one frame period of the
  fault taking effect, the recording names the fault, and gating resumes afterwards.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from hardware import beam_protocol as bp
from hardware.beam_sim import BeamSimulator
from hardware.scanner_sim import ScannerSimulator, load_recording, parse_fault
from maestro.cli import BUNDLED_SESSION, main
from maestro.live import parse_endpoint

pytestmark = pytest.mark.system

#: Columns that must agree between replay and live (the live stream has no labels).
DECISION_COLUMNS = ("frame", "t_acq_s", "row_mm", "col_mm", "confidence", "outside_pct", "beam", "reason")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


_RECORDINGS: dict[float, tuple] = {}


def recording(fps: float) -> tuple:
    if fps not in _RECORDINGS:
        _RECORDINGS[fps] = load_recording(BUNDLED_SESSION, fps=fps)
    return _RECORDINGS[fps]


def run_live(out: Path, fps: float, n_frames: int, faults: list[str] = (), extra: list[str] = ()
             ) -> tuple[int, BeamSimulator, ScannerSimulator]:
    frames, times_s, spacing_mm, period_s, _, _ = recording(fps)
    with BeamSimulator() as beam, ScannerSimulator(frames, times_s, spacing_mm, frame_period_s=period_s,
                                                   faults=[parse_fault(f) for f in faults],
                                                   max_frames=n_frames) as scanner:
        code = main([
            "live", "--scanner", f"127.0.0.1:{scanner.port}", "--beam", f"127.0.0.1:{beam.port}",
            "--reference", str(BUNDLED_SESSION), "--fps", str(fps), "--out", str(out),
            # Frame age depends on this machine's load, not on the recording: out of the comparison.
            "--max-frame-age-ms", "5000", *extra,
        ])
        assert beam.client_closed.wait(5.0)
        assert scanner.done.wait(5.0)
    assert scanner.error is None
    return code, beam, scanner


def test_live_decides_every_frame_as_replay_does(tmp_path: Path, capsys) -> None:
    fps, n = 20.0, 80
    code, beam, scanner = run_live(tmp_path / "live", fps, n, extra=["--stall-periods", "40"])
    assert code == 0, capsys.readouterr().err
    assert main(["replay", str(BUNDLED_SESSION), "--fps", str(fps), "--max-frames", str(n),
                 "--max-frame-age-ms", "5000", "--out", str(tmp_path / "replay")]) == 0
    live_rows = read_csv(tmp_path / "live" / "frames.csv")
    replay_rows = read_csv(tmp_path / "replay" / "frames.csv")
    assert len(live_rows) == len(replay_rows) == n
    for live_row, replay_row in zip(live_rows, replay_rows):
        assert {c: live_row[c] for c in DECISION_COLUMNS} == {c: replay_row[c] for c in DECISION_COLUMNS}
    beams = {row["beam"] for row in replay_rows}
    assert beams == {"on", "hold"}  # the comparison covers both decisions

    # The endpoint received each frame's decision, tied to the frame by its time.
    by_time: dict[str, tuple[str, str]] = {}
    for c in beam.commands:
        if c.verb in (bp.HOLD, bp.RELEASE) and c.t_cmd_s is not None:
            by_time.setdefault(f"{c.t_cmd_s:.4f}", (c.verb, c.reason))
    for row in replay_rows:
        verb, reason = by_time[row["t_acq_s"]]
        assert (verb == bp.RELEASE) == (row["beam"] == "on")
        assert reason == row["reason"]
    # The endpoint ends held: the session's last command, then the closed connection.
    assert beam.timeline[-1].state == bp.STATE_HOLD
    assert any(e.state == bp.STATE_HOLD and e.reason == "session_end" for e in beam.timeline)
    assert "end of stream" in capsys.readouterr().out


#: Replay at 10 frames/s holds frames 13-28 and 51-65 (target outside) and releases
#: 29-50: faults at 3.2-3.7 s land while the beam is on, with room to resume before 4.8 s.
FAULT_FPS = 10.0
FAULT_FRAMES = 48


@pytest.mark.parametrize(
    ("spec", "kind", "first_fault", "ends_s"),
    [
        ("stall@3.2s:500ms", "stall", "stall", 3.7),
        ("drop@3.2s:500ms", "drop", "stall", 3.7),
        ("delay@3.2s:300ms", "delay", "stall", 3.5),
        ("disconnect@3.25s", "disconnect", "disconnected", 3.25),
        ("truncate@3.25s", "truncate", "malformed", 3.25),
        ("garbage@3.25s", "garbage", "malformed", 3.25),
    ],
)
def test_fault_holds_within_one_frame_period_and_gating_resumes(tmp_path: Path, capsys, spec: str, kind: str,
                                                                first_fault: str, ends_s: float) -> None:
    period_s = 1.0 / FAULT_FPS
    code, beam, scanner = run_live(tmp_path, FAULT_FPS, FAULT_FRAMES, faults=[spec])
    assert code == 0, capsys.readouterr().err
    t_fault = scanner.fault_effect_s(kind)
    assert t_fault is not None and scanner.t0_s is not None
    # The beam was on when the fault took effect, and held within one frame period.
    assert beam.state_at(t_fault - 1e-3) == bp.STATE_ON, beam.timeline_csv()
    assert beam.state_at(t_fault + period_s) == bp.STATE_HOLD, beam.timeline_csv()
    hold = next(e for e in beam.timeline if e.t_s >= t_fault and e.state == bp.STATE_HOLD)
    assert hold.reason in ("source_fault", "stale_frame")
    # Gating resumes once frames flow again.
    t_end = scanner.t0_s + ends_s
    assert any(e.state == bp.STATE_ON and e.t_s > t_end for e in beam.timeline), beam.timeline_csv()

    # The recording names the fault: events.csv gives its kind, frames.csv the hold reason.
    events = read_csv(tmp_path / "events.csv")
    # (Only events from frame 30 on: a loaded machine may stall the stream earlier too.)
    fault_events = [e for e in events if e["event"] == "source_fault" and e["frame"] and int(e["frame"]) >= 30]
    assert fault_events and fault_events[0]["detail"].startswith(first_fault), fault_events
    rows = read_csv(tmp_path / "frames.csv")
    assert any(r["reason"] == "source_fault" for r in rows if float(r["t_acq_s"]) > 3.0)
    # ... and after recovery the frames are gated on their own merits again.
    last = [r for r in rows if float(r["t_acq_s"]) > ends_s + 0.5]
    assert last and all(r["reason"] != "source_fault" for r in last)


def test_live_without_a_scanner_gives_up_with_the_beam_held(tmp_path: Path, capsys) -> None:
    with BeamSimulator() as beam:
        free = BeamSimulator().start()
        port = free.port
        free.stop()  # nothing listens there now
        code = main(["live", "--scanner", f"127.0.0.1:{port}", "--beam", f"127.0.0.1:{beam.port}",
                     "--target-box", "60,70,10,10", "--connect-attempts", "3", "--out", str(tmp_path)])
        assert beam.client_closed.wait(5.0)
    out = capsys.readouterr().out
    assert code == 1
    assert "gave up after 3" in out
    assert all(e.state == bp.STATE_HOLD for e in beam.timeline)


def test_live_refuses_an_unreachable_beam_endpoint(capsys) -> None:
    free = BeamSimulator().start()
    port = free.port
    free.stop()
    code = main(["live", "--scanner", "127.0.0.1:9", "--beam", f"127.0.0.1:{port}", "--target-box", "1,1,2,2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--beam" in err[0] and "cannot connect" in err[0]


def test_live_shares_replay_options() -> None:
    from maestro.cli import build_parser

    parser = build_parser()
    live = parser.parse_args(["live", "--scanner", "h:1", "--margin-mm", "4", "--threshold-pct", "20",
                              "--target-box", "1,2,3,4"])
    assert (live.margin_mm, live.threshold_pct, live.target_box) == (4.0, 20.0, (1, 2, 3, 4))
    replay = parser.parse_args(["replay"])
    live_defaults = parser.parse_args(["live", "--scanner", "h:1"])
    for name in ("margin_mm", "threshold_pct", "confidence_floor", "beam_on_delay_ms", "max_frame_age_ms",
                 "context_mm", "search_mm"):
        assert getattr(live_defaults, name) == getattr(replay, name)


@pytest.mark.parametrize("text", ["nohost", ":80", "h:", "h:0", "h:65536", "h:x"])
def test_endpoint_syntax(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_endpoint(text, "--scanner")


def test_endpoint_forms() -> None:
    assert parse_endpoint("127.0.0.1:5050", "--scanner") == ("127.0.0.1", 5050)
    assert parse_endpoint("[::1]:5050", "--scanner") == ("::1", 5050)
    assert np.isscalar(parse_endpoint("scanner.local:1", "--beam")[1])


def test_sigterm_ends_live_with_the_beam_held(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys
    import time

    frames, times_s, spacing_mm, period_s, _, _ = recording(10.0)
    with BeamSimulator() as beam, ScannerSimulator(frames, times_s, spacing_mm, frame_period_s=period_s,
                                                   loop=True) as scanner:
        proc = subprocess.Popen(
            [sys.executable, "-m", "maestro.cli", "live", "--scanner", f"127.0.0.1:{scanner.port}",
             "--beam", f"127.0.0.1:{beam.port}", "--reference", str(BUNDLED_SESSION), "--fps", "10",
             "--out", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.perf_counter() + 60.0
            while not any(c.verb == bp.RELEASE for c in beam.commands) and time.perf_counter() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            assert beam.state == bp.STATE_ON  # gating, beam on
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20.0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert beam.client_closed.wait(5.0)
    assert proc.returncode == 130, err
    assert "beam held" in err
    assert beam.timeline[-1].state == bp.STATE_HOLD
    assert any(e.reason == "session_end" for e in beam.timeline)
    session = json.loads((tmp_path / "session.json").read_text(encoding="utf-8"))
    assert session["status"] == "interrupted"
