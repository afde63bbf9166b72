"""TcpBeam: hold/release over MAESTRO-BEAM/1 to a scripted endpoint on loopback."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hardware import BeamInterface, BeamState
from hardware import beam_protocol as bp
from hardware.beam_tcp import TcpBeam


def wait_for(condition: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class ScriptedEndpoint:
    """A beam endpoint whose replies a test controls.

    mode ``ack``: ACK every command with the state it sets; ``silent``: never reply;
    ``error``: answer the first command with ERROR; ``stale_on``: answer every command
    with ``ACK <seq> ON`` (a lying endpoint).
    """

    def __init__(self, mode: str = "ack") -> None:
        self.mode = mode
        self.lines: list[bytes] = []
        self.connections = 0
        self.eof_seen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.02)
            if not ready:
                continue
            conn, _ = self._listener.accept()
            self.connections += 1
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        buf = bp.LineBuffer()
        state = bp.STATE_HOLD
        while not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], 0.02)
            if not ready:
                continue
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                self.eof_seen.set()
                return
            for line in buf.feed(data):
                self.lines.append(line)
                cmd = bp.parse_command(line)
                if cmd.verb == bp.HOLD:
                    state = bp.STATE_HOLD
                elif cmd.verb == bp.RELEASE:
                    state = bp.STATE_ON
                if self.mode == "ack":
                    conn.sendall(bp.format_reply(bp.BeamReply(bp.ACK, cmd.seq, state=state)))
                elif self.mode == "stale_on":
                    conn.sendall(bp.format_reply(bp.BeamReply(bp.ACK, cmd.seq, state=bp.STATE_ON)))
                elif self.mode == "error":
                    conn.sendall(bp.format_reply(bp.BeamReply(bp.ERROR, cmd.seq, code="refused")))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()


@pytest.fixture
def endpoint() -> Iterator[ScriptedEndpoint]:
    ep = ScriptedEndpoint()
    yield ep
    ep.close()


def test_is_a_beam_interface(endpoint: ScriptedEndpoint) -> None:
    with TcpBeam("127.0.0.1", endpoint.port) as beam:
        assert isinstance(beam, BeamInterface)


def test_release_counts_only_once_acknowledged(endpoint: ScriptedEndpoint) -> None:
    with TcpBeam("127.0.0.1", endpoint.port) as beam:
        assert beam.state is BeamState.HOLD  # starts held
        beam.release(t_s=0.0)
        assert beam.wait_acked(2.0)
        assert beam.state is BeamState.ON
        beam.hold("outside", t_s=0.125)
        assert beam.state is BeamState.HOLD  # at once, before the endpoint answers
        assert beam.wait_acked(2.0)
        assert beam.state is BeamState.HOLD
    sent = [bp.parse_command(line) for line in endpoint.lines if b" PING " not in line]
    assert [(c.verb, c.t_s, c.reason) for c in sent] == [("RELEASE", 0.0, ""), ("HOLD", 0.125, "outside")]
    seqs = [bp.parse_command(line).seq for line in endpoint.lines]
    assert seqs == sorted(set(seqs))  # strictly increasing


def test_every_call_is_sent_as_a_heartbeat(endpoint: ScriptedEndpoint) -> None:
    with TcpBeam("127.0.0.1", endpoint.port) as beam:
        for i in range(5):
            beam.release(t_s=i * 0.125)
        assert beam.wait_acked(2.0)
        assert beam.n_commands >= 5
        assert [t.state for t in beam.transitions] == [BeamState.ON]
    assert sum(b" RELEASE " in line for line in endpoint.lines) == 5


def test_ping_sends_a_heartbeat_and_changes_no_state(endpoint: ScriptedEndpoint) -> None:
    with TcpBeam("127.0.0.1", endpoint.port) as beam:
        beam.release(t_s=0.0)
        assert beam.wait_acked(2.0) and beam.state is BeamState.ON
        beam.ping()
        beam.ping()
        assert beam.wait_acked(2.0)
        assert beam.state is BeamState.ON and beam.commanded is BeamState.ON
        assert [t.state for t in beam.transitions] == [BeamState.ON]
        assert beam.n_commands == 3
    assert [bp.parse_command(line).verb for line in endpoint.lines] == ["RELEASE", "PING", "PING"]


def test_ping_on_a_broken_link_sends_nothing_and_does_not_raise() -> None:
    ep = ScriptedEndpoint()
    beam = TcpBeam("127.0.0.1", ep.port, reconnect_interval_s=60.0)
    try:
        assert wait_for(lambda: ep.connections == 1)
        ep.close()  # the endpoint goes away
        assert wait_for(lambda: (beam.poll(), beam.fault)[1] is not None)
        sent = beam.n_commands
        beam.ping()
        assert beam.n_commands == sent and beam.state is BeamState.HOLD
    finally:
        beam.close()


def test_reason_is_made_to_fit_the_grammar(endpoint: ScriptedEndpoint) -> None:
    with TcpBeam("127.0.0.1", endpoint.port) as beam:
        beam.hold("frame geometry changed!", t_s=None)
        assert beam.wait_acked(2.0)
    holds = [bp.parse_command(line) for line in endpoint.lines if b" HOLD " in line]
    assert holds[0].reason == "frame_geometry_changed_" and holds[0].t_s is None


def test_missing_ack_holds_and_drops_the_link() -> None:
    ep = ScriptedEndpoint("silent")
    try:
        beam = TcpBeam("127.0.0.1", ep.port, ack_timeout_s=0.05, reconnect_interval_s=10.0)
        beam.release(t_s=0.0)
        assert beam.state is BeamState.HOLD
        assert wait_for(lambda: beam.fault is not None, 2.0)
        assert "no ACK" in (beam.fault or "")
        assert beam.state is BeamState.HOLD
        assert ep.eof_seen.wait(2.0)  # the endpoint sees the connection close: it holds too
        beam.close()
    finally:
        ep.close()


def test_a_command_after_an_overdue_ack_drops_the_link_before_it_is_sent() -> None:
    """The send-first command path still checks the oldest unacknowledged command: once
    it is overdue, the next command breaks the link instead of going out on it."""
    ep = ScriptedEndpoint("silent")
    try:
        beam = TcpBeam("127.0.0.1", ep.port, ack_timeout_s=0.05, reconnect_interval_s=10.0)
        beam.release(t_s=0.0)
        assert wait_for(lambda: len(ep.lines) == 1)
        time.sleep(0.08)  # past ack_timeout_s, and nothing has polled (state/fault would)
        beam.release(t_s=0.1)
        assert "no ACK" in (beam.fault or "")
        assert beam.state is BeamState.HOLD and not beam.connected
        time.sleep(0.05)
        assert len(ep.lines) == 1  # the second RELEASE never reached the endpoint
        beam.close()
    finally:
        ep.close()


def test_a_command_goes_out_before_acknowledgements_are_read(endpoint: ScriptedEndpoint) -> None:
    """hold()/release() send first: a reply waiting in the socket is read by poll()."""
    with TcpBeam("127.0.0.1", endpoint.port) as beam:
        beam.release(t_s=0.0)
        assert wait_for(lambda: len(endpoint.lines) == 1)
        time.sleep(0.05)  # the ACK ON has arrived, unread
        beam.hold("outside", t_s=0.1)
        assert len(beam._unacked) == 2  # the RELEASE's ACK is still unread
        assert wait_for(lambda: len(endpoint.lines) == 2)
        beam.poll()
        assert beam.wait_acked(2.0) and beam.state is BeamState.HOLD


def test_error_reply_holds_and_drops_the_link() -> None:
    ep = ScriptedEndpoint("error")
    try:
        with TcpBeam("127.0.0.1", ep.port, reconnect_interval_s=10.0) as beam:
            beam.release(t_s=0.0)
            assert wait_for(lambda: beam.fault is not None)
            assert "refused" in (beam.fault or "")
            assert beam.state is BeamState.HOLD
    finally:
        ep.close()


def test_an_on_ack_to_an_older_release_does_not_undo_a_hold() -> None:
    ep = ScriptedEndpoint("stale_on")
    try:
        with TcpBeam("127.0.0.1", ep.port) as beam:
            beam.release(t_s=0.0)
            beam.hold("outside", t_s=0.1)
            assert beam.wait_acked(2.0)
            # Every ACK said ON, but the last command was a HOLD: the beam counts as held.
            assert beam.state is BeamState.HOLD
    finally:
        ep.close()


def test_lost_connection_is_a_hold_and_nothing_blocks() -> None:
    ep = ScriptedEndpoint()
    beam = TcpBeam("127.0.0.1", ep.port, reconnect_interval_s=0.02)
    try:
        beam.release(t_s=0.0)
        assert beam.wait_acked(2.0) and beam.state is BeamState.ON
        ep.close()  # the endpoint goes away, and nothing listens on its port
        assert wait_for(lambda: beam.fault is not None)
        assert beam.state is BeamState.HOLD
        # The loop keeps calling while reconnection fails; no call blocks.
        t0 = time.perf_counter()
        for i in range(20):
            beam.release(t_s=0.2 + i * 0.1)
            time.sleep(0.005)
        assert time.perf_counter() - t0 < 0.5
        assert beam.state is BeamState.HOLD and beam.fault is not None
    finally:
        beam.close()


def test_reconnects_to_a_returning_endpoint() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    try:
        beam = TcpBeam("127.0.0.1", port, reconnect_interval_s=0.02)
        first, _ = listener.accept()
        accepted.append(first)
        first.close()  # the endpoint drops the client
        assert wait_for(lambda: beam.fault is not None)
        assert beam.state is BeamState.HOLD
        assert wait_for(lambda: beam.connected)  # a non-blocking reconnect, driven by use
        assert beam.fault is None
        second, _ = listener.accept()
        accepted.append(second)
        beam.hold("outside", t_s=1.0)
        second.settimeout(2.0)
        data = b""
        while b"HOLD" not in data:
            data += second.recv(4096)
        assert b"MAESTRO-BEAM/1 HOLD" in data and b"1.000000 outside" in data
        beam.close()
    finally:
        listener.close()
        for c in accepted:
            c.close()


def test_first_connection_refused_raises() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(OSError):
        TcpBeam("127.0.0.1", port, connect_timeout_s=0.5)


@pytest.mark.parametrize("kwargs", [dict(port=0), dict(port=70000), dict(port=1, ack_timeout_s=0.0),
                                    dict(port=1, heartbeat_s=float("nan"))])
def test_arguments_are_checked(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TcpBeam("127.0.0.1", **kwargs)
