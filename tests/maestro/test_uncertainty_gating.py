"""`maestro replay --uncertainty-mm`: the gate judges the target that much further out."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gating.boundary import GatingGeometry
from gating.uncertainty import away_from_reference_mm
from hardware.trackrad import read_case
from maestro.cli import main

BUNDLED = Path(__file__).resolve().parents[2] / "replay_data" / "mridian-8fps-seed1"


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "frames.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_allowance_moves_the_judged_target_and_only_that(tmp_path: Path, capsys) -> None:
    runs = {}
    for u in ("0", "1", "2"):
        out = tmp_path / f"u{u}"
        assert main(["replay", str(BUNDLED), "--rigid", "--uncertainty-mm", u, "--out", str(out)]) == 0
        runs[float(u)] = _rows(out)
    capsys.readouterr()
    tracked = {u: np.array([[float(r["row_mm"]), float(r["col_mm"])] for r in rows]) for u, rows in runs.items()}
    # Tracking is untouched by the allowance.
    np.testing.assert_array_equal(tracked[0.0], tracked[1.0])
    np.testing.assert_array_equal(tracked[0.0], tracked[2.0])
    # Each frame's outside_pct is that of the translated reference, judged u mm further out.
    c = read_case(BUNDLED)
    assert c.first_label is not None
    geometry = GatingGeometry(c.first_label, c.spacing_mm, 3.0)
    for u, rows in runs.items():
        expected = [geometry.outside_pct(*away_from_reference_mm(row, col, u)) for row, col in tracked[u]]
        np.testing.assert_allclose([float(r["outside_pct"]) for r in rows], expected, atol=0.05)
    # A larger allowance never switches the beam on where a smaller one held it.
    on = {u: np.array([r["beam"] == "on" for r in rows]) for u, rows in runs.items()}
    assert not (on[1.0] & ~on[0.0]).any() and not (on[2.0] & ~on[1.0]).any()
    assert on[0.0].sum() > on[1.0].sum() > on[2.0].sum() > 0
