"""What one validated case measured: :class:`CaseResult`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CaseResult:
    """Everything measured on one case (picklable, so it crosses the process pool)."""

    name: str
    path: str
    ok: bool
    error: str = ""
    description: str = ""
    n_frames: int = 0
    fps: float = math.nan
    spacing_mm: tuple[float, float] = (math.nan, math.nan)
    has_labels: bool = False
    seconds: float = 0.0  # wall time spent on the case
    reference: dict[str, float] = field(default_factory=dict)
    trackrad: dict[str, float] | None = None
    tracking_error_mm: dict[str, float] | None = None
    latency_us: dict[str, float] = field(default_factory=dict)
    sweep: list[dict[str, float]] = field(default_factory=list)
    itv: dict[str, float] | None = None
    frames: dict[str, list[float]] = field(default_factory=dict)  # reference config, per frame
    figures: dict[str, str] = field(default_factory=dict)  # name -> base64 PNG


def failed_case(path: str | Path, error: str, seconds: float = 0.0) -> CaseResult:
    """The result of a case that could not be validated: its name and why."""
    return CaseResult(name=Path(path).name, path=str(path), ok=False, error=error, seconds=seconds)
