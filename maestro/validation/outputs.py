"""Writing a validation run: ``summary.json``, the CSV tables and ``report.html``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from maestro.validation.results import CaseResult
from maestro.validation.settings import ValidationSettings
from maestro.validation.tables import cohort_sweep, summary_row


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_outputs(report_dir: Path, results: Sequence[CaseResult], settings: ValidationSettings,
                  meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``summary.json``, the CSV tables and ``report.html`` into ``report_dir``."""
    from maestro.validation import report_html

    report_dir.mkdir(parents=True, exist_ok=True)
    cases_dir = report_dir / "cases"
    cases_dir.mkdir(exist_ok=True)
    sweep = cohort_sweep(results)
    summary = {
        **meta,
        "settings": asdict(settings) | {"reference": settings.reference},
        "cases": [
            {k: v for k, v in asdict(r).items() if k not in ("frames", "figures")} | {"summary": summary_row(r)}
            for r in results
        ],
        "cohort_sweep": sweep,
    }
    paths = {"summary": report_dir / "summary.json", "cases_csv": report_dir / "cases.csv",
             "sweep_csv": report_dir / "sweep.csv", "cohort_sweep_csv": report_dir / "cohort_sweep.csv",
             "html": report_dir / "report.html"}
    paths["summary"].write_text(json.dumps(_json_safe(summary), indent=2), encoding="utf-8")
    _write_csv(paths["cases_csv"], [{"case": r.name, "ok": r.ok, "error": r.error, **summary_row(r)}
                                    for r in results])
    _write_csv(paths["sweep_csv"], [{"case": r.name, **s} for r in results for s in r.sweep])
    _write_csv(paths["cohort_sweep_csv"], sweep)
    for r in results:
        if r.frames:
            n = len(r.frames["t_acq_s"])
            rows = [{"frame": k, **{key: vals[k] for key, vals in r.frames.items()}} for k in range(n)]
            _write_csv(cases_dir / f"{r.name}_frames.csv", rows)
    paths["html"].write_text(report_html.render(results, settings, sweep, meta), encoding="utf-8")
    return paths
