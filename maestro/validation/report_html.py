"""The validation report as one self-contained HTML file (figures embedded as PNG).

Layout: the cohort summary table and the cohort's sweep first, then one section per case:
position traces with the beam shaded, ``outside_pct`` with the threshold, error
histograms, the latency histogram, TrackRAD2025 metrics, gating metrics, the sweep table
and plot, and ITV versus gating. Every element a reader (or a test) looks for carries an
``id``: ``cohort-summary``, ``cohort-sweep``, and per case ``case-<name>`` with
``<name>-traces``, ``-outside``, ``-errors``, ``-latency``, ``-trackrad``, ``-gating``,
``-sweep``, ``-itv``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import Any

from maestro.validation.results import CaseResult
from maestro.validation.settings import CLINICAL_SETTINGS, ValidationSettings, config_of
from maestro.validation.tables import SUMMARY_COLUMNS, summary_row

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:0}h2{border-bottom:2px solid #ccc;padding-bottom:4px;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;font-size:0.8em;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 5px;text-align:right}th{background:#f0f0f0}
td.l,th.l{text-align:left}tr.clinical td{background:#fff3e0;font-weight:600}tr.mean td{font-weight:700;background:#f7f7f7}
.failed{color:#b00020}.note{color:#555;font-size:0.85em;max-width:900px}img{max-width:100%}
"""

_PCT_KEYS = {"duty_cycle", "false_beam_on", "false_hold"}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        if key in _PCT_KEYS:
            return f"{100.0 * v:.1f}\u00a0%"
        if key in ("margin_mm", "threshold_pct", "latency_ms", "predict_ms"):
            return f"{v:g}"
        if key in ("frames", "interruptions", "frames_scored", "empty_predictions") or key.endswith("_frames"):
            return f"{int(round(v))}"
        if key in ("dice", "relative_d98"):
            return f"{v:.3f}"
        if key.endswith("_mm2") or key.endswith("_us"):
            return f"{v:.0f}"
        return f"{v:.2f}"
    return html.escape(str(value))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], table_id: str = "",
           row_class: Any = None, first_col: tuple[str, str] | None = None) -> str:
    head = f"<th class='l'>{html.escape(first_col[1])}</th>" if first_col else ""
    head += "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = []
    for r in rows:
        cls = row_class(r) if row_class else ""
        cells = f"<td class='l'>{_fmt(first_col[0], r.get(first_col[0]))}</td>" if first_col else ""
        cells += "".join(f"<td>{_fmt(k, r.get(k))}</td>" for k, _ in columns)
        body.append(f"<tr class='{cls}'>{cells}</tr>")
    ident = f" id='{table_id}'" if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(b64: str | None, alt: str) -> str:
    if not b64:
        return f"<p class='note'>{html.escape(alt)}: not available (no labels).</p>"
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


_SWEEP_COLUMNS = (
    ("margin_mm", "margin mm"), ("threshold_pct", "threshold %"), ("latency_ms", "latency ms"),
    ("predict_ms", "predict ms"), ("duty_cycle", "duty cycle"), ("false_beam_on", "false beam-on"), ("false_hold", "false hold"),
    ("residual_mean_mm", "residual mean mm"), ("residual_p95_mm", "residual p95 mm"),
    ("interruptions", "interruptions"), ("interruption_mean_s", "interruption mean s"),
    ("interruption_max_s", "longest interruption s"), ("gated_margin95_mm", "gated margin95 mm"),
)


def _clinical(row: dict[str, Any]) -> str:
    return "clinical" if (row.get("margin_mm"), row.get("threshold_pct")) in CLINICAL_SETTINGS else ""


