"""A cohort's cases on this machine's process pool, with a progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import TextIO

from maestro.validation.results import CaseResult, failed_case
from maestro.validation.settings import ValidationSettings
from maestro.validation.sweep import run_case_safe


class Progress:
    """A one-line progress bar on a stream: cases done, frames/s, time left."""

    def __init__(self, total: int, stream: TextIO | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total = total
        self.stream = stream
        self.clock = clock
        self.t0 = clock()
        self.done = 0
        self.failed = 0
        self.frames = 0

    def update(self, result: CaseResult) -> None:
        self.done += 1
        self.failed += 0 if result.ok else 1
        self.frames += result.n_frames
        if self.stream is None:
            return
        elapsed = max(self.clock() - self.t0, 1e-9)
        left = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(round(width * self.done / self.total))
        bar = "#" * filled + "." * (width - filled)
        failed = f", {self.failed} failed" if self.failed else ""
        end = "\n" if self.done == self.total else ""
        self.stream.write(
            f"\rvalidate [{bar}] {self.done}/{self.total} cases{failed}, "
            f"{self.frames / elapsed:.0f} frames/s, {left:.0f} s left {end}"
        )
        self.stream.flush()


def run_cohort(
    paths: Sequence[Path],
    settings: ValidationSettings,
    workers: int = 2,
    progress: TextIO | None = sys.stderr,
) -> list[CaseResult]:
    """Validate several recordings in a process pool; results in the order of ``paths``."""
    bar = Progress(len(paths), progress)
    results: dict[int, CaseResult] = {}
    if workers <= 1 or len(paths) == 1:
        for i, p in enumerate(paths):
            results[i] = run_case_safe(p, settings)
            bar.update(results[i])
    else:
        # spawn: a fresh interpreter per worker (no fork of a process holding threads).
        with ProcessPoolExecutor(max_workers=min(workers, len(paths)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_case_safe, p, settings): i for i, p in enumerate(paths)}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                    results[i] = failed_case(paths[i], f"{type(exc).__name__}: {exc}")
                bar.update(results[i])
    return [results[i] for i in range(len(paths))]
