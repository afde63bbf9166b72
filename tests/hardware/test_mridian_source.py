"""MRIdianSource: SendExternal records over loopback TCP, with stalls, disconnections,
malformed bytes, late frames and gaps, against a scripted scanner."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from hardware import Frame, FrameSource
from hardware.mridian_source import MRIdianSource
from hardware.sendexternal import END_OF_STREAM, SendExternalRecord, encode_record

PERIOD_S = 0.05
SPACING_MM = (2.4, 2.5)


def record_bytes(i: int, t_s: float | None, shape: tuple[int, int] = (6, 5)) -> bytes:
    pixels = (np.arange(shape[0] * shape[1], dtype=np.int16).reshape(shape) + 100 * i).astype(np.int16)
    return encode_record(SendExternalRecord(pixels=pixels, spacing_mm=SPACING_MM, acquisition_time_s=t_s))


def expected_pixels(i: int, shape: tuple[int, int] = (6, 5)) -> np.ndarray:
    return (np.arange(shape[0] * shape[1]).reshape(shape) + 100 * i).astype(np.float32)


Action = tuple  # ("send", bytes) | ("sleep", s) | ("frames", first, n, period_s) | ("close",)


class ScriptedScanner:
    """Accepts connections one after another; runs scripts[k] on the k-th."""

    def __init__(self, scripts: Sequence[Sequence[Action]]) -> None:
        self.scripts = list(scripts)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.sent_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for script in self.scripts:
            conn = None
            while conn is None and not self._stop.is_set():
                if select.select([self._listener], [], [], 0.02)[0]:
                    conn, _ = self._listener.accept()
            if conn is None:
                return
            with conn:
                for action in script:
                    if self._stop.is_set():
                        return
                    try:
                        self._do(conn, action)
                    except OSError:
                        break
                    if action[0] == "close":
                        break
        self._stop.wait()

    def _do(self, conn: socket.socket, action: Action) -> None:
        kind = action[0]
        if kind == "send":
            conn.sendall(action[1])
        elif kind == "sleep":
            self._stop.wait(action[1])
        elif kind == "frames":
            _, first, n, period_s = action
            t0 = time.perf_counter()
            for k in range(n):
                self._stop.wait(max(0.0, t0 + k * period_s - time.perf_counter()))
                i = first + k
                conn.sendall(record_bytes(i, i * period_s))
                self.sent_at[i] = time.perf_counter()
        elif kind == "bytewise":
            for b in action[1]:
                conn.sendall(bytes([b]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()


def run_source(source: MRIdianSource, timeout_s: float = 10.0) -> list[tuple[float, Frame | None, str | None]]:
    """Iterate to the end: (time, item, fault at that item) for every item."""
    items: list[tuple[float, Frame | None, str | None]] = []
    deadline = time.perf_counter() + timeout_s
    try:
        for item in source:
            items.append((time.perf_counter(), item, source.fault))
            assert time.perf_counter() < deadline, "the source did not end"
    finally:
        source.close()
    return items


def frames_of(items: list) -> list[Frame]:
    return [item for _, item, _ in items if item is not None]


@pytest.fixture
def scanner_factory() -> Iterator:
    made: list[ScriptedScanner] = []

    def make(*scripts: Sequence[Action]) -> ScriptedScanner:
        s = ScriptedScanner(scripts)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def source_for(port: int, **kwargs) -> MRIdianSource:
    kwargs.setdefault("frame_period_s", PERIOD_S)
    kwargs.setdefault("reconnect_backoff_s", 0.01)
    return MRIdianSource("127.0.0.1", port, **kwargs)


def test_is_a_frame_source(scanner_factory) -> None:
    scanner = scanner_factory([("send", END_OF_STREAM)])
    source = source_for(scanner.port)
    assert isinstance(source, FrameSource)
    assert source.fault is None and source.reference_label is None
    run_source(source)
    assert source.ended_by == "end of stream"


def test_records_become_frames(scanner_factory) -> None:
    scanner = scanner_factory([("frames", 0, 6, PERIOD_S), ("send", END_OF_STREAM)])
    items = run_source(source_for(scanner.port))
    frames = frames_of(items)
    assert [f.index for f in frames] == list(range(6))
    for i, f in enumerate(frames):
        assert f.pixels.dtype == np.float32 and f.pixels.flags.c_contiguous
        np.testing.assert_array_equal(f.pixels, expected_pixels(i))
        assert f.t_acq_s == pytest.approx(i * PERIOD_S)
        assert f.spacing_mm == SPACING_MM and f.label is None
    assert all(fault is None for _, _, fault in items)
    recv = [f.t_recv_s for f in frames]
    assert recv == sorted(recv)


def test_records_split_into_single_bytes(scanner_factory) -> None:
    data = record_bytes(0, 0.0) + record_bytes(1, PERIOD_S) + END_OF_STREAM
    scanner = scanner_factory([("bytewise", data)])
    frames = frames_of(run_source(source_for(scanner.port, stall_timeout_factor=50.0)))
    assert len(frames) == 2
    np.testing.assert_array_equal(frames[1].pixels, expected_pixels(1))


def test_without_a_time_key_times_are_receive_times(scanner_factory) -> None:
    scanner = scanner_factory([("send", record_bytes(0, None)), ("sleep", 0.03), ("send", record_bytes(1, None)),
                               ("send", END_OF_STREAM)])
    frames = frames_of(run_source(source_for(scanner.port, stall_timeout_factor=10.0)))
    assert frames[0].t_acq_s == 0.0
    assert frames[1].t_acq_s == pytest.approx(frames[1].t_recv_s - frames[0].t_recv_s)
    assert frames[1].t_acq_s >= 0.02


def test_iteration_yields_at_least_every_tick(scanner_factory) -> None:
    scanner = scanner_factory([("frames", 0, 2, PERIOD_S), ("sleep", 0.6), ("send", END_OF_STREAM)])
    items = run_source(source_for(scanner.port, tick_s=0.02))
    times = [t for t, _, _ in items]
    gaps = np.diff(times)
    assert gaps.max() < 0.02 + 0.05  # one tick plus scheduling slack on a loaded machine
    assert sum(item is None for _, item, _ in items) >= 10


def test_stall_faults_within_a_frame_period_and_recovers(scanner_factory) -> None:
    period_s = 0.1
    scanner = scanner_factory([("frames", 0, 4, period_s), ("sleep", 0.5), ("frames", 12, 6, period_s),
                               ("send", END_OF_STREAM)])
    source = source_for(scanner.port, frame_period_s=period_s)
    items = run_source(source)
    due_s = scanner.sent_at[3] + period_s  # the first frame that did not come
    first_stall = next(t for t, item, fault in items
                       if item is None and fault and fault.startswith("stall") and t > scanner.sent_at[3])
    assert 0.0 < first_stall - due_s <= period_s
    frames = frames_of(items)
    faults_at_frames = [fault for _, item, fault in items if item is not None]
    # The frame after the stall comes after a gap in acquisition time; the fault clears
    # on the second on-time frame (recovery_frames=2).
    assert faults_at_frames[4] is not None and faults_at_frames[4].startswith("gap")
    assert faults_at_frames[5] is not None
    assert faults_at_frames[6] is None
    assert frames[4].t_acq_s == pytest.approx(12 * period_s)
    kinds = [e.kind for e in source.fault_history]
    assert "stall" in kinds and "gap" in kinds and kinds[-1] == "cleared"


def test_no_stall_before_the_first_frame(scanner_factory) -> None:
    scanner = scanner_factory([("sleep", 0.3), ("frames", 0, 2, PERIOD_S), ("send", END_OF_STREAM)])
    items = run_source(source_for(scanner.port))
    assert all(fault is None for _, _, fault in items)


@pytest.mark.parametrize(
    ("first_script", "kind", "detail"),
    [
        ([("frames", 0, 3, PERIOD_S), ("sleep", PERIOD_S), ("send", b"\xde\xad\xbe\xef" * 4)], "malformed",
         "header_size"),
        ([("frames", 0, 3, PERIOD_S), ("sleep", PERIOD_S), ("send", record_bytes(3, 3 * PERIOD_S)[:50]), ("close",)],
         "malformed", "inside a record"),
        ([("frames", 0, 3, PERIOD_S), ("sleep", PERIOD_S), ("close",)], "disconnected", "closed the connection"),
    ],
    ids=["garbage", "truncated", "disconnect"],
)
def test_broken_streams_fault_at_once_and_reconnect(scanner_factory, first_script, kind, detail) -> None:
    scanner = scanner_factory(first_script, [("frames", 5, 5, PERIOD_S), ("send", END_OF_STREAM)])
    source = source_for(scanner.port)
    items = run_source(source)
    faulted = [(t, item, fault) for t, item, fault in items if fault and fault.startswith(kind)]
    assert faulted, [f for _, _, f in items]
    t_fault, item, fault = faulted[0]
    assert item is None  # announced between frames
    assert detail in fault
    # Announced within a frame period of the last good frame's arrival plus its period.
    assert t_fault - scanner.sent_at[2] <= 2 * PERIOD_S
    frames = frames_of(items)
    assert [f.t_acq_s for f in frames] == pytest.approx([i * PERIOD_S for i in (0, 1, 2, 5, 6, 7, 8, 9)])
    assert items[-1][2] is None  # recovered by the end
    assert source.ended_by == "end of stream"


def test_frames_read_with_garbage_are_kept(scanner_factory) -> None:
    """A good record and bad bytes in one read: the record is a frame, then the fault."""
    scanner = scanner_factory([("send", record_bytes(0, 0.0) + record_bytes(1, PERIOD_S) + b"\xff" * 16)],
                              [("send", END_OF_STREAM)])
    items = run_source(source_for(scanner.port, stall_timeout_factor=10.0))
    frames = frames_of(items)
    assert [f.index for f in frames] == [0, 1]
    np.testing.assert_array_equal(frames[1].pixels, expected_pixels(1))
    assert any(fault and fault.startswith("malformed") for _, item, fault in items if item is None)


def test_late_frames_fault(scanner_factory) -> None:
    # Frames 0-2 on time; frame 3, acquired at 0.12 s, arrives ~0.10 s later than that
    # (the delay between acquisition and arrival was ~0 so far); frames 4-7 on time.
    scanner = scanner_factory([("frames", 0, 3, PERIOD_S), ("sleep", 0.12), ("send", record_bytes(3, 0.12)),
                               ("frames", 4, 4, PERIOD_S), ("send", END_OF_STREAM)])
    # Period 0.1 s: lateness limit 0.05 s, stall and gap limits 0.15 s (not reached).
    source = source_for(scanner.port, frame_period_s=0.1)
    items = run_source(source)
    faults = {item.index: fault for _, item, fault in items if item is not None}
    assert [faults[i] for i in range(3)] == [None, None, None]
    assert faults[3] is not None and faults[3].startswith("late: frame 3 arrived")
    assert faults[4] is not None  # recovering
    assert faults[7] is None


def test_acquisition_time_gap_faults(scanner_factory) -> None:
    scanner = scanner_factory([("send", record_bytes(0, 0.0)), ("send", record_bytes(1, PERIOD_S)),
                               ("send", record_bytes(2, 10 * PERIOD_S)), ("send", END_OF_STREAM)])
    items = run_source(source_for(scanner.port, stall_timeout_factor=10.0, recovery_frames=1))
    faults = [fault for _, item, fault in items if item is not None]
    # A jump of 9 periods is within a 10-period stall timeout: not a gap.
    assert faults == [None, None, None]
    scanner2 = scanner_factory([("send", record_bytes(0, 0.0)), ("send", record_bytes(1, PERIOD_S)),
                                ("send", record_bytes(2, 4 * PERIOD_S)), ("send", END_OF_STREAM)])
    items = run_source(source_for(scanner2.port, recovery_frames=1))
    faults = [fault for _, item, fault in items if item is not None]
    assert faults[:2] == [None, None]
    assert faults[2] is not None and faults[2].startswith("gap: about 2 frames missing")


def test_gives_up_after_max_connect_attempts() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens
    source = source_for(port, max_connect_attempts=3, reconnect_backoff_s=0.01)
    items = run_source(source, timeout_s=5.0)
    assert frames_of(items) == []
    assert items and all(item is None for _, item, _ in items)
    assert items[0][2] is not None and items[0][2].startswith("connect:")
    assert "(attempt 3 of 3)" in (source.fault or "")
    assert source.ended_by is not None and source.ended_by.startswith("gave up after 3")


def test_a_tick_opens_the_awake_window_before_each_frame_is_due(scanner_factory) -> None:
    """With ``awake_s``, a ``None`` tick comes between frames, no earlier than the last
    frame's arrival plus one period minus ``awake_s`` (the consumer warms up on it)."""
    awake_s = 0.01
    scanner = scanner_factory([("frames", 0, 8, PERIOD_S), ("send", END_OF_STREAM)])
    items = run_source(source_for(scanner.port, awake_s=awake_s, tick_s=1.0))
    frames = frames_of(items)
    assert [f.index for f in frames] == list(range(8))
    ticks_between = []
    last: Frame | None = None
    for t, item, _ in items:
        if item is not None:
            last = item
            ticks_between.append([])
        elif last is not None and ticks_between:
            ticks_between[-1].append(t - last.t_recv_s)
    waits = ticks_between[:-1]  # after the last frame, the stream ends
    # A frame late by more than the window on a loaded machine skips it; most must not.
    assert sum(bool(w) for w in waits) >= len(waits) // 2
    assert all(dt >= PERIOD_S - awake_s - 0.002 for w in waits for dt in w)


def test_close_stops_a_waiting_iteration(scanner_factory) -> None:
    scanner = scanner_factory([("frames", 0, 1, PERIOD_S), ("sleep", 30.0)])
    source = source_for(scanner.port)
    t0 = time.perf_counter()
    n = 0
    for _item in source:
        n += 1
        if n == 5:
            source.close()
    assert time.perf_counter() - t0 < 2.0
    assert source.ended_by == "closed"


@pytest.mark.parametrize(
    "kwargs",
    [dict(port=0), dict(port=1, frame_period_s=0.0), dict(port=1, stall_timeout_factor=1.0),
     dict(port=1, recovery_frames=0), dict(port=1, max_connect_attempts=0), dict(port=1, tick_s=float("inf")),
     dict(port=1, reference_label=np.zeros(4, bool)), dict(port=1, awake_s=-0.001),
     dict(port=1, frame_period_s=0.01, awake_s=0.005), dict(port=1, awake_s=float("nan"))],
)
def test_arguments_are_checked(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MRIdianSource("127.0.0.1", **kwargs)
