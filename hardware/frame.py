"""The unit of data the gating loop consumes, and the protocol of what delivers it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One 2D cine-MR frame as received.

    Attributes
    ----------
    index : int
        Position of the frame in its series, from 0.
    t_acq_s : float
        Acquisition time in seconds from the start of the series (scanner clock).
    t_recv_s : float
        Receive time in seconds on this host's monotonic clock (``time.perf_counter``),
        stamped when the source handed the frame over.
    pixels : (H, W) float32 ndarray
        Image intensities, row 0 at the top, C-contiguous.
    spacing_mm : tuple of float
        Pixel spacing in mm as (row, col).
    label : (H, W) bool ndarray or None
        Ground-truth (or reference) target mask for this frame, if the recording has one.
    """

    index: int
    t_acq_s: float
    t_recv_s: float
    pixels: np.ndarray
    spacing_mm: tuple[float, float]
    label: np.ndarray | None = None


@runtime_checkable
class FrameSource(Protocol):
    """Something that delivers frames: a replayed recording or a live scanner.

    Attributes
    ----------
    description : str
        Human-readable description of what is being read (path, format, geometry).
    frame_period_s : float
        Nominal time between frames in seconds (1 / frame rate).
    reference_label : (H, W) bool ndarray or None
        The target mask on the first frame, when the recording provides one.
    fault : str or None
        ``None`` while the source is healthy; otherwise a short description of the fault.
        A faulted source yields no further frames until the fault clears.
    """

    description: str
    frame_period_s: float

    @property
    def reference_label(self) -> np.ndarray | None: ...

    @property
    def fault(self) -> str | None: ...

    def __iter__(self) -> Iterator[Frame | None]:
        """Yield frames as they arrive.

        A live source also yields ``None`` as a heartbeat at least once per frame period
        while no frame arrives (stall, disconnect, reconnect in progress), so that its
        consumer never blocks for longer than a frame period; replayed recordings never
        yield ``None``.
        """
        ...

    def close(self) -> None: ...
