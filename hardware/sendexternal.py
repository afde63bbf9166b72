"""SendExternal cine records (the MRIdian console's ``*.dat`` frame stream): codec.

What is known and what is inferred
----------------------------------
The layout follows the conversion scripts published by the TrackRAD2025 organisers
(``PeterT1000/trackrad2025``, ``scripts/proprietary_format_conversion/mridian_cine_data``,
"based on code provided by ViewRay"); no sample file is public. See
``../shared/docs/mridian-formats.md``. Every integer is little-endian. A stream is a
sequence of records::

    header_size  int32   bytes of ASCII header that follow; 0 ends the stream
    data_size    int32   bytes of pixel data; must equal rows x cols x 2
    header       header_size bytes of ASCII "key = value" entries
    pixels       rows x cols int16

Known (from the scripts):

- the record layout above, and that a record whose ``header_size`` is 0 ends the stream
  (as does the end of the file);
- the header keys ``DICOM.NoOfRows``, ``DICOM.NoOfCols``, ``DICOM.PosVec.0/1/2``,
  ``DICOM.SliceThickness``, ``DICOM.SliceLocation``, ``DICOM.PixelSpacing.0/1`` and
  ``DICOM.SequenceDescription``; the script removes all whitespace before searching, so
  ``key=value`` and ``key = value`` are both accepted here; other keys are kept;
- the pixel order: the rows x cols values fill a rows x cols matrix column by column
  (the row index varies fastest), which is then mirrored left-right. In NumPy terms the
  displayed frame is ``np.frombuffer(buf, "<i2").reshape(cols, rows).T[:, ::-1]``.

Inferred (this project's reading; the scripts do not say):

- ``DICOM.PixelSpacing.0`` is the spacing between *rows* (mm) and ``.1`` between
  columns, following the DICOM ``PixelSpacing`` convention, applied to the displayed
  frame. MRIdian cine pixels are square (3.515625 mm in the scripts' example), so the two
  readings cannot be told apart on console data.
- ``data_size`` is rows x cols x 2 (the published reader ignores it); a record whose
  sizes disagree is refused rather than guessed at.
- The end record carries ``data_size`` 0 after its ``header_size`` 0 (8 zero bytes,
  :data:`END_OF_STREAM`). A file that ends right after the 4-byte ``header_size`` 0 is
  also accepted, since the published reader stops reading there. Bytes after the end
  record are refused.
- Trailing NUL bytes in a header are C-string padding and are ignored.
- A value extends from its ``=`` to the whitespace before the next ``key =`` (or the end
  of the header), so a value may contain spaces (e.g. a sequence description).

What the encoder writes, so that the published reader reads every file (it stops at the
first of its keys that is missing; ``tests/hardware/test_sendexternal_octave.py`` runs a
reader with its parsing rules in Octave on a real series):

- every key that reader parses (:data:`READER_KEYS`): the sizes, ``PixelSpacing.0/1``,
  ``SliceThickness``, ``SliceLocation``, ``PosVec.0/1/2`` and ``SequenceDescription``, with
  true values when the source knows them (a DICOM series' ``ImagePositionPatient``,
  ``ImageOrientationPatient``, ``SliceThickness``, ``SliceLocation``, ``PixelSpacing``) and
  the documented defaults otherwise (:data:`DEFAULT_POSITION`,
  :data:`DEFAULT_SLICE_THICKNESS_MM`, :data:`DEFAULT_SLICE_LOCATION`,
  :data:`DEFAULT_SEQUENCE_DESCRIPTION`);
- ``DICOM.RowVec.0/1/2`` and ``DICOM.ColVec.0/1/2`` when the orientation is known, as the
  vendor-derived DICOM-to-SendExternal script writes them, with ``PosVec`` as the centre
  of the frame (see :mod:`hardware.plane_geometry`). That RowVec / ColVec describe the
  *displayed* frame (after the mirror) is this project's reading.

The project's own extensions:

- ``Maestro.Defaulted`` (:data:`DEFAULTED_KEY`): the reader keys written as defaults,
  which the decoder gives back as unknown, so a round trip loses nothing and adds nothing.

- ``Maestro.AcquisitionTime_s`` (:data:`ACQUISITION_TIME_KEY`): the frame's acquisition
  time in s from the start of the series, written by this project's encoder so that a
  recording keeps its frame times. The console is not known to send it; without it a
  reader needs the frame rate from elsewhere.
- Bounds that stop a corrupt size from allocating memory: ``header_size`` <=
  :data:`MAX_HEADER_BYTES`, 1 <= rows, cols <= :data:`MAX_DIMENSION`.
- TCP as the live transport of these records is this project's choice (see
  :mod:`hardware.mridian_source`); the decoder works the same on a file and on a socket
  byte stream.
"""

