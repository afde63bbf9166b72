"""Tests of writing tracked masks in the TrackRAD2025 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hardware import InputError
from hardware.tracked_labels import write_tracked_labels
from hardware.trackrad import read_case, write_case


def _masks(t: int = 4, shape: tuple[int, int] = (12, 10)) -> np.ndarray:
    masks = np.zeros((t, *shape), dtype=bool)
    for k in range(t):
        masks[k, 2 + k : 6 + k, 3:7] = True
    return masks


def test_written_file_has_the_trackrad_label_encoding(tmp_path: Path) -> None:
    masks = _masks()
    path = write_tracked_labels(tmp_path / "pred", "Z_9", masks, (2.0, 1.5))
    assert path == tmp_path / "pred" / "targets" / "Z_9_labels.mha"
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)  # (H, W, T): frame index on ITK's first axis
    assert array.dtype == np.uint8 and array.shape == (12, 10, 4)
    np.testing.assert_array_equal(np.moveaxis(array, -1, 0), masks.astype(np.uint8))
    assert image.GetSpacing()[1:] == (1.5, 2.0)  # (frame, col, row)


def test_labels_read_back_with_the_case_reader(tmp_path: Path) -> None:
    """Written next to a case's frames, the masks are that case's labels."""
    masks = _masks()
    frames = np.full(masks.shape, 100, dtype=np.uint16)
    write_case(tmp_path / "c", "c", frames, None, (1.0, 1.0), 8.0, first_label=masks[0])
    write_tracked_labels(tmp_path / "c", "c", masks.astype(np.uint8), (1.0, 1.0))
    case = read_case(tmp_path / "c")
    assert case.labels is not None
    np.testing.assert_array_equal(case.labels, masks)


@pytest.mark.parametrize(
    ("case_id", "masks", "spacing", "name"),
    [
        ("a b", _masks(), (1.0, 1.0), "case_id"),
        ("", _masks(), (1.0, 1.0), "case_id"),
        ("a", _masks()[0], (1.0, 1.0), "masks"),
        ("a", _masks().astype(np.float32), (1.0, 1.0), "masks"),
        ("a", np.zeros((0, 3, 3), dtype=bool), (1.0, 1.0), "masks"),
        ("a", _masks(), (0.0, 1.0), "spacing_mm"),
        ("a", _masks(), (1.0, float("nan")), "spacing_mm"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, case_id, masks, spacing, name) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: must"):
        write_tracked_labels(tmp_path, case_id, masks, spacing)


def test_unwritable_folder_is_an_input_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="--labels-out"):
        write_tracked_labels(blocker, "a", _masks(), (1.0, 1.0))
