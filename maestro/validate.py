"""``maestro validate``: the command (its arguments, and the run it starts).

What it computes is :mod:`maestro.validation`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from maestro import defaults
from maestro.validation import ValidationSettings, find_cases, run_case, run_cohort, write_outputs


def _float_list(low: float = 0.0, high: float | None = None):
    def parse(text: str) -> tuple[float, ...]:
        values = []
        for part in text.split(","):
            try:
                v = float(part)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{part!r} is not a number (give a comma-separated list)") from None
            if not math.isfinite(v) or v < low or (high is not None and v > high):
                rng = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
                raise argparse.ArgumentTypeError(f"{part!r} must be finite and {rng}")
            values.append(v)
        return tuple(dict.fromkeys(values))

    return parse


def _listed(values: tuple[float, ...]) -> str:
    """A sweep's values as the option takes them: ``2,3,4,5``."""
    return ",".join(f"{v:g}" for v in values)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``maestro validate``."""
    from maestro.cli_args import box, count, number, positive_count, spacing

    p = subparsers.add_parser(
        "validate",
        help="validate tracking and gating on labelled recordings: metrics, sweeps, ITV vs gating, HTML report",
        description=(
            "Replay one recording, or every recording in a folder (a cohort, run in parallel), through "
            "tracking, gating and a simulated beam; measure tracking (TrackRAD2025 metrics) and gating "
            "(duty cycle, false beam-on, false hold, residual motion, interruptions) against the labels for "
            "every margin x threshold x beam latency, compare the ITV with gating, and write DIR/report.html, "
            "DIR/summary.json and CSV tables."
        ),
    )
    p.add_argument("source", type=Path, metavar="SOURCE",
                   help="a recording (TrackRAD2025 case folder or DICOM series folder) or a folder of them")
    p.add_argument("--report", type=Path, required=True, metavar="DIR", help="folder to write the report into")
    p.add_argument("--margins-mm", type=_float_list(), default=defaults.SWEEP_MARGINS_MM, metavar="MM,...",
                   help=f"gating margins to sweep (default {_listed(defaults.SWEEP_MARGINS_MM)})")
    p.add_argument("--thresholds-pct", type=_float_list(0.0, 100.0), default=defaults.SWEEP_THRESHOLDS_PCT,
                   metavar="PCT,...",
                   help=f"outside thresholds to sweep (default {_listed(defaults.SWEEP_THRESHOLDS_PCT)})")
    p.add_argument("--latency-ms", type=_float_list(), default=defaults.SWEEP_LATENCIES_MS, metavar="MS,...",
                   help="simulated beam response delays to sweep, applied to hold and release "
                        f"(default {_listed(defaults.SWEEP_LATENCIES_MS)})")
    p.add_argument("--predict-ms", type=_float_list(), default=defaults.SWEEP_PREDICT_MS, metavar="MS,...",
                   help="prediction horizons to sweep: gate on the position predicted this far ahead "
                        f"(0 = the tracked position; default {_listed(defaults.SWEEP_PREDICT_MS)})")
    p.add_argument("--workers", type=positive_count, default=None,
                   help="cases run in parallel on this machine (default: 2 or the number of CPUs if fewer; "
                        "not with --scheduler)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cases on the Dask distributed cluster whose scheduler is at ADDRESS "
                        "(tcp://HOST:8786, or the file 'dask scheduler --scheduler-file' wrote); the workers "
                        "read the recordings from the same path, which they must share. Needs the cluster "
                        "extra (pip install 'maestro-gating[cluster]')")
    p.add_argument("--target-box", type=box, default=None, metavar="ROW,COL,HEIGHT,WIDTH",
                   help="target on the first frame for recordings without a label")
    p.add_argument("--target-rtstruct", default=None, metavar="FILE",
                   help="the target from planning: ROI --roi of this DICOM RT Structure Set, cut by each "
                        "recording's plane (see maestro replay --help)")
    p.add_argument("--roi", default=None, metavar="NAME", help="the ROIName of the target in --target-rtstruct")
    p.add_argument("--confidence-floor", type=number(0.0, high=1.0), default=defaults.CONFIDENCE_FLOOR)
    p.add_argument("--beam-on-delay-ms", type=number(0.0), default=0.0)
    p.add_argument("--beam-on-delay-frames", type=count, default=0)
    p.add_argument("--uncertainty-mm", type=number(0.0, high=10.0), default=defaults.UNCERTAINTY_MM,
                   help=f"the gate's position-uncertainty allowance (mm, default {defaults.UNCERTAINTY_MM:g}; "
                        "see maestro replay --help)")
    p.add_argument("--context-mm", type=number(0.0), default=defaults.CONTEXT_MM)
    p.add_argument("--search-mm", type=number(0.0, low_inclusive=False), default=defaults.SEARCH_MM)
    p.add_argument("--fps", type=number(0.0, low_inclusive=False), default=None)
    p.add_argument("--spacing-mm", type=spacing, default=None, metavar="MM[,MM]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_validate)


def _prepare_report_dir(report: Path) -> None:
    """Create the report folder, refusing one that cannot be written (one line, exit 2)."""
    from hardware import InputError

    try:
        report.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(report, "--report", f"cannot create the report folder ({exc.strerror or exc})") from None
    if not os.access(report, os.W_OK | os.X_OK):
        raise InputError(report, "--report", "the report folder is not writable")


def cmd_validate(args: argparse.Namespace) -> int:
    """Run ``maestro validate``; exit 0 when every case validated, 1 when some failed."""
    from hardware import InputError
    from maestro import __version__
    from maestro.target import check_target_options

    check_target_options(args.target_box, args.target_rtstruct, args.roi)
    if args.scheduler is not None and args.workers is not None:
        raise InputError("--workers", str(args.workers), "cannot be given with --scheduler: the cluster's "
                         "workers run the cases")
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    settings = ValidationSettings(
        margins_mm=args.margins_mm, thresholds_pct=args.thresholds_pct, latencies_ms=args.latency_ms,
        predict_ms=args.predict_ms,
        confidence_floor=args.confidence_floor, beam_on_delay_ms=args.beam_on_delay_ms,
        beam_on_delay_frames=args.beam_on_delay_frames, context_mm=args.context_mm, search_mm=args.search_mm,
        target_box=args.target_box, fps=args.fps, spacing_mm=args.spacing_mm, uncertainty_mm=args.uncertainty_mm,
        target_rtstruct=args.target_rtstruct, roi=args.roi,
    )
    cases = find_cases(args.source)
    one_recording = len(cases) == 1 and cases[0] == args.source
    # Absolute: a cluster's workers do not share our working folder, and a case is
    # described the same way wherever it ran.
    cases = [c.absolute() for c in cases]
    _prepare_report_dir(args.report)  # before any case runs: a bad --report must not cost a cohort
    t0 = time.perf_counter()
    progress = None if args.quiet else sys.stderr
    ran_on: dict[str, Any] = {"workers": workers}
    if args.scheduler is not None:
        from maestro.validation.cluster import run_cohort_on_cluster

        results, cluster = run_cohort_on_cluster(cases, settings, args.scheduler, progress)
        ran_on = {"workers": cluster["cluster_workers"], "scheduler": args.scheduler}
    elif one_recording:
        # One recording: bad input is refused on one line (exit 2), like maestro replay.
        results = [run_case(cases[0], settings)]
    else:
        results = run_cohort(cases, settings, workers=workers, progress=progress)
    elapsed = time.perf_counter() - t0
    meta = {"software": {"name": "maestro-gating", "version": __version__}, "source": str(args.source),
            "elapsed_s": elapsed, **ran_on}
    paths = write_outputs(args.report, results, settings, meta)
    ok = [r for r in results if r.ok]
    print(f"validated {len(ok)}/{len(results)} cases ({sum(r.n_frames for r in ok)} frames, "
          f"{len(settings.configurations())} configurations) in {elapsed:.1f} s")
    for r in results:
        if not r.ok:
            print(f"  FAILED {r.name}: {r.error}")
    print(f"report: {paths['html']}")
    return 0 if len(ok) == len(results) else 1
