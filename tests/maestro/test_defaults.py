"""The defaults a session starts from exist once (maestro.defaults): every configuration
object and every command's options take them from there."""

from __future__ import annotations

import dataclasses

import pytest

from maestro import defaults
from maestro.cli import build_parser
from maestro.session import SessionConfig
from maestro.validation import ValidationSettings

#: option / field name -> the shared default
SHARED = {
    "margin_mm": defaults.MARGIN_MM,
    "threshold_pct": defaults.THRESHOLD_PCT,
    "confidence_floor": defaults.CONFIDENCE_FLOOR,
    "max_frame_age_ms": defaults.MAX_FRAME_AGE_MS,
    "context_mm": defaults.CONTEXT_MM,
    "search_mm": defaults.SEARCH_MM,
    "uncertainty_mm": defaults.UNCERTAINTY_MM,
    "rigid_share": defaults.RIGID_SHARE,
}


def test_the_shared_defaults_are_the_documented_ones() -> None:
    # What README.md's option tables and the --help texts say.
    assert SHARED == {"margin_mm": 3.0, "threshold_pct": 10.0, "confidence_floor": 0.5, "max_frame_age_ms": 250.0,
                      "context_mm": 20.0, "search_mm": 15.0, "uncertainty_mm": 1.0,
                      "rigid_share": 0.5}


def test_session_config_takes_every_shared_default() -> None:
    config = SessionConfig()
    for name, value in SHARED.items():
        assert getattr(config, name) == value, name


def test_validation_settings_take_the_shared_defaults() -> None:
    settings = ValidationSettings()
    fields = {f.name for f in dataclasses.fields(ValidationSettings)}
    for name, value in SHARED.items():
        if name in fields:
            assert getattr(settings, name) == value, name
    # The traces show the session's default margin and threshold.
    assert settings.reference[:2] == (defaults.MARGIN_MM, defaults.THRESHOLD_PCT)


@pytest.mark.parametrize("argv", [["replay"], ["live", "--scanner", "127.0.0.1:1"], ["validate", "cohort", "--report", "r"], ["accuracy"]])
def test_every_command_defaults_to_the_shared_values(argv: list[str]) -> None:
    args = vars(build_parser().parse_args(argv))
    shared = {k: v for k, v in SHARED.items() if k in args}
    assert shared, f"maestro {argv[0]} has none of the shared options"
    for name, value in shared.items():
        assert args[name] == value, f"maestro {argv[0]} --{name.replace('_', '-')}"
