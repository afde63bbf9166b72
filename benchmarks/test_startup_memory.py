"""Start-up to ready (cold and warm Numba cache) and resident memory over a long run, each
in a fresh child process.

"Ready" is the first frame decided: the child replays the bundled session and prints a
line from an observer of frame 0, i.e. after warm-up, reading the recording, building
the tracker and boundary and issuing the first beam command. The parent times from
spawning the child to reading that line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from maestro.cli import BUNDLED_SESSION, PROJECT_ROOT

from . import workload

_READY_SCRIPT = """
import sys
from hardware import SimulatedBeam
from hardware.replay import ReplaySource
from maestro.observer import EachRecord
from maestro.session import GatingSession, SessionConfig

def ready(record):
    sys.stdout.write("READY\\n")
    sys.stdout.flush()

GatingSession(ReplaySource(sys.argv[1]), SessionConfig(), SimulatedBeam(), None, observers=[EachRecord(ready)]).run(max_frames=1)
"""

_RSS_SCRIPT = """
import importlib, json, sys
from hardware import SimulatedBeam
from maestro.observer import EachRecord
from maestro.session import GatingSession, SessionConfig

n, settle = int(sys.argv[1]), int(sys.argv[2])
workload = importlib.import_module(sys.argv[3])  # benchmarks.workload, or its installed name
rss = {}
def on_record(record):
    if record.frame == settle or record.frame == n - 1:
        rss[record.frame] = workload.rss_bytes()

w = workload.phantom_workload("mridian-8fps")
GatingSession(workload.PingPongSource(w, n), SessionConfig(), SimulatedBeam(), None, observers=[EachRecord(on_record)]).run()
print(json.dumps({"settled": rss[settle], "end": rss[n - 1]}))
"""


def _child_env(numba_cache_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # The folder holding this package (the checkout, or site-packages when installed).
    package_parent = Path(workload.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(package_parent), str(PROJECT_ROOT), env.get("PYTHONPATH", "")]
                                        ).rstrip(os.pathsep)
    env.pop("NUMBA_CACHE_DIR", None)
    if numba_cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = numba_cache_dir
    return env


def _time_to_ready(numba_cache_dir: str | None) -> float:
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", _READY_SCRIPT, str(BUNDLED_SESSION)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env(numba_cache_dir),
        cwd=PROJECT_ROOT,
    )
    line = child.stdout.readline() if child.stdout is not None else ""
    elapsed = time.perf_counter() - t0
    _, err = child.communicate(timeout=600)
    assert line.strip() == "READY" and child.returncode == 0, f"start-up child failed: {err[-2000:]}"
    return elapsed


def test_start_up_to_ready(figures, quick: bool) -> None:
    cold_s = None
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        if quick:
            # The suite has already filled the project's own Numba cache: that is warm.
            warm = [_time_to_ready(None) for _ in range(3)]
        else:
            cold_s = _time_to_ready(cache)  # an empty cache: every kernel compiles
            warm = [_time_to_ready(cache) for _ in range(3)]
    figures.record(cold_start_s=cold_s, warm_start_s=float(np.median(warm)))
    figures.check("warm_start_s")


def test_memory_growth(figures) -> None:
    n, settle = 100_000, 1_000
    done = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(n), str(settle), workload.__name__],
        capture_output=True, text=True, env=_child_env(None), cwd=PROJECT_ROOT, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rss = json.loads(done.stdout.strip().splitlines()[-1])
    figures.record(rss_frames=n, rss_growth_mb=(rss["end"] - rss["settled"]) / 1e6)
    figures.check("rss_growth_mb")
