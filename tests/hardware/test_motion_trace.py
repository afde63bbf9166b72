"""Tests of the KIM trajectory reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardware import InputError
from hardware.motion_trace import MotionTrace, find_trace_files, read_kim_trace

KIM = "motion/kim-liver"


def _write(tmp_path: Path, text: str, name: str = "LiverTraj_Test_robot.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_hand_written_file_maps_columns_to_axes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "0 0.1 0.2 0.3 0 0 0\n"
        "0.2 1.5 -2.5 3.5 0 0 0\n"
        "\n"
        "# a comment line\n"
        "0.4 -1 -4 2 0 0 0\n",
    )
    trace = read_kim_trace(path)
    assert isinstance(trace, MotionTrace)
    np.testing.assert_array_equal(trace.times_s, [0.0, 0.2, 0.4])
    np.testing.assert_array_equal(trace.lr_mm, [0.1, 1.5, -1.0])  # column 2
    np.testing.assert_array_equal(trace.si_mm, [0.2, -2.5, -4.0])  # column 3
    np.testing.assert_array_equal(trace.ap_mm, [0.3, 3.5, 2.0])  # column 4
    assert trace.duration_s == pytest.approx(0.4)
    assert trace.sample_period_s == pytest.approx(0.2)
    assert trace.name == "Test"
    assert trace.source == str(path)
    for array in (trace.times_s, trace.si_mm, trace.ap_mm, trace.lr_mm):
        assert not array.flags.writeable


@pytest.mark.parametrize(
    ("text", "field", "rule"),
    [
        ("0 1 2 3 0 0\n0.2 1 2 3 0 0 0\n", "line 1", "7 columns"),
        ("0 1 2 3 0 0 0\n0.2 1 x 3 0 0 0\n", "line 2", "number"),
        ("0 1 2 3 0 0 0\n0.2 1 nan 3 0 0 0\n", "line 2", "finite"),
        ("0 1 2 3 0 0 0\n0.2 1 inf 3 0 0 0\n", "line 2", "finite"),
        ("0 1 2 3 0 0 0\n0.2 1 900 3 0 0 0\n", "line 2", "within"),
        ("0 1 2 3 0 0 0\n", "rows", "at least 2"),
        ("", "rows", "at least 2"),
        ("0 1 2 3 0 0 0\n0 1 2 3 0 0 0\n", "time", "increase strictly"),
        ("0.4 1 2 3 0 0 0\n0.2 1 2 3 0 0 0\n", "time", "increase strictly"),
    ],
)
def test_bad_files_are_refused_naming_the_line_and_rule(
    tmp_path: Path, text: str, field: str, rule: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_kim_trace(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert rule in info.value.rule


def test_missing_folder_and_binary_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_kim_trace(tmp_path / "absent.txt")
    with pytest.raises(InputError, match="is a folder"):
        read_kim_trace(tmp_path)
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(InputError, match="not text"):
        read_kim_trace(binary)


def test_every_kim_liver_trace_reads(shared_data: Path) -> None:
    files = sorted((shared_data / KIM).glob("*.txt"))
    assert len(files) == 9
    for path in files:
        trace = read_kim_trace(path)
        raw = np.loadtxt(path)
        np.testing.assert_array_equal(trace.si_mm, raw[:, 2])
        assert trace.sample_period_s == pytest.approx(0.2)
        assert trace.duration_s >= 200.0
        # SI (column 3) has the largest excursion, except in a breath hold (< 1 mm).
        ptp = [np.ptp(trace.lr_mm), np.ptp(trace.si_mm), np.ptp(trace.ap_mm)]
        assert ptp[1] == max(ptp) or ptp[1] < 1.5, (trace.name, ptp)


def test_find_trace_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--traces: must be a folder"):
        find_trace_files(tmp_path / "absent")
    with pytest.raises(InputError, match="holds no .txt"):
        find_trace_files(tmp_path)
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "c.dat").write_text("x")
    (tmp_path / "d.txt").mkdir()
    assert [p.name for p in find_trace_files(tmp_path)] == ["a.txt", "b.txt"]
