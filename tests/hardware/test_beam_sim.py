"""beam-sim: the MAESTRO-BEAM/1 endpoint obeys, acknowledges, logs, and holds on its own."""

from __future__ import annotations

import csv
import socket
import threading
import time
from pathlib import Path

import pytest

from hardware import BeamState
from hardware import beam_protocol as bp
from hardware.beam_sim import BeamSimulator
from hardware.beam_tcp import TcpBeam
from maestro.cli import main


def raw_client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    return sock


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def test_obeys_acknowledges_and_logs(tmp_path: Path) -> None:
    log_path = tmp_path / "commands.csv"
    with BeamSimulator(log_path=log_path) as sim:
        assert sim.state == bp.STATE_HOLD
        with TcpBeam("127.0.0.1", sim.port) as beam:
            beam.release(t_s=0.0)
            assert beam.wait_acked(2.0)
            assert sim.state == bp.STATE_ON and beam.state is BeamState.ON
            beam.hold("outside", t_s=0.125)
            assert beam.wait_acked(2.0)
            assert sim.state == bp.STATE_HOLD
        assert sim.client_closed.wait(2.0)
    verbs = [c.verb for c in sim.commands]
    assert verbs[0] == "CONNECT" and verbs[-1] == "DISCONNECT"
    assert [(c.verb, c.t_cmd_s, c.reason) for c in sim.commands if c.verb in ("HOLD", "RELEASE")] == [
        ("RELEASE", 0.0, ""), ("HOLD", 0.125, "outside")]
    states = [(e.state, e.reason) for e in sim.timeline]
    assert states == [("HOLD", "startup"), ("ON", ""), ("HOLD", "outside"), ("HOLD", "disconnected")]
    rows = list(csv.DictReader(log_path.read_text(encoding="utf-8").splitlines()))
    assert [r["verb"] for r in rows] == verbs
    assert next(r for r in rows if r["verb"] == "RELEASE")["line"] == "MAESTRO-BEAM/1 RELEASE 1 0.000000"
    text = sim.timeline_csv().splitlines()
    assert text[0] == "t_s,state,reason,seq,t_cmd_s" and len(text) == 1 + len(sim.timeline)


def test_silent_client_is_held_after_the_heartbeat_timeout() -> None:
    with BeamSimulator(heartbeat_timeout_s=0.1) as sim:
        sock = raw_client(sim.port)
        try:
            sock.sendall(b"MAESTRO-BEAM/1 RELEASE 1 0.000000\n")
            assert read_line(sock) == b"MAESTRO-BEAM/1 ACK 1 ON\n"
            t_on = time.perf_counter()
            deadline = t_on + 2.0
            while sim.state == bp.STATE_ON and time.perf_counter() < deadline:
                time.sleep(0.005)
            assert sim.state == bp.STATE_HOLD
            held = sim.timeline[-1]
            assert held.reason == "heartbeat_timeout"
            assert 0.1 <= held.t_s - t_on + 0.01 < 0.3
        finally:
            sock.close()


@pytest.mark.parametrize(
    ("line", "code"),
    [(b"MAESTRO-BEAM/1 FIRE 2\n", "bad_verb"), (b"MAESTRO-BEAM/2 PING 2\n", "bad_version"),
     (b"x" * 200, "line_too_long"), (b"MAESTRO-BEAM/1 PING 1\n", "stale_seq")],
)
def test_protocol_errors_hold_answer_and_close(line: bytes, code: str) -> None:
    with BeamSimulator() as sim:
        sock = raw_client(sim.port)
        try:
            sock.sendall(b"MAESTRO-BEAM/1 RELEASE 1 -\n")
            assert read_line(sock) == b"MAESTRO-BEAM/1 ACK 1 ON\n"
            sock.sendall(line)
            reply = bp.parse_reply(read_line(sock)[:-1])
            assert reply.verb == bp.ERROR and reply.code == code
            assert sock.recv(10) == b""  # closed by the endpoint
        finally:
            sock.close()
        assert sim.client_closed.wait(2.0)
    assert sim.state == bp.STATE_HOLD
    assert "protocol_error" in [e.reason for e in sim.timeline]


def test_a_second_client_is_refused() -> None:
    with BeamSimulator() as sim:
        first = raw_client(sim.port)
        try:
            first.sendall(b"MAESTRO-BEAM/1 PING 1\n")
            assert read_line(first) == b"MAESTRO-BEAM/1 ACK 1 HOLD\n"
            second = raw_client(sim.port)
            try:
                assert read_line(second) == b"MAESTRO-BEAM/1 ERROR - busy\n"
            finally:
                second.close()
            first.sendall(b"MAESTRO-BEAM/1 RELEASE 2 -\n")
            assert read_line(first) == b"MAESTRO-BEAM/1 ACK 2 ON\n"  # the first still commands
        finally:
            first.close()


def test_on_seconds_and_state_at() -> None:
    with BeamSimulator() as sim:
        with TcpBeam("127.0.0.1", sim.port) as beam:
            beam.release(t_s=0.0)
            assert beam.wait_acked(2.0)
            time.sleep(0.1)
            beam.hold("outside", t_s=0.1)
            assert beam.wait_acked(2.0)
        t_on = next(e.t_s for e in sim.timeline if e.state == bp.STATE_ON)
        t_off = next(e.t_s for e in sim.timeline if e.t_s > t_on and e.state == bp.STATE_HOLD)
    assert sim.on_seconds() == pytest.approx(t_off - t_on)
    assert sim.state_at(t_on - 1e-6) == "HOLD" and sim.state_at(t_on) == "ON" and sim.state_at(t_off) == "HOLD"


def test_command_line_once_writes_the_timeline(tmp_path: Path, capsys) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    timeline = tmp_path / "timeline.csv"
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(
        main(["beam-sim", "--port", str(port), "--once", "--timeline", str(timeline)])))
    thread.start()
    try:
        beam = None
        deadline = time.perf_counter() + 5.0
        while beam is None and time.perf_counter() < deadline:
            try:
                beam = TcpBeam("127.0.0.1", port)
            except OSError:
                time.sleep(0.02)
        assert beam is not None
        beam.release(t_s=0.5)
        beam.hold("session_end", t_s=0.625)
        beam.close()
    finally:
        thread.join(10.0)
    assert result == [0]
    rows = list(csv.DictReader(timeline.read_text(encoding="utf-8").splitlines()))
    assert [(r["state"], r["reason"]) for r in rows] == [("HOLD", "startup"), ("ON", ""), ("HOLD", "session_end"),
                                                         ("HOLD", "disconnected")]
    assert rows[1]["t_cmd_s"] == "0.500000"
    # t_s counts from the endpoint's start (the startup hold), not on the raw clock.
    t_s = [float(r["t_s"]) for r in rows]
    assert 0.0 <= t_s[0] < 0.01 and t_s == sorted(t_s) and t_s[-1] < 10.0
    assert "beam-sim listening on" in capsys.readouterr().out


def test_command_line_refuses_a_busy_port(capsys) -> None:
    with BeamSimulator() as sim:
        code = main(["beam-sim", "--port", str(sim.port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot listen" in err[0]
