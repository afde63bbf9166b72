"""Option value types shared by every ``maestro`` command, the option groups that
``maestro replay`` and ``maestro live`` share and what they build from them (the session's
configuration, its recording), and where the checkout and the bundled session are.

Each type is an ``argparse`` ``type=`` callable that turns the option's text into its value
or refuses it with :class:`argparse.ArgumentTypeError` naming the rule it enforces; the
parser (:func:`maestro.cli.build_parser`) prints that as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardware import InputError
from maestro import defaults

__all__ = [
    "BUNDLED_SESSION", "PROJECT_ROOT", "add_session_options", "add_target_options", "box", "count", "number",
    "open_recorder", "point", "port", "positive_count", "session_config", "spacing", "start_recording",
]

#: The folder holding the packages: the source checkout when installed editable (see
#: README.md), site-packages when installed from a wheel.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_SESSION: Path
try:
    #: The bundled phantom session replayed when ``maestro replay`` gets no SOURCE:
    #: ``replay_data/`` of the checkout, installed as ``maestro_replay_data``.
    from maestro_replay_data import BUNDLED_SESSION  # pyright: ignore[reportMissingImports]  # replay_data/, installed
except ImportError:  # a checkout on sys.path without the project installed
    BUNDLED_SESSION = PROJECT_ROOT / "replay_data" / "mridian-8fps-seed1"


def number(low: float | None = None, low_inclusive: bool = True, high: float | None = None) -> Callable[[str], float]:
    """A finite number within [``low``, ``high``] (``low`` excluded unless ``low_inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be finite")
        if low is not None and (value < low or (value == low and not low_inclusive)):
            rel = ">=" if low_inclusive else ">"
            raise argparse.ArgumentTypeError(f"{text!r} must be {rel} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be <= {high:g}")
        return value

    return parse


def count(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def positive_count(text: str) -> int:
    """A whole number >= 1."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def spacing(text: str) -> tuple[float, float]:
    """A pixel spacing (mm, > 0): ``MM`` for both axes or ``ROW_MM,COL_MM``."""
    parts = text.split(",")
    parse = number(0.0, low_inclusive=False)
    if len(parts) == 1:
        v = parse(parts[0])
        return (v, v)
    if len(parts) == 2:
        return (parse(parts[0]), parse(parts[1]))
    raise argparse.ArgumentTypeError(f"{text!r} must be MM or ROW_MM,COL_MM")


def point(text: str) -> tuple[float, float]:
    """A position ``ROW,COL`` (pixels, >= 0)."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} must be ROW,COL")
    parse = number(0.0)
    return (parse(parts[0]), parse(parts[1]))


def box(text: str) -> tuple[int, int, int, int]:
    """A target box ``ROW,COL,HEIGHT,WIDTH`` (pixels), by :func:`maestro.target.parse_box`'s rules."""
    from maestro.target import parse_box

    try:
        return parse_box(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.rule) from None


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be within 0 to 65535")
    return value


# -- option groups that maestro replay and maestro live share ----------------------------
def add_target_options(parser: argparse.ArgumentParser) -> None:
    """--target-box, --target-rtstruct and --roi: where the target comes from."""
    parser.add_argument("--target-box", type=box, default=None, metavar="ROW,COL,HEIGHT,WIDTH",
                        help="target on the first frame in pixels, when the recording has no first label")
    parser.add_argument("--target-rtstruct", type=Path, default=None, metavar="FILE",
                        help="the target from planning: a DICOM RT Structure Set; its ROI --roi is cut by the cine "
                             "plane (the frames' ImagePositionPatient, ImageOrientationPatient, PixelSpacing). Takes "
                             "precedence over the recording's label, which then serves as ground truth only")
    parser.add_argument("--roi", default=None, metavar="NAME",
                        help="the ROIName of the target in --target-rtstruct (e.g. GTV)")


def add_session_options(parser: argparse.ArgumentParser) -> None:
    """The session's option groups: gating, tracking (with --deformable / --rigid) and the
    simulated beam."""
    g = parser.add_argument_group("gating")
    g.add_argument("--margin-mm", type=number(0.0), default=defaults.MARGIN_MM,
                   help=f"boundary = target + margin (mm, default {defaults.MARGIN_MM:g})")
    g.add_argument("--threshold-pct", type=number(0.0, high=100.0), default=defaults.THRESHOLD_PCT,
                   help="hold while more than this %% of the target is outside the boundary "
                        f"(default {defaults.THRESHOLD_PCT:g})")
    g.add_argument("--confidence-floor", type=number(0.0, high=1.0), default=defaults.CONFIDENCE_FLOOR,
                   help=f"hold while tracking confidence is below this (0-1, default {defaults.CONFIDENCE_FLOOR:g})")
    g.add_argument("--beam-on-delay-ms", type=number(0.0), default=0.0,
                   help="conditions must hold this long before the beam is released (ms, default 0)")
    g.add_argument("--beam-on-delay-frames", type=count, default=0,
                   help="... and for this many consecutive frames (default 0)")
    g.add_argument("--max-frame-age-ms", type=number(0.0, low_inclusive=False), default=defaults.MAX_FRAME_AGE_MS,
                   help="a frame older than this when decided holds the beam as stale "
                        f"(ms, default {defaults.MAX_FRAME_AGE_MS:g})")
    g.add_argument("--predict-ms", type=number(0.0, high=2000.0), default=0.0,
                   help="decide on the target position predicted this far ahead, e.g. the system latency "
                        "(ms, 0-2000; default 0 = no prediction)")
    g.add_argument("--uncertainty-mm", type=number(0.0, high=10.0), default=defaults.UNCERTAINTY_MM,
                   help="position-uncertainty allowance: judge the target as if this much further from its "
                        f"reference position, along its displacement (mm, default {defaults.UNCERTAINTY_MM:g}: "
                        "the tracker's p95 error budget; 0 = judge it where tracked)")
    t = parser.add_argument_group("tracking")
    t.add_argument("--context-mm", type=number(0.0), default=defaults.CONTEXT_MM,
                   help=f"context around the target's bounding box in the template (mm, default {defaults.CONTEXT_MM:g})")
    t.add_argument("--search-mm", type=number(0.0, low_inclusive=False), default=defaults.SEARCH_MM,
                   help="half-width of the search window around the last confident position "
                        f"(mm, default {defaults.SEARCH_MM:g}; twice that while re-acquiring a lost target)")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--deformable", dest="deformable", action="store_true", default=True,
                      help="deformable mode (the default), for targets that change shape: propagate the reference "
                           "target by an affine registration of the region around it; outside %% and --labels-out "
                           "use the propagated target")
    mode.add_argument("--rigid", dest="deformable", action="store_false",
                      help="rigid mode: the reference target moved by the tracked translation (no registration; "
                           "about half the per-frame time, less accurate on deforming targets)")
    b = parser.add_argument_group("simulated beam")
    b.add_argument("--beam-on-latency-ms", type=number(0.0), default=0.0,
                   help="simulated beam's response time to a release (ms, default 0)")
    b.add_argument("--beam-off-latency-ms", type=number(0.0), default=0.0,
                   help="simulated beam's response time to a hold (ms, default 0)")


# -- what replay and live build from those options ----------------------------------------
def session_config(args: argparse.Namespace) -> Any:
    """The :class:`~maestro.session.SessionConfig` from every option named like one of its fields."""
    from maestro.session import SessionConfig
    from maestro.target import check_target_options

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SessionConfig) if hasattr(args, f.name)}
    check_target_options(values.get("target_box"), values.get("target_rtstruct"), values.get("roi"))
    return SessionConfig(**values)


def open_recorder(out: Path):
    """Open the session recording, refusing an output folder that cannot be written."""
    from maestro.recording import SessionRecorder

    try:
        return SessionRecorder(out)
    except OSError as exc:
        raise InputError(out, "--out", f"cannot write the recording there ({exc.strerror or exc})") from None


def start_recording(recorder, meta: dict) -> None:
    """Write the starting ``session.json``; an output that refuses it is bad input."""
    try:
        recorder.start(meta)
    except OSError as exc:
        recorder.close()
        raise InputError(recorder.session_path, "--out", f"cannot write session.json ({exc.strerror or exc})") from None
