"""SendExternal codec: round trips, streaming across arbitrary splits, every refusal."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hardware.errors import InputError
from hardware.sendexternal import (
    END_OF_STREAM,
    MAX_DIMENSION,
    MAX_HEADER_BYTES,
    SendExternalDecoder,
    SendExternalError,
    SendExternalRecord,
    decode_stream,
    encode_record,
    iter_dat,
    read_dat,
    write_dat,
)


def raw_record(header: bytes, pixels: bytes, *, data_size: int | None = None, header_size: int | None = None) -> bytes:
    """A record assembled by hand, as the published reader would read it."""
    hs = len(header) if header_size is None else header_size
    ds = len(pixels) if data_size is None else data_size
    return struct.pack("<ii", hs, ds) + header + pixels


def console_header(rows: int, cols: int, *, spaced: bool = True, extra: str = "") -> bytes:
    eq = " = " if spaced else "="
    entries = [
        f"DICOM.NoOfRows{eq}{rows}", f"DICOM.NoOfCols{eq}{cols}",
        f"DICOM.PosVec.0{eq}-1.500000", f"DICOM.PosVec.1{eq}2.250000", f"DICOM.PosVec.2{eq}0.000000",
        f"DICOM.SliceThickness{eq}5.000000", f"DICOM.SliceLocation{eq}0.000000",
        f"DICOM.PixelSpacing.0{eq}3.515625", f"DICOM.PixelSpacing.1{eq}3.515625",
        f"DICOM.SequenceDescription{eq}TRUFI_cine",
    ]
    return (" ".join(entries) + extra).encode("ascii")


def matlab_display(stored: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The published script, literally: fill rows x cols column by column, then fliplr."""
    m = np.empty((rows, cols), dtype=np.int16)
    k = 0
    for c in range(cols):
        for r in range(rows):
            m[r, c] = stored[k]
            k += 1
    return m[:, ::-1]


# -- the documented layout ------------------------------------------------------------------
@pytest.mark.parametrize("spaced", [True, False])
def test_decodes_a_hand_built_console_record_in_the_documented_order(spaced: bool) -> None:
    rows, cols = 3, 5
    stored = np.arange(rows * cols, dtype="<i2") * 7 - 40
    data = raw_record(console_header(rows, cols, spaced=spaced, extra=" Vendor.Thing = 42"), stored.tobytes())
    (record,) = decode_stream(data + END_OF_STREAM)
    np.testing.assert_array_equal(record.pixels, matlab_display(stored, rows, cols))
    assert record.pixels.dtype == np.int16 and record.shape == (rows, cols)
    assert record.spacing_mm == (3.515625, 3.515625)
    assert record.slice_thickness_mm == 5.0
    assert record.position == (-1.5, 2.25, 0.0)
    assert record.slice_location == 0.0
    assert record.sequence_description == "TRUFI_cine"
    assert record.acquisition_time_s is None
    assert record.metadata["Vendor.Thing"] == "42"
    assert record.metadata["DICOM.PixelSpacing.0"] == "3.515625"


def test_encoder_writes_the_console_pixel_order() -> None:
    pixels = np.arange(6, dtype=np.int16).reshape(2, 3)
    data = encode_record(SendExternalRecord(pixels, (1.0, 1.0)))
    header_size, data_size = struct.unpack_from("<ii", data)
    assert data_size == 12
    stored = np.frombuffer(data[8 + header_size:], "<i2")
    np.testing.assert_array_equal(matlab_display(stored, 2, 3), pixels)
    assert b"DICOM.NoOfRows = 2" in data and b"DICOM.NoOfCols = 3" in data


def test_value_with_spaces_and_trailing_nul_padding() -> None:
    header = b"DICOM.NoOfRows = 1\nDICOM.NoOfCols=1 DICOM.PixelSpacing.0 =2 DICOM.PixelSpacing.1= 2\n" \
             b"DICOM.SequenceDescription = cine sag  TRUFI\x00\x00\x00"
    (record,) = decode_stream(raw_record(header, b"\x05\x00"))
    assert record.sequence_description == "cine sag  TRUFI"
    assert record.pixels[0, 0] == 5


def test_end_of_stream_is_header_size_zero_then_data_size_zero() -> None:
    assert END_OF_STREAM == b"\x00" * 8
    decoder = SendExternalDecoder()
    assert decoder.feed(END_OF_STREAM[:4]) == []
    assert not decoder.ended
    assert decoder.feed(END_OF_STREAM[4:]) == []
    assert decoder.ended and decoder.offset == 8


