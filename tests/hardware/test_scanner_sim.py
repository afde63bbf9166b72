"""scanner-sim: fault specs, int16 conversion, and the served stream with each fault."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from hardware import InputError
from hardware.scanner_sim import FaultSpec, ScannerSimulator, parse_fault, to_int16
from hardware.sendexternal import SendExternalDecoder, SendExternalError
from maestro.cli import main

PERIOD_S = 0.02


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("stall@5s:3s", FaultSpec("stall", 5.0, 3.0)),
        ("drop@3s:1s", FaultSpec("drop", 3.0, 1.0)),
        ("delay@4s:200ms", FaultSpec("delay", 4.0, 0.2)),
        ("disconnect@10s", FaultSpec("disconnect", 10.0)),
        ("truncate@8s", FaultSpec("truncate", 8.0)),
        ("garbage@7s", FaultSpec("garbage", 7.0)),
        ("stall@0s:.5s", FaultSpec("stall", 0.0, 0.5)),
        ("drop@1500ms:250ms", FaultSpec("drop", 1.5, 0.25)),
    ],
)
def test_fault_specs(spec: str, expected: FaultSpec) -> None:
    assert parse_fault(spec) == expected


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("stall@5s", "needs a DURATION"),
        ("garbage@7s:1s", "takes no DURATION"),
        ("boom@1s", "is not one of"),
        ("stall@5:3s", "with a unit"),
        ("stall@-1s:1s", "with a unit"),
        ("stall@5s:0s", "must be > 0"),
        ("stall5s", "KIND@START"),
        ("", "KIND@START"),
        ("STALL@5s:1s", "KIND@START"),
        ("stall@1e3s:1s", "with a unit"),
        ("stall@100000s:1s", "more than"),
    ],
)
def test_bad_fault_specs_are_refused(spec: str, words: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_fault(spec)
    assert exc.value.path == "--fault" and words in exc.value.rule


def test_bad_fault_spec_at_the_command_line(capsys) -> None:
    code = main(["scanner-sim", "replay_data/mridian-8fps-seed1", "--port", "0", "--fault", "stall@5s"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--fault" in err[0] and "DURATION" in err[0]


def test_to_int16_counts_what_it_changes() -> None:
    frames = np.array([[[0.0, 1.0, 2.4, -3.0]], [[40000.0, -40000.0, np.nan, 7.0]]], dtype=np.float32)
    out, changed = to_int16(frames)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, [[[0, 1, 2, -3]], [[32767, -32768, 0, 7]]])
    assert changed == 4  # 2.4 rounded, two clipped, NaN replaced


def synthetic(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    frames = (np.arange(n * 4 * 3).reshape(n, 4, 3) - 5).astype(np.int16)
    return frames, np.arange(n) * PERIOD_S


def read_all(port: int, timeout_s: float = 5.0) -> tuple[bytes, list[float]]:
    """Every byte served on one connection until the server closes it, with arrival times."""
    chunks, times = [], []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            times.append(time.perf_counter())
    return b"".join(chunks), times


def decode(data: bytes) -> tuple[list, bool]:
    decoder = SendExternalDecoder("test")
    records = decoder.feed(data)
    decoder.finish()
    return records, decoder.ended


def test_serves_every_frame_then_the_end_record() -> None:
    frames, times = synthetic()
    with ScannerSimulator(frames, times, (2.0, 3.0)) as sim:
        data, _ = read_all(sim.port)
        assert sim.done.wait(2.0)
    records, ended = decode(data)
    assert ended and len(records) == len(frames)
    for i, r in enumerate(records):
        np.testing.assert_array_equal(r.pixels, frames[i])
        assert r.spacing_mm == (2.0, 3.0)
        assert r.acquisition_time_s == pytest.approx(times[i])
    sent = [e for e in sim.events if e.kind == "frame"]
    # Paced at the recorded times from the first connection.
    assert sent[-1].t_s - sent[0].t_s >= times[-1] - 0.005


def test_loop_keeps_acquisition_times_increasing() -> None:
    frames, times = synthetic(4)
    with ScannerSimulator(frames, times, (1.0, 1.0), loop=True, max_frames=10) as sim:
        data, _ = read_all(sim.port)
    records, ended = decode(data)
    t = [r.acquisition_time_s for r in records]
    assert ended and len(records) == 10
    assert np.all(np.diff(t) > 0)
    np.testing.assert_array_equal(records[5].pixels, frames[1])


def test_drop_skips_frames_in_the_window() -> None:
    frames, times = synthetic(8)
    with ScannerSimulator(frames, times, (1.0, 1.0), faults=[parse_fault("drop@40ms:60ms")]) as sim:
        data, _ = read_all(sim.port)
    records, _ = decode(data)
    assert [round(r.acquisition_time_s / PERIOD_S) for r in records] == [0, 1, 5, 6, 7]
    assert sim.fault_effect_s("drop") is not None


def test_stall_withholds_bytes_then_bursts() -> None:
    frames, times = synthetic(8)
    with ScannerSimulator(frames, times, (1.0, 1.0), faults=[parse_fault("stall@40ms:100ms")]) as sim:
        data, _ = read_all(sim.port)
        t0 = sim.t0_s
    records, _ = decode(data)
    assert len(records) == 8  # nothing lost
    sent = {e.frame: e.t_s for e in sim.events if e.kind == "frame"}
    assert t0 is not None
    for i in (2, 3, 4, 5, 6):  # due within 40-140 ms: sent at 140 ms or later
        assert sent[i] - t0 >= 0.14 - 1e-3
    assert sent[1] - t0 < 0.04


def test_delay_moves_one_frame() -> None:
    frames, times = synthetic(8)
    with ScannerSimulator(frames, times, (1.0, 1.0), faults=[parse_fault("delay@30ms:50ms")]) as sim:
        read_all(sim.port)
        t0 = sim.t0_s
    sent = {e.frame: e.t_s for e in sim.events if e.kind == "frame"}
    assert t0 is not None
    assert sent[2] - t0 >= 0.04 + 0.05 - 1e-3  # frame 2 (due 40 ms) sent 50 ms late
    assert sent[6] - t0 < 0.12 + 0.03  # later frames back on schedule


def test_garbage_breaks_the_stream() -> None:
    frames, times = synthetic(6)
    with ScannerSimulator(frames, times, (1.0, 1.0), faults=[parse_fault("garbage@50ms")]) as sim:
        data, _ = read_all(sim.port)
    with pytest.raises(SendExternalError) as exc:
        decode(data)
    assert exc.value.field == "header_size"


def test_truncate_ends_inside_a_record() -> None:
    frames, times = synthetic(6)
    with ScannerSimulator(frames, times, (1.0, 1.0), faults=[parse_fault("truncate@50ms")]) as sim:
        data, _ = read_all(sim.port)
    with pytest.raises(SendExternalError) as exc:
        decode(data)
    assert "truncated" in str(exc.value)


def test_disconnect_closes_between_records_and_serves_the_next_client() -> None:
    frames, times = synthetic(10)
    with ScannerSimulator(frames, times, (1.0, 1.0), faults=[parse_fault("disconnect@50ms")]) as sim:
        first, _ = read_all(sim.port)
        second, _ = read_all(sim.port)
    records, ended = decode(first)
    assert not ended and [round(r.acquisition_time_s / PERIOD_S) for r in records] == [0, 1, 2]
    later, ended = decode(second)
    assert ended and later and later[0].acquisition_time_s > 0.05


@pytest.mark.parametrize(
    "kwargs",
    [dict(frames=np.zeros((0, 2, 2), np.int16), times_s=np.zeros(0)),
     dict(frames=np.zeros((2, 2, 2), np.float32), times_s=np.arange(2.0)),
     dict(frames=np.zeros((2, 2, 2), np.int16), times_s=np.zeros(2)),
     dict(frames=np.zeros((2, 2, 2), np.int16), times_s=np.arange(2.0), max_frames=0)],
)
def test_simulator_arguments_are_checked(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ScannerSimulator(spacing_mm=(1.0, 1.0), **kwargs)


def test_command_line_serves_a_recording(capsys) -> None:
    import threading

    from maestro.cli import BUNDLED_SESSION

    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(
        ["scanner-sim", str(BUNDLED_SESSION), "--port", str(port), "--fps", "50", "--max-frames", "3"])))
    thread.start()
    try:
        data = b""
        deadline = time.perf_counter() + 20.0
        while time.perf_counter() < deadline:
            try:
                data, _ = read_all(port)
                break
            except OSError:
                time.sleep(0.05)
    finally:
        thread.join(20.0)
    assert result == [0]
    records, ended = decode(data)
    assert ended and len(records) == 3 and records[0].shape == (144, 144)
    assert records[2].acquisition_time_s == pytest.approx(0.04)
    assert "3 frames sent" in capsys.readouterr().out
