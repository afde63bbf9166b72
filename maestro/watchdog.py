"""A watchdog that holds the beam when no frame has been decided for too long.

It runs in its own thread so that it fires even when no frame arrives at all — a
stalled socket, a source stuck in a read, or a loop stuck in a computation. The loop
``kick``s it after each decision; if the time since the last kick exceeds the timeout,
the watchdog calls ``on_fire`` once (to hold the beam) and waits for the next kick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Watchdog:
    """Calls ``on_fire(silence_s)`` once when ``timeout_s`` passes without a ``kick``.

    Parameters
    ----------
    timeout_s : float
        Silence after which the watchdog fires (s).
    on_fire : callable
        Called from the watchdog thread with the silence so far (s); must be quick and
        thread-safe (the session holds the beam under its lock).
    poll_s : float, optional
        How often the thread looks (s); defaults to a quarter of the timeout, so the
        watchdog fires at most 25 % late.
    clock : callable, optional
        Monotonic clock in s.
    """

    def __init__(
        self,
        timeout_s: float,
        on_fire: Callable[[float], None],
        poll_s: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        self.timeout_s = timeout_s
        self.poll_s = poll_s if poll_s is not None else timeout_s / 4.0
        self._on_fire = on_fire
        self._clock = clock
        self._last_kick = clock()
        self._fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maestro-watchdog", daemon=True)
        self.n_fired = 0

    def start(self) -> None:
        self._last_kick = self._clock()
        self._thread.start()

    def kick(self) -> None:
        """Reset the timer: a frame has just been decided."""
        self._last_kick = self._clock()
        self._fired = False

    @property
    def fired(self) -> bool:
        """True from the moment the watchdog fires until the next kick."""
        return self._fired

    def stop(self) -> None:
        """Stop the thread and wait for it; idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            silence_s = self._clock() - self._last_kick
            if silence_s > self.timeout_s and not self._fired:
                self._fired = True
                self.n_fired += 1
                try:
                    self._on_fire(silence_s)
                except Exception:  # a watchdog must outlive its callback's faults
                    log.exception("watchdog callback failed")
