"""Gating validation on recorded cine data, for physicists (``maestro validate``).

One recording or a folder of recordings (a cohort) is replayed through the real
components — :class:`hardware.replay.ReplaySource`, :class:`tracking.tracker.TemplateTracker`,
:class:`gating.boundary.GatingGeometry`, :class:`gating.gate.Gate` and
:class:`hardware.beam.SimulatedBeam` — and measured against the labels:

- TrackRAD2025 tracking metrics (:mod:`maestro.evaluation.trackrad_metrics`);
- gating accuracy for every configuration of a sweep (margin x threshold x beam latency),
  with the simulated beam's response delay applied on acquisition time;
- ITV versus gating: the motion envelope of the true target and the margin each approach
  needs to cover it in 95 % of its beam-on time.

Tracking does not depend on margin, threshold or beam latency, so each case is tracked
once (one pass through the loop with the reference configuration, timed as the live loop
is); the sweep then re-runs geometry, gate and simulated beam per configuration on the
recorded displacements and confidences. A test checks that the re-run of the reference
configuration reproduces the live pass's decisions. The sweep moves the reference target
rigidly, so validation runs the rigid mode (``maestro replay --rigid``), not replay's
default deformable mode: re-gating propagated targets per margin is not built yet.

The re-run gate sees every frame as fresh (frame age 0): the sweep assesses geometry,
threshold and beam latency, not the host's scheduling; the live pass's processing times
are reported as the latency histogram.

Cases run in parallel in a process pool, or on a Dask distributed cluster with
``--scheduler`` (:mod:`maestro.validation.cluster`); a case that fails is reported in the
summary and the others complete.

The package, bottom up (each module imports only those above it):

- :mod:`~maestro.validation.settings`: what a run sweeps and how it tracks;
- :mod:`~maestro.validation.results`: what one case measured;
- :mod:`~maestro.validation.cases`: finding the recordings of a cohort;
- :mod:`~maestro.validation.tracking_pass`: the one pass through the session loop;
- :mod:`~maestro.validation.tables`: the summary row of a case and the cohort's sweep;
- :mod:`~maestro.validation.report_plots`, :mod:`~maestro.validation.report_html`: the
  report;
- :mod:`~maestro.validation.sweep`: one case, its tracking pass re-gated per configuration;
- :mod:`~maestro.validation.cohort`: the cases on a local process pool;
- :mod:`~maestro.validation.cluster`: the cases on a Dask cluster;
- :mod:`~maestro.validation.outputs`: summary.json, the CSV tables and report.html.

The command itself is :mod:`maestro.validate`.
"""

from maestro.validation.cases import find_cases
from maestro.validation.cohort import Progress, run_cohort
from maestro.validation.outputs import write_outputs
from maestro.validation.results import CaseResult, failed_case
from maestro.validation.settings import CLINICAL_SETTINGS, COVERAGE, ValidationSettings, config_of
from maestro.validation.sweep import run_case, run_case_safe
from maestro.validation.tables import SUMMARY_COLUMNS, cohort_sweep, summary_row

__all__ = [
    "CLINICAL_SETTINGS",
    "COVERAGE",
    "SUMMARY_COLUMNS",
    "CaseResult",
    "Progress",
    "ValidationSettings",
    "cohort_sweep",
    "config_of",
    "failed_case",
    "find_cases",
    "run_case",
    "run_case_safe",
    "run_cohort",
    "summary_row",
    "write_outputs",
]
