"""A validation cohort's throughput, in frames x configurations per second, on the local
process pool and on a Dask distributed cluster of as many worker processes, in the same
run (issue 15).

The cohort: phantom sessions at 8 frames/s (``MAESTRO_COHORT_BENCH_SESSIONS``, default 6
of 60 s; 4 of 30 s with ``--bench-quick``), each gated in 36 configurations (4 margins x 3
thresholds x 3 beam latencies). Both runs validate the same recordings on 2 processes of
one thread each: the local pool as ``maestro validate --workers 2`` runs it (its worker
start-up counted: a user pays it on every run), the cluster as ``maestro validate
--scheduler`` does (connection, the workers' code check, one task per case; the cluster
is started beforehand and not timed, as a clinic's cluster is already running). The
order alternates over two rounds and the better of each is kept: the machine is shared.

The ratio (cluster / local) is the cost of going through Dask on one machine: the
scheduler's round trips and the results' serialisation. On a real cluster the throughput
then scales with the number of workers, which one machine cannot show.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hardware.trackrad import write_case
from maestro.phantom import generate_session
from maestro.validation import ValidationSettings, run_cohort

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (the cluster extra)")

WORKERS = 2
SETTINGS = ValidationSettings(
    margins_mm=(2.0, 3.0, 4.0, 5.0), thresholds_pct=(5.0, 10.0, 20.0), latencies_ms=(0.0, 100.0, 250.0)
)


def _cohort(folder: Path, quick: bool) -> list[Path]:
    n = int(os.environ.get("MAESTRO_COHORT_BENCH_SESSIONS", "4" if quick else "6"))
    seconds = 30.0 if quick else 60.0
    paths = []
    for seed in range(1, n + 1):
        s = generate_session("mridian-8fps", seconds=seconds, seed=100 + seed)
        paths.append(write_case(folder / f"c{seed:02d}", f"c{seed:02d}", s.frames, s.labels,
                                spacing_mm=s.spacing_mm, fps=s.fps).absolute())
    return paths


def test_cohort_throughput_local_pool_and_dask_cluster(quick: bool, figures, tmp_path: Path) -> None:
    from maestro.validation.cluster import run_cohort_on_cluster

    paths = _cohort(tmp_path / "cohort", quick)
    configs = len(SETTINGS.configurations())
    assert configs == 36
    local_s: list[float] = []
    cluster_s: list[float] = []
    with distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster:
        for round_ in range(2):
            for mode in (("local", "cluster") if round_ == 0 else ("cluster", "local")):
                t0 = time.perf_counter()
                if mode == "local":
                    results = run_cohort(paths, SETTINGS, workers=WORKERS, progress=None)
                else:
                    results, _ = run_cohort_on_cluster(paths, SETTINGS, cluster.scheduler_address, None)
                (local_s if mode == "local" else cluster_s).append(time.perf_counter() - t0)
                assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    frames = sum(r.n_frames for r in results)
    local = frames * configs / min(local_s)
    remote = frames * configs / min(cluster_s)
    print(f"\ncohort of {len(paths)} sessions ({frames} frames) x {configs} configurations on {WORKERS} processes: "
          f"local pool {min(local_s):.1f} s ({local:,.0f} frame-configurations/s), Dask cluster "
          f"{min(cluster_s):.1f} s ({remote:,.0f}/s), cluster / local {remote / local:.2f} "
          f"(rounds: local {', '.join(f'{x:.1f}' for x in local_s)} s; cluster "
          f"{', '.join(f'{x:.1f}' for x in cluster_s)} s)")
    figures.record(cohort_frames=frames, cohort_local_frame_configs_per_s=local,
                   cohort_cluster_frame_configs_per_s=remote, cohort_cluster_vs_local=remote / local)
    figures.check("cohort_cluster_vs_local")
