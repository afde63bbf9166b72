"""Real-time monitoring display for replay and live sessions, that never slows the gate.

What it shows (see :mod:`maestro.display_window`): the current cine frame at its physical
aspect ratio (axes in mm) with a fixed window/level set from the reference frame
(adjustable; never auto-levelled per frame), the tracked target outline, the gating
boundary and the reference position; a large ON / HOLD indicator with the hold reason;
scrolling traces over the last 30 s (configurable) of SI and AP displacement with the
displacements beyond which the gate holds for a motion along that axis alone,
``outside_pct`` with the threshold, the beam state as a shaded band, confidence with its
floor and the per-frame latency; a status line with frame number, received frame rate,
frames not drawn, stale frames, source state and recording path. A replay has pause,
single-step and speed controls (see :class:`~maestro.display_feed.ReplayControl` for what
pausing means); a live session is read-only.

How it runs: :func:`run_with_display` runs the session's loop in the calling thread, as
without a display, and the GUI in a separate process. A GUI thread in the loop's process
would share the interpreter lock with the loop: every draw would delay frames by
milliseconds. The hand-off (:mod:`maestro.display_feed`) never waits: the newest frame
wins and the display drops what it cannot draw. Closing the window closes the source, so
the session ends and, as every session does, holds the beam; the display process dying
does the same.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardware import InputError
from maestro.display_feed import N_SLOTS, LoopFeed, ReplayControl

log = logging.getLogger(__name__)

#: How long the display process may take to start and draw its window (s).
READY_TIMEOUT_S = 60.0


class DisplayUnavailable(RuntimeError):
    """The display process could not start (no usable Qt platform, a broken binding)."""


@dataclass
class DisplayResult:
    """What :func:`run_with_display` did besides the session itself.

    Attributes
    ----------
    summary : SessionSummary
        The session's summary.
    frames_drawn : int
        Frames the display drew.
    frames_not_drawn : int
        Frames the loop decided that the display skipped (newest wins).
    records_dropped : int
        Records the loop could not hand over because the display had stalled.
    closed_by_operator : bool
        Whether the window was closed before the session ended.
    screenshot : Path or None
        The PNG written, if one was asked for.
    image_map : (float, float, float, float) or None
        Where the screenshot shows the frame: window pixel ``(x, y)`` of image pixel
        ``(row, col)`` is ``(x0 + col * dx, y0 + row * dy)`` for ``(x0, y0, dx, dy)``.
    """

    summary: Any = None
    frames_drawn: int = 0
    frames_not_drawn: int = 0
    records_dropped: int = 0
    closed_by_operator: bool = False
    screenshot: Path | None = None
    image_map: tuple[float, float, float, float] | None = None


def ensure_platform(offscreen: bool) -> None:
    """Choose the Qt platform for the display process (it inherits the environment).

    ``offscreen`` (a screenshot run) uses the offscreen platform unless one is set. On
    Linux without a display server, refuse with a one-line error instead of letting Qt
    abort.

    Raises
    ------
    InputError
        No display server and no platform chosen.
    """
    if offscreen:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif (
        sys.platform.startswith("linux")
        and "QT_QPA_PLATFORM" not in os.environ
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    ):
        raise InputError("--display", "display", "no DISPLAY or WAYLAND_DISPLAY: run with a display server, "
                         "or add --screenshot FILE to render offscreen")


def _display_entry(messages: Any, records: Any, locks: Any, options: dict[str, Any]) -> None:
    # Imported here: only the display process loads Qt.
    from maestro.display_window import display_main

    display_main(messages, records, locks, options)


def run_with_display(
    session: Any,
    *,
    max_frames: int | None = None,
    control: ReplayControl | None = None,
    recording_path: str | Path | None = None,
    screenshot: str | Path | None = None,
    window_s: float = 30.0,
    title: str = "maestro",
    keep_open: bool = True,
) -> DisplayResult:
    """Run a session with the monitoring display; return when both have ended.

    Parameters
    ----------
    session : GatingSession
        Not yet run. The display's feed is appended to its observers (those already
        there are still told first). Its source must allow ``close()`` from another thread while the loop
        iterates: closing the window closes it, and the session then ends holding the
        beam.
    max_frames : int or None
        Passed to ``session.run``.
    control : ReplayControl or None
        The session's source when it is a controlled replay (pause, step and speed
        buttons); ``None`` for a live source: the display is then read-only.
    recording_path : str or Path or None
        Shown in the status line.
    screenshot : str or Path or None
        When given, the display draws the final state once the session has ended (e.g.
        after ``max_frames``), saves this PNG and closes; no operator needed. Set
        ``QT_QPA_PLATFORM=offscreen`` (see :func:`ensure_platform`) to render without a
        display server. An unpaced replay is then drawn only at the end.
    window_s : float
        Length of the scrolling traces (s).
    title : str
        Window title.
    keep_open : bool
        Without a screenshot: keep the window open after the session has ended (the
        beam held) until the operator closes it, to review the end of the session.

    Returns
    -------
    DisplayResult

    Raises
    ------
    DisplayUnavailable
        The display process could not start (e.g. no usable Qt platform); the session
        has not started.
    Whatever ``session.run`` raised (e.g. ``InputError`` for an unusable reference
    frame, ``KeyboardInterrupt``), after the display has closed.
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0 s, got {window_s!r}")
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
    messages, child_messages = ctx.Pipe(duplex=True)
    records_read, records_write = ctx.Pipe(duplex=False)
    locks = [ctx.Lock() for _ in range(N_SLOTS)]
    unpaced = control is None or control.speed is None
    options = {
        "control": control is not None,
        "speed": control.speed if control is not None else None,
        "recording_path": None if recording_path is None else str(recording_path),
        "screenshot": None if screenshot is None else str(screenshot),
        "window_s": float(window_s),
        "title": title,
        "keep_open": bool(keep_open) and screenshot is None,
        # Nobody watches an offscreen screenshot run: an unpaced one draws only at the end.
        "redraw": screenshot is None or not unpaced,
    }
    process = ctx.Process(
        target=_display_entry, args=(child_messages, records_read, locks, options), name="maestro-display", daemon=True
    )
    process.start()
    child_messages.close()
    records_read.close()
    result = DisplayResult()
    feed: LoopFeed | None = None
    listener: threading.Thread | None = None
    try:
        if not messages.poll(READY_TIMEOUT_S):
            raise DisplayUnavailable(f"the display did not start within {READY_TIMEOUT_S:.0f} s")
        try:
            first = messages.recv()
        except EOFError:
            process.join()
            raise DisplayUnavailable(f"the display process ended at start-up (exit code {process.exitcode})") from None
        if first[0] != "ready":
            raise DisplayUnavailable(f"the display could not start: {first[1]}")
        feed = LoopFeed(session, messages, records_write.fileno(), locks)
        session_ended = threading.Event()
        stop_reason: list[str] = []

        def request_stop(why: str) -> None:
            if not session_ended.is_set():
                stop_reason.append(why)
                log.warning("%s: ending the session (beam held)", why)
                if control is not None:
                    control.close()
                session.source.close()

        def listen() -> None:
            """Control messages from the display; blocked in recv (no interpreter lock)."""
            while True:
                try:
                    message = messages.recv()
                except (EOFError, OSError):
                    request_stop("display lost")
                    return
                kind = message[0]
                if kind == "result":
                    _, result.frames_drawn, result.frames_not_drawn, closed, image_map = message
                    result.closed_by_operator = bool(closed)
                    result.image_map = None if image_map is None else tuple(image_map)
                elif kind == "close":
                    result.closed_by_operator = True
                    request_stop("display closed")
                elif control is not None and kind == "pause":
                    control.pause()
                elif control is not None and kind == "resume":
                    control.resume()
                elif control is not None and kind == "step":
                    control.step()
                elif control is not None and kind == "speed":
                    control.set_speed(message[1])

        listener = threading.Thread(target=listen, name="maestro-display-listener", daemon=True)
        listener.start()
        stopped_by = "error"
        try:
            result.summary = session.run(max_frames=max_frames)
            stopped_by = result.summary.stopped_by
        except BaseException:
            # Ctrl-C, or the session refused to start: nothing left to review, close.
            feed.flush()  # the loop's last messages first: one sender at a time
            _send(messages, ("quit",))
            raise
        finally:
            session_ended.set()
            if stop_reason:
                stopped_by = stop_reason[0]
                session.summary.stopped_by = stopped_by
            feed.flush()
            _send(messages, ("end", stopped_by, feed.last_record))
            # The display draws the end state (and the screenshot), or waits for the
            # operator to close it; its process then exits and the listener sees EOF.
            process.join()
            listener.join()
    finally:
        if process.is_alive():
            process.terminate()
            process.join()
        if listener is not None and listener.is_alive():
            messages.close()
            listener.join()
        if feed is not None:
            result.records_dropped = feed.records_dropped
            feed.close()
        messages.close()
        records_write.close()
    if screenshot is not None and result.image_map is not None:
        result.screenshot = Path(screenshot)
    return result


