"""A beam commanded over TCP with the MAESTRO-BEAM/1 line protocol.

:class:`TcpBeam` implements :class:`hardware.beam.BeamInterface` for a beam endpoint
reached over TCP (see :mod:`hardware.beam_protocol` for the protocol; the transport and
the protocol are this project's choice, not the MRIdian's). Every ``hold``/``release``
call sends one line: the loop calls one per frame, so the commands double as the
heartbeat that keeps the endpoint from holding on its own.

Nothing here blocks the gating loop: the socket is non-blocking, a command is one
non-blocking send, acknowledgements are read by :meth:`TcpBeam.poll` (which the loop
calls after each command) and whenever the state is asked for, and reconnection is a non-blocking connect retried at
an interval. The beam counts as on only while the last command was ``RELEASE`` and the
endpoint acknowledged it with ``ON``; a lost connection, a refused line or an
acknowledgement missing for longer than ``ack_timeout_s`` is a hold (and a missing
acknowledgement drops the connection, which makes the endpoint hold too).

All methods are thread-safe (a watchdog thread may hold the beam while the loop runs).
"""

from __future__ import annotations

import errno
import logging
import math
import select
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from hardware import beam_protocol as bp
from hardware.beam import BeamState, BeamTransition

log = logging.getLogger(__name__)

#: Bytes of unsent commands tolerated before the link is declared stuck.
_MAX_PENDING_OUT_BYTES = 64 * 1024
#: Bytes read from the socket at a time.
_RECV_BYTES = 4096


