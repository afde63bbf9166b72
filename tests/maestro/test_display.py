"""The monitoring display: hand-off, replay time controls, screenshots, and a loop it never holds up.

The display runs in its own process; these tests never import Qt themselves (the PNG is
read with OpenCV), but the display process inherits QT_QPA_PLATFORM=offscreen.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse
import contextlib
import math
import multiprocessing
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from gating.boundary import GatingGeometry
from hardware import BeamState, Frame, InputError, SimulatedBeam
from hardware.trackrad import write_case
from maestro import cli
from maestro.display import check_replay_options, run_with_display
from maestro.display_feed import (
    N_SLOTS,
    RECORD_BYTES,
    DisplayOverlay,
    FeedReader,
    FrameSlots,
    LoopFeed,
    ReplayControl,
    pack_record,
    unpack_records,
    window_level_from,
)
from maestro.observer import EachFrame, EachRecord
from maestro.recording import FrameRecord
from maestro.session import GatingSession, SessionConfig
from tests.maestro.sources import ListSource, blob_image

# Colours the display draws with (maestro.display_window; not imported: it loads Qt).
BOUNDARY_RGB = (255, 190, 0)
TRACKED_RGB = (0, 255, 70)
REFERENCE_RGB = (0, 190, 255)

SHAPE = (80, 112)  # not square, so a swapped axis shows
SPACING_MM = (2.0, 1.5)  # anisotropic, so a lost aspect ratio shows
CENTRE_PX = (40, 56)
RADIUS_PX = 6
SHIFT_PX = 4.0  # final displacement along rows (8 mm > the 3 mm margin: held)


def _record(i: int, **kw: object) -> FrameRecord:
    values = dict(frame=i, t_acq_s=0.125 * i, row_mm=0.5 * i, col_mm=-0.25 * i, confidence=0.9, outside_pct=1.5,
                  beam="on", reason="", latency_us=80.0 + i, peak_zncc=0.9, sharpness=1.0)
    values.update(kw)
    return FrameRecord(**values)


def _target_mask() -> np.ndarray:
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    return (rows - CENTRE_PX[0]) ** 2 + ((cols - CENTRE_PX[1]) * SPACING_MM[1] / SPACING_MM[0]) ** 2 <= RADIUS_PX**2


def _shifted(image: np.ndarray, d_px: float) -> np.ndarray:
    from scipy.ndimage import shift

    return shift(image, (d_px, 0.0), order=3, mode="nearest").astype(np.float32)


def _synthetic_frames(n: int) -> list[Frame]:
    """A textured blob that moves SHIFT_PX rows down over the first 10 frames, then rests."""
    base = blob_image(SHAPE, CENTRE_PX, seed=3)
    frames = []
    for i in range(n):
        d = SHIFT_PX * min(i / 10.0, 1.0)
        frames.append(Frame(i, 0.125 * i, 0.0, _shifted(base, d), SPACING_MM, None))
    return frames


# -- the hand-off ----------------------------------------------------------------------------
def test_records_round_trip_through_bytes() -> None:
    records = [_record(0), _record(1, beam="hold", reason="low_confidence", row_mm=math.nan), _record(2, reason="x" * 40)]
    data = b"".join(pack_record(10 + i, i % N_SLOTS - 1, r, 5.0 + i) for i, r in enumerate(records))
    assert len(data) == 3 * RECORD_BYTES <= 512  # one atomic pipe write each
    fed = unpack_records(data)
    assert [f.seq for f in fed] == [10, 11, 12] and [f.slot for f in fed] == [-1, 0, 1]
    assert [f.t_recv_s for f in fed] == [5.0, 6.0, 7.0]
    assert fed[0].record.row_mm == 0.0 and fed[2].record.col_mm == -0.5
    assert math.isnan(fed[1].record.row_mm)
    assert (fed[1].record.beam, fed[1].record.reason) == ("hold", "low_confidence")
    assert fed[2].record.reason == "x" * 31  # truncated, never an error


def test_frame_slots_never_wait_for_the_reader() -> None:
    ctx = multiprocessing.get_context("spawn")
    locks = [ctx.Lock() for _ in range(N_SLOTS)]
    writer = FrameSlots((4, 5), locks)
    reader = FrameSlots((4, 5), locks, name=writer.name)
    try:
        a = np.arange(20, dtype=np.float32).reshape(4, 5)
        slot = writer.write(1, a)
        assert reader.read(slot)[0] == 1 and np.array_equal(reader.read(slot)[1], a)
        # The reader holds one slot: the writer goes round it.
        with locks[(slot + 1) % N_SLOTS]:
            s2 = writer.write(2, a + 1)
            assert s2 not in (-1, (slot + 1) % N_SLOTS)
        # Every slot held (never happens with one reader): the frame is skipped, not waited for.
        for lock in locks:
            lock.acquire()
        t0 = time.perf_counter()
        assert writer.write(3, a) == -1
        assert time.perf_counter() - t0 < 0.05
        for lock in locks:
            lock.release()
        assert writer.write(4, np.zeros((3, 3), np.float32)) == -1  # wrong shape: skipped
    finally:
        reader.close()
        writer.close()


class _FakeSession:
    def __init__(self, geometry: GatingGeometry) -> None:
        self.geometry = geometry
        self.config = SessionConfig()
        self.observers: list = []
        self.source = ListSource([])


def test_loop_feed_drops_records_rather_than_wait_for_a_stalled_display() -> None:
    ctx = multiprocessing.get_context("spawn")
    locks = [ctx.Lock() for _ in range(N_SLOTS)]
    ours, theirs = ctx.Pipe()
    read_end, write_end = ctx.Pipe(duplex=False)
    session = _FakeSession(GatingGeometry(_target_mask(), SPACING_MM, 3.0))
    feed = LoopFeed(session, ours, write_end.fileno(), locks)
    reader = FeedReader(theirs, read_end.fileno(), locks)
    try:
        assert session.observers == [feed]
        pixels = np.ones(SHAPE, np.float32)
        worst_s = 0.0
        for i in range(3000):  # far more than a pipe holds, nobody reading: must not block
            t0 = time.perf_counter()
            feed.push(Frame(i, 0.125 * i, t0, pixels, SPACING_MM), _record(i))
            worst_s = max(worst_s, time.perf_counter() - t0)
        assert feed.records_dropped > 0 and feed.pushed == 3000
        assert worst_s < 0.25  # the first push computes the overlay; none waits
        assert feed.flush(timeout_s=10.0)  # the set-up message, sent by the feed's own thread
        reader.poll_messages()
        assert reader.overlay is not None and reader.levels is not None and reader.reference_index == 0
        records = reader.take_records()
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        # Once the display reads again, the next frame comes through with its pixels.
        feed.push(Frame(3000, 375.0, time.perf_counter(), pixels * 2, SPACING_MM), _record(3000))
        assert [r.seq for r in reader.take_records()] == [3001]
        newest = reader.latest_frame()
        assert newest is not None and newest[0].seq == 3001 and np.array_equal(newest[1], pixels * 2)
    finally:
        reader.close()
        feed.close()
        for c in (ours, theirs, read_end, write_end):
            c.close()


def test_feed_reader_keeps_partial_records_for_the_next_read() -> None:
    ctx = multiprocessing.get_context("spawn")
    read_end, write_end = ctx.Pipe(duplex=False)
    ours, theirs = ctx.Pipe()
    reader = FeedReader(theirs, read_end.fileno(), [ctx.Lock() for _ in range(N_SLOTS)])
    try:
        data = pack_record(1, -1, _record(1), 1.0) + pack_record(2, -1, _record(2), 2.0)
        os.write(write_end.fileno(), data[:50])
        assert reader.take_records() == []
        os.write(write_end.fileno(), data[50:])
        assert [r.seq for r in reader.take_records()] == [1, 2]
        assert reader.received_fps() == pytest.approx(1.0)
    finally:
        for c in (read_end, write_end, ours, theirs):
            c.close()


def test_window_level_from_percentiles_ignores_non_finite() -> None:
    pixels = np.arange(1000, dtype=np.float32).reshape(25, 40)
    pixels[0, 0] = np.nan
    pixels[0, 1] = np.inf
    width, level = window_level_from(pixels)
    finite = np.arange(2, 1000, dtype=np.float64)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    assert width == pytest.approx(hi - lo) and level == pytest.approx((lo + hi) / 2)
    assert window_level_from(np.full((3, 3), 7.0, np.float32))[0] > 0  # flat image: still a window
    assert window_level_from(np.full((3, 3), np.nan, np.float32)) == (1.0, 0.5)


def test_overlay_limits_of_a_square_target_by_hand() -> None:
    # A 10 x 10 px square at 1.0 x 0.5 mm: 10 mm tall, 5 mm wide. Moving along rows by d,
    # the part outside the boundary (margin m beyond each edge, over the full width) is
    # (d - m) / 10 mm; it exceeds 20 % at d = m + 2 mm. Along columns: (d - m) / 5 mm,
    # exceeding 20 % at d = m + 1 mm.
    mask = np.zeros((40, 40), bool)
    mask[15:25, 15:25] = True
    overlay = DisplayOverlay.from_geometry(GatingGeometry(mask, (1.0, 0.5), 2.0), 20.0, 0.4)
    assert overlay.row_limits_mm[0] == pytest.approx(-4.0, abs=0.02)
    assert overlay.row_limits_mm[1] == pytest.approx(4.0, abs=0.02)
    assert overlay.col_limits_mm[0] == pytest.approx(-3.0, abs=0.02)
    assert overlay.col_limits_mm[1] == pytest.approx(3.0, abs=0.02)
    assert overlay.reference_xy_mm == pytest.approx((19.5 * 0.5, 19.5 * 1.0))
    (ring,) = overlay.target_rings_mm
    assert ring[:, 0].min() == pytest.approx(14.5 * 0.5) and ring[:, 1].max() == pytest.approx(24.5 * 1.0)
    xs = np.concatenate([r[:, 0] for r in overlay.boundary_rings_mm])
    assert xs.min() == pytest.approx(14.5 * 0.5 - 2.0, abs=0.01)
    # A threshold of 100 % is never exceeded: no limit to draw.
    assert DisplayOverlay.from_geometry(GatingGeometry(mask, (1.0, 0.5), 2.0), 100.0, 0.4).row_limits_mm == (None, None)


# -- replay time controls ---------------------------------------------------------------------
def _replay(n: int, speed: float | None) -> tuple[ListSource, ReplayControl]:
    frames = [Frame(i, 0.125 * i, 0.0, np.zeros((2, 2), np.float32), (1.0, 1.0)) for i in range(n)]
    source = ListSource(frames)
    return source, ReplayControl(source, speed=speed)


def test_replay_control_unpaced_restamps_receive_time() -> None:
    _, control = _replay(5, None)
    t0 = time.perf_counter()
    got = list(control)
    assert [f.index for f in got] == list(range(5))
    assert all(t0 <= f.t_recv_s <= time.perf_counter() for f in got)
    assert [f.t_acq_s for f in got] == [0.125 * i for i in range(5)]  # acquisition times kept
    assert control.state == "ended"


def test_replay_control_paces_at_speed() -> None:
    _, control = _replay(5, 10.0)  # 0.125 s apart at x10: 12.5 ms
    t0 = time.perf_counter()
    got = list(control)
    elapsed_s = time.perf_counter() - t0
    assert elapsed_s >= 4 * 0.0125 * 0.9
    assert [f.index for f in got] == list(range(5))
    # On schedule (no drift): frame i never before the first + i x 12.5 ms.
    since_first_s = np.array([f.t_recv_s - got[0].t_recv_s for f in got])
    assert np.all(since_first_s >= np.arange(5) * 0.0125 - 1e-3)


def test_pause_stops_time_and_step_hands_over_one_frame() -> None:
    _, control = _replay(6, 1.0)
    it = iter(control)
    assert next(it).index == 0
    control.pause()
    clock_paused = control.session_clock()
    got: list[Frame] = []
    worker = threading.Thread(target=lambda: got.extend(f for f in it))
    worker.start()
    try:
        time.sleep(0.3)  # more than two frame periods: nothing may come, the clock stands
        assert got == [] and control.state == "paused"
        assert control.session_clock() == clock_paused
        control.step()
        deadline = time.perf_counter() + 5.0
        while not got and time.perf_counter() < deadline:
            time.sleep(0.005)
        time.sleep(0.2)
        assert [f.index for f in got] == [1]  # exactly one frame, at once, though not due
        assert control.session_clock() == pytest.approx(0.125)  # time jumped to that frame
        control.set_speed(8.0)
        control.resume()
        worker.join(timeout=5.0)
        assert [f.index for f in got] == [1, 2, 3, 4, 5]
        assert all(time.perf_counter() - f.t_recv_s < 5.0 for f in got)
    finally:
        control.close()
        worker.join(timeout=5.0)
    assert not worker.is_alive()


def test_close_ends_a_paused_replay_at_once() -> None:
    source, control = _replay(4, 1.0)
    control.pause()
    got: list[Frame] = []
    worker = threading.Thread(target=lambda: got.extend(control))
    worker.start()
    time.sleep(0.1)
    control.close()
    worker.join(timeout=2.0)
    assert not worker.is_alive()
    assert len(got) <= 1 and source.closed and control.state == "closed"


@pytest.mark.parametrize("speed", [0.0, -1.0, math.inf, math.nan, True])
def test_replay_control_refuses_bad_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        _replay(1, speed)


def test_paused_session_does_not_trip_the_watchdog() -> None:
    # Pausing a replay is pausing time: the session's watchdog must not hold the beam.
    frames = _synthetic_frames(12)
    source = ListSource(frames, reference_label=_target_mask())
    control = ReplayControl(source, speed=4.0)
    records: list[FrameRecord] = []
    session = GatingSession(control, SessionConfig(margin_mm=3.0), SimulatedBeam(), observers=[EachRecord(records.append)])

    def pause_once(record: FrameRecord) -> None:
        if record.frame == 3:
            control.pause()
            threading.Timer(0.6, control.resume).start()  # > the watchdog's timeout

    session.observers.append(EachRecord(pause_once))
    session.run()
    assert len(records) == 12
    assert not any(r.reason == "stale_frame" for r in records[1:])
    transitions = [t.reason for t in session.beam.transitions]
    assert "stale_frame" not in transitions


# -- the CLI's options --------------------------------------------------------------------------
def _args(**kw: object) -> argparse.Namespace:
    values = dict(display=True, screenshot=None, frames=None, max_frames=None, out=None)
    values.update(kw)
    return argparse.Namespace(**values)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        (dict(display=False, screenshot=Path("x.png")), "option"),
        (dict(frames=3), "option"),
        (dict(screenshot=Path("x.jpg")), "screenshot"),
        (dict(screenshot=Path("/no/such/folder/x.png")), "screenshot"),
        (dict(screenshot=Path("x.png"), frames=0), "N"),
    ],
)
def test_bad_display_options_are_refused(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as info:
        check_replay_options(_args(**kw))
    assert info.value.field == field


# -- screenshots: the frame and the overlays where they belong ---------------------------------
def _png_text(path: Path) -> dict[str, str]:
    """tEXt chunks of a PNG (the display stores its image map there)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = {}, 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            out[key.decode()] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode()] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            parts = rest[2:].split(b"\0", 2)
            out[key.decode()] = (zlib.decompress(parts[2]) if rest[0] else parts[2]).decode()
        pos += 12 + length
    return out


