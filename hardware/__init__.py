"""Hardware abstraction layer: the only package that touches files, sockets, clocks,
scanners and beams.

Everything the gating loop consumes arrives as a :class:`Frame` from a
:class:`FrameSource`; every beam decision leaves through a :class:`BeamInterface`.
"""

from hardware.beam import BeamInterface, BeamState, BeamTransition, SimulatedBeam
from hardware.errors import InputError
from hardware.frame import Frame, FrameSource

__all__ = [
    "BeamInterface",
    "BeamState",
    "BeamTransition",
    "Frame",
    "FrameSource",
    "InputError",
    "SimulatedBeam",
]
