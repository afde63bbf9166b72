"""Bad input at the command line: one line naming file, field and rule; exit 2; no traceback."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maestro.cli import main
from tests.hardware.synthetic import writable_copy


def _refused(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_path(capsys, tmp_path) -> None:
    line = _refused(capsys, ["replay", str(tmp_path / "nowhere")])
    assert str(tmp_path / "nowhere") in line


def test_empty_folder(capsys, tmp_path) -> None:
    line = _refused(capsys, ["replay", str(tmp_path)])
    assert str(tmp_path) in line


def test_truncated_mha(capsys, tmp_path, shared_data) -> None:
    case = writable_copy(shared_data / "trackrad-example" / "Z_001", tmp_path / "Z_001")
    frames = case / "images" / "Z_001_frames.mha"
    data = frames.read_bytes()
    frames.write_bytes(data[: len(data) // 2])
    line = _refused(capsys, ["replay", str(case)])
    assert "Z_001_frames.mha" in line


def test_box_outside_image(capsys, shared_data) -> None:
    line = _refused(capsys, ["replay", str(shared_data / "cine" / "liver-3T-volunteer-KS81"), "--target-box", "170,130,20,20"])
    assert "--target-box" in line and "inside the first frame" in line


def test_series_without_label_needs_a_box(capsys, shared_data) -> None:
    line = _refused(capsys, ["replay", str(shared_data / "cine" / "liver-3T-volunteer-KS81"), "--max-frames", "3"])
    assert "--target-box" in line


@pytest.mark.parametrize(
    "option",
    [["--margin-mm", "-1"], ["--threshold-pct", "nan"], ["--target-box", "1,2,3"], ["--fps", "0"], ["--spacing-mm", "a,b"]],
)
def test_option_values_are_checked(capsys, option) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", *option])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option[0] in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no usage block


def test_console_script_help() -> None:
    exe = shutil.which("maestro", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe is not None, "the console script 'maestro' is installed with the project"
    proc = subprocess.run([exe, "replay", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for option in ("--target-box", "--margin-mm", "--threshold-pct", "--beam-on-delay-ms", "--realtime", "--fps", "--out"):
        assert option in proc.stdout


@pytest.mark.parametrize("command", ["replay", "validate", "accuracy", "live"])
def test_tracker_defaults_are_the_trackers(command: str, tmp_path) -> None:
    """The command modules write their defaults as literals (importing tracking/ would
    load Numba before the command is known); they must stay those of tracking.tracker,
    the session and the validation sweep."""
    from maestro.cli import build_parser
    from maestro.session import SessionConfig
    from maestro.validation import ValidationSettings
    from tracking.tracker import DEFAULT_CONTEXT_MM, DEFAULT_SEARCH_MM

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    defaults = {a.dest: a.default for a in sub._actions}
    assert (defaults["context_mm"], defaults["search_mm"]) == (DEFAULT_CONTEXT_MM, DEFAULT_SEARCH_MM)
    for config in (SessionConfig(), ValidationSettings()):
        assert (config.context_mm, config.search_mm) == (DEFAULT_CONTEXT_MM, DEFAULT_SEARCH_MM)


def test_max_frames_must_be_at_least_one(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--max-frames", "0"])
    assert exc.value.code == 2
    assert "--max-frames" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_validate_refuses_a_report_folder_it_cannot_write_before_validating(capsys, tmp_path, kind) -> None:
    """Checked before any case runs: a long cohort must not be lost to a bad --report."""
    report = tmp_path / "report"
    if kind == "file":
        report.write_text("not a folder")
    else:
        report = Path("/proc/maestro-report")
    from maestro.cli import BUNDLED_SESSION

    code = main(["validate", str(BUNDLED_SESSION), "--report", str(report)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--report" in err and "Traceback" not in err
