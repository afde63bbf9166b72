"""The hand-off from the gating loop to the monitoring display, and the replay's time controls.

No Qt here: this is what runs in the loop's process, so that the loop never imports a GUI
toolkit and can be tested without a display.

The display runs in its own process (see :mod:`maestro.display`): a GUI thread beside the
loop would share the interpreter lock with it and delay frames by milliseconds whenever
it draws. The loop hands each decided frame over after its beam command through
:class:`LoopFeed`, which never waits: the pixels go into one of three shared-memory slots
guarded by locks the loop only ever *tries* (the display holds at most one, so a free
slot always exists), and the record (a few numbers) goes down a non-blocking pipe as one
atomic write; if the pipe is full because the display has stalled, the record is
dropped and counted, never waited for. The rare messages (the overlay at set-up, a
change of the source's fault) are sent by a helper thread, :class:`_Outbox`, which keeps
only the newest fault: a stalled display blocks that thread, never the loop. The display side (:class:`FeedReader`) reads the
records for its traces and copies the newest frame's pixels: the newest frame wins and
the frames in between are counted as not drawn.

:class:`ReplayControl` wraps an unpaced replay and hands its frames over at the recorded
frame times scaled by a playback speed, with pause and single step. Pausing a replay is
the operator pausing *time*, not the source failing: while paused no frame is handed
over and the session clock (:meth:`ReplayControl.session_clock`, acquisition seconds)
stands still, so a watchdog on that clock does not fire and the gate's beam-on delay
(acquisition time) does not run; each frame is stamped as received when it is handed
over, so it is never stale because of a pause. A replay paused, stepped and resumed
therefore decides every frame exactly as an uninterrupted replay does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from gating.boundary import GatingGeometry
from gating.centroid import mask_centroid_px
from hardware import Frame, FrameSource
from maestro.recording import FrameRecord

log = logging.getLogger(__name__)

#: Records kept for the traces: 30 s at 8 frames/s is 240; this bounds any window and rate.
HISTORY_RECORDS = 8192
#: Receive times kept to estimate the received frame rate.
_RATE_SAMPLES = 33


@dataclass(frozen=True)
class DisplayOverlay:
    """Everything the display draws over the frames, in mm of the image.

    Image position ``(x_mm, y_mm) = (col_px * col_spacing_mm, row_px * row_spacing_mm)``:
    x along columns (AP on a sagittal frame), y along rows (SI), pixel centres at whole
    multiples of the spacing.

    Attributes
    ----------
    shape : (int, int)
        Frame size (H, W) in pixels.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm.
    target_rings_mm : list of (N, 2) float64 ndarray
        Outline of the reference target as closed rings of (x_mm, y_mm) vertices; the
        tracked target is this outline translated by the tracked displacement.
    boundary_rings_mm : list of (N, 2) float64 ndarray
        Outline of the gating boundary, (x_mm, y_mm) vertices.
    reference_xy_mm : (float, float)
        Centroid of the reference target (x_mm, y_mm): the reference position.
    margin_mm, threshold_pct, confidence_floor : float
        The session's gating settings, drawn as limits on the traces.
    row_limits_mm, col_limits_mm : (float or None, float or None)
        Displacement along rows (SI) / columns (AP), negative then positive, beyond which
        more than ``threshold_pct`` of the target lies outside the boundary for a motion
        along that axis alone; ``None`` where no displacement holds the beam.
    """

    shape: tuple[int, int]
    spacing_mm: tuple[float, float]
    target_rings_mm: list[np.ndarray]
    boundary_rings_mm: list[np.ndarray]
    reference_xy_mm: tuple[float, float]
    margin_mm: float
    threshold_pct: float
    confidence_floor: float
    row_limits_mm: tuple[float | None, float | None]
    col_limits_mm: tuple[float | None, float | None]

    @classmethod
    def from_geometry(cls, geometry: GatingGeometry, threshold_pct: float, confidence_floor: float) -> DisplayOverlay:
        """Outlines and axis limits of a session's gating geometry.

        Calls ``geometry.outside_pct``, which is not thread-safe: call this from the
        thread that runs the loop (the feed does, once, after the reference frame's
        beam command).
        """
        row_mm, col_mm = geometry.spacing_mm

        def to_xy(rings: list[np.ndarray]) -> list[np.ndarray]:
            return [np.column_stack([r[:, 1] * col_mm, r[:, 0] * row_mm]) for r in rings]

        rows, cols = np.nonzero(geometry.target_mask)
        reference = mask_centroid_px(geometry.target_mask)
        assert reference is not None  # a boundary has a target
        height_mm = (rows.max() - rows.min() + 1) * row_mm
        width_mm = (cols.max() - cols.min() + 1) * col_mm
        reach_mm = float(max(height_mm, width_mm) + 2.0 * geometry.margin_mm + 1.0)

        def limit(axis: int, sign: float) -> float | None:
            def outside(d: float) -> float:
                return geometry.outside_pct(sign * d, 0.0) if axis == 0 else geometry.outside_pct(0.0, sign * d)

            if outside(reach_mm) <= threshold_pct:
                return None  # the whole target outside still does not exceed the threshold
            lo, hi = 0.0, reach_mm
            for _ in range(40):  # bisection to ~1e-10 of the reach: far below a pixel
                mid = 0.5 * (lo + hi)
                if outside(mid) > threshold_pct:
                    hi = mid
                else:
                    lo = mid
            return sign * hi

        return cls(
            shape=geometry.shape,
            spacing_mm=geometry.spacing_mm,
            target_rings_mm=to_xy(geometry.target_contour_px()),
            boundary_rings_mm=to_xy(geometry.boundary_contour_px()),
            reference_xy_mm=(reference[1] * col_mm, reference[0] * row_mm),
            margin_mm=geometry.margin_mm,
            threshold_pct=float(threshold_pct),
            confidence_floor=float(confidence_floor),
            row_limits_mm=(limit(0, -1.0), limit(0, 1.0)),
            col_limits_mm=(limit(1, -1.0), limit(1, 1.0)),
        )


def window_level_from(pixels: np.ndarray) -> tuple[float, float]:
    """Window and level (centre) from a frame's 0.5 and 99.5 percentiles.

    Parameters
    ----------
    pixels : (H, W) float ndarray
        Non-finite values are ignored.

    Returns
    -------
    (float, float)
        Window width (> 0) and level, in the frame's intensity units.
    """
    finite = np.asarray(pixels, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 1.0, 0.5
    lo, hi = np.percentile(finite, [0.5, 99.5])
    width = float(hi - lo)
    if not width > 0.0:
        width = max(abs(float(hi)), 1.0)
    return width, float(lo + hi) / 2.0


# -- records on the pipe ------------------------------------------------------------------
#: One record on the pipe: sequence number, pixel slot (-1: none), frame index, then
#: t_acq_s, row_mm, col_mm, confidence, outside_pct, latency_us, true_row_mm, true_col_mm,
#: t_recv_s, beam on, hold reason (UTF-8, truncated). Far below PIPE_BUF: one atomic write.
_RECORD = struct.Struct("<qbq9d?31s")
RECORD_BYTES = _RECORD.size


def pack_record(seq: int, slot: int, record: FrameRecord, t_recv_s: float) -> bytes:
    """The bytes :class:`FeedReader` decodes with :func:`unpack_records`."""
    return _RECORD.pack(
        seq, slot, record.frame, record.t_acq_s, record.row_mm, record.col_mm, record.confidence,
        record.outside_pct, record.latency_us, record.true_row_mm, record.true_col_mm, t_recv_s,
        record.beam == "on", record.reason.encode()[:31],
    )


@dataclass(frozen=True, slots=True)
class FedRecord:
    """A record as the display receives it."""

    seq: int
    slot: int
    t_recv_s: float
    record: FrameRecord


def unpack_records(data: bytes) -> list[FedRecord]:
    """Decode whole records (``len(data)`` a multiple of :data:`RECORD_BYTES`)."""
    out = []
    for seq, slot, frame, t_acq, row, col, conf, out_pct, lat, trow, tcol, t_recv, on, reason in _RECORD.iter_unpack(data):
        record = FrameRecord(
            frame=frame, t_acq_s=t_acq, row_mm=row, col_mm=col, confidence=conf, outside_pct=out_pct,
            beam="on" if on else "hold", reason=reason.rstrip(b"\0").decode(errors="replace"), latency_us=lat,
            peak_zncc=math.nan, sharpness=math.nan, true_row_mm=trow, true_col_mm=tcol,
        )
        out.append(FedRecord(seq, slot, t_recv, record))
    return out


# -- pixels in shared memory --------------------------------------------------------------
#: Pixel slots: the display holds at most one, the loop writes another, one spare.
N_SLOTS = 3


class FrameSlots:
    """``N_SLOTS`` (H, W) float32 frames in shared memory, each with a lock and a sequence
    number, written by the loop without waiting and read by the display.

    Parameters
    ----------
    shape : (int, int)
        Frame size.
    locks : sequence of multiprocessing locks
        One per slot, shared by both processes.
    name : str or None
        Attach to this existing block (display side); ``None`` creates one (loop side).
    """

    def __init__(self, shape: tuple[int, int], locks: Any, name: str | None = None) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self._locks = locks
        n_pixels = self.shape[0] * self.shape[1]
        size = N_SLOTS * (8 + 4 * n_pixels)
        self._owner = name is None
        if name is None:
            self._shm = shared_memory.SharedMemory(create=True, size=size)
        else:
            # The display process shares the loop process's resource tracker (spawned
            # from it), so attaching registers nothing new; the creator unlinks.
            self._shm = shared_memory.SharedMemory(name=name)
        buf = self._shm.buf
        self._seq = np.ndarray((N_SLOTS,), dtype=np.int64, buffer=buf)
        self._pixels = np.ndarray((N_SLOTS, *self.shape), dtype=np.float32, buffer=buf, offset=8 * N_SLOTS)
        if self._owner:
            self._seq[:] = -1
        self._next = 0

    @property
    def name(self) -> str:
        return self._shm.name

    def write(self, seq: int, pixels: np.ndarray) -> int:
        """Loop side: copy a frame into a free slot; return the slot, or -1 if none was
        free (cannot happen while the display follows the protocol) or the shape differs."""
        if pixels.shape != self.shape:
            return -1
        for k in range(N_SLOTS):
            slot = (self._next + k) % N_SLOTS
            lock = self._locks[slot]
            if lock.acquire(block=False):
                try:
                    np.copyto(self._pixels[slot], pixels, casting="unsafe")
                    self._seq[slot] = seq
                finally:
                    lock.release()
                self._next = (slot + 1) % N_SLOTS
                return slot
        return -1

    def read(self, slot: int) -> tuple[int, np.ndarray]:
        """Display side: ``(sequence number, copy of the pixels)`` of one slot."""
        with self._locks[slot]:
            return int(self._seq[slot]), self._pixels[slot].copy()

    def close(self) -> None:
        # Views into the buffer must go before the mapping can close.
        del self._seq, self._pixels
        self._shm.close()
        if self._owner:
            self._shm.unlink()


# -- the loop's side ------------------------------------------------------------------------
class _Outbox:
    """Sends the loop's messages to the display from its own thread, newest fault only.

    ``Connection.send`` blocks when the display has stalled and its end of the pipe is
    full; the loop only stores the message here and notifies. Messages keep their order
    (set-up before any fault); faults not yet sent are replaced by a newer one, so a
    stalled display costs one pending message, not a queue that grows.
    """

    def __init__(self, messages: Any) -> None:
        self._messages = messages
        self._cond = threading.Condition()
        self._setup: tuple[Any, ...] | None = None
        self._fault: tuple[Any, ...] | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="maestro-display-outbox", daemon=True)
        self._thread.start()

    def post_setup(self, message: tuple[Any, ...]) -> None:
        with self._cond:
            self._setup = message
            self._cond.notify()

    def post_fault(self, fault: str | None) -> None:
        with self._cond:
            self._fault = ("fault", fault)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._setup is None and self._fault is None and not self._closing:
                    self._cond.wait()
                if self._setup is not None:
                    message, self._setup = self._setup, None
                elif self._fault is not None:
                    message, self._fault = self._fault, None
                else:
                    return  # closing, nothing left
            try:
                self._messages.send(message)
            except OSError:
                return  # the display has gone: the listener ends the session

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send every posted message, then stop; True when done within ``timeout_s``.

        Not for the loop: it waits for the display. Call it before sending anything that
        must come after the loop's messages (the session's end)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class LoopFeed:
    """Loop side of the hand-off: a session observer (it appends itself to the session's
    observers), whose :meth:`push` hands each decided frame to the display.

    Parameters
    ----------
    session : GatingSession
        ``geometry``, ``config`` and ``source`` are read.
    messages : multiprocessing Connection
        Duplex connection to the display (set-up and fault messages go here).
    records_fd : int
        Write end of the records pipe; made non-blocking here.
    locks : sequence of multiprocessing locks
        ``N_SLOTS`` locks shared with the display.

    Attributes
    ----------
    pushed : int
        Frames pushed.
    records_dropped : int
        Records not sent because the pipe was full (the display had stalled).
    last_record : bytes
        The last frame's record as packed for the pipe (empty before the first); sent
        again with the session's end, so that the display can show the final decision
        even when the pipe dropped it.
    """

    def __init__(self, session: Any, messages: Any, records_fd: int, locks: Any) -> None:
        self._session = session
        self._fd = records_fd
        os.set_blocking(records_fd, False)
        self._locks = locks
        self._outbox = _Outbox(messages)
        self._slots: FrameSlots | None = None
        self._fault: str | None = None
        self.pushed = 0
        self.records_dropped = 0
        self.last_record = b""
        session.observers.append(self)

    def frame_decided(self, session: Any, frame: Frame, record: FrameRecord) -> None:
        """The session's observer call: :meth:`push`."""
        self.push(frame, record)

    def push(self, frame: Frame, record: FrameRecord) -> None:
        """Loop thread, after the beam command: hand one decided frame over; never waits.

        On the first push it also computes the overlay (outlines, axis limits) and the
        window/level here, in the loop's thread (the geometry is not thread-safe); that
        first frame is the reference, whose latency already includes the set-up.
        """
        if self._slots is None:
            if self._session.geometry is None:
                return
            config = self._session.config
            overlay = DisplayOverlay.from_geometry(self._session.geometry, config.threshold_pct, config.confidence_floor)
            self._slots = FrameSlots(frame.pixels.shape, self._locks)
            self._outbox.post_setup(("setup", overlay, window_level_from(frame.pixels), self._slots.name, frame.index))
        fault = self._session.source.fault
        if fault != self._fault:
            self._fault = fault
            self._outbox.post_fault(fault)
        self.pushed += 1
        slot = self._slots.write(self.pushed, frame.pixels)
        self.last_record = pack_record(self.pushed, slot, record, frame.t_recv_s)
        try:
            os.write(self._fd, self.last_record)
        except BlockingIOError:
            self.records_dropped += 1  # the display has stalled: drop, never wait
        except OSError:
            pass  # the display has gone: the listener ends the session

    def flush(self, timeout_s: float | None = None) -> bool:
        """After the loop has ended: send what is still pending (see :meth:`_Outbox.flush`)."""
        return self._outbox.flush(timeout_s)

    def close(self) -> None:
        self._outbox.flush(0.0)
        if self._slots is not None:
            self._slots.close()
            self._slots = None


