"""Figures of the validation report (matplotlib, rendered off-screen to PNG).

Each function returns base64 PNG text ready for ``<img src="data:image/png;base64,...">``.
Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot state), so
they can be rendered in worker processes.
"""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from maestro.validation.settings import CLINICAL_SETTINGS

if TYPE_CHECKING:
    from maestro.validation.results import CaseResult

_DPI = 80
_ON_COLOUR = "#2ca02c"


def png_base64(png: bytes) -> str:
    """PNG bytes as the base64 text an ``<img src="data:...">`` embeds."""
    return base64.b64encode(png).decode("ascii")


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    # Fixed margins rather than bbox_inches="tight", which draws every figure twice.
    fig.savefig(buf, format="png", dpi=_DPI)
    return png_base64(buf.getvalue())


def _on_periods(times: np.ndarray, on: np.ndarray, t_end: float) -> list[tuple[float, float]]:
    from maestro.evaluation.gating_metrics import beam_on_periods

    starts, ends = beam_on_periods(times, on)
    return [(s, min(e, t_end)) for s, e in zip(starts, ends) if s < t_end]


def _shade(ax, periods: list[tuple[float, float]]) -> None:
    for i, (a, b) in enumerate(periods):
        ax.axvspan(a, b, color=_ON_COLOUR, alpha=0.15, lw=0, label="beam on" if i == 0 else None)


def traces(res: CaseResult, times: np.ndarray, on: np.ndarray) -> str:
    """SI (rows) and AP (columns) displacement, tracked and true, beam-on shaded."""
    f = res.frames
    t = np.asarray(f["t_acq_s"])
    t_end = float(t[-1] + 1.0 / res.fps)
    periods = _on_periods(times, on, t_end)
    fig = Figure(figsize=(9, 4.2))
    fig.subplots_adjust(left=0.11, right=0.98, top=0.92, bottom=0.12, hspace=0.08)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, key, name in ((axes[0], "row", "SI (rows, + inferior)"), (axes[1], "col", "AP (columns, + posterior)")):
        _shade(ax, periods)
        ax.plot(t, f[f"true_{key}_mm"], color="k", lw=1.0, label="true (label centroid)")
        ax.plot(t, f[f"{key}_mm"], color="#1f77b4", lw=0.9, ls="--", label="tracked")
        ax.set_ylabel(f"{name}\nmm")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8, ncol=3)
    axes[1].set_xlabel("acquisition time (s)")
    ref = res.reference
    axes[0].set_title(f"{res.name}: target position, beam on shaded "
                      f"({ref['margin_mm']:g} mm / {ref['threshold_pct']:g} % / {ref['latency_ms']:g} ms)")
    return _png(fig)


def outside(res: CaseResult, times: np.ndarray, on: np.ndarray) -> str:
    """Tracked and true ``outside_pct`` with the threshold."""
    f = res.frames
    t = np.asarray(f["t_acq_s"])
    periods = _on_periods(times, on, float(t[-1] + 1.0 / res.fps))
    fig = Figure(figsize=(9, 2.8))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, bottom=0.17)
    ax = fig.subplots()
    _shade(ax, periods)
    ax.plot(t, f["true_outside_pct"], color="k", lw=1.0, label="true (label)")
    ax.plot(t, f["outside_pct"], color="#d62728", lw=0.9, ls="--", label="tracked")
    ax.axhline(res.reference["threshold_pct"], color="#ff7f0e", lw=1.2, label="threshold")
    ax.set_ylim(-2, 102)
    ax.set_ylabel("target outside boundary (%)")
    ax.set_xlabel("acquisition time (s)")
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    ax.grid(alpha=0.3)
    return _png(fig)


def error_histograms(res: CaseResult) -> str:
    """Tracking error per axis and its magnitude (frame 0 excluded)."""
    f = res.frames
    e_row = (np.asarray(f["row_mm"]) - np.asarray(f["true_row_mm"]))[1:]
    e_col = (np.asarray(f["col_mm"]) - np.asarray(f["true_col_mm"]))[1:]
    e = np.asarray(f["error_mm"])[1:]
    fig = Figure(figsize=(9, 2.6))
    fig.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.2, wspace=0.25)
    axes = fig.subplots(1, 3)
    for ax, vals, name in ((axes[0], e_row, "SI error (mm)"), (axes[1], e_col, "AP error (mm)"),
                           (axes[2], e, "|error| (mm)")):
        vals = vals[np.isfinite(vals)]
        if vals.size:
            ax.hist(vals, bins=30, color="#1f77b4")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("frames")
    return _png(fig)


