"""A simulated MAESTRO-BEAM/1 beam endpoint that logs every command (``maestro beam-sim``).

It stands where a linac interlock adapter would: it listens on TCP, holds the beam at
start, obeys ``HOLD``/``RELEASE`` from one client at a time, acknowledges every command
with the state set, and holds on its own when the client disconnects, sends a line that
breaks the protocol, or falls silent for longer than the heartbeat timeout. Every
command is logged with its receive time, and the beam timeline (each change of state,
with its reason) can be written as CSV. See :mod:`hardware.beam_protocol`.
"""

from __future__ import annotations

import bisect
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hardware import beam_protocol as bp
from hardware.tcp import listen_tcp

log = logging.getLogger(__name__)

#: Reasons the endpoint holds on its own (not commanded by the client).
STARTUP = "startup"
DISCONNECTED = "disconnected"
PROTOCOL_ERROR = "protocol_error"
HEARTBEAT_TIMEOUT = "heartbeat_timeout"

LOG_COLUMNS = ("t_s", "peer", "verb", "seq", "t_cmd_s", "reason", "state", "line")
TIMELINE_COLUMNS = ("t_s", "state", "reason", "seq", "t_cmd_s")


@dataclass(frozen=True, slots=True)
class CommandLogEntry:
    """One line received (or one event of the endpoint's own).

    Attributes
    ----------
    t_s : float
        Receive time on the endpoint's clock (s).
    peer : str
        ``host:port`` of the client.
    verb : str
        ``HOLD``, ``RELEASE``, ``PING``; or ``CONNECT``, ``DISCONNECT``, ``TIMEOUT``,
        ``BAD_LINE`` for the endpoint's own events.
    seq : int or None
    t_cmd_s : float or None
        The client's session time carried by the command.
    reason : str
        The hold reason (commanded, or the endpoint's own).
    state : str
        ``ON`` or ``HOLD`` after the entry.
    line : str
        The line as received (printable part, for refused lines).
    """

    t_s: float
    peer: str
    verb: str
    seq: int | None
    t_cmd_s: float | None
    reason: str
    state: str
    line: str


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One change of the beam state at the endpoint.

    Attributes
    ----------
    t_s : float
        When it changed (endpoint clock, s).
    state : str
        ``ON`` or ``HOLD``.
    reason : str
        Why it is held (empty for ``ON``).
    seq : int or None
        The command that changed it (``None`` for the endpoint's own holds).
    t_cmd_s : float or None
        The client's session time carried by that command.
    """

    t_s: float
    state: str
    reason: str
    seq: int | None
    t_cmd_s: float | None


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value).replace(",", ";").replace("\n", " ")


def _csv_row(entry: object, columns: tuple[str, ...], t0_s: float) -> str:
    """One CSV row of an entry, its ``t_s`` given in seconds since ``t0_s`` (the entries
    keep the raw clock, so that they compare with other clocks in the same process)."""
    return ",".join(
        _csv_value(getattr(entry, c) - t0_s if c == "t_s" else getattr(entry, c)) for c in columns
    )


class BeamSimulator:
    """A MAESTRO-BEAM/1 endpoint on a background thread.

    Parameters
    ----------
    host : str
        Address to listen on (loopback by default).
    port : int
        Port to listen on; 0 picks a free one (see :attr:`port`).
    heartbeat_timeout_s : float
        Hold when the beam is on and no line has arrived for this long (s).
    log_path : Path or None
        Append every command to this CSV file as it arrives (columns
        :data:`LOG_COLUMNS`).
    clock : callable returning float seconds
        Stamps every entry; ``time.perf_counter`` by default.

    Attributes
    ----------
    commands : list of CommandLogEntry
    timeline : list of TimelineEntry
        Starts with the hold at ``startup``.
    port : int
        The port listened on (after :meth:`start`).
    n_clients : int
        Connections accepted so far.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        heartbeat_timeout_s: float = 0.5,
        log_path: Path | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if isinstance(heartbeat_timeout_s, bool) or not (math.isfinite(heartbeat_timeout_s) and heartbeat_timeout_s > 0):
            raise ValueError(f"heartbeat_timeout_s must be finite and > 0 s, got {heartbeat_timeout_s!r}")
        self.host = host
        self.port = port
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self._clock = clock
        #: Clock reading at creation: the CSV files give times from here (s).
        self.t0_s = clock()
        self._lock = threading.Lock()
        self.commands: list[CommandLogEntry] = []
        self.timeline: list[TimelineEntry] = [TimelineEntry(clock(), bp.STATE_HOLD, STARTUP, None, None)]
        self.n_clients = 0
        self._state = bp.STATE_HOLD
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._peer = ""
        self._lines = bp.LineBuffer()
        self._last_seq = 0
        self._last_line_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_path = Path(log_path) if log_path is not None else None
        self._log: TextIO | None = None
        self.client_closed = threading.Event()

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> BeamSimulator:
        """Listen and serve on a background thread; returns self."""
        listener = listen_tcp(self.host, self.port)
        self._listener = listener
        self.port = listener.getsockname()[1]
        if self._log_path is not None:
            self._log = open(self._log_path, "w", encoding="utf-8", buffering=1)
            self._log.write(",".join(LOG_COLUMNS) + "\n")
        self._thread = threading.Thread(target=self._serve, name="maestro-beam-sim", daemon=True)
        self._thread.start()
        log.info("beam-sim listening on %s:%d (%s)", self.host, self.port, bp.PROTOCOL)
        return self

    def stop(self) -> None:
        """Stop serving, hold the beam, close every socket and the log. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._close_client(DISCONNECTED, "endpoint stopped")
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> BeamSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- queries ----------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``ON`` or ``HOLD`` now."""
        return self._state

    def state_at(self, t_s: float) -> str:
        """The beam state at endpoint time ``t_s`` (``HOLD`` before the first entry)."""
        with self._lock:
            times = [e.t_s for e in self.timeline]
            i = bisect.bisect_right(times, t_s)
            return bp.STATE_HOLD if i == 0 else self.timeline[i - 1].state

    def timeline_csv(self) -> str:
        """The timeline as CSV text (header :data:`TIMELINE_COLUMNS`)."""
        with self._lock:
            rows = [",".join(TIMELINE_COLUMNS)]
            rows += [_csv_row(e, TIMELINE_COLUMNS, self.t0_s) for e in self.timeline]
        return "\n".join(rows) + "\n"

    def write_timeline(self, path: Path) -> None:
        """Write :meth:`timeline_csv` to ``path``."""
        Path(path).write_text(self.timeline_csv(), encoding="utf-8")

    def on_seconds(self, until_s: float | None = None) -> float:
        """Total time with the beam on, up to ``until_s`` (default: now) (s)."""
        end = self._clock() if until_s is None else until_s
        with self._lock:
            total = 0.0
            for entry, nxt in zip(self.timeline, self.timeline[1:] + [None]):
                if entry.state == bp.STATE_ON:
                    total += max(0.0, min(end, nxt.t_s if nxt is not None else end) - entry.t_s)
        return total

    # -- serving --------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                readers = [s for s in (self._listener, self._client) if s is not None]
                wait_s = 0.02
            try:
                readable, _, _ = select.select(readers, [], [], wait_s)
            except (OSError, ValueError):
                readable = []
            with self._lock:
                if self._stop.is_set():
                    return
                for sock in readable:
                    if sock is self._listener:
                        self._accept()
                    elif sock is self._client:
                        self._receive()
                self._check_heartbeat()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, addr = self._listener.accept()
        except OSError:
            return
        peer = f"{addr[0]}:{addr[1]}"
        if self._client is not None:
            # One client commands the beam at a time.
            try:
                conn.sendall(bp.format_reply(bp.BeamReply(bp.ERROR, None, code="busy")))
            except OSError:
                pass
            conn.close()
            self._note(peer, "BAD_LINE", None, None, "busy", "second client refused")
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(1.0)  # replies are tiny; a peer that stops reading is dropped
        self._client, self._peer = conn, peer
        self._lines = bp.LineBuffer()
        self._last_seq = 0
        self._last_line_s = self._clock()
        self.n_clients += 1
        self.client_closed.clear()
        self._note(peer, "CONNECT", None, None, "", "")
        log.info("beam-sim: client %s connected", peer)

    def _receive(self) -> None:
        assert self._client is not None
        try:
            data = self._client.recv(4096)
        except OSError as exc:
            self._close_client(DISCONNECTED, f"receive failed: {exc}")
            return
        if not data:
            self._close_client(DISCONNECTED, "client closed the connection")
            return
        now = self._clock()
        try:
            lines = self._lines.feed(data)
        except bp.BeamProtocolError as exc:
            self._refuse(None, exc, "<long line>")
            return
        for raw in lines:
            self._last_line_s = now
            try:
                command = bp.parse_command(raw)
            except bp.BeamProtocolError as exc:
                self._refuse(None, exc, raw.decode("ascii", "replace"))
                return
            if command.seq <= self._last_seq:
                self._refuse(command.seq, bp.BeamProtocolError("seq", f"{command.seq} does not exceed "
                                                               f"{self._last_seq}", "stale_seq"), raw.decode())
                return
            self._last_seq = command.seq
            self._obey(command, now, raw.decode("ascii"))
            if self._client is None:
                return

    def _obey(self, command: bp.BeamCommand, now: float, line: str) -> None:
        if command.verb == bp.HOLD:
            self._set(bp.STATE_HOLD, command.reason, now, command.seq, command.t_s)
        elif command.verb == bp.RELEASE:
            self._set(bp.STATE_ON, "", now, command.seq, command.t_s)
        entry = CommandLogEntry(now, self._peer, command.verb, command.seq, command.t_s, command.reason,
                                self._state, line)
        self._log_entry(entry)
        self._reply(bp.BeamReply(bp.ACK, command.seq, state=self._state))

    def _refuse(self, seq: int | None, exc: bp.BeamProtocolError, line: str) -> None:
        log.warning("beam-sim: refused a line from %s: %s", self._peer, exc)
        self._set(bp.STATE_HOLD, PROTOCOL_ERROR, self._clock(), None, None)
        self._note(self._peer, "BAD_LINE", seq, None, PROTOCOL_ERROR, f"{exc} | {line[:60]}")
        self._reply(bp.BeamReply(bp.ERROR, seq, code=exc.code))
        self._close_client(PROTOCOL_ERROR, str(exc))

    def _reply(self, reply: bp.BeamReply) -> None:
        if self._client is None:
            return
        try:
            self._client.sendall(bp.format_reply(reply))
        except OSError as exc:
            self._close_client(DISCONNECTED, f"send failed: {exc}")

    def _check_heartbeat(self) -> None:
        if self._state != bp.STATE_ON:
            return
        now = self._clock()
        silence_s = now - self._last_line_s
        if self._client is not None and silence_s > self.heartbeat_timeout_s:
            log.warning("beam-sim: no line from %s for %.0f ms: beam held", self._peer, silence_s * 1000)
            self._set(bp.STATE_HOLD, HEARTBEAT_TIMEOUT, now, None, None)
            self._note(self._peer, "TIMEOUT", None, None, HEARTBEAT_TIMEOUT, f"silent for {silence_s:.3f} s")

    def _close_client(self, reason: str, detail: str) -> None:
        if self._client is None:
            return
        try:
            self._client.close()
        except OSError:
            pass
        self._client = None
        self._set(bp.STATE_HOLD, reason, self._clock(), None, None)
        self._note(self._peer, "DISCONNECT", None, None, reason, detail)
        log.info("beam-sim: client %s gone (%s): beam held", self._peer, detail)
        self.client_closed.set()

    def _set(self, state: str, reason: str, now: float, seq: int | None, t_cmd_s: float | None) -> None:
        last = self.timeline[-1]
        if state == last.state and (state == bp.STATE_ON or reason == last.reason):
            self._state = state
            return
        if state == last.state == bp.STATE_HOLD and seq is not None:
            # A commanded change of reason while held is not a change of state; keep the
            # timeline to state changes plus the endpoint's own holds.
            self._state = state
            return
        self.timeline.append(TimelineEntry(now, state, reason, seq, t_cmd_s))
        self._state = state
        if state == bp.STATE_ON or last.state == bp.STATE_ON:
            log.info("beam-sim: beam %s at %.3f s%s", state, now, f" ({reason})" if reason else "")

    def _note(self, peer: str, verb: str, seq: int | None, t_cmd_s: float | None, reason: str, line: str) -> None:
        self._log_entry(CommandLogEntry(self._clock(), peer, verb, seq, t_cmd_s, reason, self._state, line))

    def _log_entry(self, entry: CommandLogEntry) -> None:
        self.commands.append(entry)
        if self._log is not None:
            self._log.write(_csv_row(entry, LOG_COLUMNS, self.t0_s) + "\n")
