"""The one error type for input the project refuses at its edge."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Input that breaks a stated rule: names the file, the field and the rule.

    The command-line entry point prints ``str(error)`` as one line and exits non-zero,
    without a traceback.

    Parameters
    ----------
    path : str or Path
        The file or folder the problem is in.
    field : str
        The field, tag, key or option that is wrong (e.g. ``"PixelSpacing"``).
    rule : str
        The rule it breaks, phrased so that it names the fix.
    """

    def __init__(self, path: str | Path, field: str, rule: str) -> None:
        self.path = str(path)
        self.field = field
        self.rule = rule
        super().__init__(f"{self.path}: {field}: {rule}")
