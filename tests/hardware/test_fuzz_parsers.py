"""Every parser the project owns, fuzzed: random and mutated inputs end in the parser's
own typed error or a valid result, and no claimed size makes it allocate beyond its bound.

Examples per test: ``MAESTRO_FUZZ_EXAMPLES`` (default 300; CI runs about 2,400 inputs over
these parsers, the long run in the README sets 20000).
"""

from __future__ import annotations

import os
import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.beam_protocol import (
    MAX_LINE_BYTES,
    BeamCommand,
    BeamProtocolError,
    BeamReply,
    LineBuffer,
    format_command,
    format_reply,
    parse_command,
    parse_reply,
)
from hardware.cine_raw import CineRawError, read_raw, write_raw
from hardware.roi_contours import RoiContourError, TrackingContour, decode_contours, encode_contours
from hardware.sendexternal import SendExternalDecoder, SendExternalError, SendExternalRecord, encode_record

N_EXAMPLES = int(os.environ.get("MAESTRO_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None)
#: Peak Python allocation allowed while parsing an input of at most a few KiB: the
#: parsers buffer what they are given, never what a header claims.
PEAK_BOUND_BYTES = 1 << 20

edits = st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6)


def _mutate(data: bytes, changes: list[tuple[float, int]], cut: float | None) -> bytes:
    buf = bytearray(data)
    for where, value in changes:
        buf[int(where * len(buf))] = value
    if cut is not None:
        del buf[int(cut * len(buf)) :]
    return bytes(buf)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# -- SendExternal -------------------------------------------------------------------------
_VALID_STREAM = b"".join(
    encode_record(SendExternalRecord(np.arange(12 * k, dtype=np.int16).reshape(3, 4 * k), (2.4, 2.4)))
    for k in (1, 2)
) + b"\0" * 8


def _decode(data: bytes, chunk: int) -> None:
    decoder = SendExternalDecoder()
    for i in range(0, len(data), chunk):
        decoder.feed(data[i : i + chunk])
    decoder.finish()


@FUZZ
@given(data=st.binary(max_size=2048), chunk=st.integers(1, 64))
def test_sendexternal_random_bytes(data: bytes, chunk: int) -> None:
    try:
        _decode(data, chunk)
    except SendExternalError:
        pass


@FUZZ
@given(changes=edits, cut=st.none() | st.floats(0.0, 1.0, exclude_max=True), chunk=st.integers(1, 97))
def test_sendexternal_mutated_stream(changes, cut, chunk: int) -> None:
    data = _mutate(_VALID_STREAM, changes, cut)
    try:
        _decode(data, chunk)
    except SendExternalError:
        pass


@FUZZ
@given(header_size=st.integers(-(2**31), 2**31 - 1), data_size=st.integers(-(2**31), 2**31 - 1))
def test_sendexternal_claimed_sizes_allocate_nothing(header_size: int, data_size: int) -> None:
    """Sizes claimed by a record's prefix are bounded before anything is buffered."""
    data = struct.pack("<ii", header_size, data_size) + b"DICOM.NoOfRows = 4 " * 40

    def run() -> None:
        try:
            SendExternalDecoder().feed(data)
        except SendExternalError:
            pass

    assert _peak_bytes(run) < PEAK_BOUND_BYTES


# -- cine .raw ------------------------------------------------------------------------------
def _raw_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.raw"
        write_raw(path, np.arange(2 * 5 * 4, dtype=np.int16).reshape(2, 5, 4), (3.5, 3.5))
        return path.read_bytes()


_VALID_RAW = _raw_bytes()


@FUZZ
@given(changes=edits, cut=st.none() | st.floats(0.0, 1.0, exclude_max=True))
def test_cine_raw_mutated_file(changes, cut) -> None:
    data = _mutate(_VALID_RAW, changes, cut)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.raw"
        path.write_bytes(data)

        def run() -> None:
            try:
                read_raw(path)
            except CineRawError:
                pass

        assert _peak_bytes(run) < PEAK_BOUND_BYTES


# -- ROI contours ---------------------------------------------------------------------------
_VALID_ROI = encode_contours(
    [TrackingContour(i, np.float32([[0.1, 0.1], [0.9, 0.2], [0.5, 0.8 - 0.1 * i]])) for i in range(3)]
)


@FUZZ
@given(data=st.binary(max_size=512))
def test_roi_random_bytes(data: bytes) -> None:
    try:
        decode_contours(data)
    except RoiContourError:
        pass


@FUZZ
@given(changes=edits, cut=st.none() | st.floats(0.0, 1.0, exclude_max=True))
def test_roi_mutated_file(changes, cut) -> None:
    data = _mutate(_VALID_ROI, changes, cut)

    def run() -> None:
        try:
            decode_contours(data)
        except RoiContourError:
            pass

    assert _peak_bytes(run) < PEAK_BOUND_BYTES


# -- MAESTRO-BEAM/1 -------------------------------------------------------------------------
_VALID_LINES = [
    format_command(BeamCommand("HOLD", 7, 1.25, "outside")),
    format_command(BeamCommand("RELEASE", 8, 1.375)),
    format_reply(BeamReply("ACK", 8, "ON")),
]


@FUZZ
@given(line=st.sampled_from(_VALID_LINES), changes=edits, cut=st.none() | st.floats(0.0, 1.0, exclude_max=True))
def test_beam_protocol_mutated_lines(line: bytes, changes, cut) -> None:
    data = _mutate(line, changes, cut).rstrip(b"\n")
    for parse in (parse_command, parse_reply):
        try:
            parse(data)
        except BeamProtocolError:
            pass


@FUZZ
@given(data=st.binary(max_size=4 * MAX_LINE_BYTES), chunk=st.integers(1, 50))
def test_beam_line_buffer_never_grows_past_a_line(data: bytes, chunk: int) -> None:
    buffer = LineBuffer()
    for i in range(0, len(data), chunk):
        try:
            for line in buffer.feed(data[i : i + chunk]):
                try:
                    parse_command(line)
                except BeamProtocolError:
                    pass
        except BeamProtocolError:
            pass
        assert buffer.pending_bytes < MAX_LINE_BYTES
