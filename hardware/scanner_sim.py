"""Serve a recording as a live MRIdian SendExternal stream (``maestro scanner-sim``).

The simulator listens on TCP and, when a client connects, sends the recording's frames
as SendExternal records (:mod:`hardware.sendexternal`) at their recorded times (or at
``--fps``), then the end-of-stream record, and exits. Stream time runs from the first
connection, like a scanner that keeps imaging: frames due while no client is connected
are lost, and a client that connects later receives the frames due from then on. A new
connection replaces the current one.

Faults (``--fault KIND@START[:DURATION]``, times with a unit, ``s`` or ``ms``, from the
start of the stream):

``stall@S:D``
    No bytes from S to S+D; the frames due meanwhile are sent as one burst at S+D.
``drop@S:D``
    Frames due in [S, S+D) are never sent; the connection stays quiet but open.
``delay@S:D``
    The first frame due at or after S is sent D late (frames due before it is sent
    queue behind it, as on a TCP connection).
``disconnect@S``
    The connection is closed at S, between records.
``truncate@S``
    At S the first half of a record is sent, then the connection is closed.
``garbage@S``
    At S bytes that are not a valid record are sent (a negative ``header_size``).

Each frame carries its acquisition time (``Maestro.AcquisitionTime_s``); with
``--loop`` the recording repeats and the times keep increasing.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware import InputError
from hardware.plane_geometry import PlaneGeometry
from hardware.sendexternal import END_OF_STREAM, SendExternalRecord, encode_record, geometry_fields
from hardware.tcp import listen_tcp

log = logging.getLogger(__name__)

#: Faults that last a while (need ``:DURATION``) and faults that happen once (refuse one).
WINDOW_FAULTS: tuple[str, ...] = ("stall", "drop", "delay")
POINT_FAULTS: tuple[str, ...] = ("disconnect", "truncate", "garbage")
FAULT_KINDS: tuple[str, ...] = WINDOW_FAULTS + POINT_FAULTS

#: Bytes sent by ``garbage``: as a record prefix, ``header_size`` is negative.
GARBAGE_BYTES = b"\xde\xad\xbe\xef" * 16
#: Longest fault start or duration accepted (s): one day.
MAX_FAULT_SECONDS = 86400.0

_TIME_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s)")
_SPEC_RE = re.compile(r"([a-z]+)@([^:]+)(?::(.+))?")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One injected fault.

    Attributes
    ----------
    kind : str
        One of :data:`FAULT_KINDS`.
    start_s : float
        Stream time when it begins (s).
    duration_s : float or None
        How long it lasts (s) for :data:`WINDOW_FAULTS`; ``None`` for the others.
    """

    kind: str
    start_s: float
    duration_s: float | None = None

    @property
    def end_s(self) -> float:
        return self.start_s + (self.duration_s or 0.0)


def _parse_duration(spec: str, text: str, what: str) -> float:
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise InputError("--fault", spec, f"{what} {text!r} must be a number with a unit, s or ms (e.g. 5s, 200ms)")
    value = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    if value > MAX_FAULT_SECONDS:
        raise InputError("--fault", spec, f"{what} {text!r} is more than {MAX_FAULT_SECONDS:g} s")
    return value