def test_file_ending_after_header_size_zero_is_accepted() -> None:
    record = SendExternalRecord(np.ones((2, 2), np.int16), (1.0, 1.0))
    decoder = SendExternalDecoder()
    body = encode_record(record) + b"\x00\x00\x00\x00"
    assert len(decoder.feed(body)) == 1
    assert not decoder.ended
    decoder.finish()
    assert decoder.ended and decoder.offset == len(body)


def test_stream_without_end_record_ends_at_a_record_boundary() -> None:
    record = SendExternalRecord(np.ones((2, 2), np.int16), (1.0, 1.0))
    decoder = SendExternalDecoder()
    assert len(decoder.feed(encode_record(record) * 3)) == 3
    decoder.finish()
    assert not decoder.ended and decoder.n_records == 3


# -- property tests ----------------------------------------------------------------------------
_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}(\.[A-Za-z0-9_]{1,6}){0,2}", fullmatch=True)
_text = st.from_regex(r"[!-<>-~]([ !-<>-~]{0,15}[!-<>-~])?", fullmatch=True).filter(lambda s: "=" not in s)
_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def records(draw: st.DrawFn) -> SendExternalRecord:
    shape = draw(st.tuples(st.integers(1, 9), st.integers(1, 9)))
    pixels = draw(hnp.arrays(np.int16, shape))
    spacing = draw(st.tuples(st.floats(1e-3, 100.0), st.floats(1e-3, 100.0)))
    extras = draw(st.dictionaries(_ident.map(lambda s: "X." + s), _text, max_size=3))
    return SendExternalRecord(
        pixels=pixels,
        spacing_mm=spacing,
        slice_thickness_mm=draw(st.none() | st.floats(0.0, 100.0)),
        position=draw(st.none() | st.tuples(_finite, _finite, _finite)),
        slice_location=draw(st.none() | _finite),
        sequence_description=draw(st.none() | _text),
        acquisition_time_s=draw(st.none() | st.floats(0.0, 1e5)),
        metadata=extras,
    )


def assert_same(a: SendExternalRecord, b: SendExternalRecord) -> None:
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.pixels.dtype == b.pixels.dtype == np.int16
    for name in ("spacing_mm", "slice_thickness_mm", "position", "slice_location", "sequence_description",
                 "acquisition_time_s"):
        assert getattr(a, name) == getattr(b, name), name
    for key, value in a.metadata.items():
        assert b.metadata[key] == value


@settings(max_examples=60, deadline=None)
@given(st.lists(records(), min_size=1, max_size=4), st.data())
def test_round_trip_across_random_split_points(recs: list[SendExternalRecord], data: st.DataObject) -> None:
    stream = b"".join(encode_record(r) for r in recs) + END_OF_STREAM
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = SendExternalDecoder()
    out: list[SendExternalRecord] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)]):
        out += decoder.feed(stream[lo:hi])
    decoder.finish()
    assert decoder.ended and decoder.offset == len(stream)
    assert len(out) == len(recs)
    for a, b in zip(recs, out):
        assert_same(a, b)
        # Encoding is canonical: decode then encode gives the same bytes.
        assert encode_record(b) == encode_record(a)


@settings(max_examples=40, deadline=None)
@given(records(), st.integers(1, 10_000))
def test_every_strict_prefix_is_incomplete_and_finish_refuses_it(record: SendExternalRecord, cut: int) -> None:
    stream = encode_record(record)
    cut = cut % len(stream)
    if cut == 0:
        return
    decoder = SendExternalDecoder("cam")
    assert decoder.feed(stream[:cut]) == []
    with pytest.raises(SendExternalError, match="truncated") as info:
        decoder.finish()
    assert 0 <= info.value.offset <= cut


def test_files_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    recs = [SendExternalRecord(rng.integers(-3000, 3000, (4, 6)).astype(np.int16), (2.0, 3.0),
                               acquisition_time_s=i / 8) for i in range(5)]
    path = tmp_path / "cine.dat"
    assert write_dat(path, recs) == 5
    back = read_dat(path)
    assert len(back) == 5
    for a, b in zip(recs, back):
        assert_same(a, b)
    assert [r.acquisition_time_s for r in iter_dat(path)] == [i / 8 for i in range(5)]


# -- refusals: typed errors naming the byte offset and the field ----------------------------
GOOD = console_header(2, 3)
GOOD_PIXELS = np.arange(6, dtype="<i2").tobytes()


