"""``maestro validate``: a cohort report with every section and real numbers, the sweep's
re-run gate against the live loop and GatingSession, and the TrackRAD2025 example's
metrics against an independent computation."""

from __future__ import annotations

import base64
import csv
import dataclasses
import html.parser
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.distance import cdist
from skimage.segmentation import find_boundaries

from hardware import SimulatedBeam
from hardware.replay import ReplaySource
from hardware.trackrad import write_case
from maestro.cli import main
from maestro.observer import EachRecord
from maestro.phantom import generate_session
from maestro.session import GatingSession, SessionConfig
from maestro.validation import Progress, ValidationSettings, config_of, find_cases, run_case

SECONDS = 8.0
KIM_TRACES = ("LiverTraj_LargeSI70s_robot.txt", "LiverTraj_Erratic70s_robot.txt",
              "LiverTraj_RegularBreathing70s_robot.txt")
SECTIONS = ("traces", "outside", "errors", "latency", "trackrad", "gating", "sweep", "itv")


def _write_cohort(folder: Path, kim_folder: Path | None) -> list[str]:
    """Three short phantom cases: KIM-driven when the traces are at hand, else the
    breathing model; different seeds."""
    names = []
    for i in range(3):
        if kim_folder is not None:
            from hardware.motion_trace import read_kim_trace
            from maestro.phantom import generate_trace_session

            trace = read_kim_trace(kim_folder / KIM_TRACES[i])
            xyz = np.column_stack([trace.si_mm, trace.ap_mm, trace.lr_mm])
            s = generate_trace_session(trace.times_s, xyz, seconds=SECONDS, seed=11 + i, trace_source=trace.source)
            name = f"kim{i}-{KIM_TRACES[i].split('_')[1]}"
        else:
            s = generate_session("mridian-8fps", seconds=SECONDS, seed=11 + i)
            name = f"model{i}"
        write_case(folder / name, name, s.frames, s.labels, spacing_mm=s.spacing_mm, fps=s.fps)
        names.append(name)
    return names


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    from tests.conftest import SHARED_DATA

    folder = tmp_path_factory.mktemp("cohort")
    kim = SHARED_DATA / "motion" / "kim-liver"
    names = _write_cohort(folder, kim if kim.is_dir() else None)
    return folder, names


