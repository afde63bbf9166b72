"""ReplaySource: format detection, frames handed over, pacing, and closing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from hardware.clock import ManualClock
from hardware.errors import InputError
from hardware.frame import Frame, FrameSource
from hardware.replay import DICOM, TRACKRAD, ReplaySource, detect_format
from hardware.trackrad import write_case
from tests.hardware.synthetic import dicom_time, index_frames, write_dicom_series

EXAMPLE = ("trackrad-example", "Z_001")


@pytest.fixture()
def example(shared_data: Path) -> Path:
    return shared_data.joinpath(*EXAMPLE)


def _synthetic_case(folder: Path, n: int = 6, fps: float = 8.0, first_label: bool = True) -> Path:
    frames = index_frames(n, shape=(8, 10))
    labels = np.zeros(frames.shape, np.uint8)
    for i in range(n):
        labels[i, 2:5, i % 10] = 1
    write_case(folder, "S_1", frames, labels, spacing_mm=(2.4, 2.4), fps=fps)
    if not first_label:
        (folder / "targets" / "S_1_first_label.mha").unlink()
    return folder


def _irregular_series(folder: Path) -> tuple[Path, list[float]]:
    """Four DICOM frames acquired at irregular times (s from the first)."""
    offsets = [0.0, 0.2, 0.5, 0.6]
    write_dicom_series(folder, index_frames(4), times=[dicom_time(3600.0 + t) for t in offsets])
    return folder, offsets


# -- detection ----------------------------------------------------------------------------
def test_detect_formats(example: Path, shared_data: Path) -> None:
    assert detect_format(example) == TRACKRAD
    assert detect_format(shared_data / "cine" / "liver-3T-volunteer-KS81") == DICOM


def test_detect_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        detect_format(tmp_path / "nope")
    (tmp_path / "file.dcm").write_bytes(b"x")
    with pytest.raises(InputError, match="is a file"):
        detect_format(tmp_path / "file.dcm")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        detect_format(empty)
    only_docs = tmp_path / "docs"
    (only_docs / "sub").mkdir(parents=True)
    (only_docs / "README.md").write_text("x")
    with pytest.raises(InputError, match="neither"):
        detect_format(only_docs)


def test_images_folder_gets_a_hint(tmp_path: Path) -> None:
    case = _synthetic_case(tmp_path / "S_1")
    with pytest.raises(InputError) as info:
        ReplaySource(case / "images")
    assert "case folder" in info.value.rule


def test_unrecognised_files_are_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "frame.png").write_bytes(b"\x89PNG" + bytes(300))
    with pytest.raises(InputError) as info:
        ReplaySource(tmp_path, fps=8.0)
    assert info.value.path == str(tmp_path / "frame.png")


# -- TrackRAD -----------------------------------------------------------------------------
def test_trackrad_example(example: Path) -> None:
    clock = ManualClock(100.0)
    source = ReplaySource(example, clock=clock, sleep=clock.sleep)
    assert isinstance(source, FrameSource)
    assert source.format == TRACKRAD and source.n_frames == 10 and source.shape == (125, 125)
    assert source.spacing_mm == (1.0, 1.0) and source.frame_period_s == 0.125 and source.has_labels
    assert source.fault is None
    for text in ("TrackRAD2025", "Z_001", "10 frames", "125x125", "1.000x1.000 mm", "8.000 frames/s", str(example)):
        assert text in source.description
    ref = source.reference_label
    assert ref is not None and ref.dtype == np.bool_ and ref.any()
    frames = []
    for frame in source:
        clock.advance(0.01)  # the consumer's work
        frames.append(frame)
    assert [f.index for f in frames] == list(range(10))
    assert [f.t_acq_s for f in frames] == [i / 8.0 for i in range(10)]
    # As fast as possible: stamped on hand-over, no sleeping.
    assert [f.t_recv_s for f in frames] == pytest.approx([100.0 + 0.01 * i for i in range(10)])
    assert clock.sleeps_s == []
    np.testing.assert_array_equal(frames[0].label, ref)
    assert source.exhausted and source.fault is None


def test_frames_are_read_only_float32_contiguous(example: Path) -> None:
    for frame in ReplaySource(example):
        assert isinstance(frame, Frame)
        assert frame.pixels.dtype == np.float32 and frame.pixels.flags.c_contiguous
        assert not frame.pixels.flags.writeable
        assert frame.label is not None and frame.label.dtype == np.bool_ and not frame.label.flags.writeable
        with pytest.raises(ValueError):
            frame.pixels[0, 0] = 1.0


def test_reference_falls_back_to_frame_zero_label(tmp_path: Path) -> None:
    source = ReplaySource(_synthetic_case(tmp_path / "S_1", first_label=False))
    ref = source.reference_label
    assert ref is not None
    np.testing.assert_array_equal(ref, next(iter(source)).label)
    assert "labels on every frame" in source.description


def test_fps_argument_overrides_trackrad_rate(tmp_path: Path) -> None:
    source = ReplaySource(_synthetic_case(tmp_path / "S_1", fps=8.0), fps=4.0)
    assert source.frame_period_s == 0.25
    assert [f.t_acq_s for f in source] == [0.25 * i for i in range(6)]


# -- DICOM --------------------------------------------------------------------------------
def test_dicom_series_with_times(tmp_path: Path) -> None:
    folder, offsets = _irregular_series(tmp_path)
    source = ReplaySource(folder)
    assert source.format == DICOM and not source.has_labels and source.reference_label is None
    assert source.spacing_mm == (2.0, 2.0) and source.shape == (6, 5)
    frames = list(source)
    assert [f.t_acq_s for f in frames] == pytest.approx(offsets)
    assert all(f.label is None for f in frames)
    assert [int(f.pixels[0, 0]) for f in frames] == [1000, 2000, 3000, 4000]
    assert "DICOM series" in source.description and "AcquisitionTime" in source.description


def test_liver_series(shared_data: Path) -> None:
    source = ReplaySource(shared_data / "cine" / "liver-3T-volunteer-KS81")
    assert source.n_frames == 498 and source.shape == (176, 140)
    assert source.frame_period_s == pytest.approx(0.1675, rel=0.01)
    first, second = next(iter(source)), next(iter(source))
    assert (first.index, second.index) == (0, 1)
    assert second.t_acq_s == pytest.approx(0.1675, abs=0.001)


def test_thorax_series_needs_fps_and_spacing(shared_data: Path) -> None:
    folder = shared_data / "cine" / "thorax-ETH-sl010"
    with pytest.raises(InputError, match="--fps"):
        ReplaySource(folder, spacing_mm=(1.0, 1.0))
    source = ReplaySource(folder, fps=4.0, spacing_mm=(1.7, 1.7))
    assert source.n_frames == 200 and source.frame_period_s == 0.25 and source.spacing_mm == (1.7, 1.7)


@pytest.mark.parametrize("fps", [0.0, -8.0, float("nan"), float("inf")])
def test_bad_fps(example: Path, fps: float) -> None:
    with pytest.raises(ValueError, match="fps"):
        ReplaySource(example, fps=fps)


# -- pacing -------------------------------------------------------------------------------
def test_realtime_hands_frames_over_at_recorded_times(tmp_path: Path) -> None:
    folder, offsets = _irregular_series(tmp_path)
    clock = ManualClock(50.0)
    source = ReplaySource(folder, realtime=True, clock=clock, sleep=clock.sleep)
    t_recv = [f.t_recv_s for f in source]
    assert t_recv == pytest.approx([50.0 + t for t in offsets])
    assert clock.sleeps_s == pytest.approx([0.2, 0.3, 0.1])


def test_realtime_late_consumer_gets_frames_late_none_dropped(tmp_path: Path) -> None:
    folder, offsets = _irregular_series(tmp_path)
    clock = ManualClock(0.0)
    source = ReplaySource(folder, realtime=True, clock=clock, sleep=clock.sleep)
    received = []
    for frame in source:
        received.append(frame)
        if frame.index == 1:
            clock.advance(0.45)  # slow work: frame 2 (due at 0.5) is taken at 0.65
    assert [f.index for f in received] == [0, 1, 2, 3]
    assert [f.t_recv_s for f in received] == pytest.approx([0.0, 0.2, 0.65, 0.65])
    assert clock.sleeps_s == pytest.approx([0.2])


def test_realtime_schedule_survives_a_pause_between_loops(tmp_path: Path) -> None:
    """Resuming iteration keeps the schedule anchored at the first frame taken."""
    folder, offsets = _irregular_series(tmp_path)
    clock = ManualClock(10.0)
    source = ReplaySource(folder, realtime=True, clock=clock, sleep=clock.sleep)
    for _frame in source:
        break
    clock.advance(0.1)
    rest = list(source)
    assert [f.index for f in rest] == [1, 2, 3]
    assert [f.t_recv_s for f in rest] == pytest.approx([10.2, 10.5, 10.6])


def test_realtime_with_the_real_clock(tmp_path: Path) -> None:
    fps = 40.0
    source = ReplaySource(_synthetic_case(tmp_path / "S_1", n=5, fps=fps), realtime=True)
    t_recv = np.array([f.t_recv_s for f in source])
    elapsed = t_recv - t_recv[0]
    expected = np.arange(5) / fps
    assert np.all(elapsed >= expected - 0.002)  # never early
    assert np.all(elapsed < expected + 0.25)  # loose: shared, busy machine
    assert t_recv[-1] <= time.perf_counter()


# -- single pass and closing --------------------------------------------------------------
def test_single_pass_and_resume(example: Path) -> None:
    source = ReplaySource(example)
    it = iter(source)
    assert [next(it).index for _ in range(3)] == [0, 1, 2]
    assert [f.index for f in source] == list(range(3, 10))
    assert list(source) == [] and source.exhausted


def test_close_stops_iteration_and_is_idempotent(example: Path) -> None:
    source = ReplaySource(example)
    it = iter(source)
    next(it)
    source.close()
    source.close()
    assert source.closed
    assert list(it) == [] and list(source) == []
    assert not source.exhausted and source.fault is None


def test_close_during_a_realtime_wait(tmp_path: Path) -> None:
    folder, _ = _irregular_series(tmp_path)
    clock = ManualClock(0.0)
    holder: dict[str, ReplaySource] = {}

    def sleep_then_close(duration_s: float) -> None:
        clock.sleep(duration_s)
        holder["source"].close()  # e.g. operator stop while waiting for the next frame

    source = ReplaySource(folder, realtime=True, clock=clock, sleep=sleep_then_close)
    holder["source"] = source
    assert [f.index for f in source] == [0]


def test_context_manager_closes(example: Path) -> None:
    with ReplaySource(example) as source:
        next(iter(source))
    assert source.closed