def refusal(data: bytes, *, finish: bool = False) -> SendExternalError:
    decoder = SendExternalDecoder("scanner")
    with pytest.raises(SendExternalError) as info:
        decoder.feed(data)
        if finish:
            decoder.finish()
    error = info.value
    assert isinstance(error, InputError)
    assert str(error).startswith(f"scanner: {error.field} at byte {error.offset}: ")
    return error


def test_refuses_data_size_that_disagrees_with_rows_times_cols() -> None:
    prefix = encode_record(SendExternalRecord(np.zeros((1, 1), np.int16), (1.0, 1.0)))
    error = refusal(prefix + raw_record(GOOD, GOOD_PIXELS + b"\0\0"))
    assert (error.field, error.offset) == ("data_size", len(prefix) + 4)
    assert "2 x 3 x 2 = 12" in error.rule


@pytest.mark.parametrize("size", [-1, -(2**31), MAX_HEADER_BYTES + 1, 2**31 - 1])
def test_refuses_negative_or_absurd_header_size_before_reading_it(size: int) -> None:
    error = refusal(struct.pack("<i", size))
    assert (error.field, error.offset) == ("header_size", 0)


@pytest.mark.parametrize("size", [-12, 0, 1, 2 * MAX_DIMENSION**2 + 2, 2**31 - 1])
def test_refuses_negative_or_absurd_data_size_before_reading_the_header(size: int) -> None:
    error = refusal(struct.pack("<ii", 100, size))
    assert (error.field, error.offset) == ("data_size", 4)


def test_refuses_nonzero_data_size_in_the_end_record() -> None:
    error = refusal(struct.pack("<ii", 0, 12))
    assert (error.field, error.offset) == ("data_size", 4)


@pytest.mark.parametrize("key,value", [("DICOM.NoOfRows", "0"), ("DICOM.NoOfCols", str(MAX_DIMENSION + 1)),
                                       ("DICOM.NoOfRows", "-3"), ("DICOM.NoOfCols", "2.5"),
                                       ("DICOM.PixelSpacing.0", "0"), ("DICOM.PixelSpacing.1", "nan"),
                                       ("DICOM.PixelSpacing.1", "abc"), ("DICOM.SliceThickness", "-5"),
                                       ("DICOM.PosVec.2", "inf")])
def test_refuses_bad_values_naming_the_key_and_its_offset(key: str, value: str) -> None:
    text = GOOD.decode().replace(f"{key} = ", f"{key} = {value} X.Old = ", 1).encode()
    error = refusal(raw_record(text, GOOD_PIXELS, data_size=12))
    assert error.field == key
    assert error.offset == 8 + text.index(key.encode()) + len(key) + 2


def test_refuses_non_ascii_header_at_the_offending_byte() -> None:
    text = GOOD.replace(b"TRUFI", b"TR\xc3\x9cFI")
    error = refusal(raw_record(text, GOOD_PIXELS))
    assert (error.field, error.offset) == ("header", 8 + text.index(b"\xc3"))


@pytest.mark.parametrize("key", ["DICOM.NoOfRows", "DICOM.NoOfCols", "DICOM.PixelSpacing.0", "DICOM.PixelSpacing.1",
                                 "DICOM.PosVec.1"])
def test_refuses_missing_required_keys(key: str) -> None:
    text = GOOD.decode().replace(key, "X.Renamed", 1).encode()
    error = refusal(raw_record(text, GOOD_PIXELS, data_size=12))
    assert (error.field, error.offset) == (key, 8)


def test_refuses_text_that_is_not_a_key_value_entry() -> None:
    error = refusal(raw_record(b"  hello " + GOOD, GOOD_PIXELS))
    assert (error.field, error.offset) == ("header", 10)


def test_refuses_a_value_holding_key_text_as_a_broken_record_not_a_crash() -> None:
    """``X.a=Y.b = 1``: the parser takes ``Y.b = 1`` as the value of ``X.a`` (a key must
    follow whitespace), which no record may carry. Found by the fuzz test below; it
    used to escape the decoder as a ValueError, which the live source does not expect."""
    error = refusal(raw_record(console_header(2, 2, extra=" X.a=Y.b = 1"), b"\0" * 8))
    assert (error.field, error.offset) == ("header", 8)
    assert "metadata['X.a']" in error.rule


def test_refuses_a_key_given_twice_with_different_values() -> None:
    text = GOOD + b" DICOM.NoOfRows = 3"
    error = refusal(raw_record(text, GOOD_PIXELS))
    assert (error.field, error.offset) == ("DICOM.NoOfRows", 8 + len(GOOD) + 1)