class _Sections(html.parser.HTMLParser):
    """Collects element ids, table cells by table id, and embedded images."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "img":
            self.images.append(str(a.get("src")))
        if tag == "table" and a.get("id"):
            self._table = str(a["id"])
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(cohort: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory):
    folder, names = cohort
    # One broken case among the good ones: it must be reported, the others complete.
    broken = folder / "zz-broken"
    (broken / "images").mkdir(parents=True)
    (broken / "images" / "zz-broken_frames.mha").write_bytes(b"not a MetaImage")
    out = tmp_path_factory.mktemp("report")
    err = io.StringIO()
    import contextlib

    stdout = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        code = main(["validate", str(folder), "--report", str(out), "--workers", "2",
                     "--latency-ms", "0,250", "--predict-ms", "0,250"])
    return code, out, names, stdout.getvalue(), err.getvalue()


def test_cohort_report_has_every_section_with_real_numbers(report) -> None:
    code, out, names, stdout, err = report
    assert code == 1, stdout  # one case failed
    assert "FAILED zz-broken" in stdout
    assert "4/4 cases" in err and "frames/s" in err and "s left" in err
    parser = _Sections()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    assert {"cohort-summary", "cohort-sweep", "case-zz-broken"} <= parser.ids
    for name in names:
        assert f"case-{name}" in parser.ids
        for section in SECTIONS:
            assert f"{name}-{section}" in parser.ids, (name, section)
    # Every good case embeds its six figures, plus the cohort sweep plot; real PNGs.
    assert len(parser.images) == 6 * len(names) + 1
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # The cohort table: a row per case plus the mean, real numbers for the good cases.
    table = parser.tables["cohort-summary-table"]
    header = table[0]
    rows = {r[0]: dict(zip(header, r)) for r in table[1:]}
    assert set(rows) == {*names, "zz-broken (failed)", "mean"}
    for name in [*names, "mean"]:
        row = rows[name]
        assert 0.5 < float(row["Dice"]) <= 1.0
        assert 0.9 < float(row["rel. D98"]) <= 1.0 + 1e-9
        for col in ("HD95 mm", "centroid mm", "ITV margin95 mm", "gated margin95 mm", "ITV area mm2"):
            assert math.isfinite(float(row[col])) and float(row[col]) >= 0.0, (name, col)
        duty = float(row["duty cycle"].replace("\u00a0%", ""))
        assert 0.0 < duty <= 100.0
        assert float(row["ITV margin95 mm"]) >= float(row["gated margin95 mm"])
    # 4 margins x 3 thresholds x 2 latencies x 2 prediction horizons.
    assert len(parser.tables["cohort-sweep-table"]) == 1 + 48


def test_cohort_tables_and_summary_json(report) -> None:
    _, out, names, _, _ = report
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    by_name = {c["name"]: c for c in summary["cases"]}
    assert not by_name["zz-broken"]["ok"] and "zz-broken_frames.mha" in by_name["zz-broken"]["error"]
    for name in names:
        case = by_name[name]
        assert case["ok"] and len(case["sweep"]) == 48
        assert case["trackrad"]["frames_scored"] == int(SECONDS * 8) - 1
    with (out / "sweep.csv").open(encoding="utf-8") as fh:
        sweep = list(csv.DictReader(fh))
    assert len(sweep) == 48 * len(names)
    assert all(0.0 <= float(r["false_beam_on"]) <= 1.0 for r in sweep)
    with (out / "cases" / f"{names[0]}_frames.csv").open(encoding="utf-8") as fh:
        frames = list(csv.DictReader(fh))
    assert len(frames) == int(SECONDS * 8)
    assert {"row_mm", "true_row_mm", "outside_pct", "true_outside_pct", "beam_commanded", "dice"} <= set(frames[0])


def test_sweep_is_monotone_in_margin_and_threshold(report) -> None:
    # A larger margin or threshold can only let the beam on more (no release delay).
    _, out, _, _, _ = report
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for case in (c for c in summary["cases"] if c["ok"]):
        duty = {(s["margin_mm"], s["threshold_pct"], s["latency_ms"], s["predict_ms"]): s["duty_cycle"]
                for s in case["sweep"]}
        for (m, t, lat, pr), d in duty.items():
            for (m2, t2, lat2, pr2), d2 in duty.items():
                if (lat, pr) == (lat2, pr2) and m2 >= m and t2 >= t:
                    assert d2 >= d - 1e-12


def test_every_configuration_of_a_sweep_is_what_a_session_with_it_decides(cohort: tuple[Path, list[str]]) -> None:
    """Not only the reference: each swept configuration's row equals the row of a run in
    which that configuration is the one the application's session ran with, and there the
    sweep's re-gated decisions equal the session's, frame by frame."""
    folder, names = cohort
    case = folder / names[2]
    settings = ValidationSettings(margins_mm=(2.0, 3.0, 5.0), thresholds_pct=(5.0, 20.0), latencies_ms=(0.0, 250.0),
                                  predict_ms=(0.0, 250.0), figures=False)
    swept = run_case(case, settings)
    assert len(swept.sweep) == 24
    decided_differently = set()
    for row in swept.sweep:
        margin, threshold, latency, predict = config_of(row)
        alone = run_case(case, dataclasses.replace(settings, margins_mm=(margin,), thresholds_pct=(threshold,),
                                                   latencies_ms=(latency,), predict_ms=(predict,)))
        assert alone.frames["beam_live"] == alone.frames["beam_commanded"], config_of(row)
        assert alone.sweep == [row], config_of(row)
        decided_differently.add(tuple(alone.frames["beam_live"]))
    # Not vacuous: the configurations lead to different decisions.
    assert len(decided_differently) > 4


@pytest.mark.parametrize(("latency_ms", "predict_ms"), [(0.0, 0.0), (250.0, 250.0)])
def test_re_run_gate_reproduces_the_live_pass_and_gating_session(
    cohort: tuple[Path, list[str]], latency_ms: float, predict_ms: float
) -> None:
    folder, names = cohort
    case = folder / names[1]
    settings = ValidationSettings(margins_mm=(3.0,), thresholds_pct=(10.0,), latencies_ms=(latency_ms,),
                                  predict_ms=(predict_ms,), figures=False)
    res = run_case(case, settings)
    assert res.frames["beam_commanded"] == res.frames["beam_live"]
    # The same decisions as the application's own loop.
    records = []
    source = ReplaySource(case)
    try:
        session = GatingSession(source, SessionConfig(margin_mm=3.0, threshold_pct=10.0, predict_ms=predict_ms, deformable=False,
                                                          watchdog_periods=None, check_frame_age=False),
                                SimulatedBeam(latency_ms, latency_ms), observers=[EachRecord(records.append)])
        session.run()
    finally:
        source.close()
    assert [1.0 if r.beam == "on" else 0.0 for r in records] == res.frames["beam_live"]
    np.testing.assert_allclose([r.outside_pct for r in records], res.frames["outside_pct"], atol=1e-9)
    np.testing.assert_allclose([r.row_mm for r in records], res.frames["row_mm"], atol=1e-9)


def test_progress_bar_shows_cases_rate_and_time_left() -> None:
    from maestro.validation import CaseResult

    clock = iter([0.0, 10.0, 20.0])
    stream = io.StringIO()
    bar = Progress(4, stream, clock=lambda: next(clock))
    bar.update(CaseResult(name="a", path="a", ok=True, n_frames=400))
    assert "1/4 cases, 40 frames/s, 30 s left" in stream.getvalue()
    bar.update(CaseResult(name="b", path="b", ok=False, n_frames=0, error="x"))
    assert "2/4 cases, 1 failed, 20 frames/s, 20 s left" in stream.getvalue()


def test_find_cases(cohort: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, names = cohort
    assert [p.name for p in find_cases(folder)][: len(names)] == names
    assert find_cases(folder / names[0]) == [folder / names[0]]


def test_bad_source_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["validate", str(tmp_path / "nowhere"), "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]
    with pytest.raises(SystemExit):
        main(["validate", str(tmp_path), "--report", str(tmp_path / "r"), "--thresholds-pct", "5,120"])


# -- the TrackRAD2025 example against an independent computation --------------------------------
def _independent_case(labels: np.ndarray, first: np.ndarray, row_mm: list[float], col_mm: list[float],
                      sigma: float) -> dict[str, float]:
    """Metrics of the tracked predictions on 1 mm pixels, computed without maestro.evaluation.trackrad_metrics:
    integer shifts with scipy, boundaries with scikit-image, brute-force distances, and the
    challenge's dose recipe on the whole image."""
    dice, hd95, msd, com, shifts = [], [], [], [], []
    for k in range(1, labels.shape[0]):
        # Nearest-pixel translation: pixel i takes source floor(i + 0.5 - d) = i - ceil(d - 0.5).
        kr, kc = math.ceil(row_mm[k] - 0.5), math.ceil(col_mm[k] - 0.5)
        pred = ndimage.shift(first.astype(np.uint8), (kr, kc), order=0, cval=0) > 0
        true = labels[k]
        if not true.any():
            continue
        dice.append(2 * np.logical_and(pred, true).sum() / (pred.sum() + true.sum()))
        bp = np.argwhere(find_boundaries(pred, connectivity=1, mode="inner"))
        bt = np.argwhere(find_boundaries(true, connectivity=1, mode="inner"))
        d = cdist(bp, bt)
        hd95.append(max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95)))
        msd.append(d.min(axis=1).mean())
        delta = np.subtract(ndimage.center_of_mass(pred), ndimage.center_of_mass(true))
        com.append(np.linalg.norm(delta))
        shifts.append(delta)
    dilated = ndimage.binary_dilation(labels[0], structure=ndimage.generate_binary_structure(2, 1), iterations=3)
    dose = (ndimage.gaussian_filter(dilated.astype(np.float32), sigma=sigma) > 0.25).astype(np.float64)
    total = sum(ndimage.shift(dose, s, order=3, mode="nearest") for s in shifts) / len(shifts)
    d98 = np.percentile(total[labels[0]], 2) / np.percentile(dose[labels[0]], 2)
    return {"dice": float(np.mean(dice)), "hd95_mm": float(np.mean(hd95)), "msd_mm": float(np.mean(msd)),
            "centroid_mm": float(np.mean(com)), "relative_d98": float(d98)}


