"""A clock that moves only when told, for deterministic pacing and offline simulation.

Everything in :mod:`hardware` that waits or stamps times takes a ``clock`` (returning
seconds) and a ``sleep`` (taking seconds) as arguments, defaulting to
``time.perf_counter`` and ``time.sleep``. :class:`ManualClock` provides both so that a
replay can be paced, and a simulated beam timed, without real waiting: a test can then
assert exact hand-over times, and a simulation can run faster than real time while every
component still agrees on "now".
"""

from __future__ import annotations

import math


class ManualClock:
    """A monotonic clock advanced only by :meth:`sleep` and :meth:`advance`.

    Call the instance to read it, like ``time.perf_counter``; pass its :meth:`sleep`
    where ``time.sleep`` would go.

    Parameters
    ----------
    start_s : float
        The time the clock reads before it is first advanced (s).

    Attributes
    ----------
    sleeps_s : list of float
        Every duration passed to :meth:`sleep`, in call order (s).
    """

    def __init__(self, start_s: float = 0.0) -> None:
        if not math.isfinite(start_s):
            raise ValueError(f"start_s must be finite, got {start_s!r}")
        self._now_s = float(start_s)
        self.sleeps_s: list[float] = []

    def __call__(self) -> float:
        """The current time (s)."""
        return self._now_s

    def advance(self, duration_s: float) -> None:
        """Move the clock forward by ``duration_s`` (finite, >= 0 s)."""
        if not (math.isfinite(duration_s) and duration_s >= 0.0):
            raise ValueError(f"duration_s must be finite and >= 0, got {duration_s!r}")
        self._now_s += float(duration_s)

    def sleep(self, duration_s: float) -> None:
        """Record a sleep and advance the clock by it, as ``time.sleep`` would in real time.

        Like ``time.sleep``, a negative duration is refused.
        """
        self.advance(duration_s)
        self.sleeps_s.append(float(duration_s))