def _case_section(r: CaseResult) -> str:
    s = _slug(r.name)
    if not r.ok:
        return (f"<section id='case-{s}'><h2 class='failed'>{html.escape(r.name)}: failed</h2>"
                f"<p class='failed'>{html.escape(r.error)}</p><p class='note'>{html.escape(r.path)}</p></section>")
    ref = r.reference
    parts = [f"<section id='case-{s}'><h2>{html.escape(r.name)}</h2>",
             f"<p class='note'>{html.escape(r.description)}. Reference configuration for the traces: "
             f"margin {ref['margin_mm']:g} mm, threshold {ref['threshold_pct']:g} %, beam latency "
             f"{ref['latency_ms']:g} ms, prediction {ref['predict_ms']:g} ms. Validated in {r.seconds:.1f} s.</p>"]
    parts.append(f"<h3 id='{s}-traces'>Position traces (SI, AP) with beam state</h3>"
                 + _img(r.figures.get("traces"), "position traces"))
    parts.append(f"<h3 id='{s}-outside'>Target outside the boundary</h3>"
                 + _img(r.figures.get("outside"), "outside_pct with threshold"))
    parts.append(f"<h3 id='{s}-errors'>Tracking error</h3>")
    if r.tracking_error_mm:
        parts.append(_table([r.tracking_error_mm], [("mean", "mean mm"), ("p50", "median mm"), ("p95", "p95 mm"),
                                                    ("max", "max mm")]))
    parts.append(_img(r.figures.get("errors"), "error histograms"))
    parts.append(f"<h3 id='{s}-latency'>Latency</h3>")
    if r.latency_us:
        parts.append(_table([r.latency_us], [("mean", "mean µs"), ("p50", "p50 µs"), ("p99", "p99 µs"),
                                             ("max", "max µs")]))
    parts.append("<p class='note'>Processing time per frame in this validation run (frame 0 excluded), measured "
                 "while other cases ran in parallel: a busy machine shows here. The loop's latency budget is "
                 "measured by the benchmarks (<code>maestro bench</code>).</p>")
    parts.append(_img(r.figures.get("latency"), "latency histogram"))
    parts.append(f"<h3 id='{s}-trackrad'>TrackRAD2025 metrics</h3>")
    if r.trackrad:
        parts.append(_table([r.trackrad], [("dice", "Dice"), ("hd95_mm", "HD95 mm"), ("msd_mm", "MSD mm"),
                                           ("centroid_mm", "centroid mm"), ("relative_d98", "relative D98"),
                                           ("frames_scored", "frames scored"),
                                           ("empty_predictions", "empty predictions")]))
        parts.append("<p class='note'>On 1 × 1 mm resampled masks, frame 0 excluded; the prediction is the "
                     "reference target moved by the tracked displacement.</p>")
    else:
        parts.append("<p class='note'>No per-frame labels: not computed.</p>")
    parts.append(f"<h3 id='{s}-gating'>Gating accuracy (reference configuration)</h3>")
    ref_rows = [x for x in r.sweep if config_of(x) == config_of(ref)]
    parts.append(_table(ref_rows, _SWEEP_COLUMNS[4:]))
    parts.append(f"<h3 id='{s}-sweep'>Sweep: margin × threshold × latency</h3>")
    parts.append(_img(r.figures.get("sweep"), "sweep plot"))
    parts.append(_table(r.sweep, _SWEEP_COLUMNS, row_class=_clinical))
    parts.append(f"<h3 id='{s}-itv'>ITV versus gating</h3>")
    if r.itv:
        itv = r.itv
        rows = [
            {"approach": "ITV (beam always on)", "area": itv["itv_area_mm2"], "si": itv["itv_si_mm"],
             "ap": itv["itv_ap_mm"], "margin": itv["itv_margin95_mm"]},
            {"approach": f"gating {ref['margin_mm']:g} mm / {ref['threshold_pct']:g} %", "area": itv["gated_area_mm2"],
             "si": itv["gated_si_mm"], "ap": itv["gated_ap_mm"], "margin": itv["gated_margin95_mm"]},
        ]
        parts.append(_table(rows, [("area", "envelope area mm²"), ("si", "SI extent mm"), ("ap", "AP extent mm"),
                                   ("margin", "margin for 95 % coverage mm")], first_col=("approach", "approach")))
        parts.append(f"<p class='note'>Reference target area {itv['target_area_mm2']:.0f} mm². Envelope: union of "
                     "the true target (labels) over the session (ITV) or over the beam-on frames (gating). Margin: "
                     "smallest expansion of the reference target that contains the whole true target for 95 % of "
                     "the beam-on time.</p>")
        parts.append(_img(r.figures.get("itv"), "ITV versus gating"))
    else:
        parts.append("<p class='note'>No per-frame labels: not computed.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _ran_on(meta: dict[str, Any]) -> str:
    """Where the cases ran: the Dask cluster's scheduler, or local worker processes."""
    if meta.get("scheduler"):
        return (f" on the Dask cluster at {html.escape(str(meta['scheduler']))} "
                f"({meta.get('workers', '?')} workers)")
    if meta.get("workers"):
        return f" on {meta['workers']} local worker process(es)"
    return ""


def render(results: Sequence[CaseResult], settings: ValidationSettings, cohort_sweep: list[dict[str, float]],
           meta: dict[str, Any]) -> str:
    """The whole report as an HTML document."""
    from maestro.validation import report_plots

    ok = [r for r in results if r.ok]
    rows = []
    for r in results:
        row: dict[str, Any] = {"case": r.name, **summary_row(r)} if r.ok else {"case": f"{r.name} (failed)"}
        rows.append(row)
    mean_row: dict[str, Any] = {"case": "mean"}
    for key, _ in SUMMARY_COLUMNS:
        vals = [float(x[key]) for x in rows if isinstance(x.get(key), (int, float)) and math.isfinite(float(x[key]))]
        mean_row[key] = sum(vals) / len(vals) if vals else None
    summary_table = _table(rows + [mean_row], SUMMARY_COLUMNS, "cohort-summary-table",
                           row_class=lambda x: "mean" if x.get("case") == "mean" else "",
                           first_col=("case", "case"))
    failed = [r for r in results if not r.ok]
    failed_html = "".join(f"<p class='failed'>{html.escape(r.name)} failed: {html.escape(r.error)}</p>" for r in failed)
    margin, threshold, latency, predict = settings.reference
    sweep_fig = report_plots.sweep_plot(cohort_sweep, "cohort mean") if cohort_sweep else ""
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>maestro validate: "
            f"{html.escape(str(meta.get('source', '')))}</title><style>{_CSS}</style></head><body>")
    intro = (f"<h1>Gating validation report</h1><p class='note'>Source {html.escape(str(meta.get('source', '')))}; "
             f"{len(ok)}/{len(results)} cases validated in {meta.get('elapsed_s', math.nan):.1f} s{_ran_on(meta)}; "
             f"{len(settings.configurations())} configurations (margins {', '.join(f'{m:g}' for m in settings.margins_mm)} mm × "
             f"thresholds {', '.join(f'{t:g}' for t in settings.thresholds_pct)} % × beam latency "
             f"{', '.join(f'{x:g}' for x in settings.latencies_ms)} ms × prediction "
             f"{', '.join(f'{x:g}' for x in settings.predict_ms)} ms). maestro-gating "
             f"{html.escape(str(meta.get('software', {}).get('version', '')))}.</p>")
    summary = (f"<section id='cohort-summary'><h2>Cohort summary</h2><p class='note'>At the reference configuration "
               f"{margin:g} mm / {threshold:g} % / beam latency {latency:g} ms / prediction {predict:g} ms. "
               f"Duty cycle: beam-on share of the session. False "
               f"beam-on: share of beam-on time with more than the threshold of the true target outside. False hold: "
               f"share of the time the true target was inside during which the beam was held. Residual: distance of "
               f"the true centroid from its reference during beam-on. Margin95: expansion of the reference target "
               f"containing the true target for 95 % of the beam-on time (ITV: beam always on).</p>"
               f"{summary_table}{failed_html}</section>")
    cohort = (f"<section id='cohort-sweep'><h2>Cohort sweep (mean over cases)</h2>"
              f"{_img(sweep_fig, 'cohort sweep plot') if sweep_fig else ''}"
              f"{_table(cohort_sweep, _SWEEP_COLUMNS, 'cohort-sweep-table', row_class=_clinical)}</section>")
    cases = "\n".join(_case_section(r) for r in results)
    return head + intro + summary + cohort + cases + "</body></html>"