def test_trackrad_example_metrics_equal_an_independent_computation(shared_data: Path) -> None:
    case = shared_data / "trackrad-example" / "Z_001"
    res = run_case(case, ValidationSettings(margins_mm=(3.0,), thresholds_pct=(10.0,), latencies_ms=(0.0,),
                                            figures=False))
    assert res.trackrad is not None and res.spacing_mm == (1.0, 1.0)
    # Read the labels independently of the project's readers: ITK's first axis is time.
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "targets" / "Z_001_labels.mha")))
    labels = np.ascontiguousarray(labels.transpose(2, 0, 1)) != 0
    first = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "targets" / "Z_001_first_label.mha")))
    first = first.transpose(2, 0, 1)[0] != 0
    region = json.loads((case / "scanned-region.json").read_text())
    sigma = 6.0 if region == "lung" else 4.0
    expected = _independent_case(labels, first, res.frames["row_mm"], res.frames["col_mm"], sigma)
    for key, value in expected.items():
        assert res.trackrad[key] == pytest.approx(value, abs=1e-9), key
    assert res.trackrad["frames_scored"] == labels.shape[0] - 1
    # Per-frame values written for the report agree too (frame 0 is scored but excluded).
    assert np.nanmean(res.frames["dice"][1:]) == pytest.approx(expected["dice"], abs=1e-9)