from __future__ import annotations

import logging
import math
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypedDict

import numpy as np

from hardware.errors import InputError
from hardware.format_errors import FormatError
from hardware.plane_geometry import PlaneGeometry

log = logging.getLogger(__name__)

#: The largest header accepted (bytes). Console headers are a few hundred bytes.
MAX_HEADER_BYTES = 64 * 1024
#: The largest number of rows or columns accepted. MRIdian cine frames are 270 x 270 or less.
MAX_DIMENSION = 1024
#: The largest pixel block accepted (bytes), implied by :data:`MAX_DIMENSION`.
MAX_DATA_BYTES = MAX_DIMENSION * MAX_DIMENSION * 2
#: The largest pixel spacing or slice thickness accepted as plausible (mm).
MAX_SPACING_MM = 100.0

ROWS_KEY = "DICOM.NoOfRows"
COLS_KEY = "DICOM.NoOfCols"
SPACING_KEYS = ("DICOM.PixelSpacing.0", "DICOM.PixelSpacing.1")
POSITION_KEYS = ("DICOM.PosVec.0", "DICOM.PosVec.1", "DICOM.PosVec.2")
SLICE_THICKNESS_KEY = "DICOM.SliceThickness"
SLICE_LOCATION_KEY = "DICOM.SliceLocation"
SEQUENCE_DESCRIPTION_KEY = "DICOM.SequenceDescription"
ROW_VECTOR_KEYS = ("DICOM.RowVec.0", "DICOM.RowVec.1", "DICOM.RowVec.2")
COL_VECTOR_KEYS = ("DICOM.ColVec.0", "DICOM.ColVec.1", "DICOM.ColVec.2")
#: The project's own header key: acquisition time in s from the start of the series.
ACQUISITION_TIME_KEY = "Maestro.AcquisitionTime_s"
#: The project's own header key: which of the written reader keys hold a default, not a
#: known value (comma-separated names without the ``DICOM.`` prefix, so that a reader
#: searching the header for ``DICOM.PosVec.0`` finds the key only once).
DEFAULTED_KEY = "Maestro.Defaulted"

#: What the encoder writes for a reader key whose value the record does not know. The
#: published reader needs every one of them (it stops at the first one missing); the
#: names of the defaulted ones go in :data:`DEFAULTED_KEY`, and the decoder gives them
#: back as unknown (None).
DEFAULT_POSITION: tuple[float, float, float] = (0.0, 0.0, 0.0)
#: The MRIdian cine's slice thickness at both frame rates (mm; ../shared/docs/domain.md).
DEFAULT_SLICE_THICKNESS_MM = 7.0
DEFAULT_SLICE_LOCATION = 0.0
DEFAULT_SEQUENCE_DESCRIPTION = "unknown"

#: Keys every record must carry.
REQUIRED_KEYS: tuple[str, ...] = (ROWS_KEY, COLS_KEY, *SPACING_KEYS)
#: Keys whose values the record holds as typed fields.
TYPED_KEYS: frozenset[str] = frozenset(
    {ROWS_KEY, COLS_KEY, *SPACING_KEYS, *POSITION_KEYS, SLICE_THICKNESS_KEY, SLICE_LOCATION_KEY,
     SEQUENCE_DESCRIPTION_KEY, *ROW_VECTOR_KEYS, *COL_VECTOR_KEYS, ACQUISITION_TIME_KEY, DEFAULTED_KEY}
)
#: Keys the published reader (``ConvertSendExternalToMatlabVolume.m``) parses: the encoder
#: writes all of them, with a default where the value is unknown.
READER_KEYS: tuple[str, ...] = (ROWS_KEY, COLS_KEY, *POSITION_KEYS, SLICE_THICKNESS_KEY, SLICE_LOCATION_KEY,
                                *SPACING_KEYS, SEQUENCE_DESCRIPTION_KEY)

_PREFIX = struct.Struct("<ii")
PREFIX_BYTES = _PREFIX.size
#: The record that ends a stream: ``header_size`` 0, then ``data_size`` 0.
END_OF_STREAM: bytes = _PREFIX.pack(0, 0)