def latency_histogram(res: CaseResult) -> str:
    """Per-frame processing time, frame received to beam command issued."""
    lat = np.asarray(res.frames["latency_us"])[1:]
    lat = lat[np.isfinite(lat)]
    fig = Figure(figsize=(5, 2.6))
    fig.subplots_adjust(left=0.13, right=0.97, top=0.95, bottom=0.2)
    ax = fig.subplots()
    if lat.size:
        # Log-spaced bins: the bulk sits at tens of µs, a rare scheduling stall at ms.
        lo, hi = max(float(lat.min()), 1.0), max(float(lat.max()), 2.0)
        ax.hist(lat, bins=np.geomspace(lo, hi * 1.001, 40), color="#9467bd")  # pyright: ignore[reportArgumentType]  # an array is a sequence of edges
        ax.set_xscale("log")
        ax.axvline(float(np.percentile(lat, 50)), color="k", ls=":", lw=1, label="p50")
        ax.axvline(float(np.percentile(lat, 99)), color="k", ls="--", lw=1, label="p99")
        ax.legend(fontsize=8)
    ax.set_xlabel("latency (µs, log scale), frame received → beam command")
    ax.set_ylabel("frames")
    ax.grid(alpha=0.3)
    return _png(fig)


def sweep_plot(sweep: list[dict[str, float]], title: str) -> str:
    """Duty cycle versus false beam-on for every configuration, clinical settings marked."""
    fig = Figure(figsize=(6.5, 4.4))
    fig.subplots_adjust(left=0.11, right=0.99, top=0.88, bottom=0.12)
    ax = fig.subplots()
    groups = sorted({(s["latency_ms"], s.get("predict_ms", 0.0)) for s in sweep})
    markers = "osD^v<>ph"
    sc = None  # the last group's scatter, for the colour bar
    for i, (lat, pr) in enumerate(groups):
        rows = [s for s in sweep if (s["latency_ms"], s.get("predict_ms", 0.0)) == (lat, pr)]
        label = f"latency {lat:g} ms" + (f", predict {pr:g} ms" if pr > 0 else "")
        x = [100.0 * s.get("false_beam_on", math.nan) for s in rows]
        y = [100.0 * s["duty_cycle"] for s in rows]
        sc = ax.scatter(x, y, c=[s["margin_mm"] for s in rows], cmap="viridis", marker=markers[i % len(markers)],
                        s=[12 + 2.0 * s["threshold_pct"] for s in rows], label=label,
                        edgecolors="k", linewidths=0.4)
        for s, xi, yi in zip(rows, x, y):
            if (s["margin_mm"], s["threshold_pct"]) in CLINICAL_SETTINGS:
                ax.scatter([xi], [yi], s=220, facecolors="none", edgecolors="#d62728", linewidths=1.8)
                ax.annotate(f"{s['margin_mm']:g} mm/{s['threshold_pct']:g} %", (xi, yi), fontsize=7,
                            xytext=(6, -10), textcoords="offset points", color="#d62728")
    if sc is not None:  # the sweep is not empty
        fig.colorbar(sc, ax=ax, label="margin (mm)")
    ax.set_xlabel("false beam-on (% of beam-on time, true target outside)")
    ax.set_ylabel("duty cycle (% beam on)")
    ax.set_title(title + "\n(marker size: threshold; red rings: clinical 3 mm/5 % and 3 mm/10 %)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def itv_figure(res: CaseResult, mask: np.ndarray, itv_union: np.ndarray, gated_union: np.ndarray) -> str:
    """Reference target, ITV cross-section and gated envelope, cropped around them."""
    sr, sc = res.spacing_mm
    rows = np.flatnonzero(itv_union.any(axis=1) | mask.any(axis=1))
    cols = np.flatnonzero(itv_union.any(axis=0) | mask.any(axis=0))
    pad = 4
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, mask.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, mask.shape[1])
    img = np.zeros((r1 - r0, c1 - c0, 3))
    img[itv_union[r0:r1, c0:c1]] = (0.85, 0.85, 0.95)
    img[gated_union[r0:r1, c0:c1]] = (0.55, 0.8, 0.55)
    img[mask[r0:r1, c0:c1]] = (0.2, 0.4, 0.8)
    fig = Figure(figsize=(4.4, 4.4))
    fig.subplots_adjust(left=0.15, right=0.97, top=0.88, bottom=0.12)
    ax = fig.subplots()
    ax.imshow(img, extent=(c0 * sc, c1 * sc, r1 * sr, r0 * sr), interpolation="nearest")
    ax.set_xlabel("AP (mm)")
    ax.set_ylabel("SI (mm)")
    itv = res.itv or {}
    ax.set_title(f"ITV {itv.get('itv_area_mm2', math.nan):.0f} mm² (lavender), gated "
                 f"{itv.get('gated_area_mm2', math.nan):.0f} mm² (green),\nreference target (blue)", fontsize=8)
    return _png(fig)


def case_figures(res: CaseResult, times: np.ndarray, on: np.ndarray, mask: np.ndarray,
                 itv_union: np.ndarray | None, gated_union: np.ndarray | None) -> dict[str, str]:
    """Every figure of one case, by name."""
    figs = {"traces": traces(res, times, on), "latency": latency_histogram(res),
            "sweep": sweep_plot(res.sweep, f"{res.name}: sweep")}
    if res.has_labels:
        figs["outside"] = outside(res, times, on)
        figs["errors"] = error_histograms(res)
    if itv_union is not None and gated_union is not None and itv_union.any():
        figs["itv"] = itv_figure(res, mask, itv_union, gated_union)
    return figs
