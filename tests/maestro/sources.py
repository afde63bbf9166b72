"""In-memory frame sources for driving the loop in tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from hardware import Frame


def blob_image(shape: tuple[int, int], centre_px: tuple[float, float], seed: int = 0) -> np.ndarray:
    """A textured background with a bright Gaussian blob: something trackable."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    texture = rng.normal(0.0, 1.0, size=(8, 8))
    from scipy.ndimage import zoom

    background = zoom(texture, (shape[0] / 8, shape[1] / 8), order=3)[: shape[0], : shape[1]]
    blob = np.exp(-(((rows - centre_px[0]) ** 2 + (cols - centre_px[1]) ** 2) / (2 * 4.0**2)))
    return (100.0 + 10.0 * background + 80.0 * blob).astype(np.float32)


class ListSource:
    """A FrameSource over prepared frames; ``faults`` maps frame index to a fault text."""

    def __init__(self, frames: list[Frame], reference_label: np.ndarray | None = None, faults: dict[int, str] | None = None) -> None:
        self._frames = frames
        self._label = reference_label
        self._faults = faults or {}
        self._fault: str | None = None
        self.description = f"{len(frames)} frames in memory"
        self.frame_period_s = 0.125
        self.closed = False

    @property
    def reference_label(self) -> np.ndarray | None:
        return self._label

    @property
    def fault(self) -> str | None:
        return self._fault

    def __iter__(self) -> Iterator[Frame]:
        for f in self._frames:
            self._fault = self._faults.get(f.index)
            yield Frame(f.index, f.t_acq_s, time.perf_counter(), f.pixels, f.spacing_mm, f.label)

    def close(self) -> None:
        self.closed = True


def moving_blob_frames(n: int, shape: tuple[int, int] = (96, 96), amplitude_px: float = 3.0, spacing_mm: float = 2.4) -> list[Frame]:
    """Frames of a blob moving along rows by up to ``amplitude_px``; texture moves with it."""
    frames = []
    base = blob_image(shape, (shape[0] / 2, shape[1] / 2))
    from scipy.ndimage import shift

    for i in range(n):
        d = amplitude_px * np.sin(2 * np.pi * i / 16)
        img = shift(base, (d, 0.0), order=3, mode="nearest").astype(np.float32)
        frames.append(Frame(i, i * 0.125, 0.0, img, (spacing_mm, spacing_mm), None))
    return frames


def centre_mask(shape: tuple[int, int], radius_px: float = 5.0) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rows - shape[0] / 2) ** 2 + (cols - shape[1] / 2) ** 2 <= radius_px**2