# -- the display's side ---------------------------------------------------------------------
class FeedReader:
    """Display side of the hand-off: what the window reads on each poll.

    Parameters
    ----------
    messages : multiprocessing Connection
        Duplex connection to the loop process.
    records_fd : int
        Read end of the records pipe; made non-blocking here.
    locks : sequence of multiprocessing locks
    history_records : int
        Records kept between polls at most (oldest dropped).
    """

    def __init__(self, messages: Any, records_fd: int, locks: Any, history_records: int = 8192) -> None:
        self._messages = messages
        self._fd = records_fd
        os.set_blocking(records_fd, False)
        self._locks = locks
        self._partial = b""
        self._slots: FrameSlots | None = None
        self._recent: deque[FedRecord] = deque(maxlen=64)
        self._last_seq = 0
        self._final: FedRecord | None = None
        self._recv_s: deque[float] = deque(maxlen=33)
        self._history = history_records
        self.overlay: DisplayOverlay | None = None
        self.levels: tuple[float, float] | None = None
        self.reference_index: int | None = None
        self.fault: str | None = None
        self.finished = False
        self.stopped_by = ""
        self.loop_gone = False
        self.on_message: Callable[[tuple[Any, ...]], None] | None = None

    def poll_messages(self) -> None:
        """Handle every message from the loop that has arrived."""
        try:
            while self._messages.poll():
                message = self._messages.recv()
                kind = message[0]
                if kind == "setup":
                    _, overlay, levels, name, index = message
                    self._slots = FrameSlots(overlay.shape, self._locks, name=name)
                    self.overlay, self.levels, self.reference_index = overlay, levels, index
                elif kind == "fault":
                    self.fault = message[1]
                elif kind == "end":
                    self.finished, self.stopped_by = True, message[1]
                    final = unpack_records(message[2]) if len(message) > 2 else []
                    self._final = final[-1] if final else None
                if self.on_message is not None:
                    self.on_message(message)
        except (EOFError, OSError):
            self.loop_gone = True
            self.finished = True

    def take_records(self) -> list[FedRecord]:
        """Every record sent since the last call, oldest first."""
        chunks = [self._partial]
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                break
            chunks.append(data)
        data = b"".join(chunks)
        whole = len(data) - len(data) % RECORD_BYTES
        self._partial = data[whole:]
        records = unpack_records(data[:whole])[-self._history:]
        if self._final is not None:
            # The session's last record, sent again with its end: kept when the pipe
            # dropped it (the display had stalled), so the final decision is drawn.
            if self._final.seq > max(self._last_seq, records[-1].seq if records else 0):
                records.append(self._final)
            self._final = None
        if records:
            self._last_seq = records[-1].seq
        self._recent.extend(records)
        self._recv_s.extend(r.t_recv_s for r in records)
        return records

    def latest_frame(self) -> tuple[FedRecord, np.ndarray] | None:
        """The newest frame whose pixels are still in a slot, with its record."""
        if self._slots is None:
            return None
        for fed in reversed(self._recent):
            if fed.slot < 0:
                continue
            seq, pixels = self._slots.read(fed.slot)
            if seq == fed.seq:
                return fed, pixels
            # The loop has since written a newer frame into that slot: find its record.
            for newer in reversed(self._recent):
                if newer.seq == seq:
                    return newer, pixels
            return None
        return None

    def received_fps(self) -> float:
        """Frame rate received by the loop over the last frames (frames/s); NaN if unknown."""
        times = list(self._recv_s)
        if len(times) < 2 or times[-1] <= times[0]:
            return math.nan
        return (len(times) - 1) / (times[-1] - times[0])

    def send(self, message: tuple[Any, ...]) -> None:
        """A control message to the loop process (pause, step, speed, close)."""
        try:
            self._messages.send(message)
        except OSError:
            self.loop_gone = True

    def close(self) -> None:
        if self._slots is not None:
            self._slots.close()
            self._slots = None