def _near(rgb_image: np.ndarray, x: float, y: float, colour: tuple[int, int, int], reach: int = 2, tol: int = 70) -> bool:
    xi, yi = int(round(x)), int(round(y))
    patch = rgb_image[yi - reach : yi + reach + 1, xi - reach : xi + reach + 1].astype(int)
    return bool((np.abs(patch - np.array(colour)).max(axis=-1) <= tol).any())


def _check_screenshot(png: Path, reference: np.ndarray, shown_frame: np.ndarray, shift_px: tuple[float, float],
                      margin_mm: float) -> None:
    image = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert image is not None
    rgb = image[:, :, ::-1]
    x0, y0, dx, dy = (float(v) for v in _png_text(png)["maestro-image-map"].split(","))
    # Physical aspect ratio: screen pixels per mm equal along both axes.
    assert dy / dx == pytest.approx(SPACING_MM[0] / SPACING_MM[1], rel=0.01)

    def at(row: float, col: float) -> tuple[float, float]:
        return x0 + col * dx, y0 + row * dy

    # The frame: grey levels from the reference frame's fixed window/level, sampled away
    # from every outline.
    width, level = window_level_from(reference)
    lo = level - width / 2
    mask = _target_mask()
    geometry = GatingGeometry(mask, SPACING_MM, margin_mm)
    near_outline = np.zeros(SHAPE, bool)
    near_outline[CENTRE_PX[0] - 20 : CENTRE_PX[0] + 20, CENTRE_PX[1] - 20 : CENTRE_PX[1] + 20] = True
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(400):
        r, c = int(rng.integers(2, SHAPE[0] - 2)), int(rng.integers(2, SHAPE[1] - 2))
        if near_outline[r, c]:
            continue
        expected = np.clip((shown_frame[r, c] - lo) / width * 255.0, 0, 255)
        x, y = at(r, c)
        shown = rgb[int(round(y)), int(round(x))].astype(float)
        assert np.ptp(shown) <= 3, (r, c, shown)  # grey, no overlay colour
        assert abs(shown.mean() - expected) <= 14, (r, c, shown, expected)
        checked += 1
    assert checked > 100

    def fraction_on(rings: list[np.ndarray], colour: tuple[int, int, int], d_row: float = 0.0, d_col: float = 0.0) -> float:
        points = np.concatenate([ring[:-1] for ring in rings])
        hits = [_near(rgb, *at(r + d_row, c + d_col), colour) for r, c in points]
        return float(np.mean(hits))

    # Tracked outline: the reference outline moved by the tracked displacement.
    assert fraction_on(geometry.target_contour_px(), TRACKED_RGB, *shift_px) >= 0.8
    assert fraction_on(geometry.target_contour_px(), TRACKED_RGB) <= 0.5  # not left at the reference
    assert fraction_on(geometry.boundary_contour_px(), BOUNDARY_RGB) >= 0.7
    # Reference position: the cross at the reference target's centroid.
    rows, cols = np.nonzero(mask)
    assert _near(rgb, *at(rows.mean(), cols.mean()), REFERENCE_RGB)
    # Beam indicator: held (the target rests 8 mm off), in red somewhere in the top band.
    top = rgb[: int(y0)].astype(int)
    assert ((np.abs(top - np.array((200, 40, 40))).max(axis=-1) <= 30).sum()) > 2000