@pytest.mark.parametrize("cut,field", [(2, "header_size"), (6, "data_size"), (8 + 10, "header"),
                                       (8 + len(GOOD) + 5, "pixels")])
def test_refuses_truncated_record_at_end_of_file(cut: int, field: str, tmp_path: Path) -> None:
    data = raw_record(GOOD, GOOD_PIXELS)[:cut]
    error = refusal(data, finish=True)
    assert error.field == field and "truncated" in error.rule
    path = tmp_path / "cut.dat"
    path.write_bytes(data)
    with pytest.raises(SendExternalError, match="truncated"):
        read_dat(path)


def test_refuses_bytes_after_the_end_record_and_stays_failed() -> None:
    decoder = SendExternalDecoder("s")
    with pytest.raises(SendExternalError) as info:
        decoder.feed(END_OF_STREAM + b"\x01")
    assert (info.value.field, info.value.offset) == ("end of stream", 8)
    with pytest.raises(SendExternalError):
        decoder.feed(b"")
    with pytest.raises(SendExternalError):
        decoder.finish()


def test_read_dat_refuses_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_dat(tmp_path / "none.dat")
    (tmp_path / "empty.dat").write_bytes(END_OF_STREAM)
    with pytest.raises(InputError, match="no frame record"):
        read_dat(tmp_path / "empty.dat")


@pytest.mark.parametrize("kwargs", [
    {"pixels": np.zeros((2, 2), np.float32)},
    {"pixels": np.zeros((0, 2), np.int16)},
    {"pixels": np.zeros((MAX_DIMENSION + 1, 1), np.int16)},
    {"spacing_mm": (0.0, 1.0)},
    {"spacing_mm": (float("nan"), 1.0)},
    {"position": (1.0, 2.0)},
    {"sequence_description": "a = b"},
    {"metadata": {"bad key": "x"}},
    {"metadata": {"X.k": "caf\u00e9"}},
])
def test_record_refuses_values_the_format_cannot_carry(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"pixels": np.zeros((2, 2), np.int16), "spacing_mm": (1.0, 1.0), **kwargs}
    with pytest.raises(ValueError):
        SendExternalRecord(**args)


def test_record_pixels_are_read_only_copies() -> None:
    pixels = np.zeros((2, 2), np.int16)
    record = SendExternalRecord(pixels, (1.0, 1.0))
    pixels[0, 0] = 9
    assert record.pixels[0, 0] == 0
    with pytest.raises(ValueError):
        record.pixels[0, 0] = 1


def test_records_completed_before_bad_bytes_come_with_the_error() -> None:
    """Two good records and a corrupt one in one read: the error carries the two good
    frames (a live source hands them over before reporting the fault); later calls
    raise with nothing completed, so no frame is delivered twice."""
    good = [SendExternalRecord(np.full((4, 3), k, dtype=np.int16), (1.5, 1.5)) for k in (1, 2)]
    garbage = (-5).to_bytes(4, "little", signed=True) + b"\x00" * 4
    decoder = SendExternalDecoder("s")
    with pytest.raises(SendExternalError) as info:
        decoder.feed(b"".join(encode_record(r) for r in good) + garbage)
    assert info.value.field == "header_size"
    assert info.value.offset == 2 * len(encode_record(good[0]))
    assert [int(r.pixels[0, 0]) for r in info.value.completed] == [1, 2]
    with pytest.raises(SendExternalError) as again:
        decoder.feed(b"\x00")
    assert again.value.completed == () and again.value.offset == info.value.offset


@settings(max_examples=50, deadline=None)
@given(st.lists(records(), min_size=1, max_size=3))
def test_reading_bytes_wanted_at_a_time_stops_at_every_part_of_every_record(recs: list[SendExternalRecord]) -> None:
    """A reader that takes ``bytes_wanted`` bytes at a time ends each read at a prefix,
    header or pixel boundary, and completes each record on its own read."""
    stream = b"".join(encode_record(r) for r in recs) + END_OF_STREAM
    boundaries = set()
    at = 0
    for _r in recs:
        header_size, data_size = struct.unpack_from("<ii", stream, at)
        boundaries |= {at + 8, at + 8 + header_size, at + 8 + header_size + data_size}
        at += 8 + header_size + data_size
    boundaries.add(len(stream))
    decoder = SendExternalDecoder("<test>")
    out: list[SendExternalRecord] = []
    at = 0
    while not decoder.ended:
        want = decoder.bytes_wanted
        assert want >= 1
        done = decoder.feed(stream[at:at + want])
        at += want
        assert at in boundaries
        assert len(done) <= 1
        out += done
    assert at == len(stream)
    assert [r.pixels.tobytes() for r in out] == [r.pixels.tobytes() for r in recs]
    assert decoder.bytes_wanted == 1  # ended: a read of one byte shows what follows


