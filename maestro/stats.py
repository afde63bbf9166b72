"""Summary statistics of a stream of values in constant memory.

A session of 100,000 frames must not grow its memory with the frame count, so the
per-frame latencies and errors that the summary quotes are binned as they arrive into a
fixed histogram: mean, max and count are exact, percentiles are exact to one bin.
"""

from __future__ import annotations

import math

import numpy as np


class StreamingHistogram:
    """Fixed-memory distribution of non-negative values.

    Parameters
    ----------
    bin_width : float
        Resolution of the percentiles, in the values' unit (e.g. 1 µs, 0.01 mm).
    max_value : float
        Values at or above this fall in an overflow bin; a percentile that lands there
        reads as the exact ``max`` (an overstatement, never an understatement).
    """

    def __init__(self, bin_width: float, max_value: float) -> None:
        if not (bin_width > 0 and max_value > bin_width):
            raise ValueError("need 0 < bin_width < max_value")
        self.bin_width = bin_width
        self.n_bins = int(math.ceil(max_value / bin_width)) + 1
        self._counts = np.zeros(self.n_bins, dtype=np.int64)
        self.n = 0
        self._sum = 0.0
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Count one value; NaN and negative values are ignored."""
        if not value >= 0.0:  # also rejects NaN
            return
        i = int(value / self.bin_width)
        self._counts[i if i < self.n_bins else self.n_bins - 1] += 1
        self.n += 1
        self._sum += value
        if value > self.max:
            self.max = value

    @property
    def mean(self) -> float:
        return self._sum / self.n if self.n else math.nan

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100), as the centre of the bin that holds it."""
        if self.n == 0:
            return math.nan
        rank = q / 100.0 * (self.n - 1)
        i = int(np.searchsorted(np.cumsum(self._counts), rank, side="right"))
        if i >= self.n_bins - 1:
            return self.max  # the overflow bin: quote the exact max, never less
        return min((i + 0.5) * self.bin_width, self.max)

    def summary(self, percentiles: dict[str, float]) -> dict[str, float]:
        """``{"mean", <names>, "max", "n"}``, or ``{}`` when nothing was counted."""
        if self.n == 0:
            return {}
        out = {"mean": self.mean}
        out.update({name: self.percentile(q) for name, q in percentiles.items()})
        out["max"] = self.max
        out["n"] = self.n
        return out