def check_replay_options(args: Any) -> None:
    """Refuse inconsistent display options of ``maestro replay`` and choose the platform.

    Raises
    ------
    InputError
        ``--screenshot`` without ``--display``, ``--frames`` without ``--screenshot``,
        a screenshot path whose folder does not exist or whose name is not ``.png``, or no
        display server for an interactive display.
    """
    if args.screenshot is not None and not args.display:
        raise InputError("--screenshot", "option", "needs --display")
    if args.frames is not None and args.screenshot is None:
        raise InputError("--frames", "option", "needs --screenshot (use --max-frames to stop a replay early)")
    if args.frames is not None and args.frames < 1:
        raise InputError("--frames", "N", "must be >= 1")
    if args.screenshot is not None:
        shot = Path(args.screenshot)
        if shot.suffix.lower() != ".png":
            raise InputError(shot, "screenshot", "must be a .png file")
        if not shot.parent.is_dir():
            raise InputError(shot, "screenshot", f"folder {shot.parent} does not exist")
    ensure_platform(offscreen=args.screenshot is not None)


def run_replay_display(session: Any, control: ReplayControl, args: Any) -> Any:
    """``maestro replay --display``: run the session with the display; return its summary."""
    limits = [n for n in (args.max_frames, args.frames) if n is not None]
    try:
        result = run_with_display(
            session,
            max_frames=min(limits) if limits else None,
            control=control,
            recording_path=args.out,
            screenshot=args.screenshot,
            title=f"maestro replay: {session.source.description}",
        )
    except DisplayUnavailable as exc:
        raise InputError("--display", "display", str(exc)) from None
    if args.screenshot is not None:
        if result.screenshot is None:
            raise InputError(args.screenshot, "screenshot", "the display ended before drawing a frame: none written")
        print(f"screenshot        {result.screenshot} ({result.frames_drawn} frames drawn)")
    return result.summary


def _send(connection: Any, message: tuple[Any, ...]) -> None:
    try:
        connection.send(message)
    except OSError:
        pass  # the display has gone
