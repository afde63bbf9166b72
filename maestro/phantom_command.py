"""``maestro phantom``: write a generated phantom session (breathing model, a recorded trace,
or a real series' motion) as a TrackRAD2025 case folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from hardware import InputError
from maestro.cli_args import count, number, point


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``maestro phantom``."""
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


