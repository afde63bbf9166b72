"""The loop: every frame decided, faults hold the beam with a reason, records are written."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from hardware import BeamState, Frame, InputError, SimulatedBeam
from maestro.observer import EachRecord
from maestro.recording import FRAME_COLUMNS, SessionRecorder
from maestro.session import GatingSession, SessionConfig
from tests.maestro.sources import ListSource, centre_mask, moving_blob_frames


def _run(frames, label=None, faults=None, recorder=None, **config):
    # Staleness is tested on its own; here a loaded test machine must not make frame 0
    # (whose age includes building the tracker) stale.
    config.setdefault("max_frame_age_ms", 10_000.0)
    source = ListSource(frames, reference_label=label, faults=faults)
    beam = SimulatedBeam()
    session = GatingSession(source, SessionConfig(**config), beam, recorder)
    records = []
    session.observers.append(EachRecord(records.append))
    summary = session.run()
    return summary, records, beam


def test_tracks_moving_blob_and_gates_on_displacement() -> None:
    frames = moving_blob_frames(32, amplitude_px=3.0)
    summary, records, beam = _run(frames, label=centre_mask((96, 96)), margin_mm=3.0, threshold_pct=10.0)
    assert summary.frames == 32 and len(records) == 32
    for i, r in enumerate(records):
        true_row_mm = 3.0 * np.sin(2 * np.pi * i / 16) * 2.4
        assert r.row_mm == pytest.approx(true_row_mm, abs=0.3), i
        assert abs(r.col_mm) < 0.3
    # 7.2 mm peak excursion against a 3 mm margin: some frames held as outside, some on.
    reasons = {r.reason for r in records if r.beam == "hold"}
    assert "outside" in reasons
    assert any(r.beam == "on" for r in records)
    for r in records:
        assert (r.beam == "on") == (r.outside_pct <= 10.0 and r.confidence >= 0.5)
    assert beam.commanded is BeamState.HOLD  # the session ends held


def test_nan_frame_holds_with_tracking_fault_and_loop_continues() -> None:
    frames = moving_blob_frames(6, amplitude_px=0.0)
    bad = frames[3].pixels.copy()
    bad[40:56, 40:56] = np.nan
    frames[3] = Frame(3, frames[3].t_acq_s, 0.0, bad, frames[3].spacing_mm)
    _, records, _ = _run(frames, label=centre_mask((96, 96)))
    assert [r.beam for r in records] == ["on", "on", "on", "hold", "on", "on"]
    assert records[3].reason == "tracking_fault"


def test_geometry_change_mid_session_holds() -> None:
    frames = moving_blob_frames(4, amplitude_px=0.0)
    f = frames[2]
    frames[2] = Frame(2, f.t_acq_s, 0.0, f.pixels[:90, :90].copy(), f.spacing_mm)
    _, records, _ = _run(frames, label=centre_mask((96, 96)))
    assert records[2].beam == "hold" and records[2].reason == "tracking_fault"
    assert records[3].beam == "on"


def test_source_fault_holds_the_beam() -> None:
    frames = moving_blob_frames(5, amplitude_px=0.0)
    _, records, _ = _run(frames, label=centre_mask((96, 96)), faults={2: "socket stalled"})
    assert records[2].beam == "hold" and records[2].reason == "source_fault"
    assert records[3].beam == "on"


def test_beam_on_delay_in_frames_keeps_hold_after_startup() -> None:
    frames = moving_blob_frames(6, amplitude_px=0.0)
    _, records, _ = _run(frames, label=centre_mask((96, 96)), beam_on_delay_frames=3)
    assert [r.beam for r in records][:3] == ["hold"] * 3
    assert {r.reason for r in records[:3]} == {"startup"}
    assert records[-1].beam == "on"


def test_box_target_and_missing_target() -> None:
    frames = moving_blob_frames(3, amplitude_px=0.0)
    summary, records, _ = _run(frames, target_box=(40, 40, 16, 16))
    assert summary.frames == 3
    with pytest.raises(InputError, match="--target-box"):
        _run(frames)
    with pytest.raises(InputError, match="inside the first frame"):
        _run(frames, target_box=(90, 90, 16, 16))
    with pytest.raises(InputError, match="empty"):
        _run(frames, label=np.zeros((96, 96), bool))


def test_recording_rows_and_session_json(tmp_path) -> None:
    frames = moving_blob_frames(10, amplitude_px=2.0)
    recorder = SessionRecorder(tmp_path)
    recorder.start({"source": "test"})
    assert json.loads((tmp_path / "session.json").read_text())["status"] == "running"
    summary, records, _ = _run(frames, label=centre_mask((96, 96)), recorder=recorder)
    recorder.finish({"source": "test", "status": "complete", "summary": summary.as_dict()})
    with open(tmp_path / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == FRAME_COLUMNS
    assert [int(r["frame"]) for r in rows] == list(range(10))
    for r, rec in zip(rows, records):
        assert float(r["row_mm"]) == pytest.approx(rec.row_mm, abs=1e-4)
        assert r["beam"] in ("on", "hold")
        assert float(r["latency_us"]) > 0
        assert math.isnan(float(r["error_mm"]))  # no per-frame labels in these frames
    meta = json.loads((tmp_path / "session.json").read_text())
    assert meta["status"] == "complete" and meta["summary"]["frames"] == 10
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary behind


def test_rows_are_on_disk_before_the_session_ends(tmp_path) -> None:
    """Each decided frame reaches the file at once (a killed session keeps its record)."""
    frames = moving_blob_frames(5, amplitude_px=0.0)
    recorder = SessionRecorder(tmp_path)
    seen = []

    def check(_record) -> None:
        seen.append(len((tmp_path / "frames.csv").read_text().splitlines()) - 1)

    source = ListSource(frames, reference_label=centre_mask((96, 96)))
    GatingSession(source, SessionConfig(), SimulatedBeam(), recorder, observers=[EachRecord(check)]).run()
    recorder.close()
    assert seen == [1, 2, 3, 4, 5]


class _TickingSource:
    """A replay with ``ticks`` ``None`` items before every frame after the first, as a
    live source yields them while the next frame falls due."""

    def __init__(self, inner, ticks: int) -> None:
        self._inner, self._ticks = inner, ticks
        self.frame_period_s = inner.frame_period_s
        self.description = inner.description

    reference_label = property(lambda self: self._inner.reference_label)
    fault = property(lambda self: self._inner.fault)

    def __iter__(self):
        import time

        for i, frame in enumerate(self._inner):
            for _ in range(self._ticks if i else 0):
                yield None
            # Received when handed over: the rehearsals before it are not its age.
            yield Frame(frame.index, frame.t_acq_s, time.perf_counter(), frame.pixels, frame.spacing_mm, frame.label)

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize("deformable", [False, True])
def test_keep_warm_rehearsals_change_no_decision(deformable: bool) -> None:
    """keep_warm rehearses on a copy between frames: every record of the bundled session
    is the same with it on and off, apart from the measured latency."""
    from pathlib import Path

    from hardware.replay import ReplaySource

    bundled = Path(__file__).resolve().parents[2] / "replay_data" / "mridian-8fps-seed1"
    runs = {}
    for keep_warm in (False, True):
        session = GatingSession(_TickingSource(ReplaySource(bundled), ticks=2),
                                SessionConfig(keep_warm=keep_warm, deformable=deformable, max_frame_age_ms=10_000.0),
                                SimulatedBeam())
        records: list = []
        session.observers.append(EachRecord(records.append))
        summary = session.run(max_frames=80)
        runs[keep_warm] = (records, session.n_rehearsals, summary)
    (cold, n_cold, _), (warm, n_warm, _) = runs[False], runs[True]
    assert n_cold == 0 and n_warm == len(warm) - 1  # once per frame, however many ticks
    assert len(cold) == len(warm) == 80
    strip = [c for c in FRAME_COLUMNS if c != "latency_us"]
    for a, b in zip(cold, warm):
        assert [repr(getattr(a, c)) for c in strip] == [repr(getattr(b, c)) for c in strip], a.frame
    assert {r.beam for r in warm} == {"on", "hold"}  # a session that gates both ways


def _numba_signature_counts() -> dict[str, int]:
    """Compiled signatures of every Numba dispatcher in the libraries' modules."""
    import sys

    from numba.core.dispatcher import Dispatcher

    counts = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("tracking", "gating")):
            continue
        for attr, value in vars(module).items():
            if isinstance(value, Dispatcher):
                counts[f"{name}.{attr}"] = len(value.signatures)
    return counts


