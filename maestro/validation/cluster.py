"""``maestro validate --scheduler``: a cohort's cases on a Dask distributed cluster.

One task per case: a case's tracking pass, its sweep and its figures run on one worker
(:func:`maestro.validation.sweep.run_case_safe`, the function the local process pool runs), so
a result computed on the cluster is the result computed locally. The sweep is not split
across tasks: it needs the tracking pass's per-frame results and the case's labels
(tens of MB for a 10-minute fraction), and takes a fraction of the case's time (see the
README, *Validation on a cluster*), so moving it between workers would cost more than it
saves; an archive of thousands of fractions gives every worker many tasks anyway.

The workers read the recordings themselves, from the paths this process found: the
cohort must be on a file system every worker mounts at the same path. A case a worker
cannot see is reported failed, naming the worker's host. Before any case is sent, every
worker's code and numerical libraries are compared with this process's
(:func:`code_fingerprint`): a cluster that would compute other results is refused.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TextIO

from maestro.validation.cohort import Progress
from maestro.validation.results import CaseResult, failed_case
from maestro.validation.settings import ValidationSettings
from maestro.validation.sweep import run_case_safe

#: The packages whose code computes a validation result.
_PACKAGES = ("tracking", "gating", "hardware", "maestro")
#: The libraries whose versions can change a result's last digits.
_LIBRARIES = ("numpy", "numba", "scipy", "opencv-python-headless", "SimpleITK", "pydicom", "matplotlib")


def code_fingerprint() -> str:
    """What computes a result here: a digest of this installation's sources and the
    versions of the numerical libraries, as one readable line.

    Runs on the client and on every worker (:func:`hardware.dask_cluster.check_same_code`).
    """
    import maestro

    root = Path(maestro.__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in _PACKAGES:
        base = root / package
        if not base.is_dir():  # not installed here: the fingerprint then differs from a worker that has it
            continue
        for src in sorted(base.rglob("*.py")):
            digest.update(src.relative_to(root).as_posix().encode())
            digest.update(src.read_bytes())
    versions = []
    for lib in _LIBRARIES:
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} absent")
    return f"maestro-gating {maestro.__version__} sources {digest.hexdigest()[:16]}; " + "; ".join(versions)


def run_case_on_worker(path: str, settings: ValidationSettings) -> CaseResult:
    """:func:`run_case_safe` on a worker, with a clear failure when the worker cannot see
    the recording (the cohort is not on a path it shares)."""
    if not Path(path).exists():
        return failed_case(path, f"not found on worker host {platform.node()}: the cohort must be on a path every "
                                 "worker mounts at the same place")
    return run_case_safe(path, settings)


def run_cohort_on_cluster(
    paths: Sequence[Path],
    settings: ValidationSettings,
    scheduler: str,
    progress: TextIO | None,
) -> tuple[list[CaseResult], dict[str, object]]:
    """Validate every case on the Dask cluster at ``scheduler``; results in the order of
    ``paths``, and what the run used (the scheduler and its number of workers).

    ``paths`` should be absolute (as ``maestro validate`` gives them, in both modes): a
    relative one is made absolute here, and the case's description would then differ
    from a local run given the relative path.

    Raises
    ------
    InputError
        No scheduler or no worker answers, or the workers run other code (nothing has run).
    """
    from hardware.dask_cluster import check_same_code, connect, map_unordered, one_line

    results: dict[int, CaseResult] = {}
    with connect(scheduler) as client:
        n_workers = check_same_code(client, code_fingerprint, scheduler)
        bar = Progress(len(paths), progress)

        def done(i: int, result: CaseResult | None, error: BaseException | None) -> None:
            if result is None:
                assert error is not None
                why = one_line(error)
                if type(error).__name__ == "KilledWorker":
                    why = f"KilledWorker: its worker was lost too many times ({why})"
                result = failed_case(paths[i], why)
            results[i] = result
            bar.update(result)

        # Absolute paths: a worker's working folder is not ours.
        map_unordered(client, run_case_on_worker, [str(Path(p).absolute()) for p in paths],
                      [Path(p).name for p in paths], done, settings=settings)
    return [results[i] for i in range(len(paths))], {"scheduler": scheduler, "cluster_workers": n_workers}
