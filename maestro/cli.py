"""``maestro``: the command line.

Every refusal of bad input is one line on stderr naming the file, the field and the
rule, with exit status 2 and no traceback. The beam ends held whatever stops a session.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from hardware import InputError

# Where the checkout and the bundled session are (defined with the options that use them).
from maestro.cli_args import BUNDLED_SESSION, PROJECT_ROOT

__all__ = ["BUNDLED_SESSION", "COMMAND_MODULES", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_RECORDING", "PROJECT_ROOT",
           "build_parser", "main"]

log = logging.getLogger("maestro")

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_RECORDING = 3

#: Modules that each add one subcommand: ``add_parser(subparsers)`` registers it and sets
#: ``func`` (a callable taking the parsed namespace and returning an exit status). Their
#: heavy imports belong inside ``func`` so that ``maestro --help`` stays fast.
COMMAND_MODULES: list[str] = ["maestro.replay", "maestro.phantom_command", "maestro.validate", "maestro.accuracy",
                              "maestro.live", "maestro.scanner_sim", "maestro.beam_sim", "maestro.bench", "maestro.soak",
                              "maestro.convert"]


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

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(sub)
    return parser


# -- commands -----------------------------------------------------------------------------
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
