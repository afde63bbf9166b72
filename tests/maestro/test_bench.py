"""Tests of maestro.bench: budgets and verdicts, the regression baseline, the table,
bench.json and the command, with the benchmark suite itself replaced by stored figures
(the suite is slow and is run by ``maestro bench``, not by these tests)."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest

from maestro import bench
from maestro.bench import (
    BASELINE_PATH,
    FIGURES,
    FIGURES_BY_NAME,
    REQUIRED_KEYS,
    Budget,
    bench_payload,
    check_budget,
    compare_baseline,
    evaluate,
    format_table,
    load_baseline,
    write_baseline,
)
from maestro.cli import PROJECT_ROOT, build_parser, main

#: Figures that meet every budget (and a few reported-only ones).
PASSING: dict[str, float | None] = {
    "kernel_speedup_vs_opencv": 2.0,
    "kernel_peak_mismatches": 0.0,
    "kernel_speedup_vs_opencv_8fps_15mm": 2.0,
    "tracker_step_us": 30.0,
    "tracker_step_speedup_vs_opencv": 1.4,
    "loop_p99_us": 300.0,
    "loop_p999_us": 700.0,
    "replay_fps": 8000.0,
    "warm_start_s": 1.2,
    "rss_growth_mb": 0.5,
    "loop_retained_blocks_per_frame": 2.0,
    "loop_nrt_allocs_per_frame": 22.0,
}


def _verdicts(rows: list[bench.Row]) -> dict[str, str]:
    return {r.name: r.verdict for r in rows}


# --------------------------------------------------------------------------- budgets
@pytest.mark.parametrize(
    ("op", "limit", "value", "met"),
    [(">=", 1.5, 1.5, True), (">=", 1.5, 1.49, False), ("<=", 500.0, 500.0, True),
     ("<=", 500.0, 500.1, False), (">=", 1.5, math.nan, False), ("<=", 5.0, math.inf, False)],
)
def test_budget_limits_are_inclusive_and_nan_never_passes(op: str, limit: float, value: float, met: bool) -> None:
    assert Budget(op, limit, ratio=True).met_by(value) is met


def test_every_budget_of_the_issue_is_declared() -> None:
    expected = {
        "kernel_speedup_vs_opencv": (">=", 1.5, True),
        "loop_p99_us": ("<=", 500.0, False),
        "loop_p999_us": ("<=", 1000.0, False),
        "replay_fps": (">=", 5000.0, False),
        "warm_start_s": ("<=", 2.0, False),
        "rss_growth_mb": ("<=", 5.0, False),
    }
    for name, (op, limit, ratio) in expected.items():
        budget = FIGURES_BY_NAME[name].budget
        assert budget is not None and (budget.op, budget.limit, budget.ratio) == (op, limit, ratio), name


def test_the_deformable_step_budget_is_declared_with_its_reported_peers() -> None:
    """benchmarks/test_deformable.py: the step's median is an absolute budget (enforced
    locally, reported in CI); ECC's time and the speed-up against it are reported."""
    for key in ("8fps", "4fps"):
        budget = FIGURES_BY_NAME[f"deformable_step_us_{key}"].budget
        assert budget is not None and (budget.op, budget.limit, budget.ratio) == ("<=", 2000.0, False), key
        for name in (f"ecc_affine_us_{key}", f"deformable_speedup_vs_ecc_{key}", f"deformable_step_p99_us_{key}"):
            assert FIGURES_BY_NAME[name].budget is None, name
    assert check_budget("deformable_step_us_8fps", 2500.0, ci=True) is None
    assert "deformable_step_us_8fps" in (check_budget("deformable_step_us_8fps", 2500.0, ci=False) or "")


def test_only_machine_independent_figures_form_the_baseline() -> None:
    """Absolute times vary between machines; only ratios and counts may be baselined."""
    for figure in FIGURES:
        if figure.baseline is not None:
            assert figure.unit in ("x", "blocks", "allocs"), figure.name
            assert figure.budget is None or figure.budget.ratio, figure.name


def test_check_budget_enforces_ratios_in_ci_but_only_reports_absolute_figures() -> None:
    assert check_budget("kernel_speedup_vs_opencv", 1.2, ci=True) is not None
    assert "kernel_speedup_vs_opencv" in check_budget("kernel_speedup_vs_opencv", 1.2, ci=False)
    assert check_budget("loop_p99_us", 900.0, ci=True) is None
    message = check_budget("loop_p99_us", 900.0, ci=False)
    assert message is not None and "loop_p99_us" in message and "<= 500" in message
    assert check_budget("loop_p99_us", 400.0, ci=False) is None
    assert check_budget("tracker_step_us", 1e9, ci=False) is None  # no budget: reported
    assert check_budget("loop_p99_us", None, ci=False) is None  # not measured


