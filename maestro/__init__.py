"""maestro-gating application layer: the session loop, recording, CLI, display and reports.

Only this package knows all three libraries (``hardware``, ``tracking``, ``gating``)
and wires them together.
"""

__version__ = "0.1.0"
