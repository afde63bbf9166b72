"""``maestro beam-sim``: the command that runs :class:`hardware.beam_sim.BeamSimulator`,
a MAESTRO-BEAM/1 beam endpoint that logs every command (its sockets and files live in
``hardware/``, like every other piece of I/O)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hardware import beam_protocol as bp
from hardware.beam_sim import BeamSimulator


# -- command line -------------------------------------------------------------------------
def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from maestro.cli_args import number, port

    p = subparsers.add_parser(
        "beam-sim",
        help="a simulated beam endpoint (MAESTRO-BEAM/1 over TCP) that logs every command",
        description=(
            "Listen for one gating client at a time, obey its HOLD/RELEASE commands with "
            f"acknowledgements ({bp.PROTOCOL}, this project's own protocol), hold the beam on "
            "disconnection, protocol errors or heartbeat timeout, and log every command with "
            "its receive time. Runs until Ctrl-C or SIGTERM (or, with --once, until the first "
            "client disconnects), then prints the beam timeline."
        ),
    )
    p.add_argument("--port", type=port, required=True, help="TCP port to listen on (0: any free port, printed)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--log", type=Path, default=None, metavar="FILE", help="write every command to FILE (CSV) as it arrives")
    p.add_argument("--timeline", type=Path, default=None, metavar="FILE",
                   help="write the beam timeline (state changes with reasons) to FILE (CSV) on exit")
    p.add_argument("--heartbeat-timeout-ms", type=number(0.0, low_inclusive=False), default=500.0,
                   help="hold when the beam is on and the client is silent this long (ms, default 500)")
    p.add_argument("--once", action="store_true", help="exit when the first client disconnects")
    p.set_defaults(func=cmd_beam_sim)


def cmd_beam_sim(args: argparse.Namespace) -> int:
    from hardware import InputError
    from maestro.session import OperatorStop

    sim = BeamSimulator(args.host, args.port, heartbeat_timeout_s=args.heartbeat_timeout_ms / 1000.0, log_path=args.log)
    try:
        sim.start()
    except OSError as exc:
        raise InputError(f"{args.host}:{args.port}", "--port", f"cannot listen: {exc.strerror or exc}") from None
    print(f"beam-sim listening on {args.host}:{sim.port} ({bp.PROTOCOL})", flush=True)
    try:
        while not (args.once and sim.n_clients and sim.client_closed.is_set()):
            sim.client_closed.wait(0.1)
    except (KeyboardInterrupt, OperatorStop):
        pass  # Ctrl-C or SIGTERM: the usual way to stop the endpoint
    finally:
        sim.stop()
        if args.timeline is not None:
            sim.write_timeline(args.timeline)
        text = sim.timeline_csv()
    n_cmd = sum(1 for c in sim.commands if c.verb in bp.COMMAND_VERBS)
    print(f"beam-sim: {n_cmd} commands from {sim.n_clients} client(s); beam on {sim.on_seconds():.3f} s; timeline:")
    print(text, end="")
    return 0
