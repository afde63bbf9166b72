"""What a validation run sweeps and how it tracks: :class:`ValidationSettings`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from maestro import defaults

#: The clinically used settings marked on the sweep plots (margin mm, threshold %):
#: 3 mm / 5 % at WashU, 3 mm / 10 % at UCLA (see ``domain.md``).
CLINICAL_SETTINGS: tuple[tuple[float, float], ...] = ((3.0, 5.0), (3.0, 10.0))
#: Coverage used for the margin each approach needs (share of its beam-on time).
COVERAGE = 0.95


@dataclass(frozen=True)
class ValidationSettings:
    """What a validation run sweeps and how it tracks.

    Attributes
    ----------
    margins_mm, thresholds_pct, latencies_ms, predict_ms : tuple of float
        The sweep: every combination is gated. Latency is the simulated beam's response
        delay to both hold and release commands (ms). ``predict_ms`` > 0 gates on the
        position :class:`tracking.predict.RidgeARPredictor` predicts that far ahead (as
        ``maestro replay --predict-ms`` does); 0 gates on the tracked position.
    confidence_floor, beam_on_delay_ms, beam_on_delay_frames, max_frame_age_ms :
        Gate settings shared by every configuration (see ``maestro replay``).
    uncertainty_mm : float
        The gate's position-uncertainty allowance (mm, see :mod:`gating.uncertainty`),
        shared by every configuration.
    context_mm, search_mm : float
        Tracker settings.
    target_box : (int, int, int, int) or None
        Target on the first frame for recordings without a label.
    target_rtstruct, roi : str or None
        The target from an RT Structure Set's ROI, cut by each recording's plane (see
        :class:`maestro.session.SessionConfig`); every case of the cohort uses it.
    fps, spacing_mm :
        For recordings whose files lack frame times or spacing.
    figures : bool
        Render the report's figures (PNG, base64) with the case.
    """

    margins_mm: tuple[float, ...] = defaults.SWEEP_MARGINS_MM
    thresholds_pct: tuple[float, ...] = defaults.SWEEP_THRESHOLDS_PCT
    latencies_ms: tuple[float, ...] = defaults.SWEEP_LATENCIES_MS
    predict_ms: tuple[float, ...] = defaults.SWEEP_PREDICT_MS
    confidence_floor: float = defaults.CONFIDENCE_FLOOR
    beam_on_delay_ms: float = 0.0
    beam_on_delay_frames: int = 0
    max_frame_age_ms: float = defaults.MAX_FRAME_AGE_MS
    uncertainty_mm: float = defaults.UNCERTAINTY_MM
    context_mm: float = defaults.CONTEXT_MM
    search_mm: float = defaults.SEARCH_MM
    target_box: tuple[int, int, int, int] | None = None
    target_rtstruct: str | None = None
    roi: str | None = None
    fps: float | None = None
    spacing_mm: tuple[float, float] | None = None
    figures: bool = True

    def __post_init__(self) -> None:
        for name in ("margins_mm", "thresholds_pct", "latencies_ms", "predict_ms"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}: must hold at least one value")
            if not all(math.isfinite(v) and v >= 0.0 for v in values):
                raise ValueError(f"{name}: values must be finite and >= 0, got {values!r}")
        if any(v > 100.0 for v in self.thresholds_pct):
            raise ValueError(f"thresholds_pct: values must be <= 100, got {self.thresholds_pct!r}")

    @property
    def reference(self) -> tuple[float, float, float, float]:
        """The configuration shown in the traces: the session's default margin and
        threshold (3 mm / 10 %) when swept (else the first margin / threshold), at the first
        latency and prediction horizon."""
        margin = defaults.MARGIN_MM if defaults.MARGIN_MM in self.margins_mm else self.margins_mm[0]
        threshold = defaults.THRESHOLD_PCT if defaults.THRESHOLD_PCT in self.thresholds_pct else self.thresholds_pct[0]
        return margin, threshold, self.latencies_ms[0], self.predict_ms[0]

    def configurations(self) -> list[tuple[float, float, float, float]]:
        """Every (margin_mm, threshold_pct, latency_ms, predict_ms) of the sweep."""
        return [(m, t, lat, pr) for pr in self.predict_ms for lat in self.latencies_ms
                for m in self.margins_mm for t in self.thresholds_pct]


#: The keys of a configuration in a sweep row, in the order of :func:`config_of`.
CONFIG_KEYS = ("margin_mm", "threshold_pct", "latency_ms", "predict_ms")


def config_of(row: dict[str, float]) -> tuple[float, float, float, float]:
    """The (margin_mm, threshold_pct, latency_ms, predict_ms) of a sweep row."""
    return tuple(float(row[k]) for k in CONFIG_KEYS)  # type: ignore[return-value]