def parse_fault(spec: str) -> FaultSpec:
    """Parse ``KIND@START[:DURATION]`` (e.g. ``stall@5s:3s``, ``garbage@7s``).

    Raises
    ------
    InputError
        Unknown kind, a time without a unit, a duration missing for a window fault or
        given for a point fault, a zero duration.
    """
    m = _SPEC_RE.fullmatch(spec.strip())
    if m is None:
        raise InputError("--fault", spec, "must be KIND@START[:DURATION], e.g. stall@5s:3s or garbage@7s")
    kind, start_text, duration_text = m.groups()
    if kind not in FAULT_KINDS:
        raise InputError("--fault", spec, f"kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    start_s = _parse_duration(spec, start_text, "START")
    if kind in WINDOW_FAULTS:
        if duration_text is None:
            raise InputError("--fault", spec, f"{kind} needs a DURATION: {kind}@START:DURATION")
        duration_s = _parse_duration(spec, duration_text, "DURATION")
        if duration_s <= 0.0:
            raise InputError("--fault", spec, "DURATION must be > 0")
        return FaultSpec(kind, start_s, duration_s)
    if duration_text is not None:
        raise InputError("--fault", spec, f"{kind} happens once and takes no DURATION: {kind}@START")
    return FaultSpec(kind, start_s, None)


def to_int16(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """Frames as int16 (rounded, clipped), and how many pixels changed in the conversion.

    Parameters
    ----------
    frames : (T, H, W) float ndarray

    Returns
    -------
    (T, H, W) int16 ndarray, int
    """
    finite = np.where(np.isfinite(frames), frames, 0.0)
    out = np.clip(np.rint(finite), -32768, 32767).astype(np.int16)
    changed = int(np.count_nonzero(out.astype(np.float64) != frames))
    return out, changed


@dataclass(frozen=True, slots=True)
class SimEvent:
    """Something the simulator did, for tests and the log.

    Attributes
    ----------
    t_s : float
        When (simulator clock, s).
    kind : str
        ``connect``, ``frame``, ``end``, a fault kind, or ``lost`` (a frame due with no
        client connected).
    frame : int or None
        Index of the frame in the stream (loops count on).
    stream_s : float or None
        The stream time the event was scheduled at (s from the first connection).
    """

    t_s: float
    kind: str
    frame: int | None = None
    stream_s: float | None = None


class ScannerSimulator:
    """Serves frames as a SendExternal stream over TCP on a background thread.

    Parameters
    ----------
    frames : (T, H, W) int16 ndarray
    times_s : (T,) float ndarray
        Acquisition times from the first frame (s), increasing.
    spacing_mm : (float, float)
    host, port : str, int
        Where to listen (port 0: any free port, see :attr:`port`).
    frame_period_s : float
        Time from the last frame of one pass to the first of the next (with ``loop``).
    loop : bool
        Repeat the recording until stopped.
    faults : sequence of FaultSpec
    max_frames : int or None
        Stop after sending this many frames (then the end record).
    clock : callable returning float seconds, optional
        Schedules the stream (``time.perf_counter``); waiting is done with ``select`` on
        the listening socket, so new connections are accepted while waiting.

    Attributes
    ----------
    events : list of SimEvent
    port : int
    done : threading.Event
        Set when the stream has ended (end record sent) or the simulator stopped.
    """

    def __init__(
        self,
        frames: np.ndarray,
        times_s: np.ndarray,
        spacing_mm: tuple[float, float],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        frame_period_s: float | None = None,
        loop: bool = False,
        faults: Sequence[FaultSpec] = (),
        max_frames: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        geometry: PlaneGeometry | None = None,
    ) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.dtype != np.int16 or frames.shape[0] == 0:
            raise ValueError(f"frames must be a non-empty (T, H, W) int16 array, got {frames.dtype} {frames.shape}")
        times_s = np.asarray(times_s, dtype=np.float64)
        if times_s.shape != (frames.shape[0],) or not np.all(np.isfinite(times_s)) or np.any(np.diff(times_s) <= 0):
            raise ValueError("times_s must be finite, increasing, one per frame")
        self.frames = frames
        self.times_s = times_s - times_s[0]
        self.spacing_mm = (float(spacing_mm[0]), float(spacing_mm[1]))
        if frame_period_s is None:
            frame_period_s = float(np.median(np.diff(self.times_s))) if len(self.times_s) > 1 else 0.125
        self.frame_period_s = float(frame_period_s)
        self.loop = bool(loop)
        self.faults = tuple(sorted(faults, key=lambda f: f.start_s))
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames!r}")
        self.max_frames = max_frames
        # Every record says where the frame lies (DICOM.PosVec/RowVec/ColVec, ...) when
        # the recording did; the real console sends them always.
        self._geometry_fields = geometry_fields(geometry) if geometry is not None else {}
        self.host = host
        self.port = port
        self._clock = clock
        self.events: list[SimEvent] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._t0_s: float | None = None
        self.error: BaseException | None = None

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> ScannerSimulator:
        listener = listen_tcp(self.host, self.port)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="maestro-scanner-sim", daemon=True)
        self._thread.start()
        log.info("scanner-sim listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close every socket. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._drop_client()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.done.set()

    def __enter__(self) -> ScannerSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def t0_s(self) -> float | None:
        """Clock time of stream time 0 (the first connection), once connected."""
        return self._t0_s

    def fault_effect_s(self, kind: str) -> float | None:
        """Clock time at which the first injected fault of ``kind`` took effect."""
        for event in self.events:
            if event.kind == kind:
                return event.t_s
        return None

    # -- schedule -------------------------------------------------------------------
    def _frame_schedule(self) -> Iterator[tuple[int, int, float]]:
        """(stream index, recording index, due stream time) for every frame to send."""
        duration_s = float(self.times_s[-1]) + self.frame_period_s
        passes = itertools.count() if self.loop else range(1)
        n = 0
        for k in passes:
            for i, t in enumerate(self.times_s):
                if self.max_frames is not None and n >= self.max_frames:
                    return
                yield n, i, k * duration_s + float(t)
                n += 1

    def _send_time(self, due_s: float, delays: list[FaultSpec]) -> tuple[float, str | None]:
        """When a frame due at ``due_s`` is sent, and which fault moved it (or dropped it)."""
        for f in self.faults:
            if f.kind == "drop" and f.start_s <= due_s < f.end_s:
                return math.inf, "drop"
        send_s, why = due_s, None
        for f in self.faults:
            if f.kind == "stall" and f.start_s <= due_s < f.end_s and f.end_s > send_s:
                send_s, why = f.end_s, "stall"
        for f in list(delays):
            if due_s >= f.start_s:
                delays.remove(f)
                assert f.duration_s is not None
                if due_s + f.duration_s > send_s:
                    send_s, why = due_s + f.duration_s, "delay"
        return send_s, why

    # -- serving --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # reported to the owner, not lost in a thread
            self.error = exc
            log.exception("scanner-sim failed")
        finally:
            self._drop_client()
            self.done.set()

    def _serve(self) -> None:
        # Stream time starts with the first client.
        assert self._listener is not None
        while self._client is None:
            if self._stop.is_set():
                return
            if select.select([self._listener], [], [], 0.05)[0]:
                self._accept()
        assert self._t0_s is not None
        points = [f for f in self.faults if f.kind in POINT_FAULTS]
        delays = [f for f in self.faults if f.kind == "delay"]
        started: set[str] = set()
        last_send_s = 0.0
        for n, i, due_s in self._frame_schedule():
            while points and points[0].start_s <= due_s:
                fault = points.pop(0)
                if not self._wait_until(self._t0_s + fault.start_s):
                    return
                self._point_fault(fault.kind, n, i, fault.start_s)
            send_s, why = self._send_time(due_s, delays)
            if why is not None and why not in started:
                started.add(why)
                # The fault takes effect when the first frame it affects was due.
                if not self._wait_until(self._t0_s + due_s):
                    return
                self._event(why, n, due_s)
            if why == "drop":
                continue
            send_s = max(send_s, last_send_s)
            if not self._wait_until(self._t0_s + send_s):
                return
            last_send_s = send_s
            self._send_frame(n, i, due_s)
        for fault in points:  # point faults after the last frame still happen
            if not self._wait_until(self._t0_s + fault.start_s):
                return
            self._point_fault(fault.kind, None, None, fault.start_s)
        self._send(END_OF_STREAM)
        self._event("end", None, None)
        log.info("scanner-sim: end of stream sent")

    def _record(self, n: int, i: int, due_s: float) -> SendExternalRecord:
        return SendExternalRecord(
            pixels=self.frames[i],
            spacing_mm=self.spacing_mm,
            acquisition_time_s=due_s,
            sequence_description="maestro scanner-sim",
            **self._geometry_fields,  # type: ignore[arg-type]
        )

    def _send_frame(self, n: int, i: int, due_s: float) -> None:
        if self._client is None:
            self._event("lost", n, due_s)
            return
        if self._send(encode_record(self._record(n, i, due_s))):
            self._event("frame", n, due_s)
        else:
            self._event("lost", n, due_s)

    def _point_fault(self, kind: str, n: int | None, i: int | None, start_s: float) -> None:
        log.info("scanner-sim: injecting %s at %.3f s", kind, start_s)
        self._event(kind, n, start_s)
        if kind == "disconnect":
            self._drop_client()
        elif kind == "truncate":
            data = encode_record(self._record(n or 0, i or 0, start_s))
            self._send(data[: len(data) // 2])
            self._drop_client()
        elif kind == "garbage":
            self._send(GARBAGE_BYTES)

    def _send(self, data: bytes) -> bool:
        if self._client is None:
            return False
        try:
            self._client.sendall(data)
            return True
        except OSError as exc:
            log.info("scanner-sim: client gone (%s)", exc)
            self._drop_client()
            return False

    def _wait_until(self, t_s: float) -> bool:
        """Wait until clock time ``t_s``, accepting connections; False when stopped."""
        while True:
            if self._stop.is_set():
                return False
            remaining = t_s - self._clock()
            if remaining <= 0.0:
                return True
            assert self._listener is not None
            readable, _, _ = select.select([self._listener], [], [], min(remaining, 0.05))
            if readable:
                self._accept()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, addr = self._listener.accept()
        except OSError:
            return
        self._drop_client()  # the newest consumer is served
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(2.0)
        self._client = conn
        now = self._clock()
        if self._t0_s is None:
            self._t0_s = now
        self._event("connect", None, now - self._t0_s)
        log.info("scanner-sim: client %s:%d connected", addr[0], addr[1])

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None

    def _event(self, kind: str, frame: int | None, stream_s: float | None) -> None:
        self.events.append(SimEvent(self._clock(), kind, frame, stream_s))


def load_recording(path: Path, fps: float | None = None, spacing_mm: tuple[float, float] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, tuple[float, float], float, str, PlaneGeometry | None]:
    """Frames (int16), times (s), spacing (mm), frame period (s), description and plane
    geometry (None when unknown) of any recording :class:`hardware.replay.ReplaySource`
    reads."""
    from hardware.replay import ReplaySource

    with ReplaySource(path, fps=fps, spacing_mm=spacing_mm) as source:
        stack = np.stack([frame.pixels for frame in source])
        frames, changed = to_int16(stack)
        if changed:
            log.warning("%s: %d pixels changed when converting to int16 (rounded or clipped)", path, changed)
        return (frames, np.array(source.times_s), source.spacing_mm, source.frame_period_s, source.description,
                source.geometry)
