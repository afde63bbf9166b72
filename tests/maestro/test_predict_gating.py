"""`maestro replay --predict-ms`: the gate decides on the predicted position."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from gating.boundary import GatingGeometry
from gating.uncertainty import DEFAULT_UNCERTAINTY_MM, away_from_reference_mm
from hardware.trackrad import read_case
from maestro.cli import main
from maestro.session import SessionConfig
from tracking.predict import RidgeARPredictor


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "frames.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("predict")
    t = np.arange(0.0, 60.0 + 1e-9, 0.2)
    phase = np.sin(np.pi * t / 4.0) ** 4
    rows = np.column_stack((t, np.zeros_like(t), -12.0 * phase, 4.0 * phase, np.zeros((t.size, 3))))
    trace = tmp / "trace.txt"
    np.savetxt(trace, rows, fmt="%.6f")
    case = tmp / "case"
    assert main(["phantom", str(case), "--trace", str(trace), "--seconds", "50", "--seed", "4",
                 "--lesion-mm", "25", "--geometry", "mridian-4fps"]) == 0
    return case


def test_default_config_has_no_prediction() -> None:
    assert SessionConfig().predict_ms == 0.0


def test_gate_uses_the_ridge_ar_prediction(case: Path, tmp_path: Path, capsys) -> None:
    plain_out, pred_out = tmp_path / "plain", tmp_path / "pred"
    # The rigid mode, whose translated boundary this test replicates.
    assert main(["replay", str(case), "--rigid", "--out", str(plain_out)]) == 0
    assert main(["replay", str(case), "--rigid", "--predict-ms", "250", "--out", str(pred_out)]) == 0
    capsys.readouterr()
    plain, pred = _rows(plain_out), _rows(pred_out)
    assert len(plain) == len(pred) == 200
    tracked = np.array([[float(r["row_mm"]), float(r["col_mm"])] for r in pred])
    # Tracking itself is unchanged by prediction.
    np.testing.assert_array_equal(tracked, [[float(r["row_mm"]), float(r["col_mm"])] for r in plain])
    # Replicate the session: the same predictor on the tracked positions, the same boundary,
    # the predicted position judged 1 mm further out (the default uncertainty allowance).
    c = read_case(case)
    assert c.first_label is not None
    geometry = GatingGeometry(c.first_label, c.spacing_mm, 3.0)
    predictor = RidgeARPredictor(0.25, 1.0 / c.fps)
    expected = []
    for r, (row_mm, col_mm) in zip(pred, tracked):
        p = predictor.update(float(r["t_acq_s"]), row_mm, col_mm)
        expected.append(geometry.outside_pct(*away_from_reference_mm(*p, DEFAULT_UNCERTAINTY_MM)))
    recorded = np.array([float(r["outside_pct"]) for r in pred])
    np.testing.assert_allclose(recorded, expected, atol=0.05)  # frames.csv rounds its values
    # ... and it does differ from deciding on the tracked position.
    plain_outside = np.array([float(r["outside_pct"]) for r in plain])
    assert np.abs(recorded - plain_outside).max() > 5.0
    assert predictor.choice == "model"


def test_predict_ms_is_validated(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["replay", "--predict-ms", "-5"])
    assert "--predict-ms" in capsys.readouterr().err
