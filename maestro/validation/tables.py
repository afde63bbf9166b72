"""The summary row of a case and the cohort's mean sweep (the CSVs and the report share them)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from maestro.validation.results import CaseResult
from maestro.validation.settings import CONFIG_KEYS, config_of

SUMMARY_COLUMNS = (
    ("frames", "frames"), ("dice", "Dice"), ("hd95_mm", "HD95 mm"), ("msd_mm", "MSD mm"),
    ("centroid_mm", "centroid mm"), ("relative_d98", "rel. D98"), ("duty_cycle", "duty cycle"),
    ("false_beam_on", "false beam-on"), ("false_hold", "false hold"), ("residual_p95_mm", "residual p95 mm"),
    ("interruptions", "interruptions"), ("itv_margin95_mm", "ITV margin95 mm"),
    ("gated_margin95_mm", "gated margin95 mm"), ("itv_area_mm2", "ITV area mm2"),
    ("gated_area_mm2", "gated area mm2"), ("latency_p99_us", "latency p99 us"),
)


def summary_row(result: CaseResult) -> dict[str, float]:
    """The headline figures of one case at the reference configuration."""
    row: dict[str, float] = {"frames": float(result.n_frames)}
    if result.trackrad:
        row.update({k: result.trackrad[k] for k in ("dice", "hd95_mm", "msd_mm", "centroid_mm", "relative_d98")})
    if not result.ok:
        return row
    ref = config_of(result.reference)
    for s in result.sweep:
        if config_of(s) == ref:
            for key in ("duty_cycle", "false_beam_on", "false_hold", "residual_p95_mm", "interruptions"):
                if key in s:
                    row[key] = s[key]
    if result.itv:
        row.update({k: result.itv[k] for k in ("itv_margin95_mm", "gated_margin95_mm", "itv_area_mm2",
                                               "gated_area_mm2")})
    if result.latency_us:
        row["latency_p99_us"] = result.latency_us["p99"]
    return row


def cohort_sweep(results: Sequence[CaseResult]) -> list[dict[str, float]]:
    """Mean over the successful cases of every sweep configuration's figures."""
    ok = [r for r in results if r.ok and r.sweep]
    if not ok:
        return []
    out = []
    for i, base in enumerate(ok[0].sweep):
        row = {k: base[k] for k in CONFIG_KEYS}
        for key in base:
            if key in row:
                continue
            vals = np.array([r.sweep[i].get(key, math.nan) for r in ok], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            row[key] = float(vals.mean()) if vals.size else math.nan
        out.append(row)
    return out
