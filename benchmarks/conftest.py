"""Shared set-up of the benchmark suite: options, the figure recorder, phantom workloads.

Run with ``python -m pytest benchmarks/`` (or ``maestro bench``, which adds the table,
``bench.json`` and the baseline comparison). ``python -m pytest`` alone never collects
this folder (``testpaths = ["tests"]``).

Options
-------
--bench-quick        short pass (fewer repetitions, shorter replay, no cold start)
--bench-ci           absolute budgets only reported; ratio budgets still enforced
--bench-out PATH     write every figure to PATH (JSON) at the end of the session
--bench-no-baseline  do not compare against benchmarks/baseline.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import pytest

from maestro import bench

from . import workload

#: OpenCV's own default thread count, read before any benchmark changes it.
CV2_DEFAULT_THREADS = cv2.getNumThreads()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("maestro benchmarks")
    group.addoption("--bench-quick", action="store_true", help="short pass for CI")
    group.addoption("--bench-ci", action="store_true",
                    help="report absolute budgets without enforcing them")
    group.addoption("--bench-out", default=None, metavar="PATH", help="write figures to PATH")
    group.addoption("--bench-no-baseline", action="store_true",
                    help="skip the regression check against benchmarks/baseline.json")


class Figures:
    """Collects the figures of a session and judges them as they arrive."""

    def __init__(self, config: pytest.Config) -> None:
        self.values: dict[str, float | None] = {}
        #: Whether kernel and OpenCV found the same integer peak, per kernel case.
        self.peaks: dict[str, bool] = {}
        self.ci = bool(config.getoption("--bench-ci"))
        self.baseline = {} if config.getoption("--bench-no-baseline") else bench.load_baseline()

    def record(self, **figures: float | None) -> None:
        for name, value in figures.items():
            if value is not None:
                value = float(value)
                if not math.isfinite(value):
                    value = None
            self.values[name] = value

    def check(self, *names: str) -> None:
        """Fail the calling benchmark when one of ``names`` misses its budget or regressed."""
        problems = [
            msg for n in names if (msg := bench.check_budget(n, self.values.get(n), self.ci))
        ]
        subset = {n: self.values.get(n) for n in names}
        problems += [r.message() for r in bench.compare_baseline(subset, self.baseline)]
        if problems:
            pytest.fail("; ".join(problems), pytrace=False)


_FIGURES: Figures | None = None


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Figures:
    global _FIGURES
    _FIGURES = Figures(request.config)
    return _FIGURES


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--bench-quick"))


@pytest.fixture(scope="session")
def phantom_8fps() -> workload.Workload:
    """60 s of the 8 fps MRIdian geometry (144 x 144, 2.4 mm) with a 3 cm lesion."""
    return workload.phantom_workload("mridian-8fps")


@pytest.fixture(scope="session")
def phantom_4fps() -> workload.Workload:
    """60 s of the 4 fps MRIdian geometry (100 x 100, 3.5 mm) with a 3 cm lesion."""
    return workload.phantom_workload("mridian-4fps")


@pytest.fixture(autouse=True)
def _restore_opencv_threads() -> object:
    yield
    cv2.setNumThreads(CV2_DEFAULT_THREADS)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = session.config.getoption("--bench-out")
    if out and _FIGURES is not None:
        Path(out).write_text(json.dumps({"figures": _FIGURES.values}, indent=2), encoding="utf-8")

