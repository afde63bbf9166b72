"""TrackRAD2025 case folders: the example case, round trips, and every refusal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hardware.errors import InputError
from hardware.trackrad import read_case, write_case
from tests.hardware.synthetic import truncate, writable_copy

EXAMPLE = ("trackrad-example", "Z_001")


@pytest.fixture()
def example(shared_data: Path) -> Path:
    return shared_data.joinpath(*EXAMPLE)


@pytest.fixture()
def example_copy(example: Path, tmp_path: Path) -> Path:
    return writable_copy(example, tmp_path / "Z_001")


def _random_case(seed: int, n: int = 4, shape: tuple[int, int] = (9, 7)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 4096, size=(n, *shape), dtype=np.uint16)
    labels = (rng.random((n, *shape)) < 0.3).astype(np.uint8)
    labels[:, 4, 3] = 1  # every frame, frame 0 in particular, shows the target
    return frames, labels


# -- the example case ---------------------------------------------------------------------
def test_example_case(example: Path) -> None:
    case = read_case(example)
    assert case.case_id == "Z_001"
    assert case.frames.shape == (10, 125, 125)
    assert case.frames.dtype == np.float32 and case.frames.flags.c_contiguous
    assert case.labels is not None and case.labels.shape == (10, 125, 125) and case.labels.dtype == np.bool_
    assert case.first_label is not None and case.first_label.shape == (125, 125)
    np.testing.assert_array_equal(case.first_label, case.labels[0])
    assert case.spacing_mm == (1.0, 1.0)
    assert case.fps == 8.0
    assert case.field_strength_T == 0.35
    assert case.region == "abdomen"
    np.testing.assert_allclose(case.times_s, np.arange(10) / 8.0)
    assert set(case.paths) == {"frames", "labels", "first_label", "frame_rate", "field_strength", "region"}


def test_example_axis_convention(example: Path) -> None:
    """Frame t is ITK's first index: array[..., t] of GetArrayFromImage (H, W, T)."""
    case = read_case(example)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(example / "images" / "Z_001_frames.mha")))
    assert raw.shape == (125, 125, 10)
    for t in (0, 4, 9):
        np.testing.assert_array_equal(case.frames[t], raw[:, :, t].astype(np.float32))
    # The disk moves between frames: frames are not all the same image.
    assert not np.array_equal(case.labels[0], case.labels[3])


# -- round trips --------------------------------------------------------------------------
def test_round_trip_with_labels(tmp_path: Path) -> None:
    frames, labels = _random_case(seed=1)
    folder = write_case(tmp_path / "P_7", "P_7", frames, labels, spacing_mm=(2.4, 3.5), fps=4.0,
                        field_strength_T=1.5, region="thorax")
    case = read_case(folder)
    assert case.case_id == "P_7"
    np.testing.assert_array_equal(case.frames, frames.astype(np.float32))
    np.testing.assert_array_equal(case.labels, labels.astype(bool))
    np.testing.assert_array_equal(case.first_label, labels[0].astype(bool))
    assert case.spacing_mm == (2.4, 3.5)
    assert case.fps == 4.0 and case.field_strength_T == 1.5 and case.region == "thorax"


def test_written_layout_matches_the_data_set(tmp_path: Path) -> None:
    """Compressed .mha; ITK size (T, W, H); spacing (frame axis, col, row); uint16/uint8."""
    frames, labels = _random_case(seed=2, n=3, shape=(5, 8))
    folder = write_case(tmp_path / "c", "c", frames, labels, spacing_mm=(2.0, 3.0), fps=8.0)
    image = sitk.ReadImage(str(folder / "images" / "c_frames.mha"))
    assert image.GetSize() == (3, 8, 5)
    assert image.GetSpacing()[1:] == (3.0, 2.0)
    assert image.GetPixelID() == sitk.sitkUInt16
    first = sitk.ReadImage(str(folder / "targets" / "c_first_label.mha"))
    assert first.GetSize() == (1, 8, 5) and first.GetPixelID() == sitk.sitkUInt8
    for name in ("images/c_frames.mha", "targets/c_labels.mha", "targets/c_first_label.mha"):
        header = (folder / name).read_bytes()[:400]
        assert b"CompressedData = True" in header, name
    assert json.loads((folder / "frame-rate.json").read_text()) == 8.0
    assert json.loads((folder / "b-field-strength.json").read_text()) == 0.35
    assert json.loads((folder / "scanned-region.json").read_text()) == "abdomen"


