"""``maestro validate --scheduler``: a cohort on a real Dask cluster (a ``dask scheduler``
and two ``dask worker`` processes on 127.0.0.1) gives the local run's results, survives a
worker killed mid-run, and refuses what it cannot use in one line."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (the cluster extra)")

from maestro.cli import main  # noqa: E402
from tests.maestro.test_validate import _write_cohort  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _dask_command() -> str:
    exe = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if exe is None:
        pytest.fail("the 'dask' command is not installed next to this Python (install the cluster extra)")
    return exe


class _Cluster:
    """A scheduler and workers started with the ``dask`` commands, each in its own process
    group (a worker is its nanny and the worker process the nanny restarts)."""

    def __init__(self, folder: Path, n_workers: int) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        dask = _dask_command()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = [(folder / name).open("wb") for name in ("scheduler.log", *(f"worker{k}.log"
                                                                              for k in range(n_workers)))]
        self.procs.append(subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.scheduler_file)],
            stdout=subprocess.DEVNULL, stderr=self.logs[0], env=env,
            start_new_session=True))
        deadline = time.monotonic() + 60
        while not self.scheduler_file.is_file():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError("the dask scheduler did not start: " + (folder / "scheduler.log").read_text())
            time.sleep(0.1)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        for k in range(n_workers):
            self.procs.append(subprocess.Popen(
                [dask, "worker", self.address, "--nthreads", "1", "--no-dashboard", "--name", f"w{k}",
                 "--host", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=self.logs[1 + k], env=env,
                start_new_session=True))
        with self.client() as c:
            c.wait_for_workers(n_workers, timeout=120)

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        c = distributed.Client(self.address, timeout=30, set_as_default=False)
        try:
            yield c
        finally:
            c.close()

    def close(self) -> None:
        for p in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Cluster]:
    folder = tmp_path_factory.mktemp("dask")
    try:
        c = _Cluster(folder, n_workers=2)
    except Exception:
        for log in sorted(folder.glob("*.log")):
            print(log.name, log.read_text(errors="replace")[-2000:])
        raise
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three KIM-driven phantom cases, the real TrackRAD2025 example case, and a broken
    case. Without ../shared/data the phantoms follow the breathing model and the real
    case is left out (the local-equals-cluster check still holds on the rest)."""
    from tests.conftest import SHARED_DATA

    folder = tmp_path_factory.mktemp("cluster-cohort")
    kim = SHARED_DATA / "motion" / "kim-liver"
    _write_cohort(folder, kim if kim.is_dir() else None)
    example = SHARED_DATA / "trackrad-example" / "Z_001"
    if example.is_dir():  # linked, not copied: real data stays outside the project
        (folder / "Z_001").symlink_to(example.resolve(), target_is_directory=True)
    broken = folder / "zz-broken"
    (broken / "images").mkdir(parents=True)
    (broken / "images" / "zz-broken_frames.mha").write_bytes(b"not a MetaImage")
    return folder