class _FullParseDecoder(SendExternalDecoder):
    """The reference: every header parsed in full (no memo of the stream's last header)."""

    def _parse_header(self, raw: bytes, base: int):
        return self._parse_header_in_full(raw.rstrip(b"\x00"), base)


def _outcome(decoder: SendExternalDecoder, stream: bytes) -> tuple[list[tuple], str | None]:
    """Everything a decoder makes of a stream: each record's fields, and its error."""
    out: list[tuple] = []
    try:
        done = decoder.feed(stream)
        error = None
    except SendExternalError as exc:
        done, error = list(exc.completed), str(exc)
    for r in done:
        out.append((r.pixels.tobytes(), r.pixels.shape, r.spacing_mm, r.slice_thickness_mm, r.position,
                    r.slice_location, r.sequence_description, r.acquisition_time_s, r.row_direction,
                    r.col_direction, tuple(r.metadata.items())))
    return out, error


@settings(max_examples=80, deadline=None)
@given(records(), st.lists(st.none() | st.floats(0.0, 1e5), min_size=1, max_size=4))
def test_a_stream_of_headers_differing_in_time_decodes_as_with_full_parses(first: SendExternalRecord,
                                                                          times: list[float | None]) -> None:
    """A console stream: the same header but for the acquisition time (and sometimes
    none), record after record. The memo of the last header gives what full parses give."""
    import dataclasses

    recs = [first] + [dataclasses.replace(first, acquisition_time_s=t) for t in times]
    stream = b"".join(encode_record(r) for r in recs) + END_OF_STREAM
    decoder = SendExternalDecoder("<s>")
    full_parses = []
    parse_in_full = decoder._parse_header_in_full
    decoder._parse_header_in_full = lambda raw, base: (full_parses.append(base), parse_in_full(raw, base))[1]
    fast = _outcome(decoder, stream)
    assert fast == _outcome(_FullParseDecoder("<s>"), stream)
    assert [f[7] for f in fast[0]] == [r.acquisition_time_s for r in recs]
    # The memo serves a timed header that follows a timed one; anything else is parsed.
    timed = [r.acquisition_time_s is not None for r in recs]
    memo_hits = sum(a and b for a, b in zip(timed, timed[1:]))
    assert len(full_parses) == len(recs) - memo_hits


@settings(max_examples=150, deadline=None)
@given(records(), st.floats(0.0, 1e5), st.data())
def test_a_header_changed_anywhere_after_a_good_one_decodes_as_with_full_parses(first: SendExternalRecord,
                                                                               t_s: float,
                                                                               data: st.DataObject) -> None:
    """The second record's header is the first's with its time changed, then bytes
    overwritten, inserted or deleted anywhere (the time value included): records and
    errors (field, offset, rule) are those of a decoder that parses every header in full."""
    import dataclasses

    base = dataclasses.replace(first, acquisition_time_s=first.acquisition_time_s or 1.0)
    one, two = encode_record(base), bytearray(encode_record(dataclasses.replace(base, acquisition_time_s=t_s)))
    header_size, data_size = struct.unpack_from("<ii", two)
    header = bytearray(two[8:8 + header_size])
    time_at = header.find(b"Maestro.AcquisitionTime_s")
    # Edit near the time entry most of the time: that is where the memo decides.
    lo, hi = (time_at, min(len(header), time_at + 45)) if data.draw(st.booleans()) else (0, len(header))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(lo, max(lo, min(hi, len(header)) - 1)))
        edit = data.draw(st.sampled_from(["overwrite", "insert", "delete"]))
        byte = data.draw(st.sampled_from(list(b" =\n\t.-+e0123456789xNaInf")) | st.integers(0, 255))
        if edit == "overwrite" and at < len(header):
            header[at] = byte
        elif edit == "insert":
            header.insert(at, byte)
        elif at < len(header):
            del header[at]
    changed = struct.pack("<ii", len(header), data_size) + bytes(header) + bytes(two[8 + header_size:])
    stream = one + changed + END_OF_STREAM
    assert _outcome(SendExternalDecoder("<s>"), stream) == _outcome(_FullParseDecoder("<s>"), stream)