# --------------------------------------------------------------------------- verdicts
def test_evaluate_passes_a_run_that_meets_every_budget() -> None:
    rows = evaluate(PASSING)
    assert not any(r.failed for r in rows)
    verdicts = _verdicts(rows)
    assert verdicts["loop_p99_us"] == "pass"
    assert verdicts["tracker_step_us"] == "reported"
    assert set(REQUIRED_KEYS) <= set(verdicts)


def test_evaluate_fails_a_missed_budget_and_ci_only_reports_absolute_ones() -> None:
    figures = {**PASSING, "loop_p999_us": 1500.0, "kernel_speedup_vs_opencv": 1.3}
    local = {r.name: r for r in evaluate(figures)}
    assert local["loop_p999_us"].failed and local["loop_p999_us"].verdict == "FAIL"
    assert local["kernel_speedup_vs_opencv"].failed
    ci = {r.name: r for r in evaluate(figures, ci=True)}
    assert not ci["loop_p999_us"].failed and ci["loop_p999_us"].verdict == "miss (reported only)"
    assert ci["kernel_speedup_vs_opencv"].failed


def test_evaluate_lists_required_figures_that_were_not_measured() -> None:
    rows = _verdicts(evaluate({"kernel_speedup_vs_opencv": 2.0}))
    assert rows["warm_start_s"] == "not measured"
    assert rows["kernel_speedup_vs_opencv"] == "pass"


def test_evaluate_keeps_unknown_figures_as_reported() -> None:
    rows = {r.name: r for r in evaluate({**PASSING, "something_new_us": 3.0})}
    assert rows["something_new_us"].verdict == "reported" and not rows["something_new_us"].failed


# --------------------------------------------------------------------------- baseline
def test_a_ratio_more_than_20_percent_worse_regresses_and_is_named() -> None:
    baseline = {"kernel_speedup_vs_opencv_8fps_15mm": 2.0}
    assert compare_baseline({"kernel_speedup_vs_opencv_8fps_15mm": 1.61}, baseline) == []
    (reg,) = compare_baseline({"kernel_speedup_vs_opencv_8fps_15mm": 1.59}, baseline)
    assert reg.name == "kernel_speedup_vs_opencv_8fps_15mm"
    assert "kernel_speedup_vs_opencv_8fps_15mm regressed" in reg.message()
    assert reg.change_pct == pytest.approx(-20.5)


def test_an_allocation_count_regresses_when_it_grows_beyond_tolerance_and_slack() -> None:
    baseline = {"loop_nrt_allocs_per_frame": 10.0, "loop_retained_blocks_per_frame": 0.0}
    assert compare_baseline({"loop_nrt_allocs_per_frame": 12.5, "loop_retained_blocks_per_frame": 0.4}, baseline) == []
    regs = compare_baseline({"loop_nrt_allocs_per_frame": 12.6, "loop_retained_blocks_per_frame": 0.6}, baseline)
    assert [r.name for r in regs] == ["loop_nrt_allocs_per_frame", "loop_retained_blocks_per_frame"]
    # fewer allocations or a faster kernel is never a regression
    assert compare_baseline({"loop_nrt_allocs_per_frame": 1.0}, baseline) == []
    assert compare_baseline({"kernel_speedup_vs_opencv_8fps_15mm": 9.0}, {"kernel_speedup_vs_opencv_8fps_15mm": 2.0}) == []


def test_figures_missing_from_the_run_or_the_baseline_are_not_compared() -> None:
    assert compare_baseline({}, {"kernel_speedup_vs_opencv_8fps_15mm": 2.0}) == []
    assert compare_baseline({"kernel_speedup_vs_opencv_8fps_15mm": 0.1}, {}) == []
    # absolute figures are never baselined, even if a baseline file held them
    assert compare_baseline({"loop_p99_us": 9000.0}, {"loop_p99_us": 100.0}) == []


