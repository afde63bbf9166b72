"""A live MRIdian cine stream: SendExternal records received over TCP.

How the console hands cine frames to an external consumer is not public; the record
format is (see :mod:`hardware.sendexternal`). Receiving those records over a TCP
connection that this host opens to the scanner side is **this project's choice** of
transport: the stream is the byte sequence of a ``.dat`` file, records back to back,
ended by the end-of-stream record.

Threads and timing
------------------
A receiver thread owns the socket: it connects (and reconnects, with back-off), reads
bytes as they arrive, decodes records and queues them as frames stamped with their
arrival time (``t_recv_s``, ``time.perf_counter``). A frame that waits in the queue
because the loop is busy therefore ages, and the gate's ``max_frame_age_ms`` sees it.

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

import dataclasses
import logging
import math
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from hardware.frame import Frame
from hardware.plane_geometry import PlaneGeometry
from hardware.sendexternal import SendExternalDecoder, SendExternalError, SendExternalRecord

log = logging.getLogger(__name__)

#: Bytes read from the socket at a time (a 270 x 270 frame is ~146 kB).
RECV_BYTES = 1 << 18
#: Frames (and events) the receiver may queue ahead of the loop; when full, the receiver
#: stops reading and TCP flow control pushes back on the scanner side.
_QUEUE_ITEMS = 64
#: How often the receiver thread looks at its stop flag while the socket is quiet (s).
_RX_POLL_S = 0.05

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
    The receiver thread starts with the first iteration; :meth:`close` stops it.

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
        # Receiver thread -> loop: ("frame", Frame) | ("connected", t) | ("fault", text) | ("end", why).
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=_QUEUE_ITEMS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._first_recv_s: float | None = None
        #: The plane of the stream's first record (None until it arrives, or when the
        #: record does not say where it lies): where a structure set's target is cut.
        self.geometry: PlaneGeometry | None = None
        self._geometry_read = False
        # Loop-thread state.
        self._connected = False
        self._fault: str | None = None
        self._on_time_frames = 0
        self._pending_tick = False
        self._stall_from_s: float | None = None  # stall timer origin; None: no frame yet
        self._last_t_acq_s: float | None = None
        self._min_offset_s = math.inf  # earliest (receive - acquisition) seen
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

    def __iter__(self) -> Iterator[Frame | None]:  # type: ignore[override]
        return self._items()

    def close(self) -> None:
        """Stop: close the connection and the receiver thread; iteration ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._sock_lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self.ended_by is None:
            self.ended_by = "closed"
        log.info("MRIdian source closed after %d frames", self.n_frames)

    def __enter__(self) -> MRIdianSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the iteration (loop thread) ---------------------------------------------------
    def _items(self) -> Iterator[Frame | None]:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._receive_loop, name="maestro-mridian-rx", daemon=True)
            self._thread.start()
        last_yield_s = self._clock()
        while not self._closed and not self._finished:
            now = self._clock()
            wake_s = last_yield_s + self.tick_s
            if self._stall_from_s is not None and self._connected and self.fault_kind != "stall":
                wake_s = min(wake_s, self._stall_from_s + self.stall_timeout_s)
            try:
                kind, payload = self._queue.get(timeout=max(0.0, wake_s - now))
            except queue.Empty:
                self._check_stall()
                if self._pending_tick or self._clock() - last_yield_s >= self.tick_s:
                    self._pending_tick = False
                    last_yield_s = self._clock()
                    yield None
                continue
            if kind == _FRAME:
                frame = payload
                assert isinstance(frame, Frame)
                frame = dataclasses.replace(frame, index=self.n_frames)
                self._stall_from_s = frame.t_recv_s
                self._assess(frame)
                self.n_frames += 1
                self._pending_tick = False
                last_yield_s = self._clock()
                yield frame
            elif kind == _CONNECTED:
                self._connected = True
                if self._stall_from_s is not None:
                    self._stall_from_s = float(payload)  # frames are due again from now
            elif kind == _FAULT:
                self._connected = False
                self._set_fault(str(payload))
                last_yield_s = self._clock()
                self._pending_tick = False
                yield None  # at once: the consumer holds within no time of the fault
            elif kind == _END:
                self._end(str(payload))

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

    # -- the receiver (its own thread) ---------------------------------------------------
    def _stream_name(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def _put(self, kind: str, payload: object) -> bool:
        """Queue an item for the loop; waits while the queue is full. False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put((kind, payload), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _receive_loop(self) -> None:
        failed_attempts = 0
        while not self._stop.is_set():
            sock, error = self._connect()
            if sock is None:
                failed_attempts += 1
                limit = self.max_connect_attempts
                attempts = f"attempt {failed_attempts}" + (f" of {limit}" if limit is not None else "")
                self._put(_FAULT, f"connect: {self._stream_name()}: {error} ({attempts})")
                if limit is not None and failed_attempts >= limit:
                    self._put(_END, f"gave up after {failed_attempts} failed connection attempts ({error})")
                    return
                backoff_s = min(self.max_backoff_s, self.reconnect_backoff_s * 2.0 ** min(failed_attempts - 1, 30))
                self._stop.wait(backoff_s)
                continue
            with self._sock_lock:
                self._sock = sock
            log.info("connected to the scanner at %s", self._stream_name())
            self._put(_CONNECTED, self._clock())
            outcome = self._read_stream(sock)
            with self._sock_lock:
                self._sock = None
            sock.close()
            if outcome is None:  # stopped
                return
            kind, text = outcome
            if kind == _END:
                self._put(_END, text)
                return
            self._put(_FAULT, text)
            failed_attempts = 0
            self._stop.wait(self.reconnect_backoff_s)

    def _connect(self) -> tuple[socket.socket | None, str]:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except OSError as exc:
            return None, (exc.strerror or str(exc) or type(exc).__name__)
        sock.settimeout(None)
        return sock, ""

    def _read_geometry(self, record: SendExternalRecord) -> None:
        """Keep the first record's plane; set before its frame is queued, so the consumer
        sees it with that frame."""
        self.geometry = _record_geometry(record)
        self._geometry_read = True

    def _read_stream(self, sock: socket.socket) -> tuple[str, str] | None:
        """Read records until the connection ends; the outcome as (kind, text), or None
        when stopped."""
        decoder = SendExternalDecoder(self._stream_name())
        first_recv_s = self._first_recv_s
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], _RX_POLL_S)
            except (OSError, ValueError) as exc:
                return _FAULT, f"disconnected: {exc}"
            if not ready:
                continue
            try:
                data = sock.recv(RECV_BYTES)
            except OSError as exc:
                return _FAULT, f"disconnected: receive failed: {exc.strerror or exc}"
            t_recv_s = self._clock()
            if not data:
                try:
                    decoder.finish()
                except SendExternalError as exc:
                    return _FAULT, f"malformed: the connection closed inside a record: {exc}"
                if decoder.ended:
                    return _END, "end of stream"
                return _FAULT, "disconnected: the scanner closed the connection"
            try:
                records = decoder.feed(data)
            except SendExternalError as exc:
                # Records completed in this read before the bad bytes are good frames:
                # hand them over before the fault.
                for record in exc.completed:
                    if first_recv_s is None:
                        first_recv_s = self._first_recv_s = t_recv_s
                    if not self._geometry_read:
                        self._read_geometry(record)
                    self._put(_FRAME, _frame(record, t_recv_s, first_recv_s))
                return _FAULT, f"malformed: {exc}"
            for record in records:
                if first_recv_s is None:
                    first_recv_s = self._first_recv_s = t_recv_s
                if not self._geometry_read:
                    self._read_geometry(record)
                if not self._put(_FRAME, _frame(record, t_recv_s, first_recv_s)):
                    return None
            if decoder.ended:
                return _END, "end of stream"
        return None


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