def test_keep_warm_rehearsals_compile_nothing_the_session_did_not() -> None:
    """The rehearsal copy keeps its arrays' read-only flags: a deep copy alone made them
    writeable, and the copy's first call then compiled a new specialisation (1.6 s on an
    empty Numba cache, long enough for the watchdog to hold)."""
    from pathlib import Path

    from hardware.replay import ReplaySource

    bundled = Path(__file__).resolve().parents[2] / "replay_data" / "mridian-8fps-seed1"
    counts = {}
    for keep_warm in (False, True):
        session = GatingSession(_TickingSource(ReplaySource(bundled), ticks=1),
                                SessionConfig(keep_warm=keep_warm, max_frame_age_ms=10_000.0), SimulatedBeam())
        session.run(max_frames=10)
        counts[keep_warm] = _numba_signature_counts()
    assert session.n_rehearsals == 9
    assert counts[True] == counts[False]


def test_a_rehearsal_slower_than_a_quarter_period_switches_keep_warm_off(monkeypatch) -> None:
    from pathlib import Path

    from hardware.replay import ReplaySource

    class SlowCopy:
        def process(self, frame) -> None:
            import time

            time.sleep(0.05)  # the bundled session is 8 fps: 50 ms > 31 ms

    monkeypatch.setattr(GatingSession, "_make_rehearsal", lambda self: SlowCopy())
    bundled = Path(__file__).resolve().parents[2] / "replay_data" / "mridian-8fps-seed1"
    session = GatingSession(_TickingSource(ReplaySource(bundled), ticks=1),
                            SessionConfig(max_frame_age_ms=10_000.0), SimulatedBeam())
    session.run(max_frames=6)
    assert session.n_rehearsals == 1 and session.summary.frames == 6