def test_round_trip_first_label_only(tmp_path: Path) -> None:
    """The challenge's test layout: frames and the first label, later labels withheld."""
    frames, labels = _random_case(seed=3)
    folder = write_case(tmp_path / "t", "t", frames, None, spacing_mm=(1.0, 1.0), fps=8.0, first_label=labels[0])
    case = read_case(folder)
    assert case.labels is None
    np.testing.assert_array_equal(case.first_label, labels[0].astype(bool))


def test_round_trip_without_labels(tmp_path: Path) -> None:
    frames, _ = _random_case(seed=4)
    folder = write_case(tmp_path / "u", "u", frames, None, spacing_mm=(1.0, 1.0), fps=8.0)
    case = read_case(folder)
    assert case.labels is None and case.first_label is None
    assert not (folder / "targets").exists()


def test_rewrite_without_labels_removes_stale_labels(tmp_path: Path) -> None:
    frames, labels = _random_case(seed=5)
    folder = write_case(tmp_path / "v", "v", frames, labels, spacing_mm=(1.0, 1.0), fps=8.0)
    write_case(folder, "v", frames, None, spacing_mm=(1.0, 1.0), fps=8.0)
    case = read_case(folder)
    assert case.labels is None and case.first_label is None


def test_write_refuses_a_folder_of_another_case(tmp_path: Path) -> None:
    frames, labels = _random_case(seed=6)
    folder = write_case(tmp_path / "w", "w1", frames, labels, spacing_mm=(1.0, 1.0), fps=8.0)
    with pytest.raises(InputError) as info:
        write_case(folder, "w2", frames, labels, spacing_mm=(1.0, 1.0), fps=8.0)
    assert "w1_frames.mha" in info.value.rule


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"frames": np.zeros((2, 3, 3), np.float32)}, "frames"),
        ({"frames": np.zeros((3, 3), np.uint16)}, "frames"),
        ({"labels": np.ones((2, 3, 4), np.uint8)}, "labels"),
        ({"labels": np.ones((2, 3, 3), np.float32)}, "labels"),
        ({"labels": np.zeros((2, 3, 3), np.uint8)}, "empty"),
        ({"first_label": np.zeros((3, 3), np.uint8)}, "first_label"),
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"spacing_mm": (1.0, -1.0)}, "spacing_mm"),
        ({"spacing_mm": (1.0,)}, "spacing_mm"),
        ({"case_id": "a/b"}, "case_id"),
        ({"case_id": ""}, "case_id"),
        ({"field_strength_T": float("inf")}, "field_strength_T"),
        ({"region": " "}, "region"),
    ],
)
def test_write_refuses_bad_arguments(tmp_path: Path, change: dict, message: str) -> None:
    args = {
        "case_id": "x",
        "frames": np.ones((2, 3, 3), np.uint16),
        "labels": np.ones((2, 3, 3), np.uint8),
        "spacing_mm": (1.0, 1.0),
        "fps": 8.0,
        "field_strength_T": 0.35,
        "region": "abdomen",
    } | change
    first_label = args.pop("first_label", None)
    with pytest.raises(ValueError, match=message):
        write_case(tmp_path / "x", first_label=first_label, **args)


