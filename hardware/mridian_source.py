"""A live MRIdian cine stream: SendExternal records received over TCP.

How the console hands cine frames to an external consumer is not public; the record
format is (see :mod:`hardware.sendexternal`). Receiving those records over a TCP
connection that this host opens to the scanner side is **this project's choice** of
transport: the stream is the byte sequence of a ``.dat`` file, records back to back,
ended by the end-of-stream record.

One thread, no hand-off
-----------------------
The socket is read, and its records decoded, on the thread that iterates the source
(the gating loop's), inside the iteration: the iterator waits in a selector on the
socket, wakes when bytes arrive, and yields the frame they complete. No receiver thread
and no queue stand between a frame's last byte and its decision: on loopback that
hand-off (a queue wake-up and a GIL switch) was half of the live path's latency.
Connecting and reconnecting are non-blocking connects in the same selector.

A frame's ``t_recv_s`` (``time.perf_counter`` time) is when its last bytes reached this
host: the kernel's receive timestamp of the read that completed the record
(``SO_TIMESTAMPNS``, converted from the realtime clock at that read), so a frame that
waited in the socket buffer while the loop was busy has aged, and the gate's
``max_frame_age_ms`` sees it. Reads stop at record boundaries, so a backlog of frames
never lends a later frame's arrival time to an earlier one. Where the kernel gives no
timestamp, or with an injected ``clock``, it is that clock's time just after the read.
While the loop is busy, the scanner side's writes wait in the socket buffers and TCP
flow control pushes back on it.

Iterating an :class:`MRIdianSource` (on the loop's thread) yields
:class:`~hardware.frame.Frame` objects and, in between, ``None`` ticks:

- the iterator never blocks longer than ``tick_s`` (default: one frame period) without
  yielding; when no frame arrived in that time it yields ``None``;
- when a fault begins between frames (stall, disconnection, malformed record, failed
  connection) it yields ``None`` at once, without waiting for the tick;
- whatever it yields, :attr:`MRIdianSource.fault` describes the source's state at that
  moment: ``None`` when healthy, else a reason (``"stall: ..."``, ``"disconnected:
  ..."``, ``"malformed: ..."``, ``"late: ..."``, ``"gap: ..."``, ``"connect: ..."``).

A consumer that, on every item, holds the beam whenever ``fault`` is set (treating
``None`` as "no frame: look at the fault") holds as soon as the source knows of a
fault; :class:`maestro.session.GatingSession` does so with the reason
``source_fault``, and also holds frames yielded while ``fault`` is set (the frames that
end a fault, see *recovery* below).

Faults
------
stall
    Connected, no complete record for ``stall_timeout_factor`` x ``frame_period_s``
    since the last frame (or since connecting; before the very first frame of the
    session there is no stall: the scanner may not be imaging yet).
disconnected
    The scanner closed the connection or it failed; the source reconnects.
malformed
    A record broke the format, or the connection closed inside a record (truncated);
    a byte stream cannot be resynchronised, so the source drops the connection and
    reconnects.
late
    With acquisition times in the records (``Maestro.AcquisitionTime_s``): a frame
    arrived more than ``(stall_timeout_factor - 1) x frame_period_s`` later than the
    earliest delay seen between acquisition and receipt (the scanner-to-host offset).
gap
    With acquisition times: consecutive frames more than ``stall_timeout_factor`` frame
    periods apart (frames were lost).
connect
    A connection attempt failed; after ``max_connect_attempts`` consecutive failures the
    iteration ends (see :attr:`MRIdianSource.ended_by`).

Recovery: once faulted, the fault clears on the ``recovery_frames``-th consecutive frame
that arrives on time; frames before it are yielded with the fault still set.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import logging
import math
import os
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from hardware.frame import Frame
from hardware.plane_geometry import PlaneGeometry
from hardware.sendexternal import SendExternalDecoder, SendExternalError, SendExternalRecord

log = logging.getLogger(__name__)

#: Most bytes read from the socket at a time (a 270 x 270 frame is ~146 kB); reads also
#: stop at the end of each record part (SendExternalDecoder.bytes_wanted).
RECV_BYTES = 1 << 18
#: Linux's SO_TIMESTAMPNS (kernel receive time as a struct timespec in the ancillary
#: data); Python's socket module does not name it. None elsewhere: receive times are
#: then the clock's time just after each read.
_SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0

_FRAME = "frame"
_CONNECTED = "connected"
_FAULT = "fault"
_END = "end"


@dataclass(frozen=True, slots=True)
class SourceFaultEvent:
    """A fault beginning or clearing.

    Attributes
    ----------
    t_s : float
        When (the source's clock, s).
    kind : str
        ``stall``, ``disconnected``, ``malformed``, ``late``, ``gap``, ``connect``, or
        ``cleared``.
    detail : str
        The full fault text (for ``cleared``: the fault that cleared).
    frames_received : int
        Frames received before the event.
    """

    t_s: float
    kind: str
    detail: str
    frames_received: int


class MRIdianSource:
    """SendExternal records from a TCP connection to the scanner, as frames.

    Implements :class:`~hardware.frame.FrameSource`, with ``None`` ticks in the
    iteration (see the module doc). Single-pass: iterating again resumes the stream.
    The connection is made by the first iteration, on the iterating thread; :meth:`close`
    ends it.

    Parameters
    ----------
    host : str
        Scanner-side host (loopback by default).
    port : int
        Scanner-side TCP port.
    frame_period_s : float
        Nominal time between frames (s); 0.125 at 8 frames/s.
    connect_timeout_s : float
        A connection attempt not complete after this long fails (s).
    stall_timeout_factor : float
        A stall is declared after this many frame periods without a frame (> 1).
    max_connect_attempts : int or None
        Consecutive failed connection attempts after which the iteration ends; ``None``
        retries for ever.
    reconnect_backoff_s : float
        Wait before the second attempt; it doubles per failure (s).
    max_backoff_s : float
        Longest wait between attempts (s).
    recovery_frames : int
        On-time frames needed to clear a fault (>= 1).
    tick_s : float or None
        Longest time the iterator blocks without yielding (s); one frame period by
        default, never more.
    awake_s : float
        The iterator stays awake, polling the socket instead of sleeping in the
        selector, from this long before the next frame is due (the last frame's arrival
        plus one frame period) until this long after; it yields a ``None`` tick as the
        window opens, so that the consumer can warm its hot path (s; 0: always sleep).
        Why: a thread woken from sleep on this class of machine takes hundreds of
        microseconds to run again, more than the whole decision.
    reference_label : (H, W) bool ndarray or None
        The target on the first frame, when the operator provides one.
    clock : callable returning float seconds
        Monotonic clock for receive times and timeouts; ``time.perf_counter``.

    Attributes
    ----------
    description : str
    frame_period_s : float
    stall_timeout_s : float
    fault_history : list of SourceFaultEvent
    n_frames : int
        Frames yielded so far.
    ended_by : str or None
        Why the iteration ended (``"end of stream"``, ``"closed"``, ``"gave up: ..."``).

    Raises
    ------
    ValueError
        An argument out of range.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        frame_period_s: float = 0.125,
        connect_timeout_s: float = 1.0,
        stall_timeout_factor: float = 1.5,
        max_connect_attempts: int | None = 20,
        reconnect_backoff_s: float = 0.05,
        max_backoff_s: float = 1.0,
        recovery_frames: int = 2,
        tick_s: float | None = None,
        awake_s: float = 0.002,
        reference_label: np.ndarray | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        def positive(name: str, value: float) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
            return float(value)

        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an int in 1 to 65535, got {port!r}")
        self.host = host
        self.port = port
        self.frame_period_s = positive("frame_period_s", frame_period_s)
        self.connect_timeout_s = positive("connect_timeout_s", connect_timeout_s)
        factor = positive("stall_timeout_factor", stall_timeout_factor)
        if factor <= 1.0:
            raise ValueError(f"stall_timeout_factor must be > 1 (frame periods), got {stall_timeout_factor!r}")
        self.stall_timeout_s = factor * self.frame_period_s
        self.late_limit_s = (factor - 1.0) * self.frame_period_s
        if max_connect_attempts is not None and (isinstance(max_connect_attempts, bool) or max_connect_attempts < 1):
            raise ValueError(f"max_connect_attempts must be >= 1 or None, got {max_connect_attempts!r}")
        self.max_connect_attempts = max_connect_attempts
        self.reconnect_backoff_s = positive("reconnect_backoff_s", reconnect_backoff_s)
        self.max_backoff_s = positive("max_backoff_s", max_backoff_s)
        if isinstance(recovery_frames, bool) or not isinstance(recovery_frames, int) or recovery_frames < 1:
            raise ValueError(f"recovery_frames must be an int >= 1, got {recovery_frames!r}")
        self.recovery_frames = recovery_frames
        if isinstance(awake_s, bool) or not (math.isfinite(awake_s) and 0.0 <= awake_s < self.frame_period_s / 2):
            raise ValueError(f"awake_s must be >= 0 and under half a frame period, got {awake_s!r}")
        self.awake_s = float(awake_s)
        self.tick_s = self.frame_period_s if tick_s is None else min(positive("tick_s", tick_s), self.frame_period_s)
        if reference_label is not None:
            reference_label = np.asarray(reference_label, dtype=bool)
            if reference_label.ndim != 2:
                raise ValueError(f"reference_label must be a 2D mask, got shape {reference_label.shape}")
            reference_label.flags.writeable = False
        self._reference_label = reference_label
        self._clock = clock
        self.description = (
            f"MRIdian SendExternal stream from tcp://{host}:{port} (nominal {1.0 / self.frame_period_s:.3f} "
            f"frames/s, stall after {self.stall_timeout_s * 1000:.0f} ms)"
        )
        self.fault_history: list[SourceFaultEvent] = []
        self.n_frames = 0
        self.ended_by: str | None = None
        # Items the stream produced, handed over in order by the iteration:
        # ("frame", Frame) | ("connected", t) | ("fault", text) | ("end", why).
        self._ready: collections.deque[tuple[str, object]] = collections.deque()
        self._selector: selectors.BaseSelector | None = None
        # close() from another thread wakes a waiting iteration through this pair.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._connecting_until_s: float | None = None  # a connect in progress times out then
        self._next_connect_s = -math.inf  # no connection: the next attempt is due then
        self._failed_attempts = 0
        self._decoder: SendExternalDecoder | None = None
        # The reads of the record in progress, and of the last complete one (what the
        # awake window rehearses decoding on).
        self._record_chunks: list[bytes] = []
        self._last_record_chunks: list[bytes] = []
        self._kernel_stamps = False
        self._first_recv_s: float | None = None
        #: The plane of the stream's first record (None until it arrives, or when the
        #: record does not say where it lies): where a structure set's target is cut.
        self.geometry: PlaneGeometry | None = None
        self._geometry_read = False
        # Hand-over state.
        self._connected = False
        self._fault: str | None = None
        self._on_time_frames = 0
        self._pending_tick = False
        self._stall_from_s: float | None = None  # stall timer origin; None: no frame yet
        self._last_t_acq_s: float | None = None
        self._min_offset_s = math.inf  # earliest (receive - acquisition) seen
        self._awake_from_s = math.inf  # the awake window of the frame due next opens then
        self._awake_until_s = -math.inf  # ... and the open one closes then
        self._iterating = False
        self._closed = False
        self._finished = False

    # -- FrameSource ------------------------------------------------------------------
    @property
    def reference_label(self) -> np.ndarray | None:
        return self._reference_label

    @property
    def fault(self) -> str | None:
        """``None`` while healthy; otherwise why the source cannot vouch for its frames."""
        return self._fault

    @property
    def fault_kind(self) -> str | None:
        """The first word of :attr:`fault` (``stall``, ``disconnected``, ...)."""
        return None if self._fault is None else self._fault.split(":", 1)[0]

    @property
    def connected(self) -> bool:
        """Whether the loop has been told of a live connection (and no fault since)."""
        return self._connected

    def __iter__(self) -> Iterator[Frame | None]:
        return self._items()

    def close(self) -> None:
        """Stop: close the connection; iteration ends. Idempotent; callable from any thread."""
        if self._closed:
            return
        self._closed = True
        with self._sock_lock:
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"x")  # an iteration waiting in the selector returns
                except OSError:
                    pass
            if not self._iterating:
                self._release()
        if self.ended_by is None:
            self.ended_by = "closed"
        log.info("MRIdian source closed after %d frames", self.n_frames)

    def __enter__(self) -> MRIdianSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the iteration (the loop's thread) ----------------------------------------------
    def _items(self) -> Iterator[Frame | None]:
        with self._sock_lock:
            if self._closed:
                return
            if self._selector is None:
                self._selector = selectors.DefaultSelector()
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._selector.register(self._wake_r, selectors.EVENT_READ)
            self._iterating = True
        try:
            yield from self._handover()
        finally:
            with self._sock_lock:
                self._iterating = False
                if self._closed or self._finished:
                    self._release()

    def _handover(self) -> Iterator[Frame | None]:
        last_yield_s = self._clock()
        while not self._closed and not self._finished:
            if not self._ready:
                self._wait(last_yield_s + self.tick_s)
                if self._closed:
                    return
                if not self._ready:
                    self._check_stall()
                    if self._clock() >= self._awake_from_s and self._decoder_idle():
                        self._awake_from_s = math.inf
                        self._rehearse_decode()
                        self._awake_until_s = self._clock() + 2.0 * self.awake_s
                        self._pending_tick = True  # the window opens: a frame is due
                    if self._pending_tick or self._clock() - last_yield_s >= self.tick_s:
                        self._pending_tick = False
                        last_yield_s = self._clock()
                        yield None
                    continue
            kind, payload = self._ready.popleft()
            if kind == _FRAME:
                frame = payload
                assert isinstance(frame, Frame)
                frame = dataclasses.replace(frame, index=self.n_frames)
                self._stall_from_s = frame.t_recv_s
                if self.awake_s > 0.0:
                    self._awake_from_s = frame.t_recv_s + self.frame_period_s - self.awake_s
                self._assess(frame)
                self.n_frames += 1
                self._pending_tick = False
                last_yield_s = self._clock()
                yield frame
            elif kind == _CONNECTED:
                self._connected = True
                if self._stall_from_s is not None:
                    self._stall_from_s = float(payload)  # type: ignore[arg-type] # frames are due again from now
            elif kind == _FAULT:
                self._connected = False
                self._set_fault(str(payload))
                last_yield_s = self._clock()
                self._pending_tick = False
                yield None  # at once: the consumer holds within no time of the fault
            elif kind == _END:
                self._end(str(payload))

    def _wait(self, tick_due_s: float) -> None:
        """Wait in the selector until the socket has something, a deadline passes (tick,
        stall, connection attempt) or close() wakes it; then act on what happened."""
        now = self._clock()
        if self._sock is None and now >= self._next_connect_s:
            self._start_connect()
            if self._ready:
                return
        wake_s = tick_due_s
        if self._stall_from_s is not None and self._connected and self.fault_kind != "stall":
            wake_s = min(wake_s, self._stall_from_s + self.stall_timeout_s)
        if self._sock is None:
            wake_s = min(wake_s, self._next_connect_s)
        elif self._connecting_until_s is not None:
            wake_s = min(wake_s, self._connecting_until_s)
        if self._decoder_idle():
            wake_s = min(wake_s, self._awake_from_s)
        assert self._selector is not None
        selector = self._selector
        try:
            if self._clock() < self._awake_until_s and self._connected:
                # Awake window: poll until something happens or the window (or a
                # deadline) passes; each poll releases the GIL to the other threads.
                until_s = min(wake_s, self._awake_until_s)
                while not (events := selector.select(0)) and self._clock() < until_s:
                    pass
            else:
                events = selector.select(max(0.0, wake_s - self._clock()))
        except InterruptedError:
            events = []
        for key, _ in events:
            if key.fileobj is self._wake_r:
                try:
                    self._wake_r.recv(64)  # type: ignore[union-attr]
                except OSError:
                    pass
            elif key.fileobj is self._sock:
                if self._connecting_until_s is not None:
                    self._finish_connect()
                else:
                    self._read()
        if self._connecting_until_s is not None and self._clock() >= self._connecting_until_s:
            self._connect_failed(f"timed out after {self.connect_timeout_s:g} s")

    def _decoder_idle(self) -> bool:
        """No record is arriving: nothing of the next frame has been read yet (a frame
        whose bytes are coming is not made to wait behind a warm-up)."""
        return self._decoder is None or self._decoder.pending_bytes == 0

    def _assess(self, frame: Frame) -> None:
        """Judge a frame's timing as it is handed over; set or clear the fault."""
        problem = ""
        offset_s = frame.t_recv_s - frame.t_acq_s
        if self._last_t_acq_s is not None and frame.t_acq_s < self._last_t_acq_s:
            # Acquisition times went back: a new series (or a restarted scanner clock).
            log.warning("acquisition time went back from %.3f to %.3f s: timing re-anchored",
                        self._last_t_acq_s, frame.t_acq_s)
            self._min_offset_s = math.inf
        elif self._last_t_acq_s is not None:
            step_s = frame.t_acq_s - self._last_t_acq_s
            if step_s > self.stall_timeout_s:
                missing = max(1, round(step_s / self.frame_period_s) - 1)
                problem = f"gap: about {missing} frames missing before frame {frame.index} ({step_s * 1000:.0f} ms)"
        self._min_offset_s = min(self._min_offset_s, offset_s)
        lateness_s = offset_s - self._min_offset_s
        if not problem and lateness_s > self.late_limit_s:
            problem = f"late: frame {frame.index} arrived {lateness_s * 1000:.0f} ms behind schedule"
        self._last_t_acq_s = frame.t_acq_s
        if problem:
            self._set_fault(problem)
            return
        if self._fault is not None:
            self._on_time_frames += 1
            if self._on_time_frames >= self.recovery_frames:
                self._clear_fault()

    def _check_stall(self) -> None:
        if self._stall_from_s is None or not self._connected or self.fault_kind == "stall":
            return
        silence_s = self._clock() - self._stall_from_s
        if silence_s >= self.stall_timeout_s:
            self._set_fault(f"stall: no frame for {silence_s * 1000:.0f} ms")
            self._pending_tick = True

    # -- fault state (loop thread) -----------------------------------------------------------
    def _set_fault(self, text: str) -> None:
        kind = text.split(":", 1)[0]
        if self._fault != text:
            if self._fault is None:
                log.warning("MRIdian source fault: %s", text)
            else:
                log.info("MRIdian source fault now: %s", text)
            self.fault_history.append(SourceFaultEvent(self._clock(), kind, text, self.n_frames))
        self._fault = text
        self._on_time_frames = 0

    def _clear_fault(self) -> None:
        log.warning("MRIdian source recovered (was: %s)", self._fault)
        self.fault_history.append(SourceFaultEvent(self._clock(), "cleared", self._fault or "", self.n_frames))
        self._fault = None
        self._on_time_frames = 0

    def _end(self, why: str) -> None:
        self._finished = True
        self.ended_by = why
        log.info("MRIdian source: %s after %d frames", why, self.n_frames)

    # -- the connection (the loop's thread) ---------------------------------------------
    def _stream_name(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def _start_connect(self) -> None:
        """Begin a non-blocking connection attempt (it completes in the selector)."""
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            self._connect_failed(exc.strerror or str(exc) or type(exc).__name__)
            return
        family, socktype, proto, _, address = infos[0]
        try:  # e.g. out of file descriptors: a failed attempt, retried, not the end
            sock = socket.socket(family, socktype, proto)
        except OSError as exc:
            self._connect_failed(exc.strerror or str(exc) or type(exc).__name__)
            return
        sock.setblocking(False)
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            sock.close()
            self._connect_failed(os.strerror(err))
            return
        with self._sock_lock:
            self._sock = sock
        self._connecting_until_s = self._clock() + self.connect_timeout_s
        assert self._selector is not None
        self._selector.register(sock, selectors.EVENT_WRITE)
        if err == 0:
            self._finish_connect()

    def _finish_connect(self) -> None:
        sock = self._sock
        assert sock is not None and self._selector is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(os.strerror(err))
            return
        self._connecting_until_s = None
        self._failed_attempts = 0
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Kernel receive stamps are in the realtime clock; they can stand for the
        # injected clock only when that is perf_counter (see _recv_time).
        self._kernel_stamps = self._clock is time.perf_counter and _SO_TIMESTAMPNS is not None
        if self._kernel_stamps:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)  # type: ignore[arg-type]
            except OSError:
                self._kernel_stamps = False
        self._selector.modify(sock, selectors.EVENT_READ)
        self._decoder = SendExternalDecoder(self._stream_name())
        log.info("connected to the scanner at %s", self._stream_name())
        self._ready.append((_CONNECTED, self._clock()))

    def _connect_failed(self, error: str) -> None:
        self._drop()
        self._failed_attempts += 1
        limit = self.max_connect_attempts
        attempts = f"attempt {self._failed_attempts}" + (f" of {limit}" if limit is not None else "")
        self._ready.append((_FAULT, f"connect: {self._stream_name()}: {error} ({attempts})"))
        if limit is not None and self._failed_attempts >= limit:
            self._ready.append((_END, f"gave up after {self._failed_attempts} failed connection attempts ({error})"))
            return
        self._next_connect_s = self._clock() + min(
            self.max_backoff_s, self.reconnect_backoff_s * 2.0 ** min(self._failed_attempts - 1, 30))

    def _broken(self, kind: str, text: str) -> None:
        """The connection ended (``_FAULT``: reconnect after the back-off; ``_END``: the
        stream is over)."""
        self._drop()
        self._ready.append((kind, text))
        self._next_connect_s = self._clock() + self.reconnect_backoff_s

    def _drop(self) -> None:
        with self._sock_lock:
            sock, self._sock = self._sock, None
        self._connecting_until_s = None
        self._decoder = None
        self._record_chunks = []
        if sock is not None:
            if self._selector is not None:
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
            sock.close()

    def _release(self) -> None:
        """Close every socket and the selector (called with ``_sock_lock`` held)."""
        sock, self._sock = self._sock, None
        for s in (sock, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_r = self._wake_w = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    # -- reading (the loop's thread) ----------------------------------------------------
    def _recv_time(self, ancillary: list[tuple[int, int, bytes]]) -> float:
        """When the bytes just read reached this host, on ``self._clock``'s time line."""
        now = self._clock()
        if not self._kernel_stamps:
            return now
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(data)
                # realtime -> perf_counter, read now: an adjustment of the realtime clock
                # since the stamp shifts it by that adjustment; a stamp after now cannot be.
                stamp_s = (sec + nsec * 1e-9) - (time.time() - self._clock())
                return min(now, stamp_s)
        return now

    def _read(self) -> None:
        """Read what the socket has, up to the end of the record in progress at most,
        and queue the frames and faults it makes."""
        sock, decoder = self._sock, self._decoder
        assert sock is not None and decoder is not None
        try:
            data, ancillary, _, _ = sock.recvmsg(min(RECV_BYTES, decoder.bytes_wanted), _ANCILLARY_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._broken(_FAULT, f"disconnected: receive failed: {exc.strerror or exc}")
            return
        t_recv_s = self._recv_time(ancillary)
        self._record_chunks.append(data)
        if not data:
            try:
                decoder.finish()
            except SendExternalError as exc:
                self._broken(_FAULT, f"malformed: the connection closed inside a record: {exc}")
                return
            if decoder.ended:
                self._broken(_END, "end of stream")
            else:
                self._broken(_FAULT, "disconnected: the scanner closed the connection")
            return
        try:
            records = decoder.feed(data)
        except SendExternalError as exc:
            # Records completed before the bad bytes are good frames: hand them over
            # before the fault.
            self._queue_frames(exc.completed, t_recv_s)
            self._broken(_FAULT, f"malformed: {exc}")
            return
        if records:
            # Reads stop at record boundaries: these reads were exactly this record.
            self._last_record_chunks, self._record_chunks = self._record_chunks, []
        self._queue_frames(records, t_recv_s)
        if decoder.ended:
            self._broken(_END, "end of stream")

    def _rehearse_decode(self) -> None:
        """Decode the last record again, on a decoder of its own, and drop the result: the
        frame about to arrive then finds the decoding code warm (see ``awake_s``)."""
        chunks = self._last_record_chunks
        if not chunks:
            return
        try:
            decoder = SendExternalDecoder(self._stream_name())
            for chunk in chunks:
                for record in decoder.feed(chunk):
                    _frame(record, 0.0, 0.0)
        except SendExternalError:  # it decoded once; cannot happen, and must not matter
            self._last_record_chunks = []

    def _queue_frames(self, records: Iterable[SendExternalRecord], t_recv_s: float) -> None:
        for record in records:
            if self._first_recv_s is None:
                self._first_recv_s = t_recv_s
            if not self._geometry_read:
                self._read_geometry(record)
            self._ready.append((_FRAME, _frame(record, t_recv_s, self._first_recv_s)))

    def _read_geometry(self, record: SendExternalRecord) -> None:
        """Keep the first record's plane; set before its frame is handed over, so the
        consumer sees it with that frame."""
        self.geometry = _record_geometry(record)
        self._geometry_read = True


def _record_geometry(record: SendExternalRecord) -> PlaneGeometry | None:
    try:
        return record.geometry
    except ValueError as exc:
        log.warning("the first record's plane geometry is unusable (%s): taken as unknown", exc)
        return None


def _frame(record: SendExternalRecord, t_recv_s: float, first_recv_s: float) -> Frame:
    """A record as a frame (index set by the loop when it is handed over)."""
    t_acq_s = record.acquisition_time_s
    if t_acq_s is None:
        t_acq_s = t_recv_s - first_recv_s
    pixels = record.pixels.astype(np.float32)  # a fresh C-contiguous array
    pixels.flags.writeable = False
    return Frame(index=-1, t_acq_s=float(t_acq_s), t_recv_s=t_recv_s, pixels=pixels,
                 spacing_mm=record.spacing_mm, label=None)
