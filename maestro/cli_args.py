"""Option value types shared by every ``maestro`` command.

Each type is an ``argparse`` ``type=`` callable that turns the option's text into its value
or refuses it with :class:`argparse.ArgumentTypeError` naming the rule it enforces; the
parser (:func:`maestro.cli.build_parser`) prints that as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from hardware import InputError

__all__ = ["box", "count", "number", "point", "port", "positive_count", "spacing"]


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