# -- overrides ----------------------------------------------------------------------------
def test_fps_argument_overrides_the_file_with_a_warning(example: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hardware.trackrad"):
        case = read_case(example, fps=4.0)
    assert case.fps == 4.0
    assert "8 frames/s" in caplog.text


def test_spacing_argument_overrides_the_file(example: Path) -> None:
    assert read_case(example, spacing_mm=(2.0, 2.5)).spacing_mm == (2.0, 2.5)


def test_missing_frame_rate_needs_fps(example_copy: Path) -> None:
    (example_copy / "frame-rate.json").unlink()
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path.endswith("frame-rate.json") and "--fps" in info.value.rule
    assert read_case(example_copy, fps=6.0).fps == 6.0


def test_optional_side_files_may_be_absent(example_copy: Path) -> None:
    (example_copy / "b-field-strength.json").unlink()
    (example_copy / "scanned-region.json").unlink()
    case = read_case(example_copy)
    assert case.field_strength_T is None and case.region is None


@pytest.mark.parametrize("fps", [-1.0, 0.0, float("inf"), float("nan"), True])
def test_bad_fps_argument(example: Path, fps: float) -> None:
    with pytest.raises(ValueError, match="fps"):
        read_case(example, fps=fps)


@pytest.mark.parametrize("spacing", [(0.0, 1.0), (1.0, float("nan")), (1.0, 1.0, 1.0)])
def test_bad_spacing_argument(example: Path, spacing: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="spacing_mm"):
        read_case(example, spacing_mm=spacing)


# -- refusals -----------------------------------------------------------------------------
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        read_case(tmp_path / "nope")
    assert info.value.path == str(tmp_path / "nope") and "does not exist" in info.value.rule


def test_no_images_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        read_case(tmp_path)
    assert info.value.field == "images folder"


def test_no_frames_file(example_copy: Path) -> None:
    (example_copy / "images" / "Z_001_frames.mha").unlink()
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.field == "images/*.mha" and "no frames file" in info.value.rule


def test_ambiguous_frames_files(example_copy: Path) -> None:
    images = example_copy / "images"
    (images / "a.mha").write_bytes((images / "Z_001_frames.mha").read_bytes())
    (images / "Z_002_frames.mha").write_bytes((images / "Z_001_frames.mha").read_bytes())
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert "ambiguous" in info.value.rule and "Z_002_frames.mha" in info.value.rule


def test_stray_mha_beside_the_named_frames_file_is_tolerated(example_copy: Path) -> None:
    images = example_copy / "images"
    (images / "notes.mha").write_bytes((images / "Z_001_frames.mha").read_bytes())
    assert read_case(example_copy).case_id == "Z_001"


@pytest.mark.parametrize("n_bytes", [0, 150, 400, 5000, -1])
def test_truncated_frames_file(example_copy: Path, n_bytes: int, capfd: pytest.CaptureFixture[str]) -> None:
    path = truncate(example_copy / "images" / "Z_001_frames.mha", n_bytes)
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path == str(path) and "truncated" in info.value.rule
    # ITK's MetaIO prints its diagnosis on fd 2; it goes into the message, not the terminal.
    assert capfd.readouterr().err == ""


def test_truncated_labels_file(example_copy: Path) -> None:
    path = truncate(example_copy / "targets" / "Z_001_labels.mha", -20)
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    # Refused from its header, before ITK reads it: the compressed data is shorter than it says.
    assert info.value.path == str(path) and info.value.field == "CompressedDataSize"
    assert "truncated" in info.value.rule


def _write_raw(path: Path, array: np.ndarray) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), useCompression=True)


def test_labels_shape_mismatch(example_copy: Path) -> None:
    path = example_copy / "targets" / "Z_001_labels.mha"
    _write_raw(path, np.ones((125, 125, 9), np.uint8))  # one frame short
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path == str(path) and "does not match" in info.value.rule
    assert "(9, 125, 125)" in info.value.rule and "(10, 125, 125)" in info.value.rule


def test_first_label_shape_mismatch(example_copy: Path) -> None:
    path = example_copy / "targets" / "Z_001_first_label.mha"
    _write_raw(path, np.ones((125, 124, 1), np.uint8))
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path == str(path) and info.value.field == "first label"


def test_float_labels_refused(example_copy: Path) -> None:
    path = example_copy / "targets" / "Z_001_labels.mha"
    _write_raw(path, np.ones((125, 125, 10), np.float32))
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path == str(path) and info.value.field == "ElementType"


def test_empty_first_label(example_copy: Path) -> None:
    path = example_copy / "targets" / "Z_001_first_label.mha"
    _write_raw(path, np.zeros((125, 125, 1), np.uint8))
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path == str(path) and "empty" in info.value.rule


def test_non_3d_image(example_copy: Path) -> None:
    path = example_copy / "images" / "Z_001_frames.mha"
    _write_raw(path, np.ones((125, 125), np.uint16))
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path == str(path) and info.value.field == "NDims"


def test_labels_of_another_case(example_copy: Path) -> None:
    targets = example_copy / "targets"
    (targets / "Z_001_labels.mha").rename(targets / "Z_009_labels.mha")
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path.endswith("Z_009_labels.mha") and "Z_001" in info.value.rule


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("frame-rate.json", "eight", "frame rate"),
        ("frame-rate.json", "-8", "frame rate"),
        ("frame-rate.json", "0", "frame rate"),
        ("frame-rate.json", '"8.0"', "frame rate"),
        ("frame-rate.json", "true", "frame rate"),
        ("frame-rate.json", "[8.0]", "frame rate"),
        ("b-field-strength.json", "{}", "field strength"),
        ("scanned-region.json", "3", "scanned region"),
        ("scanned-region.json", '""', "scanned region"),
    ],
)
def test_invalid_side_files(example_copy: Path, name: str, text: str, field: str) -> None:
    (example_copy / name).write_text(text)
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert info.value.path == str(example_copy / name) and info.value.field == field


def test_input_error_message_names_file_field_rule(example_copy: Path) -> None:
    (example_copy / "frame-rate.json").write_text("-1")
    with pytest.raises(InputError) as info:
        read_case(example_copy)
    assert str(info.value) == f"{example_copy / 'frame-rate.json'}: frame rate: -1: must be one finite number > 0"
