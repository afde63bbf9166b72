"""One protocol for everything that watches a session: display, recordings of tracked
masks, ground truth, validation, benchmarks.

After the beam command of each frame, the session calls ``frame_decided(session, frame,
record)`` on each of its observers, in order. That is off the decision path: nothing the
session decides reads what an observer does. An observer must not block, and must not
modify the frame or the session; it may read the session through :class:`DecidedSession`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from gating.boundary import GatingGeometry
    from hardware.frame import Frame
    from maestro.recording import FrameRecord
    from tracking.tracker import TemplateTracker, TrackResult

__all__ = ["DecidedSession", "EachFrame", "EachRecord", "SessionObserver"]


class DecidedSession(Protocol):
    """What an observer may read of the session, as it stands after a frame's decision."""

    @property
    def tracker(self) -> TemplateTracker | None:
        """The tracker (None before the reference frame)."""
        ...

    @property
    def geometry(self) -> GatingGeometry | None:
        """The gating boundary (None before the reference frame)."""
        ...

    @property
    def last_track(self) -> TrackResult | None:
        """The tracker's result for the frame (None when it could not be tracked at all)."""
        ...

    @property
    def last_affine(self) -> np.ndarray | None:
        """Deformable mode: the frame's affine, reference px -> frame px (None when the
        frame was not registered, and in the rigid mode)."""
        ...


class SessionObserver(Protocol):
    """Told of every frame the session decides, after its beam command."""

    def frame_decided(self, session: DecidedSession, frame: Frame, record: FrameRecord) -> None:
        """One frame decided: ``record`` is what the session decided for ``frame``."""
        ...


class EachRecord:
    """An observer that passes each frame's record to ``callback`` (e.g. ``list.append``).

    Parameters
    ----------
    callback : callable
        Called as ``callback(record)``; must not block.
    """

    def __init__(self, callback: Callable[[FrameRecord], object]) -> None:
        self.callback = callback

    def frame_decided(self, session: DecidedSession, frame: Frame, record: FrameRecord) -> None:
        self.callback(record)


class EachFrame:
    """An observer that calls ``callback(session, frame, record)`` for each frame: a
    function in the place of an observer object.

    Parameters
    ----------
    callback : callable
        Called with :meth:`SessionObserver.frame_decided`'s arguments; must not block.
    """

    def __init__(self, callback: Callable[[DecidedSession, Frame, FrameRecord], object]) -> None:
        self.callback = callback

    def frame_decided(self, session: DecidedSession, frame: Frame, record: FrameRecord) -> None:
        self.callback(session, frame, record)