#: A byte that may not appear in a header: anything but printable ASCII and whitespace.
_NOT_TEXT_RE = re.compile(rb"[^\t\n\r\x0b\x0c\x20-\x7e]")
# A key starts the header or follows whitespace, and is followed by optional whitespace
# and "=". Keys are dotted identifiers (DICOM.PosVec.0).
_KEY_RE = re.compile(r"(?:(?<=\s)|^)([A-Za-z_][A-Za-z0-9_.\-]*)\s*=")
_INT_RE = re.compile(r"[+-]?\d+(?:\.0*)?")
# The acquisition-time entry, found where _KEY_RE would find its key, and its value's
# first token (printable, no whitespace): what changes from one record of a stream to the
# next, so the rest of a header is parsed once per stream (SendExternalDecoder).
_TIME_ENTRY_RE = re.compile(rb"(?:(?<=\s)|^)" + re.escape(ACQUISITION_TIME_KEY.encode("ascii")) + rb"\s*=\s*([!-~]+)")


class SendExternalError(FormatError):
    """A SendExternal stream that breaks a rule of the format (names offset and field).

    Attributes
    ----------
    completed : tuple of SendExternalRecord
        Records the failing :meth:`SendExternalDecoder.feed` call completed before the
        bad bytes: good frames the caller should still hand over.
    """

    completed: tuple[SendExternalRecord, ...] = ()


