"""``maestro``: the command line.

Every refusal of bad input is one line on stderr naming the file, the field and the
rule, with exit status 2 and no traceback. The beam ends held whatever stops a session.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hardware import InputError, SimulatedBeam
from maestro.cli_args import add_session_options, add_target_options, count, number, point, positive_count, spacing

log = logging.getLogger("maestro")

#: The folder holding the packages: the source checkout when installed editable (see
#: README.md), site-packages when installed from a wheel.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
try:
    #: The bundled phantom session replayed when ``maestro replay`` gets no SOURCE:
    #: ``replay_data/`` of the checkout, installed as ``maestro_replay_data``.
    from maestro_replay_data import BUNDLED_SESSION  # pyright: ignore[reportMissingImports]  # replay_data/, installed
except ImportError:  # a checkout on sys.path without the project installed
    BUNDLED_SESSION = PROJECT_ROOT / "replay_data" / "mridian-8fps-seed1"

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_RECORDING = 3

#: Modules that each add one subcommand: ``add_parser(subparsers)`` registers it and sets
#: ``func`` (a callable taking the parsed namespace and returning an exit status). Their
#: heavy imports belong inside ``func`` so that ``maestro --help`` stays fast.
COMMAND_MODULES: list[str] = ["maestro.validate", "maestro.accuracy", "maestro.live", "maestro.scanner_sim",
                              "maestro.beam_sim", "maestro.bench", "maestro.soak", "maestro.convert"]


# -- the parser ---------------------------------------------------------------------------
class _OneLineParser(argparse.ArgumentParser):
    """An argument parser that refuses a bad option in one line (no usage block): the
    same shape as every other refusal of bad input (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="maestro",
        description="Real-time motion management for MR-guided gated radiotherapy.",
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rp = sub.add_parser(
        "replay",
        help="replay a recording through tracking, gating and a simulated beam",
        description=(
            "Replay a cine-MR recording: track the target on every frame, gate a simulated "
            "beam, and print a summary (beam-on fraction, holds by reason, tracking error "
            "against the labels when present, per-frame latency). With no SOURCE, replays "
            "the bundled phantom session."
        ),
    )
    rp.add_argument(
        "source",
        nargs="?",
        type=Path,
        default=None,
        metavar="SOURCE",
        help=f"TrackRAD2025 case folder, a folder holding one DICOM series, a SendExternal .dat file or a cine .raw "
             f"file (default: the bundled session {BUNDLED_SESSION})",
    )
    add_target_options(rp)
    add_session_options(rp)
    s = rp.add_argument_group("source")
    s.add_argument("--realtime", action="store_true", help="hand frames over at their recorded times (default: as fast as possible)")
    s.add_argument("--fps", type=number(0.0, low_inclusive=False), default=None,
                   help="frame rate for a recording without frame times")
    s.add_argument("--spacing-mm", type=spacing, default=None, metavar="MM[,MM]",
                   help="pixel spacing (row,col) for a recording whose files do not give it")
    s.add_argument("--max-frames", type=positive_count, default=None, help="stop after this many frames (>= 1)")
    s.add_argument("--reference-contours", type=Path, default=None, metavar="ROI",
                   help="tracking-contour ROI binary of this recording (the console tracker's): its frame-0 contour "
                        "is the first frame's target, and every frame's contour is compared with the tracking "
                        "(Dice, centroid distance; DIR/reference_agreement.csv with --out); default for a .dat or "
                        ".raw SOURCE: SOURCE's name with .roi, when that file exists")
    rp.add_argument("--out", type=Path, default=None, metavar="DIR",
                    help="write DIR/frames.csv (one row per frame, as decided) and DIR/session.json")
    rp.add_argument("--labels-out", type=Path, default=None, metavar="DIR",
                    help="write the tracked target masks as DIR/targets/<id>_labels.mha (TrackRAD2025 layout, "
                         "<id> = the source folder's name) for the challenge's evaluation code")
    d = rp.add_argument_group("display")
    d.add_argument("--display", action="store_true",
                   help="show the monitoring display (frame, overlays, beam state, traces) with pause, step and "
                        "speed; replays at the recorded frame rate (x1) unless --screenshot")
    d.add_argument("--screenshot", type=Path, default=None, metavar="FILE",
                   help="with --display: draw the display when the replay ends (see --frames), save it as a PNG "
                        "and exit (offscreen without a display server); as fast as possible unless --realtime")
    d.add_argument("--frames", type=count, default=None, metavar="N",
                   help="with --screenshot: end the replay after N frames and take the screenshot then")
    rp.set_defaults(func=cmd_replay)

    pp = sub.add_parser(
        "phantom",
        help="generate a deterministic phantom cine session (TrackRAD layout)",
        description=(
            "Generate a deterministic MRIdian-like liver cine phantom with a moving lesion and "
            "per-frame ground-truth labels, written as a TrackRAD2025 case folder. The same "
            "arguments always produce the same pixels."
        ),
    )
    pp.add_argument("out", type=Path, metavar="OUT", help="case folder to create (its name is the case id)")
    pp.add_argument("--geometry", choices=["mridian-8fps", "mridian-4fps"], default="mridian-8fps")
    pp.add_argument("--seconds", type=number(0.0, low_inclusive=False), default=60.0)
    pp.add_argument("--seed", type=count, default=1)
    pp.add_argument("--lesion-mm", type=number(10.0, high=40.0), default=None,
                    help="lesion diameter (mm, 10-40; default drawn from the seed)")
    pp.add_argument("--trace", type=Path, default=None, metavar="FILE",
                    help="drive the lesion with a recorded KIM trajectory (SI/AP in plane, LR through "
                         "the slice; see README); --seconds must fit in the trace unless --loop")
    pp.add_argument("--loop", action="store_true",
                    help="with --trace: play the trace back and forth to fill --seconds")
    pp.add_argument("--excursion-mm", type=number(0.0, high=60.0), default=0.0,
                    help="with --trace: add two sudden SI shifts of this size (a cough-like excursion, "
                         "held 1.5 s then back, at 30 %% and 65 %% of the session), as in "
                         "'maestro accuracy --excursion-mm'")
    pp.add_argument("--motion-from", type=Path, default=None, metavar="SERIES",
                    help="move the anatomy with the dense motion measured on a real DICOM cine series "
                         "(optical flow; the series' own anatomy is re-rendered with an inserted lesion, "
                         "see maestro/phantom/motion.py); not with --trace")
    pp.add_argument("--motion-case", default=None, metavar="NAME",
                    help="with --motion-from: a named lesion placement on the liver series (default: the first)")
    pp.add_argument("--lesion-at", type=point, default=None, metavar="ROW,COL",
                    help="with --motion-from: lesion centre on the series' first frame, in its pixels")
    pp.set_defaults(func=cmd_phantom)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(sub)
    return parser


# -- commands -----------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    from hardware.replay import ReplaySource
    from maestro.report_text import format_summary
    from maestro.session import GatingSession, session_description

    path = args.source if args.source is not None else BUNDLED_SESSION
    config = session_config(args)
    if args.reference_contours is None and path.suffix.lower() in (".dat", ".raw") and path.with_suffix(".roi").is_file():
        # A recording file travels with its contour file of the same name (as replay_data/ does).
        args.reference_contours = path.with_suffix(".roi")
        log.info("using the reference contours %s found next to %s", args.reference_contours, path)
    if args.display or args.screenshot is not None or args.frames is not None:
        from maestro.display import check_replay_options

        check_replay_options(args)  # before reading the recording: refuse bad options first
    source = ReplaySource(path, fps=args.fps, spacing_mm=args.spacing_mm, realtime=args.realtime and not args.display,
                          contours=args.reference_contours)
    beam = SimulatedBeam(args.beam_on_latency_ms, args.beam_off_latency_ms)
    recorder = open_recorder(args.out) if args.out is not None else None
    agreement = None
    if args.reference_contours is not None:
        from maestro.reference_agreement import ReferenceAgreement

        agreement = ReferenceAgreement(source.reference_masks)
    control = None
    if args.display:
        from maestro.display_feed import ReplayControl

        # The display paces the replay itself (pause, step, speed); see maestro/display_feed.py.
        control = ReplayControl(source, speed=1.0 if args.realtime or args.screenshot is None else None)
    tracked_labels = None
    if args.labels_out is not None:
        from maestro.tracked_labels import TrackedLabels

        tracked_labels = TrackedLabels(deformable=config.deformable)
    try:
        session = GatingSession(control or source, config, beam, recorder,
                                on_frame=agreement.on_frame if agreement else None,
                                on_record=tracked_labels.add if tracked_labels is not None else None)
    except ValueError as exc:  # e.g. a prediction horizon the frame rate cannot serve
        if recorder is not None:
            recorder.close()
        raise InputError(path, "--predict-ms/--fps", str(exc)) from None
    if agreement is not None:
        agreement.attach(session)
    if tracked_labels is not None:
        tracked_labels.session = session
    meta = session_description(source, config)
    if recorder is not None:
        start_recording(recorder, meta)
    try:
        if control is not None:
            from maestro.display import run_replay_display

            summary = run_replay_display(session, control, args)
        else:
            summary = session.run(max_frames=args.max_frames)
    finally:
        source.close()
        if recorder is not None:
            status = session.summary.status
            extra = {"reference_agreement": agreement.summary()} if agreement is not None else {}
            try:
                recorder.finish({**meta, "status": status, "summary": session.summary.as_dict(), **extra})
                if agreement is not None:
                    agreement.write_csv(recorder.out_dir)
            except OSError as exc:
                log.error("could not write %s: %s", recorder.session_path, exc)
    print(format_summary(source.description, summary, recorder))
    if agreement is not None:
        print(agreement.summary_text())
    if tracked_labels is not None and args.labels_out is not None and session.tracker is not None and len(tracked_labels):
        _write_tracked_labels(args.labels_out, path, tracked_labels, session)
    return 0


def _write_tracked_labels(out: Path, source_path: Path, tracked_labels, session) -> None:
    """``--labels-out``: the tracked masks in the TrackRAD layout, named after the source."""
    import re

    from hardware.tracked_labels import write_tracked_labels

    case_id = re.sub(r"[^A-Za-z0-9_-]", "_", source_path.resolve().stem) or "case"
    spacing = session.tracker.spacing_mm
    masks = tracked_labels.masks(session.reference_fraction, spacing)
    written = write_tracked_labels(out, case_id, masks, spacing)
    print(f"tracked masks     {written} ({masks.shape[0]} frames)")


def cmd_phantom(args: argparse.Namespace) -> int:
    from hardware.trackrad import write_case
    from maestro.phantom import generate_session

    if args.motion_from is not None:
        session = _motion_session(args)
    elif args.motion_case is not None or args.lesion_at is not None:
        raise InputError(args.out, "--motion-case/--lesion-at", "needs --motion-from (a DICOM cine series)")
    elif args.trace is not None:
        session = _trace_session(args)
    elif args.excursion_mm:
        raise InputError(args.out, "--excursion-mm", "needs --trace (excursions are added to a recorded trajectory)")
    else:
        session = generate_session(args.geometry, seconds=args.seconds, seed=args.seed, lesion_diameter_mm=args.lesion_mm)
    write_case(
        args.out,
        args.out.name,
        session.frames,
        session.labels,
        spacing_mm=session.spacing_mm,
        fps=session.fps,
    )
    n, h, w = session.frames.shape
    print(
        f"wrote {args.out}: {n} frames {h}x{w} at {session.spacing_mm[0]:g} mm, {session.fps:g} fps, "
        f"lesion {session.lesion_diameter_mm:.1f} mm, seed {args.seed}"
    )
    return 0


def _motion_session(args: argparse.Namespace):
    """The phantom session moved by a real series' motion (``--motion-from``)."""
    from maestro.phantom.motion import MotionPhantom, generate_motion_session, lesion_for, liver_polygon_for, series_field

    for given, name in ((args.trace is not None, "--trace"), (args.loop, "--loop"), (args.excursion_mm, "--excursion-mm")):
        if given:
            raise InputError(args.motion_from, name, "cannot be combined with --motion-from")
    series, field = series_field(args.motion_from)  # InputError for a missing or unreadable series
    fields = {"seconds": "--seconds", "lesion": "--lesion-at/--lesion-mm", "motion case": "--motion-case"}
    try:
        lesion = lesion_for(args.motion_case, args.lesion_at, args.lesion_mm, series.spacing_mm)
        phantom = MotionPhantom(series.frames, series.times_s, series.spacing_mm, args.geometry, args.seconds,
                                args.seed, lesion, field, liver_polygon_px=liver_polygon_for(args.motion_from))
    except ValueError as exc:
        field_name, _, rule = str(exc).partition(": ")
        raise InputError(args.motion_from, fields.get(field_name, field_name), rule) from None
    return generate_motion_session(phantom)


def _trace_session(args: argparse.Namespace):
    """The phantom session driven by ``--trace`` (a KIM trajectory file)."""
    import numpy as np

    from hardware.motion_trace import read_kim_trace
    from maestro.phantom import excursions_for, generate_trace_session

    trace = read_kim_trace(args.trace)
    xyz = np.stack((trace.si_mm, trace.ap_mm, trace.lr_mm), axis=1)
    try:
        return generate_trace_session(
            trace.times_s, xyz, args.geometry, seconds=args.seconds, seed=args.seed,
            lesion_diameter_mm=args.lesion_mm, loop=args.loop, trace_source=str(args.trace),
            excursions=excursions_for(trace, args.seconds, args.excursion_mm),
        )
    except ValueError as exc:
        field, _, rule = str(exc).partition(": ")
        raise InputError(args.trace, {"seconds": "--seconds"}.get(field, field), rule) from None


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


def _raise_operator_stop(signum: int, _frame: object) -> None:
    from maestro.session import OperatorStop

    raise OperatorStop(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from maestro.session import OperatorStop, RecordingFault

    # SIGTERM stops a session the way Ctrl-C does: beam held, recording closed.
    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_operator_stop)
    try:
        return _dispatch(args, OperatorStop, RecordingFault)
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _dispatch(args: argparse.Namespace, operator_stop: type[Exception], recording_fault: type[Exception]) -> int:
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"maestro: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (KeyboardInterrupt, operator_stop):
        print("maestro: stopped by the operator: beam held, recording closed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except recording_fault as exc:
        print(f"maestro: error: {exc}", file=sys.stderr)
        return EXIT_RECORDING


if __name__ == "__main__":
    raise SystemExit(main())