def test_baseline_round_trip_stores_only_machine_independent_figures(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    stored = write_baseline({**PASSING, "loop_p99_us": 300.0}, path)
    assert stored == {
        "kernel_speedup_vs_opencv_8fps_15mm": 2.0,
        "tracker_step_speedup_vs_opencv": 1.4,
        "loop_retained_blocks_per_frame": 2.0,
        "loop_nrt_allocs_per_frame": 22.0,
    }
    assert load_baseline(path) == stored
    data = json.loads(path.read_text())
    assert "update-baseline" in data["about"] and data["machines"][0]["machine"]["cpu"]
    assert load_baseline(tmp_path / "absent.json") == {}


def test_each_cpu_model_has_its_own_baseline_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Updating on one CPU keeps the others' entries; a CPU is compared with its own entry
    for its OpenCV version, and one without an entry with the most recently updated."""
    path = tmp_path / "baseline.json"
    cpus = iter(["AVX2 CPU", "AVX-512 CPU"])
    real = bench.machine_description
    monkeypatch.setattr(bench, "machine_description", lambda: {**real(), "cpu": next(cpus)})
    write_baseline({**PASSING, "kernel_speedup_vs_opencv_8fps_15mm": 2.5}, path)
    write_baseline({**PASSING, "kernel_speedup_vs_opencv_8fps_15mm": 1.8}, path)
    data = json.loads(path.read_text())
    assert [e["machine"]["cpu"] for e in data["machines"]] == ["AVX-512 CPU", "AVX2 CPU"]
    opencv = real()["opencv"]
    assert load_baseline(path, cpu="AVX2 CPU", opencv=opencv)["kernel_speedup_vs_opencv_8fps_15mm"] == 2.5
    assert load_baseline(path, cpu="AVX-512 CPU", opencv=opencv)["kernel_speedup_vs_opencv_8fps_15mm"] == 1.8
    assert load_baseline(path, cpu="another CPU", opencv=opencv)["kernel_speedup_vs_opencv_8fps_15mm"] == 1.8
    # Another OpenCV on a CPU with an entry: a peer of another speed, not that entry.
    assert load_baseline(path, cpu="AVX2 CPU", opencv="0.0-other")["kernel_speedup_vs_opencv_8fps_15mm"] == 1.8
    # ... and updating there adds an entry beside the CPU's first one.
    monkeypatch.setattr(bench, "machine_description", lambda: {**real(), "cpu": "AVX2 CPU", "opencv": "0.0-other"})
    write_baseline({**PASSING, "kernel_speedup_vs_opencv_8fps_15mm": 2.0}, path)
    assert load_baseline(path, cpu="AVX2 CPU", opencv=opencv)["kernel_speedup_vs_opencv_8fps_15mm"] == 2.5
    assert load_baseline(path, cpu="AVX2 CPU", opencv="0.0-other")["kernel_speedup_vs_opencv_8fps_15mm"] == 2.0
    assert len(json.loads(path.read_text())["machines"]) == 3
    # the older one-machine form still reads, for any CPU
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"figures": {"loop_nrt_allocs_per_frame": 41.0}}))
    assert load_baseline(old, cpu="any") == {"loop_nrt_allocs_per_frame": 41.0}


def test_the_stored_baseline_holds_machine_independent_figures_only() -> None:
    stored = load_baseline(BASELINE_PATH)
    assert stored, "benchmarks/baseline.json is missing or empty"
    for name in stored:
        assert FIGURES_BY_NAME[name].baseline is not None, name


# --------------------------------------------------------------------------- output
def test_table_shows_every_figure_budget_verdict_and_regressions() -> None:
    figures = {**PASSING, "loop_p99_us": 800.0}
    rows = evaluate(figures)
    regs = compare_baseline({"tracker_step_speedup_vs_opencv": 0.5}, {"tracker_step_speedup_vs_opencv": 1.4})
    table = format_table(rows, regs)
    lines = table.splitlines()
    assert lines[0].split() == ["figure", "value", "unit", "budget", "verdict"]
    for row in rows:
        assert any(line.startswith(row.name + " ") for line in lines), row.name
    p99_line = next(line for line in lines if line.startswith("loop_p99_us "))
    assert "800" in p99_line and "<= 500" in p99_line and p99_line.endswith("FAIL")
    assert lines[-1].startswith("REGRESSION: tracker_step_speedup_vs_opencv regressed")


def test_bench_json_payload_has_the_required_figures_and_the_machine() -> None:
    rows = evaluate(PASSING)
    payload = bench_payload(PASSING, rows, [], {"cpu": "test cpu"}, quick=True, ci=False)
    for key in REQUIRED_KEYS:
        assert payload[key] == PASSING[key]
    assert payload["machine"] == {"cpu": "test cpu"}
    assert payload["passed"] is True and payload["mode"] == {"quick": True, "ci": False}
    json.dumps(payload)  # serialisable as is


# --------------------------------------------------------------------------- the command
@pytest.fixture
def fake_suite(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Replace the benchmark run by writing given figures; records how it was called."""
    calls: dict[str, object] = {"figures": dict(PASSING), "status": 0}

    def run_suite(figures_path: Path, quick: bool, ci: bool, check_baseline: bool, pytest_args: list[str]) -> int:
        calls.update(quick=quick, ci=ci, check_baseline=check_baseline, pytest_args=pytest_args)
        Path(figures_path).write_text(json.dumps({"figures": calls["figures"]}))
        return int(calls["status"])

    monkeypatch.setattr(bench, "run_suite", run_suite)
    return calls


def _baseline_file(tmp_path: Path, figures: dict[str, float]) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"figures": figures}))
    return path