@dataclass(frozen=True, eq=False)
class SendExternalRecord:
    """One cine frame as a SendExternal record.

    Attributes
    ----------
    pixels : (rows, cols) int16 ndarray, read-only
        The frame in display orientation (after the column-major fill and the left-right
        mirror), row 0 at the top.
    spacing_mm : (float, float)
        Pixel spacing (row, col) in mm from ``DICOM.PixelSpacing.0`` / ``.1`` (which index
        is the row is an inference, see the module doc).
    slice_thickness_mm : float or None
        ``DICOM.SliceThickness`` (mm), when present.
    position : (float, float, float) or None
        ``DICOM.PosVec.0/1/2`` (slice position as the console gives it), when present.
    slice_location : float or None
        ``DICOM.SliceLocation``, when present.
    sequence_description : str or None
        ``DICOM.SequenceDescription``, when present.
    row_direction, col_direction : (float, float, float) or None
        ``DICOM.RowVec.0/1/2`` and ``DICOM.ColVec.0/1/2``: the patient direction along a
        row and along a column of the displayed frame (DICOM ``ImageOrientationPatient``
        order), when present. With ``position`` they give the frame's plane
        (:attr:`geometry`).
    acquisition_time_s : float or None
        ``Maestro.AcquisitionTime_s`` (the project's extension), when present.
    metadata : mapping of str to str, read-only
        Every header entry as read, raw strings, in header order (typed keys included).
        On encoding, entries whose keys are not typed fields are written after the typed
        ones; typed keys are always written from the typed fields.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float]
    slice_thickness_mm: float | None = None
    position: tuple[float, float, float] | None = None
    slice_location: float | None = None
    sequence_description: str | None = None
    acquisition_time_s: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    row_direction: tuple[float, float, float] | None = None
    col_direction: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        pixels = self.pixels
        if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype != np.int16:
            what = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
            raise ValueError(f"pixels must be a (rows, cols) int16 array, got {what}")
        rows, cols = pixels.shape
        if not (1 <= rows <= MAX_DIMENSION and 1 <= cols <= MAX_DIMENSION):
            raise ValueError(f"pixels must have 1 to {MAX_DIMENSION} rows and columns, got {rows} x {cols}")
        if not pixels.flags.c_contiguous or pixels.flags.writeable:
            pixels = np.ascontiguousarray(pixels).copy()
            pixels.flags.writeable = False
            object.__setattr__(self, "pixels", pixels)
        spacing = tuple(float(v) for v in self.spacing_mm)
        if len(spacing) != 2 or not all(math.isfinite(v) and 0.0 < v <= MAX_SPACING_MM for v in spacing):
            raise ValueError(f"spacing_mm must be two finite values in (0, {MAX_SPACING_MM:g}] mm, got {self.spacing_mm!r}")
        object.__setattr__(self, "spacing_mm", spacing)
        if self.slice_thickness_mm is not None:
            t = float(self.slice_thickness_mm)
            if not (math.isfinite(t) and 0.0 <= t <= MAX_SPACING_MM):
                raise ValueError(f"slice_thickness_mm must be finite in [0, {MAX_SPACING_MM:g}] mm, got {t!r}")
            object.__setattr__(self, "slice_thickness_mm", t)
        for name in ("position", "row_direction", "col_direction"):
            value3 = getattr(self, name)
            if value3 is not None:
                vec = tuple(float(v) for v in value3)
                if len(vec) != 3 or not all(math.isfinite(v) for v in vec):
                    raise ValueError(f"{name} must be three finite values, got {value3!r}")
                object.__setattr__(self, name, vec)
        if (self.row_direction is None) != (self.col_direction is None):
            raise ValueError("row_direction and col_direction go together: give both or neither")
        for name in ("slice_location", "acquisition_time_s"):
            value = getattr(self, name)
            if value is not None:
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{name} must be finite, got {value!r}")
                object.__setattr__(self, name, value)
        if self.sequence_description is not None:
            text = str(self.sequence_description)
            if not _is_printable_ascii(text) or text != text.strip() or _KEY_RE.search(" " + text):
                raise ValueError(f"sequence_description must be printable ASCII without leading or trailing "
                                 f"whitespace and without 'key =' text, got {text!r}")
            object.__setattr__(self, "sequence_description", text)
        meta = dict(self.metadata)
        for key, value in meta.items():
            if not isinstance(key, str) or _KEY_RE.fullmatch(key + "=") is None:
                raise ValueError(f"metadata key {key!r} must be a dotted identifier (letters, digits, _ . -)")
            if key not in TYPED_KEYS and (not isinstance(value, str) or not _is_printable_ascii(value)
                                          or value != value.strip() or _KEY_RE.search(" " + value)):
                raise ValueError(f"metadata[{key!r}] must be printable ASCII without leading or trailing "
                                 f"whitespace and without 'key =' text, got {value!r}")
        object.__setattr__(self, "metadata", MappingProxyType(meta))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the frame."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def geometry(self) -> PlaneGeometry | None:
        """The frame's plane in the patient, when the record gives position and directions.

        ``DICOM.PosVec`` is read as the centre of pixel (rows / 2, cols / 2), the
        convention of the vendor-derived DICOM-to-SendExternal script (see
        :mod:`hardware.plane_geometry`). The record carries no frame of reference.

        Raises
        ------
        ValueError
            When the directions are not orthogonal unit vectors.
        """
        if self.position is None or self.row_direction is None or self.col_direction is None:
            return None
        return PlaneGeometry.from_centre(self.position, self.row_direction, self.col_direction, self.spacing_mm,
                                         self.shape, slice_thickness_mm=self.slice_thickness_mm,
                                         slice_location_mm=self.slice_location)


def geometry_fields(geometry: PlaneGeometry) -> dict[str, object]:
    """The :class:`SendExternalRecord` fields that carry ``geometry`` (keyword arguments).

    ``slice_location`` is the geometry's ``SliceLocation`` when the source gave one, else
    its position along the patient axis closest to the normal.
    """
    return {
        "position": tuple(geometry.centre_mm.tolist()),
        "row_direction": tuple(geometry.row_direction.tolist()),
        "col_direction": tuple(geometry.col_direction.tolist()),
        "slice_thickness_mm": geometry.slice_thickness_mm,
        "slice_location": (geometry.slice_location_mm if geometry.slice_location_mm is not None
                           else geometry.axis_location_mm),
    }


def _is_printable_ascii(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


# -- encoding ------------------------------------------------------------------------------
def _format_float(value: float) -> str:
    # repr round-trips a float exactly; the console writes "%f", which this reader also reads.
    return repr(float(value))


def header_entries(record: SendExternalRecord) -> list[tuple[str, str]]:
    """The (key, value) entries :func:`encode_record` writes, in order.

    Every key the published reader parses (:data:`READER_KEYS`) is written; an unknown
    value is written as its documented default (``DEFAULT_*``) and named in
    :data:`DEFAULTED_KEY`. The sequence description comes before the other ``DICOM.`` keys
    because the reader takes its value up to the next ``DICOM.``.
    """
    rows, cols = record.shape
    defaulted: list[str] = []

    def known(value: object, default: object, key: str) -> object:
        if value is None:
            defaulted.append(key.removeprefix("DICOM."))
            return default
        return value

    description = known(record.sequence_description, DEFAULT_SEQUENCE_DESCRIPTION, SEQUENCE_DESCRIPTION_KEY)
    thickness = known(record.slice_thickness_mm, DEFAULT_SLICE_THICKNESS_MM, SLICE_THICKNESS_KEY)
    location = known(record.slice_location, DEFAULT_SLICE_LOCATION, SLICE_LOCATION_KEY)
    position = known(record.position, DEFAULT_POSITION, "DICOM.PosVec")
    entries = [
        (ROWS_KEY, str(rows)),
        (COLS_KEY, str(cols)),
        (SEQUENCE_DESCRIPTION_KEY, str(description)),
        (SPACING_KEYS[0], _format_float(record.spacing_mm[0])),
        (SPACING_KEYS[1], _format_float(record.spacing_mm[1])),
        (SLICE_THICKNESS_KEY, _format_float(thickness)),  # type: ignore[arg-type]
        (SLICE_LOCATION_KEY, _format_float(location)),  # type: ignore[arg-type]
    ]
    if record.row_direction is not None and record.col_direction is not None:
        entries += [(k, _format_float(v)) for k, v in zip(ROW_VECTOR_KEYS, record.row_direction)]
        entries += [(k, _format_float(v)) for k, v in zip(COL_VECTOR_KEYS, record.col_direction)]
    entries += [(k, _format_float(v)) for k, v in zip(POSITION_KEYS, position)]  # type: ignore[call-overload]
    if record.acquisition_time_s is not None:
        entries.append((ACQUISITION_TIME_KEY, _format_float(record.acquisition_time_s)))
    if defaulted:
        entries.append((DEFAULTED_KEY, ",".join(defaulted)))
    entries += [(k, v) for k, v in record.metadata.items() if k not in TYPED_KEYS]
    return entries


def encode_record(record: SendExternalRecord) -> bytes:
    """The bytes of one record: sizes, ASCII header, pixels in the console's order.

    The header is one ``key = value`` entry per line. Pixels are written so that the
    decoder's column-major fill and left-right mirror give back ``record.pixels``.
    """
    header = "\n".join(f"{k} = {v}" for k, v in header_entries(record)).encode("ascii")
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(f"the header would be {len(header)} bytes, more than {MAX_HEADER_BYTES}: drop metadata")
    # Display = stored.reshape(cols, rows).T[:, ::-1], so stored = display[:, ::-1].T in C order.
    stored = np.ascontiguousarray(record.pixels[:, ::-1].T, dtype="<i2")
    data = stored.tobytes()
    return _PREFIX.pack(len(header), len(data)) + header + data


# -- decoding ------------------------------------------------------------------------------
class _Header(TypedDict):
    """A record header, parsed and checked: the typed fields of a SendExternalRecord."""

    rows: int
    cols: int
    spacing: tuple[float, float]
    thickness: float | None
    position: tuple[float, float, float] | None
    location: float | None
    description: str | None
    row_direction: tuple[float, float, float] | None
    col_direction: tuple[float, float, float] | None
    time: float | None
    metadata: dict[str, str]


def _vector(number: Callable[[str], float], keys: Sequence[str]) -> tuple[float, float, float]:
    """The three components named by ``keys``, read in order by ``number``."""
    x, y, z = keys
    return number(x), number(y), number(z)


class SendExternalDecoder:
    """Streaming decoder: bytes in, records out, the same on a file and on a socket.

    Feed it bytes as they arrive, split anywhere; each call returns the records completed
    by those bytes. Sizes are checked against their bounds before any buffer is kept for
    them, so a corrupt size never allocates memory.

    Parameters
    ----------
    source : str or Path
        Names the file or stream in error messages.

    Attributes
    ----------
    source : str
    offset : int
        Bytes of the stream consumed into complete records (including the end record).
    ended : bool
        Whether the end-of-stream record has been read.
    n_records : int
        Frame records decoded so far.
    """

    def __init__(self, source: str | Path = "<stream>") -> None:
        self.source = str(source)
        self.offset = 0
        self.ended = False
        self.n_records = 0
        self._buf = bytearray()
        self._failed: SendExternalError | None = None
        # The parsed header of the record being received, kept while its pixels arrive.
        self._pending: _Header | None = None
        # The last header parsed in full, as (text before its time value, text after it,
        # fields); None when it had no single acquisition-time entry.
        self._header_memo: tuple[bytes, bytes, _Header] | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not yet part of a complete record."""
        return len(self._buf)

    @property
    def bytes_wanted(self) -> int:
        """Bytes that complete the next part of the record in progress: its 8-byte prefix,
        then its header, then its pixels (>= 1).

        A reader that asks the stream for no more than this never reads past the end of a
        record, so each read's arrival time is that of the bytes it completes.
        """
        buf = self._buf
        if self.ended or self._failed is not None:
            return 1
        if len(buf) < PREFIX_BYTES:
            return PREFIX_BYTES - len(buf)
        # feed() has checked both sizes once the prefix was complete.
        header_size = int.from_bytes(buf[0:4], "little", signed=True)
        data_size = int.from_bytes(buf[4:8], "little", signed=True)
        if len(buf) < PREFIX_BYTES + header_size:
            return PREFIX_BYTES + header_size - len(buf)
        return max(1, PREFIX_BYTES + header_size + data_size - len(buf))

    def _error(self, offset: int, field: str, rule: str) -> SendExternalError:
        self._failed = SendExternalError(self.source, offset, field, rule)
        return self._failed

    def feed(self, data: bytes | bytearray | memoryview) -> list[SendExternalRecord]:
        """Take the next bytes of the stream; return the records they complete.

        Raises
        ------
        SendExternalError
            The stream breaks a rule (see the module doc). Records these bytes completed
            before the bad ones are in its ``completed``; the decoder stays failed and
            raises the error (with nothing completed) on every later call.
        """
        if self._failed is not None:
            raise self._failed
        if not data:
            return []
        if self.ended:
            raise self._error(self.offset, "end of stream", f"{len(data)} bytes follow the end-of-stream record")
        self._buf += data
        records: list[SendExternalRecord] = []
        try:
            while not self.ended:
                record = self._next_record()
                if record is None:
                    break
                records.append(record)
            if self.ended and self._buf:
                raise self._error(self.offset, "end of stream", f"{len(self._buf)} bytes follow the end-of-stream record")
        except SendExternalError as exc:
            if not records:
                raise
            with_completed = SendExternalError(exc.path, exc.offset, exc.field, exc.rule)
            with_completed.completed = tuple(records)
            raise with_completed from None
        return records

    def _next_record(self) -> SendExternalRecord | None:
        buf, start = self._buf, self.offset
        if len(buf) < 4:
            return None
        header_size = int.from_bytes(buf[0:4], "little", signed=True)
        if not 0 <= header_size <= MAX_HEADER_BYTES:
            raise self._error(start, "header_size", f"{header_size} is outside 0 to {MAX_HEADER_BYTES} bytes")
        if len(buf) < PREFIX_BYTES:
            return None
        data_size = int.from_bytes(buf[4:8], "little", signed=True)
        if header_size == 0:
            if data_size != 0:
                raise self._error(start + 4, "data_size", f"{data_size} in the end-of-stream record (header_size 0): "
                                  "must be 0")
            del buf[:PREFIX_BYTES]
            self.offset += PREFIX_BYTES
            self.ended = True
            log.debug("%s: end-of-stream record at byte %d after %d records", self.source, start, self.n_records)
            return None
        if not 2 <= data_size <= MAX_DATA_BYTES:
            raise self._error(start + 4, "data_size", f"{data_size} is outside 2 to {MAX_DATA_BYTES} bytes "
                              f"({MAX_DIMENSION} x {MAX_DIMENSION} int16)")
        total = PREFIX_BYTES + header_size + data_size
        if len(buf) < PREFIX_BYTES + header_size:
            return None
        # The header is checked as soon as it is complete, before waiting for the pixels.
        fields = self._pending
        if fields is None:
            fields = self._parse_header(bytes(buf[PREFIX_BYTES:PREFIX_BYTES + header_size]), start + PREFIX_BYTES)
            rows, cols = fields["rows"], fields["cols"]
            if data_size != rows * cols * 2:
                raise self._error(start + 4, "data_size", f"{data_size} bytes disagrees with {ROWS_KEY} x {COLS_KEY} "
                                  f"x 2 = {rows} x {cols} x 2 = {rows * cols * 2}")
            self._pending = fields
        rows, cols = fields["rows"], fields["cols"]
        if len(buf) < total:
            return None
        pixel_bytes = bytes(buf[PREFIX_BYTES + header_size:total])
        del buf[:total]
        self.offset += total
        self._pending = None
        stored = np.frombuffer(pixel_bytes, dtype="<i2").reshape(cols, rows)
        pixels = np.ascontiguousarray(stored.T[:, ::-1], dtype=np.int16)
        pixels.flags.writeable = False
        try:
            record = SendExternalRecord(
                pixels=pixels,
                spacing_mm=fields["spacing"],
                slice_thickness_mm=fields["thickness"],
                position=fields["position"],
                slice_location=fields["location"],
                sequence_description=fields["description"],
                acquisition_time_s=fields["time"],
                metadata=fields["metadata"],
                row_direction=fields["row_direction"],
                col_direction=fields["col_direction"],
            )
        except ValueError as exc:
            # A header the parser took but a record may not carry (a value holding
            # "key =" text after a key glued to "="): a broken record, not a crash.
            raise self._error(start + PREFIX_BYTES, "header", str(exc)) from None
        self.n_records += 1
        return record

    def _parse_header(self, raw: bytes, base: int) -> _Header:
        """The header's fields; raises SendExternalError on a broken rule.

        A stream's headers differ, record to record, in the acquisition time only: a
        header equal to the last one parsed in full, but for that value, takes the last
        fields with the new time (a few us instead of ~15 us on the live path). Anything
        else, and a time value that is not a finite number, is parsed in full, with its
        errors; the result is the same either way (tested against a fresh decoder).
        """
        text_bytes = raw.rstrip(b"\x00")
        memo = self._header_memo
        time_entry = _TIME_ENTRY_RE.search(text_bytes)
        head = tail = b""
        if time_entry is not None:
            head, tail = text_bytes[: time_entry.start(1)], text_bytes[time_entry.end(1):]
            if memo is not None and memo[0] == head and memo[1] == tail and b"=" not in time_entry.group(1):
                token = time_entry.group(1).decode("ascii")
                try:
                    t_s = float(token)
                except ValueError:
                    t_s = math.nan
                if math.isfinite(t_s):
                    fields = memo[2].copy()
                    fields["time"] = t_s
                    fields["metadata"] = {**memo[2]["metadata"], ACQUISITION_TIME_KEY: token}
                    return fields
        fields = self._parse_header_in_full(text_bytes, base)
        self._header_memo = None
        if (time_entry is not None and text_bytes.count(ACQUISITION_TIME_KEY.encode("ascii")) == 1
                and fields["metadata"].get(ACQUISITION_TIME_KEY) == time_entry.group(1).decode("ascii")):
            self._header_memo = (head, tail, fields)
        return fields

    def _parse_header_in_full(self, text_bytes: bytes, base: int) -> _Header:
        # One regular-expression scan, not a Python loop per byte: this runs on the live
        # path, between a frame's last byte and its decision.
        bad = _NOT_TEXT_RE.search(text_bytes)
        if bad is not None:
            i, byte = bad.start(), text_bytes[bad.start()]
            raise self._error(base + i, "header", f"byte 0x{byte:02x} is not printable ASCII: the header must be "
                              "ASCII 'key = value' text")
        text = text_bytes.decode("ascii")
        matches = list(_KEY_RE.finditer(text))
        leading = text[: matches[0].start()] if matches else text
        if leading.strip():
            at = len(leading) - len(leading.lstrip())
            raise self._error(base + at, "header", f"text {leading.strip()[:40]!r} is not a 'key = value' entry")
        entries: dict[str, str] = {}
        where: dict[str, int] = {}
        for m, nxt in zip(matches, matches[1:] + [None]):
            key = m.group(1)
            value = text[m.end(): nxt.start() if nxt is not None else len(text)].strip()
            if key in entries and entries[key] != value:
                raise self._error(base + m.start(), key, f"appears twice with different values "
                                  f"({entries[key]!r} and {value!r})")
            entries[key] = value
            where.setdefault(key, base + m.end())
        for key in REQUIRED_KEYS:
            if key not in entries:
                raise self._error(base, key, "missing from the header (required: " + ", ".join(REQUIRED_KEYS) + ")")

        def number(key: str) -> float:
            try:
                value = float(entries[key])
            except ValueError:
                raise self._error(where[key], key, f"{entries[key]!r} is not a number") from None
            if not math.isfinite(value):
                raise self._error(where[key], key, f"{entries[key]!r} must be finite")
            return value

        def dimension(key: str) -> int:
            text_value = entries[key]
            if _INT_RE.fullmatch(text_value) is None:
                raise self._error(where[key], key, f"{text_value!r} is not a whole number")
            value = int(float(text_value))
            if not 1 <= value <= MAX_DIMENSION:
                raise self._error(where[key], key, f"{value} is outside 1 to {MAX_DIMENSION}")
            return value

        def optional(key: str) -> float | None:
            return number(key) if key in entries else None

        rows, cols = dimension(ROWS_KEY), dimension(COLS_KEY)
        spacing = (number(SPACING_KEYS[0]), number(SPACING_KEYS[1]))
        for key, value in zip(SPACING_KEYS, spacing):
            if not 0.0 < value <= MAX_SPACING_MM:
                raise self._error(where[key], key, f"{value:g} mm is outside (0, {MAX_SPACING_MM:g}] mm")
        thickness = optional(SLICE_THICKNESS_KEY)
        if thickness is not None and not 0.0 <= thickness <= MAX_SPACING_MM:
            raise self._error(where[SLICE_THICKNESS_KEY], SLICE_THICKNESS_KEY,
                              f"{thickness:g} mm is outside [0, {MAX_SPACING_MM:g}] mm")
        present = [k for k in POSITION_KEYS if k in entries]
        if present and len(present) != 3:
            missing = [k for k in POSITION_KEYS if k not in entries]
            raise self._error(base, missing[0], f"missing while {', '.join(present)} is present: a position needs "
                              "all three components")
        position = _vector(number, POSITION_KEYS) if present else None
        directions: list[tuple[float, float, float] | None] = []
        for keys in (ROW_VECTOR_KEYS, COL_VECTOR_KEYS):
            have = [k for k in keys if k in entries]
            if have and len(have) != 3:
                missing = [k for k in keys if k not in entries]
                raise self._error(base, missing[0], f"missing while {', '.join(have)} is present: a direction needs "
                                  "all three components")
            directions.append(_vector(number, keys) if have else None)
        if (directions[0] is None) != (directions[1] is None):
            key = (ROW_VECTOR_KEYS if directions[0] is None else COL_VECTOR_KEYS)[0]
            raise self._error(base, key, "missing: DICOM.RowVec and DICOM.ColVec go together")
        if directions[0] is not None:
            try:
                PlaneGeometry(np.zeros(3), np.array(directions[0]), np.array(directions[1]), spacing, (rows, cols))
            except ValueError as exc:
                raise self._error(where[ROW_VECTOR_KEYS[0]], "DICOM.RowVec/ColVec", str(exc)) from None
        # Values this project's encoder wrote as defaults are unknown, not values.
        defaulted = {"DICOM." + name.strip() for name in entries.get(DEFAULTED_KEY, "").split(",") if name.strip()}
        description = entries.get(SEQUENCE_DESCRIPTION_KEY)
        return {
            "rows": rows,
            "cols": cols,
            "spacing": spacing,
            "thickness": None if SLICE_THICKNESS_KEY in defaulted else thickness,
            "position": None if "DICOM.PosVec" in defaulted else position,
            "location": None if SLICE_LOCATION_KEY in defaulted else optional(SLICE_LOCATION_KEY),
            "description": None if SEQUENCE_DESCRIPTION_KEY in defaulted else description,
            "row_direction": directions[0],
            "col_direction": directions[1],
            "time": optional(ACQUISITION_TIME_KEY),
            "metadata": entries,
        }

    def finish(self) -> None:
        """Declare the stream over (end of file, closed socket).

        A stream may end after a complete record or with the end-of-stream record; a file
        that ends right after the end record's ``header_size`` 0 is accepted too.

        Raises
        ------
        SendExternalError
            The stream ends inside a record (truncated).
        """
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        if not buf:
            return
        if len(buf) == 4 and bytes(buf) == b"\x00\x00\x00\x00":
            del buf[:]
            self.offset += 4
            self.ended = True
            return
        start = self.offset
        if len(buf) < PREFIX_BYTES:
            raise self._error(start, "header_size" if len(buf) < 4 else "data_size",
                              f"the stream ends {len(buf)} bytes into a record: truncated")
        header_size = int.from_bytes(buf[0:4], "little", signed=True)
        data_size = int.from_bytes(buf[4:8], "little", signed=True)
        if len(buf) < PREFIX_BYTES + header_size:
            raise self._error(start + PREFIX_BYTES, "header", f"the stream ends {len(buf) - PREFIX_BYTES} bytes into "
                              f"a {header_size}-byte header: truncated")
        raise self._error(start + PREFIX_BYTES + header_size, "pixels", f"the stream ends "
                          f"{len(buf) - PREFIX_BYTES - header_size} bytes into {data_size} bytes of pixels: truncated")