class TcpBeam:
    """Beam hold/release sent to a MAESTRO-BEAM/1 endpoint over TCP.

    Parameters
    ----------
    host : str
        Endpoint host name or address (loopback by default).
    port : int
        Endpoint TCP port.
    connect_timeout_s : float
        Bound on the first, blocking connection made by the constructor (s).
    ack_timeout_s : float
        A command not acknowledged within this time breaks the link: the beam counts as
        held and the connection is dropped and re-made (s).
    heartbeat_s : float
        When no command has been sent for this long, the next use of the object sends a
        ``PING`` (s). The loop's per-frame commands normally make this unnecessary.
    reconnect_interval_s : float
        Time between reconnection attempts after the link broke (s).
    clock : callable returning float seconds
        Monotonic clock for the timeouts; ``time.perf_counter`` by default.

    Attributes
    ----------
    transitions : list of BeamTransition
        Every change of the commanded state (``t_effective_s`` equals ``t_command_s``:
        when the beam really changed is known only to the endpoint).
    n_commands : int
        Commands sent (``PING`` included).

    Raises
    ------
    ValueError
        A timeout or the port is out of range.
    OSError
        The first connection fails (refused, unreachable, timed out).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        connect_timeout_s: float = 2.0,
        ack_timeout_s: float = 0.25,
        heartbeat_s: float = 0.1,
        reconnect_interval_s: float = 0.5,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        for name, value in (("connect_timeout_s", connect_timeout_s), ("ack_timeout_s", ack_timeout_s),
                            ("heartbeat_s", heartbeat_s), ("reconnect_interval_s", reconnect_interval_s)):
            if isinstance(value, bool) or not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be finite and > 0 s, got {value!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an int in 1 to 65535, got {port!r}")
        self.host = host
        self.port = port
        self.ack_timeout_s = float(ack_timeout_s)
        self.heartbeat_s = float(heartbeat_s)
        self.reconnect_interval_s = float(reconnect_interval_s)
        self._clock = clock
        self._lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._connecting = False
        self._lines = bp.LineBuffer()
        self._out = bytearray()
        self._seq = 0
        # seq -> (verb, time sent): commands awaiting their ACK, oldest first.
        self._unacked: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self._last_sent_s = -math.inf
        self._next_connect_s = -math.inf
        self._commanded = BeamState.HOLD
        self._reason = "startup"
        self._last_hold_seq = 0
        self._acked_on = False
        self._connect_timeout_s = float(connect_timeout_s)
        self._connect_started_s = -math.inf
        self._fault: str | None = None
        self._closed = False
        self.transitions: list[BeamTransition] = []
        self.n_commands = 0
        sock = socket.create_connection((host, port), timeout=connect_timeout_s)
        self._adopt(sock)
        log.info("beam link to %s open (%s)", self.address, bp.PROTOCOL)

    # -- public API -----------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def hold(self, reason: str, t_s: float | None = None) -> None:
        """Send ``HOLD`` (every call: repeated commands are the heartbeat)."""
        reason = bp.clean_reason(reason)
        with self._lock:
            if self._commanded is not BeamState.HOLD or self._reason != reason:
                if self._commanded is not BeamState.HOLD:
                    self._transition(BeamState.HOLD, reason, t_s)
                self._commanded, self._reason = BeamState.HOLD, reason
            self._acked_on = False
            self._send(bp.HOLD, t_s, reason)

    def release(self, t_s: float | None = None) -> None:
        """Send ``RELEASE`` (every call: repeated commands are the heartbeat)."""
        with self._lock:
            if self._commanded is not BeamState.ON:
                self._transition(BeamState.ON, "", t_s)
                self._commanded, self._reason = BeamState.ON, ""
            self._send(bp.RELEASE, t_s, "")

    @property
    def state(self) -> BeamState:
        """``ON`` only while the last command was an acknowledged ``RELEASE`` on a live link."""
        with self._lock:
            self._poll()
            if self._sock is not None and not self._connecting and self._acked_on:
                return BeamState.ON
            return BeamState.HOLD

    @property
    def commanded(self) -> BeamState:
        """The last state commanded (whether or not the endpoint has acknowledged it)."""
        return self._commanded

    @property
    def reason(self) -> str:
        """Why the beam is commanded held; empty when commanded on."""
        return self._reason

    @property
    def fault(self) -> str | None:
        """Why the link is broken (``None`` while it is up)."""
        with self._lock:
            self._poll()
            return self._fault

    @property
    def connected(self) -> bool:
        with self._lock:
            self._poll()
            return self._sock is not None and not self._connecting

    def poll(self) -> None:
        """Read acknowledgements, check timeouts, send a heartbeat or reconnect if due.

        The gating loop calls it after each beam command, off the latency path
        (:meth:`hold` and :meth:`release` send first and read later).
        """
        with self._lock:
            self._poll()

    def ping(self) -> None:
        """Send a ``PING`` now, if the link is up; read the acknowledgements that came.

        For the loop to call just before a frame is due (keep-warm): the command that
        follows the frame then finds the send path and the endpoint awake. A loopback
        send to an endpoint that has slept ~120 ms took 60 us median / 94 us p99 on a
        2-core VM, and 17 us / 28 us with a ``PING`` 0.5 ms before it. It also checks the
        link just before a decision needs it. Nothing about the beam's state changes.
        """
        with self._lock:
            self._poll(heartbeat=False)
            if self._sock is not None and not self._connecting:
                self._send(bp.PING, None, "")

    def wait_acked(self, timeout_s: float) -> bool:
        """Wait (blocking, up to ``timeout_s``) until every command sent is acknowledged.

        For the end of a session and for tests; never called from the loop.
        """
        deadline = self._clock() + timeout_s
        while True:
            with self._lock:
                self._poll(heartbeat=False)
                if self._sock is None or self._connecting:
                    return False
                if not self._unacked and not self._out:
                    return True
                sock = self._sock
            remaining = deadline - self._clock()
            if remaining <= 0.0:
                return False
            try:
                select.select([sock], [], [], min(remaining, 0.01))
            except (OSError, ValueError):
                return False

    def close(self) -> None:
        """Wait briefly for outstanding acknowledgements, then close the link. Idempotent.

        Closing the connection makes the endpoint hold the beam.
        """
        if self._closed:
            return
        self.wait_acked(self.ack_timeout_s)
        with self._lock:
            self._closed = True
            if self._unacked:
                log.warning("beam link %s closed with %d commands unacknowledged", self.address, len(self._unacked))
            self._drop(None)
        log.info("beam link to %s closed after %d commands", self.address, self.n_commands)

    def __enter__(self) -> TcpBeam:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals (call with the lock held) -------------------------------------------
    def _transition(self, state: BeamState, reason: str, t_s: float | None) -> None:
        t = self._clock() if t_s is None else float(t_s)
        self.transitions.append(BeamTransition(t, t, state, reason))
        log.info("beam %s commanded at %.3f s (%s)", state.value, t, reason or "release")

    def _adopt(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._connecting = False
        self._lines = bp.LineBuffer()
        self._out.clear()
        self._unacked.clear()
        self._acked_on = False
        if self._fault is not None:
            log.warning("beam link to %s restored (was: %s)", self.address, self._fault)
        self._fault = None

    def _drop(self, fault: str | None) -> None:
        """Close the socket; with a fault, schedule a reconnection."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._connecting = False
        self._unacked.clear()
        self._out.clear()
        self._acked_on = False
        if fault is not None:
            if self._fault is None:
                log.warning("beam link to %s broken: %s: beam counts as held", self.address, fault)
            self._fault = fault
            self._next_connect_s = self._clock() + self.reconnect_interval_s

    def _send(self, verb: str, t_s: float | None, reason: str) -> None:
        # The command goes out first, in one non-blocking send; reading the endpoint's
        # acknowledgements waits for poll(), which the loop calls after the command
        # (reading first put ~100 us of socket reads before every command). Two things
        # cannot wait: a link being made or re-made, and an acknowledgement overdue,
        # which must break the link before another command goes out on it; for the
        # latter, the replies that arrived are read first, so that none is taken for
        # missing.
        if self._sock is None or self._connecting or self._ack_overdue():
            self._poll(heartbeat=False)
        if self._sock is None or self._connecting or self._closed:
            return  # the link is down: the endpoint holds on its own
        self._seq += 1
        command = bp.BeamCommand(verb, self._seq, None if verb == bp.PING else t_s, reason)
        self._out += bp.format_command(command)
        now = self._clock()
        self._unacked[self._seq] = (verb, now)
        if verb == bp.HOLD:
            self._last_hold_seq = self._seq
        self._last_sent_s = now
        self.n_commands += 1
        self._flush()

    def _flush(self) -> None:
        sock = self._sock
        if sock is None or not self._out:
            return
        try:
            sent = sock.send(self._out)
            del self._out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._drop(f"send failed: {exc.strerror or exc}")
            return
        if len(self._out) > _MAX_PENDING_OUT_BYTES:
            self._drop(f"{len(self._out)} bytes of commands unsent: the endpoint is not reading")

    def _ack_overdue(self) -> bool:
        """Whether the oldest command awaiting its acknowledgement has waited too long."""
        if not self._unacked:
            return False
        _, sent_s = next(iter(self._unacked.values()))
        return self._clock() - sent_s > self.ack_timeout_s

    def _poll(self, heartbeat: bool = True) -> None:
        if self._closed:
            return
        if self._sock is None:
            if self._clock() >= self._next_connect_s:
                self._start_connect()
            return
        if self._connecting:
            self._finish_connect()
            return
        self._flush()
        self._read()
        if self._sock is None:
            return
        now = self._clock()
        if self._unacked:
            seq, (verb, sent_s) = next(iter(self._unacked.items()))
            if now - sent_s > self.ack_timeout_s:
                self._drop(f"no ACK for {verb} {seq} within {self.ack_timeout_s * 1000:.0f} ms")
                return
        if heartbeat and now - self._last_sent_s > self.heartbeat_s:
            self._send(bp.PING, None, "")

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._drop(f"receive failed: {exc.strerror or exc}")
                return
            if not data:
                self._drop("the endpoint closed the connection")
                return
            try:
                for line in self._lines.feed(data):
                    self._handle(bp.parse_reply(line))
                    if self._sock is None:
                        return
            except bp.BeamProtocolError as exc:
                self._drop(f"bad reply from the endpoint: {exc}")
                return

    def _handle(self, reply: bp.BeamReply) -> None:
        if reply.verb == bp.ERROR:
            self._drop(f"the endpoint refused command {reply.seq if reply.seq is not None else '-'}: {reply.code}")
            return
        assert reply.seq is not None
        if reply.seq not in self._unacked:
            self._drop(f"ACK for command {reply.seq}, which is not awaiting one")
            return
        # Replies come in order: an ACK also settles every older command.
        while self._unacked:
            seq, (verb, _) = self._unacked.popitem(last=False)
            if seq == reply.seq:
                break
        # An ACK ON counts only when no HOLD has been sent since the command it answers.
        self._acked_on = (reply.state == bp.STATE_ON and reply.seq > self._last_hold_seq
                          and self._commanded is BeamState.ON)

    def _start_connect(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            self._drop(f"cannot resolve {self.host}: {exc}")
            return
        family, socktype, proto, _, addr = infos[0]
        sock = socket.socket(family, socktype, proto)
        sock.setblocking(False)
        err = sock.connect_ex(addr)
        if err == 0:
            self._adopt(sock)
        elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            self._sock = sock
            self._connecting = True
            self._connect_started_s = self._clock()
        else:
            sock.close()
            self._drop(f"connect failed: {errno.errorcode.get(err, err)}")

    def _finish_connect(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            _, writable, _ = select.select([], [sock], [], 0.0)
        except (OSError, ValueError) as exc:
            self._drop(f"connect failed: {exc}")
            return
        if not writable:
            if self._clock() - self._connect_started_s > self._connect_timeout_s:
                self._drop(f"connect timed out after {self._connect_timeout_s:g} s")
            return
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop(f"connect failed: {errno.errorcode.get(err, err)}")
            return
        self._adopt(sock)