class _PingedBeam(SimulatedBeam):
    """A simulated beam with a link to keep warm: counts ``ping()`` calls, or fails them."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.pings, self._fail = 0, fail

    def ping(self) -> None:
        self.pings += 1
        if self._fail:
            raise OSError("link gone")


@pytest.mark.parametrize("keep_warm", [False, True])
def test_keep_warm_pings_a_beam_link_on_every_tick_and_changes_no_decision(keep_warm: bool) -> None:
    from pathlib import Path

    from hardware.replay import ReplaySource

    bundled = Path(__file__).resolve().parents[2] / "replay_data" / "mridian-8fps-seed1"
    runs = {}
    for beam in (SimulatedBeam(), _PingedBeam()):
        session = GatingSession(_TickingSource(ReplaySource(bundled), ticks=2),
                                SessionConfig(keep_warm=keep_warm, max_frame_age_ms=10_000.0), beam)
        records: list = []
        session.observers.append(EachRecord(records.append))
        session.run(max_frames=20)
        runs[type(beam)] = records
    pinged = beam
    assert isinstance(pinged, _PingedBeam) and pinged.pings == (2 * 19 if keep_warm else 0)
    strip = [c for c in FRAME_COLUMNS if c != "latency_us"]
    for a, b in zip(runs[SimulatedBeam], runs[_PingedBeam], strict=True):
        assert [repr(getattr(a, c)) for c in strip] == [repr(getattr(b, c)) for c in strip], a.frame


def test_a_failing_keep_warm_ping_switches_keep_warm_off_and_the_session_goes_on(caplog) -> None:
    from pathlib import Path

    from hardware.replay import ReplaySource

    bundled = Path(__file__).resolve().parents[2] / "replay_data" / "mridian-8fps-seed1"
    beam = _PingedBeam(fail=True)
    session = GatingSession(_TickingSource(ReplaySource(bundled), ticks=2),
                            SessionConfig(max_frame_age_ms=10_000.0), beam)
    summary = session.run(max_frames=6)
    assert beam.pings == 1 and summary.frames == 6 and session.n_rehearsals == 1
    assert "keep-warm beam ping failed" in caplog.text


def _arrays(obj, path: str, seen: set[int]):
    """(path, array) of every ndarray reachable through attributes, slots and containers."""
    if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield path, obj
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _arrays(v, f"{path}[{i}]", seen)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _arrays(v, f"{path}[{k!r}]", seen)
        return
    names = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        slots = getattr(cls, "__slots__", ())
        names += [n for n in ((slots,) if isinstance(slots, str) else slots) if hasattr(obj, n)]
    for n in names:
        yield from _arrays(getattr(obj, n), f"{path}.{n}", seen)


def test_the_rehearsal_copy_shares_no_array_and_keeps_read_only_flags() -> None:
    """Directly, whatever was compiled before: the copy's state is its own (no array
    shared with the session's) and read-only where the session's is."""
    from pathlib import Path

    from hardware.replay import ReplaySource

    bundled = Path(__file__).resolve().parents[2] / "replay_data" / "mridian-8fps-seed1"
    session = GatingSession(ReplaySource(bundled), SessionConfig(max_frame_age_ms=10_000.0), SimulatedBeam())
    session.run(max_frames=3)
    shadow = session._make_rehearsal()
    n = 0
    for name in ("tracker", "geometry", "registration", "deformed_outside"):
        mine = dict(_arrays(getattr(session, name), name, set()))
        theirs = dict(_arrays(getattr(shadow, name), name, set()))
        assert mine.keys() == theirs.keys()
        for path, a in mine.items():
            b = theirs[path]
            assert not np.shares_memory(a, b), path
            assert a.flags.writeable == b.flags.writeable, path
            n += 1
    assert n > 20


def test_observers_are_told_in_order_after_the_record_is_written(tmp_path) -> None:
    """One protocol: each observer gets (session, frame, record) once per frame, in the
    order given, after the frame's row is on disk and its beam command issued."""
    frames = moving_blob_frames(4, amplitude_px=1.0)
    recorder = SessionRecorder(tmp_path)
    calls = []

    class Observer:
        def __init__(self, name: str) -> None:
            self.name = name

        def frame_decided(self, session, frame, record) -> None:
            rows_on_disk = len((tmp_path / "frames.csv").read_text().splitlines()) - 1
            calls.append((self.name, frame.index, record.frame, rows_on_disk, session.last_track is not None,
                          len(session.beam.transitions) > 0))

    source = ListSource(frames, reference_label=centre_mask((96, 96)))
    session = GatingSession(source, SessionConfig(max_frame_age_ms=10_000.0), SimulatedBeam(), recorder,
                            observers=[Observer("a"), Observer("b")])
    session.run()
    recorder.close()
    assert [c[:4] for c in calls] == [(n, k, k, k + 1) for k in range(4) for n in ("a", "b")]
    assert all(c[4] and c[5] for c in calls)
