"""MAESTRO-BEAM/1: the line grammar, its typed errors, and the line splitter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import beam_protocol as bp

REASON_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:"

seqs = st.integers(min_value=1, max_value=bp.MAX_SEQ)
times = st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda t: round(t, 6)))
reasons = st.text(alphabet=REASON_CHARS, min_size=1, max_size=bp.MAX_REASON_CHARS)


@st.composite
def commands(draw: st.DrawFn) -> bp.BeamCommand:
    verb = draw(st.sampled_from(bp.COMMAND_VERBS))
    seq = draw(seqs)
    if verb == bp.PING:
        return bp.BeamCommand(verb, seq)
    t_s = draw(times)
    return bp.BeamCommand(verb, seq, t_s, draw(reasons) if verb == bp.HOLD else "")


@st.composite
def replies(draw: st.DrawFn) -> bp.BeamReply:
    if draw(st.booleans()):
        return bp.BeamReply(bp.ACK, draw(seqs), state=draw(st.sampled_from([bp.STATE_ON, bp.STATE_HOLD])))
    seq = draw(st.one_of(st.none(), seqs))
    return bp.BeamReply(bp.ERROR, seq, code=draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=32)))


@settings(max_examples=300, deadline=None)
@given(commands())
def test_command_round_trip(command: bp.BeamCommand) -> None:
    wire = bp.format_command(command)
    assert wire.endswith(b"\n") and len(wire) <= bp.MAX_LINE_BYTES
    assert bp.parse_command(wire[:-1]) == command


@settings(max_examples=200, deadline=None)
@given(replies())
def test_reply_round_trip(reply: bp.BeamReply) -> None:
    wire = bp.format_reply(reply)
    assert wire.endswith(b"\n") and len(wire) <= bp.MAX_LINE_BYTES
    assert bp.parse_reply(wire[:-1]) == reply


def test_hand_written_lines() -> None:
    assert bp.parse_command(b"MAESTRO-BEAM/1 HOLD 7 1.250000 outside") == bp.BeamCommand("HOLD", 7, 1.25, "outside")
    assert bp.parse_command(b"MAESTRO-BEAM/1 RELEASE 8 -") == bp.BeamCommand("RELEASE", 8, None)
    assert bp.parse_command(b"MAESTRO-BEAM/1 PING 9") == bp.BeamCommand("PING", 9)
    assert bp.parse_reply(b"MAESTRO-BEAM/1 ACK 9 ON") == bp.BeamReply("ACK", 9, state="ON")
    assert bp.parse_reply(b"MAESTRO-BEAM/1 ERROR - bad_line") == bp.BeamReply("ERROR", None, code="bad_line")
    assert bp.format_command(bp.BeamCommand("HOLD", 1, 0.125, "source_fault")) == (
        b"MAESTRO-BEAM/1 HOLD 1 0.125000 source_fault\n")


@pytest.mark.parametrize(
    ("line", "field", "code"),
    [
        (b"", "line", "bad_line"),
        (b"MAESTRO-BEAM/2 PING 1", "tag", "bad_version"),
        (b"HELLO", "tag", "bad_line"),
        (b"MAESTRO-BEAM/1", "verb", "bad_line"),
        (b"MAESTRO-BEAM/1 FIRE 1", "verb", "bad_verb"),
        (b"MAESTRO-BEAM/1 PING 0", "seq", "bad_seq"),
        (b"MAESTRO-BEAM/1 PING 01", "seq", "bad_seq"),
        (b"MAESTRO-BEAM/1 PING -1", "seq", "bad_seq"),
        (b"MAESTRO-BEAM/1 PING 9223372036854775808", "seq", "bad_seq"),
        (b"MAESTRO-BEAM/1 PING 1 extra", "line", "bad_line"),
        (b"MAESTRO-BEAM/1  PING 1", "line", "bad_line"),
        (b"MAESTRO-BEAM/1 PING 1 ", "line", "bad_line"),
        (b"MAESTRO-BEAM/1 PING 1\r", "line", "bad_line"),
        (b"MAESTRO-BEAM/1 RELEASE 1 nan", "t_s", "bad_time"),
        (b"MAESTRO-BEAM/1 RELEASE 1 1e3", "t_s", "bad_time"),
        (b"MAESTRO-BEAM/1 RELEASE 1", "line", "bad_line"),
        (b"MAESTRO-BEAM/1 HOLD 1 - out side", "line", "bad_line"),
        (b"MAESTRO-BEAM/1 HOLD 1 - out/side", "reason", "bad_reason"),
        (b"MAESTRO-BEAM/1 HOLD 1 - " + b"r" * 49, "reason", "bad_reason"),
        (b"MAESTRO-BEAM/1 HOLD 1 - \xc3\xa9", "line", "bad_line"),
        (b"MAESTRO-BEAM/1 PING " + b"1" * 200, "line", "line_too_long"),
    ],
)
def test_bad_commands_name_field_and_code(line: bytes, field: str, code: str) -> None:
    with pytest.raises(bp.BeamProtocolError) as exc:
        bp.parse_command(line)
    assert exc.value.field == field
    assert exc.value.code == code
    assert str(exc.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b"MAESTRO-BEAM/1 ACK 1 MAYBE", "state"),
        (b"MAESTRO-BEAM/1 ACK - ON", "seq"),
        (b"MAESTRO-BEAM/1 ERROR 1 Bad-Code", "code"),
        (b"MAESTRO-BEAM/1 HOLD 1 - outside", "verb"),
        (b"MAESTRO-BEAM/1 ACK 1", "line"),
    ],
)
def test_bad_replies(line: bytes, field: str) -> None:
    with pytest.raises(bp.BeamProtocolError) as exc:
        bp.parse_reply(line)
    assert exc.value.field == field


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_parsers_raise_only_protocol_errors(data: bytes) -> None:
    for parse in (bp.parse_command, bp.parse_reply):
        try:
            parse(data)
        except bp.BeamProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(commands(), min_size=1, max_size=8), st.data())
def test_line_buffer_reassembles_any_split(cmds: list[bp.BeamCommand], data: st.DataObject) -> None:
    wire = b"".join(bp.format_command(c) for c in cmds)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    buf = bp.LineBuffer()
    lines: list[bytes] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)]):
        lines += buf.feed(wire[a:b])
    assert [bp.parse_command(line) for line in lines] == cmds
    assert buf.pending_bytes == 0


def test_line_buffer_refuses_a_long_line_before_its_end() -> None:
    buf = bp.LineBuffer()
    assert buf.feed(b"x" * (bp.MAX_LINE_BYTES - 1)) == []  # could still end in time
    with pytest.raises(bp.BeamProtocolError) as exc:
        buf.feed(b"x")
    assert exc.value.code == "line_too_long"
    assert buf.pending_bytes == 0  # nothing kept from the refused line


def test_line_buffer_accepts_the_longest_line() -> None:
    line = b"y" * (bp.MAX_LINE_BYTES - 1)
    assert bp.LineBuffer().feed(line + b"\n") == [line]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("outside", "outside"), ("frame geometry changed", "frame_geometry_changed"), ("", "unspecified"),
     ("é" * 3, "_"), ("r" * 100, "r" * bp.MAX_REASON_CHARS)],
)
def test_clean_reason(text: str, expected: str) -> None:
    cleaned = bp.clean_reason(text)
    assert cleaned == expected
    bp.BeamCommand("HOLD", 1, None, cleaned)  # fits the grammar


@pytest.mark.parametrize(
    "kwargs",
    [dict(verb="FIRE", seq=1), dict(verb="PING", seq=0), dict(verb="PING", seq=True), dict(verb="HOLD", seq=1),
     dict(verb="RELEASE", seq=1, reason="x"), dict(verb="RELEASE", seq=1, t_s=float("nan")),
     dict(verb="PING", seq=1, t_s=1.0)],
)
def test_command_constructor_validates(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bp.BeamCommand(**kwargs)