def test_bench_command_writes_bench_json_in_the_cwd_and_passes(
    fake_suite: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    baseline = _baseline_file(tmp_path, {"kernel_speedup_vs_opencv_8fps_15mm": 2.0})
    assert main(["bench", "--quick", "--baseline", str(baseline)]) == 0
    assert fake_suite["quick"] is True and fake_suite["check_baseline"] is True
    payload = json.loads((tmp_path / "bench.json").read_text())
    assert payload["loop_p99_us"] == 300.0 and payload["passed"] is True
    out = capsys.readouterr().out
    assert "loop_p99_us" in out and "every enforced budget met" in out


def test_bench_command_exits_non_zero_naming_a_missed_budget(
    fake_suite: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fake_suite["figures"] = {**PASSING, "warm_start_s": 3.5}
    fake_suite["status"] = 1  # the suite's own assertion failed too
    assert main(["bench", "--baseline", str(_baseline_file(tmp_path, {}))]) == 1
    assert "FAILED: warm_start_s" in capsys.readouterr().err
    assert json.loads((tmp_path / "bench.json").read_text())["passed"] is False


def test_bench_command_in_ci_reports_absolute_budgets_but_enforces_the_baseline(
    fake_suite: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fake_suite["figures"] = {**PASSING, "warm_start_s": 3.5}
    baseline = _baseline_file(tmp_path, {})
    assert main(["bench", "--quick", "--ci", "--baseline", str(baseline)]) == 0
    assert fake_suite["ci"] is True
    regressed = _baseline_file(tmp_path, {"kernel_speedup_vs_opencv_8fps_15mm": 3.0})
    assert main(["bench", "--quick", "--ci", "--baseline", str(regressed)]) == 1
    assert "kernel_speedup_vs_opencv_8fps_15mm" in capsys.readouterr().err


def test_update_baseline_rewrites_it_deliberately_without_comparing(
    fake_suite: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    baseline = _baseline_file(tmp_path, {"kernel_speedup_vs_opencv_8fps_15mm": 30.0})
    assert main(["bench", "--update-baseline", "--baseline", str(baseline)]) == 0
    assert fake_suite["check_baseline"] is False
    assert load_baseline(baseline)["kernel_speedup_vs_opencv_8fps_15mm"] == 2.0


def test_update_baseline_stores_the_worst_of_several_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lucky run must not become the bar every later run is held to."""
    ratios = iter([2.4, 1.9, 2.2])
    allocs = iter([20.0, 24.0, 22.0])

    def run_suite(figures_path: Path, quick: bool, ci: bool, check_baseline: bool, pytest_args: list[str]) -> int:
        figures = {**PASSING, "kernel_speedup_vs_opencv_8fps_15mm": next(ratios), "loop_nrt_allocs_per_frame": next(allocs)}
        Path(figures_path).write_text(json.dumps({"figures": figures}))
        return 0

    monkeypatch.setattr(bench, "run_suite", run_suite)
    monkeypatch.chdir(tmp_path)
    baseline = _baseline_file(tmp_path, {})
    assert main(["bench", "--update-baseline", "--baseline-runs", "3", "--baseline", str(baseline)]) == 0
    stored = load_baseline(baseline)
    assert stored["kernel_speedup_vs_opencv_8fps_15mm"] == 1.9  # higher is better: the lowest
    assert stored["loop_nrt_allocs_per_frame"] == 24.0  # lower is better: the highest
    assert "worst of 3 runs" in capsys.readouterr().out


def test_zero_baseline_runs_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # No run would leave nothing to store (it used to end in a NameError).
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--update-baseline", "--baseline-runs", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--baseline-runs" in err and "must be >= 1" in err and "Traceback" not in err


def test_bench_is_a_registered_subcommand_passing_extra_pytest_arguments() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--", "-k", "kernel"])
    assert args.func is bench.cmd_bench and args.quick and args.pytest_args == ["-k", "kernel"]


def test_the_default_test_run_does_not_collect_the_benchmarks() -> None:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert sorted(p.name for p in (PROJECT_ROOT / "benchmarks").glob("test_*.py"))


def test_bench_says_what_it_needs_when_the_benchmark_tools_are_missing(monkeypatch, capsys) -> None:
    import importlib.util

    from maestro import bench
    from maestro.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytest_benchmark" else real(name, *a))
    assert bench.missing_tools() == ["pytest-benchmark"]
    assert main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "needs pytest-benchmark" in err and "maestro-gating[bench]" in err and "Traceback" not in err


def test_the_suite_is_found_as_the_installed_package() -> None:
    from maestro import bench

    assert (bench.BENCH_DIR / "conftest.py").is_file() and bench.BASELINE_PATH.is_file()
