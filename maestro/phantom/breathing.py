"""The breathing model: irregular Lujan-type cycles with a slow drift, drawn from the seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Per-cycle superior-inferior breathing amplitude (peak-to-peak, drift excluded), mm.
CYCLE_AMPLITUDE_RANGE_MM = (8.0, 20.0)
#: Per-cycle breathing period, s.
CYCLE_PERIOD_RANGE_S = (3.5, 5.0)


@dataclass(frozen=True)
class BreathingParameters:
    """The breathing trace used for a session.

    Attributes
    ----------
    n : int
        Lujan shape exponent (the curve is ``sin**(2 n)``); larger means a longer rest at
        exhale and a sharper inhalation peak.
    mean_period_s : float
        Centre of the per-cycle period distribution, s.
    mean_amplitude_mm : float
        Centre of the per-cycle superior-inferior amplitude distribution, mm.
    ap_ratio : float
        Anterior-posterior amplitude as a fraction of the superior-inferior one.
    ap_lag_cycles : float
        Delay of the anterior-posterior curve behind the superior-inferior one, in
        fractions of a cycle (gives the trajectory a hysteresis loop).
    cycle_periods_s : tuple of float
        Period of each cycle, s; cycle 0 starts at t = 0 at end-exhale.
    cycle_amplitudes_mm : tuple of float
        Superior-inferior peak-to-peak amplitude of each cycle, mm.
    drift_amplitudes_mm : tuple of float
        Amplitudes (SI slow, SI faster, AP slow, AP faster) of the drift sinusoids, mm.
    drift_periods_s : tuple of float
        Periods of the same four sinusoids, s.
    drift_phases_rad : tuple of float
        Phases of the same four sinusoids, rad.
    """

    n: int
    mean_period_s: float
    mean_amplitude_mm: float
    ap_ratio: float
    ap_lag_cycles: float
    cycle_periods_s: tuple[float, ...]
    cycle_amplitudes_mm: tuple[float, ...]
    drift_amplitudes_mm: tuple[float, float, float, float]
    drift_periods_s: tuple[float, float, float, float]
    drift_phases_rad: tuple[float, float, float, float]

    @property
    def duration_s(self) -> float:
        """Time covered by the drawn cycles, s."""
        return float(sum(self.cycle_periods_s))


# Bounds that the lesion placement relies on: the largest displacement any session can
# have (cycle amplitude bound + drift bound, and the AP share of it).
_AP_RATIO_RANGE = (0.3, 0.5)
_DRIFT_SI_AMPLITUDES_MM = ((0.5, 1.5), (0.2, 0.6))
_DRIFT_AP_AMPLITUDES_MM = ((0.25, 0.75), (0.1, 0.3))
# Each drift sinusoid is offset to start at 0, so it spans at most twice its amplitude.
SI_BOUND_MM = CYCLE_AMPLITUDE_RANGE_MM[1] + 2.0 * sum(hi for _, hi in _DRIFT_SI_AMPLITUDES_MM)
AP_BOUND_MM = _AP_RATIO_RANGE[1] * CYCLE_AMPLITUDE_RANGE_MM[1] + 2.0 * sum(
    hi for _, hi in _DRIFT_AP_AMPLITUDES_MM
)


def draw_breathing(rng: np.random.Generator, seconds: float) -> BreathingParameters:
    """Draw a breathing trace covering at least ``seconds`` (plus a margin)."""
    n = int(rng.integers(2, 4))  # 2 or 3: liver traces rest longer at exhale than n=1
    mean_period_s = float(rng.uniform(3.8, 4.6))
    mean_amplitude_mm = float(rng.uniform(9.0, 17.0))
    ap_ratio = float(rng.uniform(*_AP_RATIO_RANGE))
    ap_lag_cycles = float(rng.uniform(0.02, 0.08))
    drift_amplitudes = (
        float(rng.uniform(*_DRIFT_SI_AMPLITUDES_MM[0])),
        float(rng.uniform(*_DRIFT_SI_AMPLITUDES_MM[1])),
        float(rng.uniform(*_DRIFT_AP_AMPLITUDES_MM[0])),
        float(rng.uniform(*_DRIFT_AP_AMPLITUDES_MM[1])),
    )
    drift_periods = (
        float(rng.uniform(60.0, 180.0)),
        float(rng.uniform(25.0, 50.0)),
        float(rng.uniform(60.0, 180.0)),
        float(rng.uniform(25.0, 50.0)),
    )
    drift_phases = tuple(float(p) for p in rng.uniform(0.0, 2.0 * math.pi, size=4))
    # Cycles drawn one at a time so that a longer session extends a shorter one.
    periods: list[float] = []
    amplitudes: list[float] = []
    covered_s = 0.0
    while covered_s <= seconds + 1.0:
        period = mean_period_s * (1.0 + 0.08 * rng.standard_normal())
        amplitude = mean_amplitude_mm * math.exp(0.12 * rng.standard_normal())
        periods.append(float(np.clip(period, *CYCLE_PERIOD_RANGE_S)))
        amplitudes.append(float(np.clip(amplitude, *CYCLE_AMPLITUDE_RANGE_MM)))
        covered_s += periods[-1]
    return BreathingParameters(
        n=n,
        mean_period_s=mean_period_s,
        mean_amplitude_mm=mean_amplitude_mm,
        ap_ratio=ap_ratio,
        ap_lag_cycles=ap_lag_cycles,
        cycle_periods_s=tuple(periods),
        cycle_amplitudes_mm=tuple(amplitudes),
        drift_amplitudes_mm=drift_amplitudes,
        drift_periods_s=drift_periods,
        drift_phases_rad=drift_phases,  # type: ignore[arg-type]
    )


def breathing_displacement_mm(
    breathing: BreathingParameters, times_s: np.ndarray
) -> np.ndarray:
    """Absolute liver displacement of a breathing trace at given times.

    Parameters
    ----------
    breathing : BreathingParameters
        The trace (e.g. ``session.breathing``).
    times_s : (T,) array_like of float
        Times in s, within ``[0, breathing.duration_s]``.

    Returns
    -------
    (T, 2) float64 ndarray
        Displacement (row_mm, col_mm), +row inferior, +col posterior, relative to the
        end-exhale position of cycle 0 without drift. A session's ``trajectory_mm`` is
        this minus its value at t = 0.

    Raises
    ------
    ValueError
        If ``times_s`` is not a finite 1-D array inside the covered time range.
    """
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"times_s: must be 1-D, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("times_s: must be finite")
    if t.size and (t.min() < 0.0 or t.max() > breathing.duration_s):
        raise ValueError(
            f"times_s: must lie within [0, {breathing.duration_s:.3f}] s "
            "(the cycles the trace covers)"
        )
    periods = np.asarray(breathing.cycle_periods_s, dtype=np.float64)
    amplitudes = np.asarray(breathing.cycle_amplitudes_mm, dtype=np.float64)
    starts = np.concatenate(([0.0], np.cumsum(periods)))
    cycle = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, periods.size - 1)
    # Continuous phase in cycles: integer part = cycle index, fraction = position.
    phase = cycle + (t - starts[cycle]) / periods[cycle]

    def lujan(phase_cycles: np.ndarray) -> np.ndarray:
        k = np.clip(np.floor(phase_cycles).astype(np.int64), 0, periods.size - 1)
        return amplitudes[k] * np.sin(np.pi * phase_cycles) ** (2 * breathing.n)

    si = lujan(phase)
    ap = -breathing.ap_ratio * lujan(phase - breathing.ap_lag_cycles)
    amp = breathing.drift_amplitudes_mm
    per = breathing.drift_periods_s
    phi = breathing.drift_phases_rad
    drift = [
        amp[i] * (np.sin(2.0 * np.pi * t / per[i] + phi[i]) - math.sin(phi[i]))
        for i in range(4)
    ]
    return np.stack((si + drift[0] + drift[1], ap + drift[2] + drift[3]), axis=1)