class ReplayControl:
    """Pause, single-step and playback speed for a replay source.

    Implements :class:`~hardware.frame.FrameSource` around an *unpaced* source (e.g.
    ``ReplaySource(path, realtime=False)``) and paces it itself: frame ``i`` is handed
    over when the session clock reaches its acquisition time (from the first frame).
    The session clock runs at ``speed`` times real time and stands still while paused;
    see the module docstring for why pausing cannot stall the gate falsely.

    Parameters
    ----------
    source : FrameSource
        Hands frames over as fast as they are taken (``None`` heartbeats pass through).
    speed : float or None
        Playback speed (> 0; 1 = recorded rate), or ``None`` for as fast as the loop
        takes frames.
    clock : callable returning float seconds
        Wall clock; stamps ``t_recv_s``. ``time.perf_counter`` by default.
    """

    def __init__(self, source: FrameSource, speed: float | None = 1.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self._check_speed(speed)
        self._source = source
        self._clock = clock
        self._cond = threading.Condition()
        self._speed = speed
        self._paused = False
        self._steps = 0
        self._closed = False
        self._ended = False
        # Session clock = _media_anchor_s + (wall - _wall_anchor_s) * rate while running.
        self._media_anchor_s = 0.0
        self._wall_anchor_s: float | None = None
        self.description: str = source.description
        self.frame_period_s: float = source.frame_period_s

    @staticmethod
    def _check_speed(speed: float | None) -> None:
        if speed is not None and (isinstance(speed, bool) or not (math.isfinite(speed) and speed > 0.0)):
            raise ValueError(f"speed must be finite and > 0, or None for as fast as possible, got {speed!r}")

    # -- FrameSource ------------------------------------------------------------------
    @property
    def reference_label(self) -> np.ndarray | None:
        return self._source.reference_label

    @property
    def fault(self) -> str | None:
        return self._source.fault

    def __iter__(self) -> Iterator[Frame | None]:
        t0_acq_s: float | None = None
        for frame in self._source:
            if frame is None:  # a heartbeat: nothing to pace
                yield frame
                continue
            if t0_acq_s is None:
                t0_acq_s = frame.t_acq_s
            due_s = frame.t_acq_s - t0_acq_s
            with self._cond:
                if self._wall_anchor_s is None:
                    self._wall_anchor_s = self._clock()
                while True:
                    if self._closed:
                        return
                    if self._steps > 0:
                        self._steps -= 1
                        self._media_anchor_s, self._wall_anchor_s = due_s, self._clock()
                        break
                    if self._paused:
                        self._cond.wait()
                        continue
                    if self._speed is None:
                        self._media_anchor_s, self._wall_anchor_s = due_s, self._clock()
                        break
                    wait_s = (due_s - self._media_now()) / self._speed
                    if wait_s <= 0.0:
                        break
                    self._cond.wait(wait_s)
            yield dataclasses.replace(frame, t_recv_s=self._clock())
        with self._cond:
            self._ended = True

    def close(self) -> None:
        """End the replay: iteration stops at once, even while paused. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._source.close()

    # -- time controls (any thread) ---------------------------------------------------
    def _media_now(self) -> float:
        if self._paused or self._wall_anchor_s is None:
            return self._media_anchor_s
        rate = 1.0 if self._speed is None else self._speed
        return self._media_anchor_s + (self._clock() - self._wall_anchor_s) * rate

    def _reanchor(self) -> None:
        self._media_anchor_s = self._media_now()
        if self._wall_anchor_s is not None:
            self._wall_anchor_s = self._clock()

    def session_clock(self) -> float:
        """Session time (s of acquisition time since the first frame): stands still while
        paused and runs at ``speed`` times real time otherwise. Give it to a watchdog."""
        with self._cond:
            return self._media_now()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def speed(self) -> float | None:
        return self._speed

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``ended`` (recording exhausted) or ``closed``."""
        if self._closed:
            return "closed"
        if self._ended:
            return "ended"
        return "paused" if self._paused else "running"

    def pause(self) -> None:
        with self._cond:
            if not self._paused:
                self._reanchor()
                self._paused = True

    def resume(self) -> None:
        with self._cond:
            if self._paused:
                self._paused = False
                if self._wall_anchor_s is not None:
                    self._wall_anchor_s = self._clock()
                self._cond.notify_all()

    def step(self) -> None:
        """Pause (if running) and hand exactly one more frame over."""
        with self._cond:
            if not self._paused:
                self._reanchor()
                self._paused = True
            self._steps += 1
            self._cond.notify_all()

    def set_speed(self, speed: float | None) -> None:
        """Change the playback speed (> 0, or ``None`` for as fast as possible)."""
        self._check_speed(speed)
        with self._cond:
            self._reanchor()
            self._speed = speed
            self._cond.notify_all()
