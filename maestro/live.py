"""``maestro live``: gate a beam from a live MRIdian cine stream.

The same session loop as ``maestro replay`` (:class:`maestro.session.GatingSession`)
runs on :class:`hardware.mridian_source.MRIdianSource` (SendExternal records over TCP)
and commands either a beam endpoint over TCP (:class:`hardware.beam_tcp.TcpBeam`,
protocol MAESTRO-BEAM/1) or, without ``--beam``, a simulated beam. The session ends with
the beam held at the end-of-stream record, on Ctrl-C, on SIGTERM, or when the scanner
cannot be reached within the reconnection policy.

The gating, tracking and simulated-beam options are those of ``maestro replay`` (shared
with it, so the two commands always accept the same ones).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXIT_SCANNER_LOST = 1


def parse_endpoint(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6addr]:PORT`` for IPv6) as (host, port).

    Raises
    ------
    argparse.ArgumentTypeError
        No port, or a port outside 1-65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{option} {text!r} must be HOST:PORT, e.g. 127.0.0.1:5050")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} {text!r}: port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{option} {text!r}: port must be within 1 to 65535")
    return host, port


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from maestro.cli_args import add_session_options, add_target_options, count, number, positive_count

    p = subparsers.add_parser(
        "live",
        help="gate a beam from a live MRIdian cine stream (SendExternal records over TCP)",
        description=(
            "Receive cine frames from the scanner side as SendExternal records over TCP "
            "(this project's choice of transport), track and gate every frame as maestro "
            "replay does, and command the beam over TCP with the MAESTRO-BEAM/1 line protocol "
            "(or a simulated beam without --beam). A stall, disconnection or malformed record "
            "holds the beam within one frame period; the source reconnects and gating resumes "
            "when frames flow again. Ends with the beam held at the end of the stream, on "
            "Ctrl-C or on SIGTERM."
        ),
    )

    def endpoint(option: str):
        return lambda text: parse_endpoint(text, option)

    p.add_argument("--scanner", type=endpoint("--scanner"), required=True, metavar="HOST:PORT",
                   help="where the scanner side serves SendExternal records")
    p.add_argument("--beam", type=endpoint("--beam"), default=None, metavar="HOST:PORT",
                   help="MAESTRO-BEAM/1 beam endpoint (default: a simulated beam in this process)")
    p.add_argument("--reference", type=Path, default=None, metavar="RECORDING",
                   help="take the target on the first frame from this recording's first label "
                        "(a recording maestro replay reads); otherwise --target-box")
    add_target_options(p)
    add_session_options(p)
    s = p.add_argument_group("live source")
    s.add_argument("--fps", type=number(0.0, low_inclusive=False), default=8.0,
                   help="nominal frame rate of the stream (frames/s, default 8); sets the frame period")
    s.add_argument("--stall-periods", type=number(1.0, low_inclusive=False), default=1.5,
                   help="no frame for this many frame periods is a stall: beam held (default 1.5)")
    s.add_argument("--recovery-frames", type=count, default=2,
                   help="on-time frames needed after a fault before the source is trusted again (>= 1, default 2)")
    s.add_argument("--connect-attempts", type=count, default=20,
                   help="consecutive failed connection attempts before giving up (default 20; 0: never give up)")
    s.add_argument("--connect-timeout-ms", type=number(0.0, low_inclusive=False), default=1000.0,
                   help="one connection attempt's time limit (ms, default 1000)")
    s.add_argument("--max-frames", type=positive_count, default=None, help="stop after this many frames (>= 1)")
    bl = p.add_argument_group("beam link")
    bl.add_argument("--beam-ack-timeout-ms", type=number(0.0, low_inclusive=False), default=250.0,
                    help="a command not acknowledged this fast breaks the link: beam counts as held (ms, default 250)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write DIR/frames.csv, DIR/events.csv and DIR/session.json")
    p.add_argument("--display", action="store_true",
                   help="show the monitoring display (read-only; closing it ends the session with the beam held)")
    p.set_defaults(func=cmd_live)


def _reference_label(path: Path) -> Any:
    from hardware import InputError
    from hardware.replay import ReplaySource

    with ReplaySource(path) as recording:
        label = recording.reference_label
    if label is None:
        raise InputError(path, "--reference", "the recording has no first-frame label; give --target-box instead")
    return label


def cmd_live(args: argparse.Namespace) -> int:
    from hardware import InputError, SimulatedBeam
    from hardware.beam_protocol import PROTOCOL
    from hardware.beam_tcp import TcpBeam
    from hardware.mridian_source import MRIdianSource
    from maestro.cli_args import open_recorder, session_config, start_recording
    from maestro.report_text import format_summary
    from maestro.session import GatingSession, session_description

    if args.recovery_frames < 1:
        raise InputError("--recovery-frames", str(args.recovery_frames), "must be >= 1")
    config = session_config(args)
    if args.display:
        from maestro.display import ensure_platform

        ensure_platform(offscreen=False)
    reference = _reference_label(args.reference) if args.reference is not None else None
    scanner_host, scanner_port = args.scanner
    source = MRIdianSource(
        scanner_host,
        scanner_port,
        frame_period_s=1.0 / args.fps,
        connect_timeout_s=args.connect_timeout_ms / 1000.0,
        stall_timeout_factor=args.stall_periods,
        max_connect_attempts=args.connect_attempts or None,
        recovery_frames=args.recovery_frames,
        reference_label=reference,
    )
    beam: Any
    if args.beam is not None:
        beam_host, beam_port = args.beam
        try:
            beam = TcpBeam(beam_host, beam_port, ack_timeout_s=args.beam_ack_timeout_ms / 1000.0)
        except OSError as exc:
            raise InputError(f"{beam_host}:{beam_port}", "--beam",
                             f"cannot connect to the beam endpoint ({exc.strerror or exc})") from None
        beam_text = f"{PROTOCOL} endpoint tcp://{beam_host}:{beam_port}"
    else:
        beam = SimulatedBeam(args.beam_on_latency_ms, args.beam_off_latency_ms)
        beam_text = "simulated beam"
    recorder = None
    try:
        recorder = open_recorder(args.out) if args.out is not None else None
        try:
            session = GatingSession(source, config, beam, recorder)
        except ValueError as exc:  # e.g. a prediction horizon the frame rate cannot serve
            raise InputError(f"{scanner_host}:{scanner_port}", "--predict-ms/--fps", str(exc)) from None
        meta = {**session_description(source, config), "beam": beam_text,
                "live": {"scanner": f"tcp://{scanner_host}:{scanner_port}", "stall_periods": args.stall_periods,
                         "recovery_frames": args.recovery_frames}}
        if recorder is not None:
            start_recording(recorder, meta)
        try:
            if args.display:
                from maestro.display import DisplayUnavailable, run_with_display

                try:
                    summary = run_with_display(session, max_frames=args.max_frames, recording_path=args.out,
                                               title=f"maestro live: {source.description}").summary
                except DisplayUnavailable as exc:
                    raise InputError("--display", "display", str(exc)) from None
            else:
                summary = session.run(max_frames=args.max_frames)
        finally:
            source.close()
            if session.summary.stopped_by == "end of recording" and source.ended_by:
                session.summary.stopped_by = source.ended_by
            if recorder is not None:
                status = session.summary.status
                faults = [dataclasses.asdict(e) for e in source.fault_history]
                try:
                    recorder.finish({**meta, "status": status, "summary": session.summary.as_dict(),
                                     "source_faults": faults})
                except OSError as exc:
                    log.error("could not write %s: %s", recorder.session_path, exc)
    finally:
        if isinstance(beam, TcpBeam):
            beam.close()
        if recorder is not None:
            recorder.close()
    print(format_summary(source.description, summary, recorder))
    n_faults = sum(1 for e in source.fault_history if e.kind != "cleared")
    print(f"live: {source.n_frames} frames received, {n_faults} source faults; ended: {source.ended_by}; beam: {beam_text}")
    if source.ended_by is not None and source.ended_by.startswith("gave up"):
        print(f"maestro: scanner lost: {source.ended_by}: beam held")
        return EXIT_SCANNER_LOST
    return 0