def decode_stream(data: bytes, source: str | Path = "<bytes>") -> list[SendExternalRecord]:
    """Every record of a complete stream held in memory (see :class:`SendExternalDecoder`)."""
    decoder = SendExternalDecoder(source)
    records = decoder.feed(data)
    decoder.finish()
    return records


# -- files ---------------------------------------------------------------------------------
#: Bytes read from a file at a time.
READ_CHUNK_BYTES = 1 << 20


def iter_dat(path: str | Path) -> Iterator[SendExternalRecord]:
    """The records of a ``.dat`` file, one at a time, read in chunks.

    Raises
    ------
    InputError
        The file does not exist or cannot be read.
    SendExternalError
        The file breaks a rule of the format (names the byte offset and field).
    """
    path = Path(path)
    decoder = SendExternalDecoder(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InputError(path, "file", "does not exist") from None
    except OSError as exc:
        raise InputError(path, "file", f"cannot be read ({exc.strerror or exc})") from None
    with handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            yield from decoder.feed(chunk)
    decoder.finish()


def read_dat(path: str | Path) -> list[SendExternalRecord]:
    """Every record of a ``.dat`` file (see :func:`iter_dat`).

    Raises
    ------
    InputError
        The file is missing or unreadable, holds no frame record, or breaks the format
        (:class:`SendExternalError`, naming the byte offset and field).
    """
    records = list(iter_dat(path))
    if not records:
        raise InputError(path, "records", "the file holds no frame record")
    return records


def write_dat(path: str | Path, records: Iterable[SendExternalRecord], *, end_record: bool = True) -> int:
    """Write records as a ``.dat`` file, then (by default) the end-of-stream record.

    Returns
    -------
    int
        The number of frame records written.
    """
    path = Path(path)
    n = 0
    with path.open("wb") as handle:
        for record in records:
            handle.write(encode_record(record))
            n += 1
        if end_record:
            handle.write(END_OF_STREAM)
    log.info("wrote %d SendExternal records to %s", n, path)
    return n
