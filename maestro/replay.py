"""``maestro replay``: a recording (or the bundled session) through the session loop, with a
simulated beam, the summary printed; optionally recorded, displayed, and its tracked
targets written."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hardware import InputError, SimulatedBeam
from maestro.cli_args import (
    BUNDLED_SESSION,
    add_session_options,
    add_target_options,
    count,
    number,
    open_recorder,
    positive_count,
    session_config,
    spacing,
    start_recording,
)

log = logging.getLogger("maestro")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``maestro replay``."""
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
        from maestro.evaluation.reference_agreement import ReferenceAgreement

        agreement = ReferenceAgreement(source.reference_masks)
    control = None
    if args.display:
        from maestro.display_feed import ReplayControl

        # The display paces the replay itself (pause, step, speed); see maestro/display_feed.py.
        control = ReplayControl(source, speed=1.0 if args.realtime or args.screenshot is None else None)
    tracked_labels = None
    if args.labels_out is not None:
        from maestro.evaluation.tracked_labels import TrackedLabels

        tracked_labels = TrackedLabels(deformable=config.deformable)
    try:
        session = GatingSession(control or source, config, beam, recorder,
                                observers=[o for o in (tracked_labels, agreement) if o is not None])
    except ValueError as exc:  # e.g. a prediction horizon the frame rate cannot serve
        if recorder is not None:
            recorder.close()
        raise InputError(path, "--predict-ms/--fps", str(exc)) from None
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