def test_replay_screenshot_shows_frame_and_overlays_where_they_belong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = _synthetic_frames(30)
    pixels = np.stack([np.clip(f.pixels, 0, 65535) for f in frames]).astype(np.uint16)
    case = write_case(tmp_path / "case-a", "case-a", pixels, None, SPACING_MM, 8.0, first_label=_target_mask())
    png = tmp_path / "shot.png"
    status = cli.main(["replay", str(case), "--display", "--screenshot", str(png), "--frames", "24",
                       "--margin-mm", "3", "--out", str(tmp_path / "rec")])
    assert status == 0
    out = capsys.readouterr().out
    assert f"screenshot        {png}" in out and "frames            24" in out
    assert png.stat().st_size > 10_000
    rows = (tmp_path / "rec" / "frames.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert last["frame"] == "23" and last["beam"] == "hold" and last["reason"] == "outside"
    shift_px = (float(last["row_mm"]) / SPACING_MM[0], float(last["col_mm"]) / SPACING_MM[1])
    assert shift_px[0] == pytest.approx(SHIFT_PX, abs=0.3)
    _check_screenshot(png, pixels[0].astype(np.float32), pixels[23].astype(np.float32), shift_px, 3.0)


# -- the loop is never held up by the display -----------------------------------------------------
def _records_without_display(frames: list[Frame], faults: dict[int, str]) -> list[FrameRecord]:
    records: list[FrameRecord] = []
    source = ListSource(frames, reference_label=_target_mask(), faults=faults)
    GatingSession(source, SessionConfig(margin_mm=3.0), SimulatedBeam(), observers=[EachRecord(records.append)]).run()
    return records


def test_a_frozen_display_never_holds_up_the_loop() -> None:
    # The display process is stopped (SIGSTOP) from frame 10 to the last frame: it reads
    # nothing and holds whatever frame slot it held. The loop must decide every frame
    # regardless, dropping the records the full pipe cannot take, and decide each exactly
    # as it does without a display. Waiting on the display anywhere would leave the loop
    # stuck until the guard below resumes the display, which fails the test. (How much
    # the display costs the loop in time is a benchmark: benchmarks/test_display_overhead.py.)
    moving = _synthetic_frames(11)
    n_frames = 1500  # > 64 KiB pipe / RECORD_BYTES: the records pipe overflows
    frames = moving + [Frame(i, 0.125 * i, 0.0, moving[-1].pixels, SPACING_MM, None) for i in range(11, n_frames)]
    # A source fault that comes and goes every other frame: each change is a message to the
    # display, which must not wait either.
    faults = {i: f"late: frame {i} arrived late" for i in range(11, n_frames, 2)}
    expected = _records_without_display(frames, faults)

    display_pid: list[int] = []
    resumed = threading.Event()
    guard_fired: list[bool] = []

    def guard() -> None:  # fail, never hang, if the loop waits for the frozen display
        if not resumed.wait(60.0):  # ~1,500 unpaced frames take well under a second
            guard_fired.append(True)
            resumed.set()
            os.kill(display_pid[0], signal.SIGCONT)

    def freeze_then_resume(session: object, frame: Frame, record: FrameRecord) -> None:
        if frame.index == 10:
            display_pid.extend(c.pid for c in multiprocessing.active_children() if c.name == "maestro-display")
            os.kill(display_pid[0], signal.SIGSTOP)
            threading.Thread(target=guard, daemon=True).start()
        elif frame.index == n_frames - 1 and display_pid and not resumed.is_set():
            resumed.set()
            os.kill(display_pid[0], signal.SIGCONT)

    source = ListSource(frames, reference_label=_target_mask(), faults=faults)
    control = ReplayControl(source, speed=None)
    records: list[FrameRecord] = []
    session = GatingSession(control, SessionConfig(margin_mm=3.0), SimulatedBeam(), observers=[EachRecord(records.append)])
    session.observers.append(EachFrame(freeze_then_resume))
    try:
        result = run_with_display(session, control=control, window_s=10.0, keep_open=False)
    finally:
        resumed.set()
        if display_pid and not guard_fired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(display_pid[0], signal.SIGCONT)
    assert len(display_pid) == 1, "the display process was not found"
    assert not guard_fired, "the loop waited for the frozen display"
    assert result.summary.frames == n_frames and result.summary.stopped_by == "end of recording"
    assert result.records_dropped > 0  # the pipe really filled while the display was frozen
    # The last frame's record was dropped with the pipe full; it came again with the
    # session's end, so the display drew the final decision.
    assert 1 <= result.frames_drawn and result.frames_drawn + result.frames_not_drawn <= n_frames
    assert [(r.beam, r.reason, r.row_mm) for r in records] == [(r.beam, r.reason, r.row_mm) for r in expected]


def test_losing_the_display_ends_the_session_with_the_beam_held() -> None:
    frames = _synthetic_frames(400)
    source = ListSource(frames, reference_label=_target_mask())
    control = ReplayControl(source, speed=4.0)
    beam = SimulatedBeam()
    session = GatingSession(control, SessionConfig(margin_mm=30.0), beam)  # wide margin: beam on

    def kill_display(session: object, frame: Frame, record: FrameRecord) -> None:
        if record.frame == 20:
            assert record.beam == "on"
            for child in multiprocessing.active_children():
                if child.name == "maestro-display":
                    child.kill()

    session.observers.append(EachFrame(kill_display))
    result = run_with_display(session, control=control, keep_open=False)
    assert 20 < result.summary.frames < 400
    assert result.summary.stopped_by == "display lost"
    assert beam.commanded is BeamState.HOLD
    assert not [c for c in multiprocessing.active_children() if c.name == "maestro-display"]


def test_a_session_that_cannot_start_closes_the_display_and_raises() -> None:
    frames = _synthetic_frames(5)
    source = ListSource(frames, reference_label=np.zeros(SHAPE, bool))  # no target
    control = ReplayControl(source, speed=None)
    session = GatingSession(control, SessionConfig(), SimulatedBeam())
    with pytest.raises(InputError):
        run_with_display(session, control=control)  # keep_open: must close anyway
    assert not [c for c in multiprocessing.active_children() if c.name == "maestro-display"]
