"""The typed error of the binary codecs: names the byte offset and the field."""

from __future__ import annotations

from pathlib import Path

from hardware.errors import InputError


class FormatError(InputError):
    """Bytes that break a rule of a binary format, at a known offset.

    The message reads ``"<source>: <field> at byte <offset>: <rule>"``.

    Parameters
    ----------
    source : str or Path
        The file or stream the bytes came from.
    offset : int
        Byte offset of the offending field from the first byte of the file or stream.
    field : str
        The field that is wrong (e.g. ``data_size``, ``n_points``, a header key).
    rule : str
        The rule it breaks.

    Attributes
    ----------
    offset : int
    field : str
        The field alone (the message also names the offset).
    """

    def __init__(self, source: str | Path, offset: int, field: str, rule: str) -> None:
        super().__init__(source, f"{field} at byte {offset}", rule)
        self.offset = int(offset)
        self.field = field
