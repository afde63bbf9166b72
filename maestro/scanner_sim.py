"""``maestro scanner-sim``: the command that runs :class:`hardware.scanner_sim.ScannerSimulator`,
which serves a recording as a live MRIdian SendExternal stream with injected faults (see
:mod:`hardware.scanner_sim` for the fault syntax; its sockets live in ``hardware/``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hardware import InputError
from hardware.scanner_sim import ScannerSimulator, load_recording, parse_fault


# -- command line -------------------------------------------------------------------------
def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from maestro.cli_args import number, port, positive_count, spacing

    p = subparsers.add_parser(
        "scanner-sim",
        help="serve a recording as a live MRIdian SendExternal stream over TCP, with injected faults",
        description=(
            "Serve a recording (any format maestro replay reads) as SendExternal records over "
            "TCP at its recorded frame times (or --fps), then the end-of-stream record. Stream "
            "time starts when the first client connects. Faults: --fault KIND@START[:DURATION] "
            "with KIND one of stall, drop, delay (these need a DURATION), disconnect, truncate, "
            "garbage; times need a unit (s or ms), e.g. stall@5s:3s, delay@4s:200ms, garbage@7s."
        ),
    )
    p.add_argument("recording", type=Path, metavar="RECORDING", help="a recording maestro replay reads")
    p.add_argument("--port", type=port, required=True, help="TCP port to listen on (0: any free port, printed)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--fps", type=number(0.0, low_inclusive=False), default=None,
                   help="frame rate to serve at (default: the recording's frame times)")
    p.add_argument("--spacing-mm", type=spacing, default=None, metavar="MM[,MM]",
                   help="pixel spacing (row,col) for a recording whose files do not give it")
    p.add_argument("--loop", action="store_true", help="repeat the recording until stopped")
    p.add_argument("--max-frames", type=positive_count, default=None, help="send at most this many frames, then end the stream")
    p.add_argument("--fault", action="append", default=[], metavar="KIND@START[:DURATION]",
                   help="inject a fault (repeatable)")
    p.set_defaults(func=cmd_scanner_sim)


def cmd_scanner_sim(args: argparse.Namespace) -> int:
    from maestro.session import OperatorStop

    faults = [parse_fault(spec) for spec in args.fault]
    frames, times_s, spacing_mm, period_s, description, geometry = load_recording(args.recording, args.fps,
                                                                                 args.spacing_mm)
    sim = ScannerSimulator(frames, times_s, spacing_mm, host=args.host, port=args.port, frame_period_s=period_s,
                           loop=args.loop, faults=faults, max_frames=args.max_frames, geometry=geometry)
    try:
        sim.start()
    except OSError as exc:
        raise InputError(f"{args.host}:{args.port}", "--port", f"cannot listen: {exc.strerror or exc}") from None
    print(f"scanner-sim serving {description} on {args.host}:{sim.port}", flush=True)
    interrupted = False
    try:
        while not sim.done.wait(0.1):
            pass
    except (KeyboardInterrupt, OperatorStop):
        interrupted = True
    finally:
        sim.stop()
    n_sent = sum(1 for e in sim.events if e.kind == "frame")
    n_lost = sum(1 for e in sim.events if e.kind == "lost")
    print(f"scanner-sim: {n_sent} frames sent, {n_lost} lost with no client"
          + (", stopped by the operator" if interrupted else ""))
    if sim.error is not None:
        raise sim.error
    return 0
