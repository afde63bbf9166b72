"""The monitoring window (pyqtgraph + PySide6), run in the display process.

Started by :func:`maestro.display.run_with_display`; see there for how it is wired to the
loop. This module imports Qt; the loop's process never imports it.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
import PySide6
from PySide6 import QtCore, QtGui, QtWidgets

from maestro.display_feed import DisplayOverlay, FeedReader
from maestro.recording import FrameRecord

log = logging.getLogger(__name__)

#: Overlay colours (RGB). Tests look for them in screenshots.
BOUNDARY_RGB = (255, 190, 0)
TRACKED_RGB = (0, 255, 70)
REFERENCE_RGB = (0, 190, 255)
ON_RGB = (30, 160, 60)
HOLD_RGB = (200, 40, 40)
#: Width of the outline pens in screen pixels.
OUTLINE_WIDTH_PX = 2.0
#: How often the display looks for new frames (ms): a frame is drawn at most this late.
POLL_MS = 15
#: Most draws per second: the scanner gives 4-8 frames/s; a fast replay need not be drawn
#: faster than the eye follows, and every draw costs CPU the loop may need.
MAX_DRAW_HZ = 20.0
#: The display process runs at this lower scheduling priority than the loop (Unix nice).
DISPLAY_NICENESS = 10
#: Window size used for screenshots (pixels), so that they are reproducible.
SCREENSHOT_SIZE = (1280, 760)
#: PNG text key under which a screenshot records where the image's pixels are drawn.
SCREENSHOT_MAP_KEY = "maestro-image-map"
#: Playback speeds offered on replay (None = as fast as possible).
SPEEDS: tuple[float | None, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, None)


def _ring_path(rings: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rings joined into one (x, y) polyline with NaN breaks (drawn with connect='finite')."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for ring in rings:
        xs += [ring[:, 0], np.array([np.nan])]
        ys += [ring[:, 1], np.array([np.nan])]
    if not xs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(xs[:-1]), np.concatenate(ys[:-1])


class RemoteControl:
    """The replay's pause / step / speed buttons, sent to the loop process.

    Mirrors the state it asked for (the loop's :class:`~maestro.display_feed.ReplayControl`
    obeys every message in order).
    """

    def __init__(self, feed: FeedReader, speed: float | None) -> None:
        self._feed = feed
        self.paused = False
        self.speed = speed

    @property
    def state(self) -> str:
        return "paused" if self.paused else "running"

    def pause(self) -> None:
        self.paused = True
        self._feed.send(("pause",))

    def resume(self) -> None:
        self.paused = False
        self._feed.send(("resume",))

    def step(self) -> None:
        self.paused = True
        self._feed.send(("step",))

    def set_speed(self, speed: float | None) -> None:
        self.speed = speed
        self._feed.send(("speed", speed))


class MonitorWindow(QtWidgets.QMainWindow):
    """The monitoring window, in the display process; reads a :class:`FeedReader`.

    Parameters
    ----------
    feed : FeedReader
        Filled by the loop process.
    control : RemoteControl or None
        Replay time controls; ``None`` for a read-only (live) display.
    recording_path : str or Path or None
        Shown in the status line.
    window_s : float
        Length of the scrolling traces (s of acquisition time).
    on_close : callable or None
        Called once when the window is closed.
    redraw : bool
        Draw while the session runs (``False``: only :meth:`refresh` draws, e.g. for an
        offscreen screenshot of an unpaced replay).
    """

    def __init__(
        self,
        feed: FeedReader,
        control: RemoteControl | None = None,
        recording_path: str | Path | None = None,
        window_s: float = 30.0,
        on_close: Callable[[], None] | None = None,
        redraw: bool = True,
        title: str = "maestro",
    ) -> None:
        super().__init__()
        if not (math.isfinite(window_s) and window_s > 0.0):
            raise ValueError(f"window_s must be finite and > 0 s, got {window_s!r}")
        self.feed = feed
        self.control = control
        self.recording_path = recording_path
        self.window_s = float(window_s)
        self._on_close = on_close
        self._redraw = redraw
        self._closed = False
        self._overlay: DisplayOverlay | None = None
        self._levels: tuple[float, float] | None = None
        self._drawn_seq = 0
        self._shown_state = ""
        self._ended = False
        self._on_end: Callable[[], None] | None = None
        self._image_placed = False
        self._undrawn = False
        self._last_draw_s = -math.inf
        self._reference_index: int | None = None
        self.frames_drawn = 0
        self.frames_not_drawn = 0
        self._stale = 0
        self._current: FrameRecord | None = None
        self._history: deque[FrameRecord] = deque()
        self.setWindowTitle(title)

        central = QtWidgets.QWidget()
        self.setCentralWidget(central)
        outer = QtWidgets.QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(4)

        top = QtWidgets.QHBoxLayout()
        self.beam_label = QtWidgets.QLabel("WAITING")
        font = self.beam_label.font()
        font.setPointSize(26)
        font.setBold(True)
        self.beam_label.setFont(font)
        self.beam_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.beam_label.setMinimumWidth(420)
        self.beam_label.setAutoFillBackground(True)
        self._set_beam_style("WAITING", (90, 90, 90))
        top.addWidget(self.beam_label)
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setWordWrap(True)
        top.addWidget(self.status_label, 1)
        outer.addLayout(top)

        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.image_widget = pg.GraphicsLayoutWidget()
        self.image_plot = self.image_widget.addPlot()  # pyright: ignore[reportAttributeAccessIssue]  # pyqtgraph delegates it
        self.image_plot.setAspectLocked(True)  # 1 mm = 1 mm: the physical aspect ratio
        self.image_plot.invertY(True)  # row 0 at the top
        self.image_plot.setLabel("bottom", "column (AP)", units="mm")
        self.image_plot.setLabel("left", "row (SI)", units="mm")
        self.image_plot.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_plot.addItem(self.image_item)
        self.reference_curve = pg.PlotDataItem(
            pen=pg.mkPen(REFERENCE_RGB, width=1.5, style=QtCore.Qt.PenStyle.DashLine), connect="finite")
        self.boundary_curve = pg.PlotDataItem(pen=pg.mkPen(BOUNDARY_RGB, width=OUTLINE_WIDTH_PX), connect="finite")
        self.tracked_curve = pg.PlotDataItem(pen=pg.mkPen(TRACKED_RGB, width=OUTLINE_WIDTH_PX), connect="finite")
        self.reference_marker = pg.ScatterPlotItem(symbol="+", size=14, pen=pg.mkPen(REFERENCE_RGB, width=2), brush=None)
        for item in (self.reference_curve, self.boundary_curve, self.tracked_curve, self.reference_marker):
            self.image_plot.addItem(item)
        splitter.addWidget(self.image_widget)

        self.trace_widget = pg.GraphicsLayoutWidget()
        self.plots: dict[str, pg.PlotItem] = {}
        names = [
            ("si", "SI (row) mm"),
            ("ap", "AP (col) mm"),
            ("outside", "outside %"),
            ("beam", "beam"),
            ("confidence", "confidence"),
            ("latency", "latency µs"),
        ]
        for i, (key, label) in enumerate(names):
            plot = self.trace_widget.addPlot(row=i, col=0)  # pyright: ignore[reportAttributeAccessIssue]  # pyqtgraph delegates it
            plot.setLabel("left", label)
            plot.setMenuEnabled(False)
            plot.setMouseEnabled(x=False, y=True)
            plot.hideButtons()
            plot.showGrid(x=True, y=True, alpha=0.2)
            if i:
                plot.setXLink(self.plots["si"])
            if i < len(names) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
            self.plots[key] = plot
        self.plots["latency"].setLabel("bottom", "acquisition time", units="s")
        self.plots["outside"].setYRange(0.0, 100.0, padding=0.05)  # pyright: ignore[reportAttributeAccessIssue]  # pyqtgraph delegates it
        self.plots["confidence"].setYRange(0.0, 1.0, padding=0.05)  # pyright: ignore[reportAttributeAccessIssue]  # pyqtgraph delegates it
        self.plots["beam"].setYRange(0.0, 1.0, padding=0.0)  # pyright: ignore[reportAttributeAccessIssue]  # pyqtgraph delegates it
        self.plots["beam"].getAxis("left").setStyle(showValues=False)
        self.trace_widget.ci.layout.setRowStretchFactor(3, 0)  # pyright: ignore[reportAttributeAccessIssue]  # pyqtgraph delegates it
        self.plots["beam"].setMaximumHeight(60)
        pen = pg.mkPen((230, 230, 230), width=1.5)
        truth_pen = pg.mkPen((150, 150, 150), width=1, style=QtCore.Qt.PenStyle.DotLine)
        self.curves = {
            "si": self.plots["si"].plot(pen=pen, connect="finite"),
            "ap": self.plots["ap"].plot(pen=pen, connect="finite"),
            "si_true": self.plots["si"].plot(pen=truth_pen, connect="finite"),
            "ap_true": self.plots["ap"].plot(pen=truth_pen, connect="finite"),
            "outside": self.plots["outside"].plot(pen=pen, connect="finite"),
            "confidence": self.plots["confidence"].plot(pen=pen, connect="finite"),
            "latency": self.plots["latency"].plot(pen=pen, connect="finite"),
            "beam_on": self.plots["beam"].plot(pen=None, stepMode="right", fillLevel=0.0, brush=pg.mkBrush(*ON_RGB)),
            "beam_hold": self.plots["beam"].plot(pen=None, stepMode="right", fillLevel=0.0, brush=pg.mkBrush(*HOLD_RGB)),
        }
        self._limit_lines: list[pg.InfiniteLine] = []
        splitter.addWidget(self.trace_widget)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        outer.addWidget(splitter, 1)

        bottom = QtWidgets.QHBoxLayout()
        if control is not None:
            self.pause_button = QtWidgets.QPushButton("Pause")
            self.pause_button.clicked.connect(self._toggle_pause)
            self.step_button = QtWidgets.QPushButton("Step")
            self.step_button.clicked.connect(control.step)
            self.speed_box = QtWidgets.QComboBox()
            for speed in SPEEDS:
                self.speed_box.addItem("max" if speed is None else f"{speed:g}x", speed)
            self.speed_box.setCurrentIndex(SPEEDS.index(control.speed) if control.speed in SPEEDS else len(SPEEDS) - 1)
            self.speed_box.currentIndexChanged.connect(lambda i: control.set_speed(self.speed_box.itemData(i)))
            for w in (self.pause_button, self.step_button, QtWidgets.QLabel("speed"), self.speed_box):
                bottom.addWidget(w)
        else:
            bottom.addWidget(QtWidgets.QLabel("live session: read-only"))
        bottom.addStretch(1)
        bottom.addWidget(QtWidgets.QLabel("window"))
        self.window_box = QtWidgets.QDoubleSpinBox()
        self.level_box = QtWidgets.QDoubleSpinBox()
        for box in (self.window_box, self.level_box):
            box.setRange(-1e9, 1e9)
            box.setDecimals(1)
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self._levels_edited)
        self.window_box.setMinimum(1e-6)
        bottom.addWidget(self.window_box)
        bottom.addWidget(QtWidgets.QLabel("level"))
        bottom.addWidget(self.level_box)
        outer.addLayout(bottom)

        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._timer.start()

    # -- drawing ------------------------------------------------------------------------
    def _set_beam_style(self, text: str, rgb: tuple[int, int, int]) -> None:
        self.beam_label.setText(text)
        self.beam_label.setStyleSheet(
            f"background-color: rgb({rgb[0]},{rgb[1]},{rgb[2]}); color: white; padding: 6px; border-radius: 4px;")

    def _set_up_overlay(self, overlay: DisplayOverlay) -> None:
        self._overlay = overlay
        (sr, sc), (h, w) = overlay.spacing_mm, overlay.shape
        self.image_plot.setRange(xRange=(-0.5 * sc, (w - 0.5) * sc), yRange=(-0.5 * sr, (h - 0.5) * sr), padding=0.0)
        self.reference_curve.setData(*_ring_path(overlay.target_rings_mm))
        self.boundary_curve.setData(*_ring_path(overlay.boundary_rings_mm))
        self.tracked_curve.setData(*_ring_path(overlay.target_rings_mm))
        self.reference_marker.setData([overlay.reference_xy_mm[0]], [overlay.reference_xy_mm[1]])
        limit_pen = pg.mkPen(BOUNDARY_RGB, width=1, style=QtCore.Qt.PenStyle.DashLine)
        for key, limits in (("si", overlay.row_limits_mm), ("ap", overlay.col_limits_mm)):
            for value in limits:
                if value is not None:
                    self._limit_lines.append(self.plots[key].addLine(y=value, pen=limit_pen))
        self._limit_lines.append(self.plots["outside"].addLine(y=overlay.threshold_pct, pen=limit_pen))
        self._limit_lines.append(self.plots["confidence"].addLine(y=overlay.confidence_floor, pen=limit_pen))

    def set_levels(self, window: float, level: float) -> None:
        """Fixed display window (width > 0) and level (centre), intensity units."""
        if not (math.isfinite(window) and window > 0.0 and math.isfinite(level)):
            raise ValueError(f"window must be finite and > 0 and level finite, got {window!r}, {level!r}")
        self._levels = (level - window / 2.0, level + window / 2.0)
        for box, value in ((self.window_box, window), (self.level_box, level)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        if self.image_item.image is not None:
            self.image_item.setLevels(self._levels)

    def _levels_edited(self) -> None:
        if self._levels is not None:
            self.set_levels(self.window_box.value(), self.level_box.value())

    def _toggle_pause(self) -> None:
        assert self.control is not None
        if self.control.paused:
            self.control.resume()
        else:
            self.control.pause()

    def _poll(self) -> None:
        self.feed.poll_messages()
        self.refresh(draw=self._redraw or self.feed.finished, force=self.feed.finished)
        if self.feed.finished and not self._ended:
            self._ended = True
            if self._on_end is not None:
                self._on_end()

    def source_state(self) -> str:
        """``running``, ``paused``, ``fault: ...``, ``ended`` or ``live`` for the status."""
        if self.feed.finished:
            return "ended"
        if self.feed.fault:
            return f"fault: {self.feed.fault}"
        return self.control.state if self.control is not None else "live"

    def refresh(self, draw: bool = True, force: bool = True) -> None:
        """Take what the loop has sent since the last call and draw the newest frame.

        Records are always taken (so the pipe never fills); drawing happens when ``draw``
        and, unless ``force``, at most :data:`MAX_DRAW_HZ` times a second.
        """
        feed = self.feed
        records = feed.take_records()
        if self._overlay is None and feed.overlay is not None and feed.levels is not None:
            self._reference_index = feed.reference_index
            # Fixed from the reference frame: no auto-level flicker from frame to frame.
            self.set_levels(*feed.levels)
            self._set_up_overlay(feed.overlay)
        if records:
            self._stale += sum(1 for r in records if r.record.reason == "stale_frame")
            self._history.extend(r.record for r in records)
            t_end = self._history[-1].t_acq_s
            while self._history and self._history[0].t_acq_s < t_end - self.window_s:
                self._history.popleft()
        self._undrawn = self._undrawn or bool(records)
        now_s = time.perf_counter()
        due = force or now_s - self._last_draw_s >= 1.0 / MAX_DRAW_HZ
        latest = feed.latest_frame() if draw and due and self._undrawn and self._overlay is not None else None
        if latest is not None and latest[0].seq != self._drawn_seq:
            self._undrawn = False
            self._last_draw_s = now_s
            fed, pixels = latest
            self.frames_not_drawn += fed.seq - self._drawn_seq - 1
            self._drawn_seq = fed.seq
            self.frames_drawn += 1
            self._current = fed.record
            self._draw_frame(pixels, fed.record)
            self._draw_traces()
            self._draw_status()
        elif self.source_state() != self._shown_state:
            self._draw_status()

    def _draw_frame(self, pixels: np.ndarray, record: FrameRecord) -> None:
        self.image_item.setImage(pixels, autoLevels=False, levels=self._levels)
        if not self._image_placed:
            # The image item can be placed in mm only once it holds an image.
            assert self._overlay is not None
            (sr, sc), (h, w) = self._overlay.spacing_mm, self._overlay.shape
            self.image_item.setRect(QtCore.QRectF(-0.5 * sc, -0.5 * sr, w * sc, h * sr))
            self._image_placed = True
        if math.isfinite(record.row_mm) and math.isfinite(record.col_mm):
            self.tracked_curve.setPos(record.col_mm, record.row_mm)
            self.tracked_curve.setVisible(True)
        else:
            self.tracked_curve.setVisible(False)
        if record.beam == "on":
            self._set_beam_style("BEAM ON", ON_RGB)
        else:
            self._set_beam_style(f"HOLD · {record.reason}", HOLD_RGB)

    def _draw_traces(self) -> None:
        history = self._history
        t = np.fromiter((r.t_acq_s for r in history), np.float64, len(history))

        def column(name: str) -> np.ndarray:
            return np.fromiter((getattr(r, name) for r in history), np.float64, len(history))

        self.curves["si"].setData(t, column("row_mm"))
        self.curves["ap"].setData(t, column("col_mm"))
        true_row = column("true_row_mm")
        if np.isfinite(true_row).any():
            self.curves["si_true"].setData(t, true_row)
            self.curves["ap_true"].setData(t, column("true_col_mm"))
        self.curves["outside"].setData(t, column("outside_pct"))
        self.curves["confidence"].setData(t, column("confidence"))
        latency_us = column("latency_us")
        if history[0].frame == self._reference_index:
            latency_us[0] = np.nan  # the reference frame's time includes the set-up
        self.curves["latency"].setData(t, latency_us)
        on = np.fromiter((r.beam == "on" for r in history), np.float64, len(history))
        self.curves["beam_on"].setData(t, on)
        self.curves["beam_hold"].setData(t, 1.0 - on)
        t_end = float(t[-1])
        self.plots["si"].setXRange(t_end - self.window_s, t_end, padding=0.0)  # pyright: ignore[reportAttributeAccessIssue]  # pyqtgraph delegates it

    def _draw_status(self) -> None:
        record = self._current
        fps = self.feed.received_fps()
        parts = [
            f"frame {record.frame}" if record is not None else "frame –",
            f"{fps:.1f} frames/s received" if math.isfinite(fps) else "– frames/s received",
            f"not drawn {self.frames_not_drawn}",
            f"stale {self._stale}",
            f"source {self.source_state()}",
            f"recording {self.recording_path if self.recording_path is not None else 'none'}",
        ]
        self._shown_state = self.source_state()
        self.status_label.setText("   ·   ".join(parts))
        if self.control is not None:
            self.pause_button.setText("Resume" if self.control.paused else "Pause")

    def show_session_end(self) -> None:
        """The loop has ended: the beam is held."""
        self._set_beam_style("HOLD · session_end", HOLD_RGB)
        self._draw_status()
        self.status_label.setText(self.status_label.text() + f"   ·   ended: {self.feed.stopped_by}")

    @property
    def ready(self) -> bool:
        """Whether a frame and its overlays have been drawn."""
        return self._overlay is not None and self._image_placed

    # -- geometry for screenshots and tests ---------------------------------------------
    def image_map(self) -> tuple[float, float, float, float]:
        """``(x0, y0, dx, dy)``: window pixel of image pixel (row, col) is
        ``(x0 + col * dx, y0 + row * dy)``."""
        assert self._overlay is not None
        sr, sc = self._overlay.spacing_mm
        vb = self.image_plot.getViewBox()

        view = self.image_widget
        offset = view.viewport().mapTo(self, QtCore.QPoint(0, 0))

        def to_window(x_mm: float, y_mm: float) -> QtCore.QPointF:
            # Floating-point all the way (QGraphicsView.mapFromScene rounds to pixels).
            scene = vb.mapViewToScene(QtCore.QPointF(x_mm, y_mm))
            return view.viewportTransform().map(scene) + QtCore.QPointF(offset)

        p0 = to_window(0.0, 0.0)
        p1 = to_window(sc, sr)
        return (p0.x(), p0.y(), p1.x() - p0.x(), p1.y() - p0.y())

    def save_screenshot(self, path: str | Path) -> tuple[float, float, float, float]:
        """Write the window as a PNG; the image map is stored in its text chunk."""
        image = self.grab().toImage()
        mapping = self.image_map()
        image.setText(SCREENSHOT_MAP_KEY, ",".join(f"{v:.4f}" for v in mapping))
        if not image.save(str(path), "PNG"):  # pyright: ignore[reportCallIssue, reportArgumentType]  # PySide6's stubs: format is a C string
            raise OSError(f"{path}: could not write the screenshot PNG")
        return mapping

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # Qt's name
        self._timer.stop()
        if not self._closed:
            self._closed = True
            if self._on_close is not None:
                self._on_close()
        super().closeEvent(event)


def read_image_map(path: str | Path) -> tuple[float, float, float, float]:
    """The ``(x0, y0, dx, dy)`` image map a screenshot PNG records (see
    :meth:`MonitorWindow.image_map`)."""
    image = QtGui.QImage(str(path))
    text = image.text(SCREENSHOT_MAP_KEY)
    if not text:
        raise ValueError(f"{path}: no {SCREENSHOT_MAP_KEY} text in the PNG")
    x0, y0, dx, dy = (float(v) for v in text.split(","))
    return x0, y0, dx, dy


def check_binding() -> None:
    """Refuse a Qt binding that drops references to ``None`` (crashes minutes later).

    PySide6 6.12.0 returns ``None`` from C++ calls without taking a reference; on Python
    < 3.12 (where ``None`` is not immortal) pyqtgraph's calls then exhaust ``None``'s
    reference count and the interpreter aborts with "deallocating None" mid-session.

    Raises
    ------
    RuntimeError
        The installed binding has the defect.
    """
    if sys.version_info >= (3, 12):
        return  # None is immortal: the defect is harmless
    probe = QtCore.QObject()
    before = sys.getrefcount(None)
    for _ in range(100):
        probe.property("maestro-probe")  # no such property: returns None
    if before - sys.getrefcount(None) >= 50:
        raise RuntimeError(
            f"PySide6 {PySide6.__version__} drops a reference to None on every call that returns None; "
            "on this Python the display would crash after a few minutes: install PySide6-Essentials<6.12"
        )


def _qt_message(mode: QtCore.QtMsgType, context: QtCore.QMessageLogContext, message: str) -> None:
    # Qt's chatter (e.g. the offscreen platform's "does not support propagateSizeHints")
    # goes to the debug log; its critical and fatal messages (e.g. no platform plugin)
    # still reach the terminal.
    if mode in (QtCore.QtMsgType.QtCriticalMsg, QtCore.QtMsgType.QtFatalMsg):
        log.error("Qt: %s", message)
    else:
        log.debug("Qt: %s", message)


def display_main(messages: Any, records: Any, locks: Any, options: dict[str, Any]) -> None:
    """Entry point of the display process.

    Parameters
    ----------
    messages : multiprocessing Connection
        Duplex connection to the loop process.
    records : multiprocessing Connection
        Read end of the records pipe (read raw, see :class:`FeedReader`).
    locks : list of multiprocessing locks
        The pixel slots' locks.
    options : dict
        ``control`` (bool), ``speed``, ``recording_path``, ``screenshot`` (path or None),
        ``window_s``, ``title``, ``redraw`` (bool), ``keep_open`` (bool).
    """
    # Ctrl-C reaches the whole process group: the loop's process handles it and closes
    # this display.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # On a shared machine the gate comes first: the scheduler favours the loop's process.
    try:
        os.nice(DISPLAY_NICENESS)
    except (AttributeError, OSError):  # pragma: no cover - Windows, or not permitted
        log.debug("could not lower the display's priority")
    try:
        QtCore.qInstallMessageHandler(_qt_message)
        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
        check_binding()
    except Exception as exc:  # noqa: BLE001 - reported to the loop process, which refuses
        messages.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    feed = FeedReader(messages, records.fileno(), locks)
    control = RemoteControl(feed, options.get("speed")) if options.get("control") else None
    screenshot = options.get("screenshot")
    loop = QtCore.QEventLoop()
    state = {"closed_by_operator": False, "image_map": None}

    def on_close() -> None:
        if not feed.finished:
            state["closed_by_operator"] = True
            feed.send(("close",))
        loop.quit()

    window = MonitorWindow(
        feed,
        control=control,
        recording_path=options.get("recording_path"),
        window_s=float(options.get("window_s", 30.0)),
        on_close=on_close,
        redraw=bool(options.get("redraw", True)),
        title=str(options.get("title", "maestro")),
    )

    def on_end() -> None:
        window.refresh()
        if screenshot is not None and not feed.loop_gone:
            # The display as it was after the last frame: its decision, not the end hold.
            app.processEvents()
            if window.ready:
                state["image_map"] = window.save_screenshot(screenshot)
            window.close()
            return
        window.show_session_end()
        if feed.loop_gone or not options.get("keep_open", True):
            window.close()

    def on_message(message: tuple[Any, ...]) -> None:
        if message[0] == "quit":
            feed.finished = True  # the loop asked: not an operator's close
            window.close()

    window._on_end = on_end  # noqa: SLF001 - the process entry owns the window
    feed.on_message = on_message
    window.resize(*SCREENSHOT_SIZE) if screenshot is not None else window.resize(1400, 850)
    window.show()
    app.processEvents()  # the first (long) layout and paint, before any frame
    feed.send(("ready",))
    loop.exec()
    feed.send(("result", window.frames_drawn, window.frames_not_drawn, state["closed_by_operator"], state["image_map"]))
    window.deleteLater()
    app.processEvents()
    feed.close()