def _validate(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", *argv])
    return code, out.getvalue(), err.getvalue()


# -- what may differ between two runs: times and host names ---------------------------------
_TIME_KEYS = ("elapsed_s", "seconds", "latency_us", "latency_p99_us")
_HOST_KEYS = ("scheduler", "workers")


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _TIME_KEYS + _HOST_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _csv_without(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [{k: v for k, v in row.items() if k not in columns} for row in csv.DictReader(fh)]


def _html_without_times(text: str) -> str:
    """The report with its timings taken out: the run's and each case's wall time, each
    case's latency section (table and histogram), and the summary table's latency column."""
    text = re.sub(r"cases validated in [0-9.]+ s[^;]*;", "cases validated;", text)
    text = re.sub(r"Validated in [0-9.]+ s\.", "Validated.", text)
    text = re.sub(r"<h3 id='[^']*-latency'>.*?(?=<h3 )", "", text, flags=re.S)

    def drop_latency_column(table: re.Match[str]) -> str:
        rows = re.findall(r"<tr[^>]*>.*?</tr>", table.group(0), flags=re.S)
        header = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", rows[0], flags=re.S)
        col = [h.strip() for h in header].index("latency p99 us")
        out = table.group(0)
        for row in rows:
            # By position, not by text: another cell of the row may read the same.
            cell = list(re.finditer(r"<t[hd][^>]*>.*?</t[hd]>", row, flags=re.S))[col]
            out = out.replace(row, row[:cell.start()] + row[cell.end():], 1)
        return out

    return re.sub(r"<table id='cohort-summary-table'>.*?</table>", drop_latency_column, text, flags=re.S)


def _assert_same_results(local: Path, remote: Path) -> None:
    a = json.loads((local / "summary.json").read_text(encoding="utf-8"))
    b = json.loads((remote / "summary.json").read_text(encoding="utf-8"))
    assert _strip(a) == _strip(b)
    assert _csv_without(local / "cases.csv", ("latency_p99_us",)) == _csv_without(remote / "cases.csv",
                                                                                  ("latency_p99_us",))
    for name in ("sweep.csv", "cohort_sweep.csv"):
        assert (local / name).read_bytes() == (remote / name).read_bytes(), name
    frames = sorted(p.name for p in (local / "cases").iterdir())
    assert frames == sorted(p.name for p in (remote / "cases").iterdir()) and frames
    # beam_live is compared too: validate's session does not judge frames by the analysing
    # machine's clock (a worker just started after a kill once took longer than
    # --max-frame-age-ms to build its tracker on frame 0, under coverage in CI).
    timed = ("latency_us",)
    for name in frames:
        assert _csv_without(local / "cases" / name, timed) == _csv_without(remote / "cases" / name, timed), name
    assert _html_without_times((local / "report.html").read_text(encoding="utf-8")) == \
        _html_without_times((remote / "report.html").read_text(encoding="utf-8"))


def test_the_normaliser_keeps_everything_but_times() -> None:
    # It must not hide a real difference: a changed Dice cell survives it.
    html = ("<p>3/3 cases validated in 4.8 s on 2 local worker process(es); x</p><h3 id='c0-latency'>Latency</h3>"
            "<table><tr><td>125</td></tr></table><h3 id='c0-trackrad'>T</h3>"
            "<table id='cohort-summary-table'><thead><tr><th class='l'>case</th><th>Dice</th><th>latency p99 us</th>"
            "</tr></thead><tr class=''><td class='l'>c0</td><td>0.95</td><td>1701</td></tr></table>")
    other = html.replace("4.8 s on 2 local worker process(es)", "2.8 s on the Dask cluster at x (2 workers)")
    other = other.replace("<td>125</td>", "<td>203</td>").replace("<td>1701</td>", "<td>4420</td>")
    assert _html_without_times(html) == _html_without_times(other)
    assert "0.95" in _html_without_times(html) and "trackrad" in _html_without_times(html)
    assert _html_without_times(html) != _html_without_times(other.replace("0.95", "0.96"))


def test_the_normaliser_drops_the_latency_cell_by_its_column() -> None:
    # A latency p99 that reads like an earlier cell of its row (64 frames, 64 us) must take
    # only its own cell with it (this failed once in CI, comparing a local and a cluster run).
    table = ("<table id='cohort-summary-table'><thead><tr><th>case</th><th>frames</th><th>dice</th>"
             "<th>latency p99 us</th><th>hd95</th></tr></thead>"
             "<tr><td>c0</td><td>64</td><td>0.9</td><td>{}</td><td>1.5</td></tr></table>")
    assert _html_without_times(table.format(64)) == _html_without_times(table.format(91))
    assert "<td>c0</td><td>64</td><td>0.9</td><td>1.5</td>" in _html_without_times(table.format(64))


# -- the tests ---------------------------------------------------------------------------------
def test_a_cohort_on_the_cluster_equals_the_local_run(cluster: _Cluster, cohort: Path, tmp_path: Path) -> None:
    code_local, out_local, _ = _validate(str(cohort), "--report", str(tmp_path / "local"), "--workers", "2",
                                         "--quiet")
    code, out, err = _validate(str(cohort), "--report", str(tmp_path / "cluster"), "--scheduler", cluster.address)
    assert code == code_local == 1, out  # the broken case fails in both
    n = len(list(cohort.iterdir()))
    assert f"validated {n - 1}/{n} cases" in out and "FAILED zz-broken" in out
    assert f"{n}/{n} cases, 1 failed" in err and "frames/s" in err  # the progress bar, as locally
    _assert_same_results(tmp_path / "local", tmp_path / "cluster")
    summary = json.loads((tmp_path / "cluster" / "summary.json").read_text(encoding="utf-8"))
    assert summary["scheduler"] == cluster.address and summary["workers"] == 2
    assert "on the Dask cluster at" in (tmp_path / "cluster" / "report.html").read_text(encoding="utf-8")


def test_a_scheduler_file_is_an_address(cluster: _Cluster, cohort: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    first = sorted(p for p in cohort.iterdir() if p.name != "zz-broken")[0]
    (one / first.name).symlink_to(first, target_is_directory=True)
    code, out, _ = _validate(str(one), "--report", str(tmp_path / "r"), "--scheduler", str(cluster.scheduler_file),
                             "--quiet")
    assert code == 0 and "validated 1/1 cases" in out, out


def test_a_worker_killed_mid_run_loses_no_case(cluster: _Cluster, cohort: Path, tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    for p in sorted(cohort.iterdir()):
        if p.name != "zz-broken":
            (good / p.name).symlink_to(p.resolve(), target_is_directory=True)
    assert _validate(str(good), "--report", str(tmp_path / "local"), "--workers", "2", "--quiet")[0] == 0
    run = subprocess.Popen(
        [sys.executable, "-m", "maestro.cli", "validate", str(good), "--report", str(tmp_path / "cluster"),
         "--scheduler", cluster.address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    killed: tuple[str, int] | None = None
    try:
        with cluster.client() as c:
            pids: dict[str, int] = c.run(os.getpid)
            deadline = time.monotonic() + 120
            while killed is None and time.monotonic() < deadline and run.poll() is None:
                busy = sorted(addr for addr, keys in c.processing().items()
                              if any(str(k).startswith("maestro-") for k in keys))
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)  # mid-case; its nanny starts a new worker
                    killed = (busy[0], pids[busy[0]])
                time.sleep(0.05)
            out, err = run.communicate(timeout=600)
            assert killed is not None, "no worker was running a case to kill"
            deadline = time.monotonic() + 60
            while killed[0] in c.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert killed[0] not in c.scheduler_info()["workers"], "the killed worker is still registered"
            c.wait_for_workers(2, timeout=120)  # the nanny's replacement, for the next tests
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    n = len(list(good.iterdir()))
    assert run.returncode == 0, (out.decode(), err.decode())
    assert f"validated {n}/{n} cases" in out.decode()
    _assert_same_results(tmp_path / "local", tmp_path / "cluster")


def _read_all(stream: Any, chunks: list[bytes]) -> None:
    """Collect a pipe's bytes as they come, until it closes."""
    while chunk := stream.read1(4096):
        chunks.append(chunk)


def test_a_lost_scheduler_keeps_the_cases_done(cohort: Path, tmp_path: Path) -> None:
    # A cluster of its own, with one worker: this test kills its scheduler.
    (tmp_path / "dask").mkdir()
    lonely = _Cluster(tmp_path / "dask", n_workers=1)
    run: subprocess.Popen[bytes] | None = None
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "maestro.cli", "validate", str(cohort), "--report", str(tmp_path / "r"),
             "--scheduler", lonely.address],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        # A case done means the run has its result: wait for its progress line ("1/5
        # cases"), not for the worker to hold a result the client may not have gathered yet.
        err_chunks: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(run.stderr, err_chunks), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None and not re.search(
                rb"\] [1-9][0-9]*/[0-9]+ cases", b"".join(err_chunks)):
            time.sleep(0.05)
        os.killpg(lonely.procs[0].pid, signal.SIGKILL)
        out_b = run.communicate(timeout=300)[0]
        reader.join(timeout=10)
        err_b = b"".join(err_chunks)
    finally:
        if run is not None and run.poll() is None:
            run.kill()
            run.wait()
        lonely.close()
    out, err = out_b.decode(), err_b.decode()
    n = len(list(cohort.iterdir()))
    done = int(re.search(r"validated (\d+)/", out).group(1))
    assert run.returncode == 1 and 1 <= done < n - 1, out
    assert out.count("scheduler-connection-lost") >= 1 and "Traceback" not in err, (out, err)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text(encoding="utf-8"))
    assert sum(case["ok"] for case in summary["cases"]) == done and len(summary["cases"]) == n


def test_a_worker_running_other_code_is_refused(cluster: _Cluster) -> None:
    from hardware import InputError
    from hardware.dask_cluster import check_same_code

    with cluster.client() as c:
        # Every process's own pid: the workers' differ from ours, as other code would.
        with pytest.raises(InputError, match="run different maestro-gating code"):
            check_same_code(c, os.getpid, cluster.address)
        from maestro.validation.cluster import code_fingerprint

        assert check_same_code(c, code_fingerprint, cluster.address) == 2


def test_a_case_a_worker_cannot_see_is_named(tmp_path: Path) -> None:
    from maestro.validation import ValidationSettings
    from maestro.validation.cluster import run_case_on_worker

    res = run_case_on_worker(str(tmp_path / "not-shared" / "case7"), ValidationSettings())
    assert not res.ok and res.name == "case7"
    assert "not found on worker host" in res.error and "a path every worker mounts" in res.error


def test_no_scheduler_is_one_line_and_exit_2(cohort: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    code, out, err = _validate(str(cohort), "--report", str(tmp_path / "r"), "--scheduler", f"tcp://127.0.0.1:{port}")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"tcp://127.0.0.1:{port}: --scheduler: no Dask scheduler answered" in err
    assert time.monotonic() - t0 < 60
    code, _, err = _validate(str(cohort), "--report", str(tmp_path / "r"), "--scheduler", str(tmp_path / "s.json"))
    assert code == 2 and "no such scheduler file" in err and err.count("\n") == 1


def test_workers_and_scheduler_together_are_refused(cohort: Path, tmp_path: Path) -> None:
    code, _, err = _validate(str(cohort), "--report", str(tmp_path / "r"), "--scheduler", "tcp://127.0.0.1:1",
                             "--workers", "2")
    assert code == 2 and "--workers: 2: cannot be given with --scheduler" in err


def test_without_distributed_the_option_says_what_to_install(monkeypatch: pytest.MonkeyPatch, cohort: Path,
                                                             tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    code, _, err = _validate(str(cohort), "--report", str(tmp_path / "r"), "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "pip install 'maestro-gating[cluster]'" in err and "Traceback" not in err
