"""MAESTRO-BEAM/1: the project's own line protocol for beam hold/release over TCP.

The MRIdian's own beam interface is not public. This protocol is this project's choice:
a gating client (:class:`hardware.beam_tcp.TcpBeam`) commands a beam endpoint (the
linac interlock adapter; here :mod:`hardware.beam_sim`), which acknowledges every
command with the state it has set. It is versioned by the tag that starts every line.

Lines
-----
Every line is printable ASCII (0x20-0x7E), fields separated by exactly one space,
ended by a single LF (no CR), at most :data:`MAX_LINE_BYTES` bytes including the LF.

Client to endpoint::

    MAESTRO-BEAM/1 HOLD <seq> <t_s> <reason>
    MAESTRO-BEAM/1 RELEASE <seq> <t_s>
    MAESTRO-BEAM/1 PING <seq>

Endpoint to client::

    MAESTRO-BEAM/1 ACK <seq> <state>
    MAESTRO-BEAM/1 ERROR <seq> <code>

Fields
------
seq
    Decimal command number, 1 to 2**63 - 1, no sign and no leading zero; strictly
    increasing on one connection. An ``ERROR`` that concerns no readable command
    carries ``-``.
t_s
    The client's session time of the decision in seconds (the acquisition time of the
    frame decided), as a finite decimal ``[-]digits[.digits]`` of at most 24 characters,
    or ``-`` when unknown. Informational: the endpoint logs it (so that every command
    can be tied to a frame) and never acts on it.
reason
    Why the beam is held: 1 to :data:`MAX_REASON_CHARS` characters of
    ``A-Z a-z 0-9 _ - . :`` (e.g. ``outside``, ``source_fault``, ``session_end``).
state
    ``ON`` or ``HOLD``: the beam state the endpoint has set after the command.
code
    Why the endpoint refused a line: 1 to 32 characters of ``a-z _``.

Semantics
---------
- The endpoint starts held. ``HOLD`` holds the beam, ``RELEASE`` lets it on, ``PING``
  changes nothing (heartbeat); each is answered by ``ACK`` with the same ``seq``.
- The endpoint holds the beam when the connection closes, when a line breaks this
  grammar (it answers ``ERROR`` and closes the connection), when ``seq`` does not
  increase (``ERROR <seq> stale_seq``) and when no line has arrived for its heartbeat
  timeout (a client that stops talking cannot keep the beam on).
- The client counts the beam on only while its last command was ``RELEASE`` and that
  command's ``ACK ... ON`` has arrived; a missing ``ACK`` within its timeout or a lost
  connection is a hold.

The parsers below raise :class:`BeamProtocolError` (a ``ValueError``) naming the field
and the rule for anything that breaks the grammar; they never raise anything else on
bytes input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: The tag that starts every line; the number is the protocol version.
PROTOCOL = "MAESTRO-BEAM/1"
#: The longest line accepted, LF included (bytes).
MAX_LINE_BYTES = 128
#: The longest hold reason (characters).
MAX_REASON_CHARS = 48
#: The largest sequence number.
MAX_SEQ = 2**63 - 1

HOLD = "HOLD"
RELEASE = "RELEASE"
PING = "PING"
ACK = "ACK"
ERROR = "ERROR"
STATE_ON = "ON"
STATE_HOLD = "HOLD"

COMMAND_VERBS: tuple[str, ...] = (HOLD, RELEASE, PING)
REPLY_VERBS: tuple[str, ...] = (ACK, ERROR)

_SEQ_RE = re.compile(r"[1-9][0-9]{0,18}")
_TIME_RE = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,8})?")
_REASON_RE = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_REASON_CHARS}}}")
_CODE_RE = re.compile(r"[a-z_]{1,32}")
_REASON_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.:\-]+")


class BeamProtocolError(ValueError):
    """A line that breaks the MAESTRO-BEAM/1 grammar.

    Parameters
    ----------
    field : str
        The part of the line that is wrong (``line``, ``tag``, ``verb``, ``seq``,
        ``t_s``, ``reason``, ``state``, ``code``).
    rule : str
        The rule it breaks.
    code : str
        The short code an endpoint sends back in ``ERROR`` (``a-z _``).
    """

    def __init__(self, field: str, rule: str, code: str = "bad_line") -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule
        self.code = code


@dataclass(frozen=True, slots=True)
class BeamCommand:
    """One client command.

    Attributes
    ----------
    verb : str
        ``HOLD``, ``RELEASE`` or ``PING``.
    seq : int
        Command number (1 to :data:`MAX_SEQ`).
    t_s : float or None
        The client's session time of the decision (s); ``None`` when unknown, and always
        ``None`` for ``PING``.
    reason : str
        Hold reason for ``HOLD``; ``""`` otherwise.
    """

    verb: str
    seq: int
    t_s: float | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verb not in COMMAND_VERBS:
            raise ValueError(f"verb must be one of {COMMAND_VERBS}, got {self.verb!r}")
        _check_seq(self.seq)
        if self.t_s is not None and not (isinstance(self.t_s, (int, float)) and math.isfinite(self.t_s)):
            raise ValueError(f"t_s must be finite seconds or None, got {self.t_s!r}")
        if self.verb == HOLD:
            if _REASON_RE.fullmatch(self.reason) is None:
                raise ValueError(f"reason must be 1 to {MAX_REASON_CHARS} characters of A-Z a-z 0-9 _ - . :, "
                                 f"got {self.reason!r}")
        elif self.reason:
            raise ValueError(f"only HOLD carries a reason, got {self.reason!r} with {self.verb}")
        if self.verb == PING and self.t_s is not None:
            raise ValueError("PING carries no t_s")


@dataclass(frozen=True, slots=True)
class BeamReply:
    """One endpoint reply.

    Attributes
    ----------
    verb : str
        ``ACK`` or ``ERROR``.
    seq : int or None
        The command answered; ``None`` for an ``ERROR`` about an unreadable line.
    state : str
        ``ON`` or ``HOLD`` for an ``ACK``; ``""`` for an ``ERROR``.
    code : str
        Why the line was refused, for an ``ERROR``; ``""`` for an ``ACK``.
    """

    verb: str
    seq: int | None
    state: str = ""
    code: str = ""

    def __post_init__(self) -> None:
        if self.verb == ACK:
            if self.seq is None:
                raise ValueError("an ACK needs a seq")
            _check_seq(self.seq)
            if self.state not in (STATE_ON, STATE_HOLD) or self.code:
                raise ValueError(f"an ACK carries state ON or HOLD and no code, got {self.state!r}, {self.code!r}")
        elif self.verb == ERROR:
            if self.seq is not None:
                _check_seq(self.seq)
            if _CODE_RE.fullmatch(self.code) is None or self.state:
                raise ValueError(f"an ERROR carries a code of 1-32 characters a-z _ and no state, got {self.code!r}")
        else:
            raise ValueError(f"verb must be one of {REPLY_VERBS}, got {self.verb!r}")


def _check_seq(seq: object) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"seq must be an int in 1 to {MAX_SEQ}, got {seq!r}")


def clean_reason(text: str) -> str:
    """A hold reason that fits the grammar: illegal characters become ``_``, length is
    capped; an empty result becomes ``unspecified``."""
    cleaned = _REASON_BAD_CHARS.sub("_", text.strip())[:MAX_REASON_CHARS]
    return cleaned or "unspecified"


def _format_time(t_s: float | None) -> str:
    if t_s is None:
        return "-"
    text = f"{t_s:.6f}"
    # Fit the grammar's 15 integer digits; beyond that a session time is meaningless.
    return text if _TIME_RE.fullmatch(text) else "-"


def format_command(command: BeamCommand) -> bytes:
    """The wire bytes of a command, LF included."""
    if command.verb == PING:
        text = f"{PROTOCOL} {PING} {command.seq}"
    elif command.verb == RELEASE:
        text = f"{PROTOCOL} {RELEASE} {command.seq} {_format_time(command.t_s)}"
    else:
        text = f"{PROTOCOL} {HOLD} {command.seq} {_format_time(command.t_s)} {command.reason}"
    return text.encode("ascii") + b"\n"


def format_reply(reply: BeamReply) -> bytes:
    """The wire bytes of a reply, LF included."""
    seq = "-" if reply.seq is None else str(reply.seq)
    tail = reply.state if reply.verb == ACK else reply.code
    return f"{PROTOCOL} {reply.verb} {seq} {tail}\n".encode("ascii")


def _fields(line: bytes | bytearray) -> list[str]:
    """Check the framing of one line (without its LF) and split it into fields."""
    if not isinstance(line, (bytes, bytearray)):
        raise BeamProtocolError("line", f"must be bytes, got {type(line).__name__}")
    if len(line) + 1 > MAX_LINE_BYTES:
        raise BeamProtocolError("line", f"{len(line) + 1} bytes with its LF, more than {MAX_LINE_BYTES}", "line_too_long")
    for i, byte in enumerate(line):
        if not 0x20 <= byte <= 0x7E:
            raise BeamProtocolError("line", f"byte {i} is 0x{byte:02x}: only printable ASCII is allowed")
    text = bytes(line).decode("ascii")
    parts = text.split(" ")
    if any(p == "" for p in parts):
        raise BeamProtocolError("line", "fields must be separated by exactly one space, without leading or trailing spaces")
    if parts[0] != PROTOCOL:
        if parts[0].startswith("MAESTRO-BEAM/"):
            raise BeamProtocolError("tag", f"{parts[0]!r} is not the version spoken here ({PROTOCOL})", "bad_version")
        raise BeamProtocolError("tag", f"the line must start with {PROTOCOL!r}, got {parts[0][:20]!r}")
    if len(parts) < 2:
        raise BeamProtocolError("verb", "missing")
    return parts


def _parse_seq(text: str) -> int:
    if _SEQ_RE.fullmatch(text) is None or int(text) > MAX_SEQ:
        raise BeamProtocolError("seq", f"{text[:24]!r} must be a decimal 1 to {MAX_SEQ} without sign or leading zero",
                                "bad_seq")
    return int(text)


def _parse_time(text: str) -> float | None:
    if text == "-":
        return None
    if _TIME_RE.fullmatch(text) is None:
        raise BeamProtocolError("t_s", f"{text[:24]!r} must be '-' or a decimal [-]digits[.digits]", "bad_time")
    return float(text)


def _arity(parts: list[str], n: int, shape: str) -> None:
    if len(parts) != n:
        raise BeamProtocolError("line", f"{parts[1]} takes the form {shape!r}; got {len(parts)} fields, not {n}")


def parse_command(line: bytes | bytearray) -> BeamCommand:
    """Parse one client line (without its LF).

    Raises
    ------
    BeamProtocolError
        The line breaks the grammar (see the module doc).
    """
    parts = _fields(line)
    verb = parts[1]
    if verb == HOLD:
        _arity(parts, 5, f"{PROTOCOL} HOLD <seq> <t_s> <reason>")
        seq, t_s, reason = _parse_seq(parts[2]), _parse_time(parts[3]), parts[4]
        if _REASON_RE.fullmatch(reason) is None:
            raise BeamProtocolError("reason", f"{reason[:24]!r} must be 1 to {MAX_REASON_CHARS} characters of "
                                    "A-Z a-z 0-9 _ - . :", "bad_reason")
        return BeamCommand(HOLD, seq, t_s, reason)
    if verb == RELEASE:
        _arity(parts, 4, f"{PROTOCOL} RELEASE <seq> <t_s>")
        return BeamCommand(RELEASE, _parse_seq(parts[2]), _parse_time(parts[3]))
    if verb == PING:
        _arity(parts, 3, f"{PROTOCOL} PING <seq>")
        return BeamCommand(PING, _parse_seq(parts[2]))
    raise BeamProtocolError("verb", f"{verb[:16]!r} is not a command (one of {', '.join(COMMAND_VERBS)})", "bad_verb")


def parse_reply(line: bytes | bytearray) -> BeamReply:
    """Parse one endpoint line (without its LF).

    Raises
    ------
    BeamProtocolError
        The line breaks the grammar (see the module doc).
    """
    parts = _fields(line)
    verb = parts[1]
    if verb == ACK:
        _arity(parts, 4, f"{PROTOCOL} ACK <seq> <state>")
        seq = _parse_seq(parts[2])
        if parts[3] not in (STATE_ON, STATE_HOLD):
            raise BeamProtocolError("state", f"{parts[3][:16]!r} must be ON or HOLD", "bad_state")
        return BeamReply(ACK, seq, state=parts[3])
    if verb == ERROR:
        _arity(parts, 4, f"{PROTOCOL} ERROR <seq> <code>")
        seq = None if parts[2] == "-" else _parse_seq(parts[2])
        if _CODE_RE.fullmatch(parts[3]) is None:
            raise BeamProtocolError("code", f"{parts[3][:40]!r} must be 1 to 32 characters of a-z _", "bad_code")
        return BeamReply(ERROR, seq, code=parts[3])
    raise BeamProtocolError("verb", f"{verb[:16]!r} is not a reply (one of {', '.join(REPLY_VERBS)})", "bad_verb")


class LineBuffer:
    """Splits a byte stream into lines, refusing a line longer than :data:`MAX_LINE_BYTES`.

    Feed it bytes as they arrive (split anywhere); each call returns the complete lines
    (without their LF). A line is refused as soon as it is too long, before its LF
    arrives, so a peer that never sends LF cannot make the buffer grow.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete line held."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Take bytes; return the lines they complete.

        Raises
        ------
        BeamProtocolError
            A line (LF included) would exceed :data:`MAX_LINE_BYTES`.
        """
        self._buf += data
        lines: list[bytes] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            if end + 1 > MAX_LINE_BYTES:
                break  # refused below
            lines.append(bytes(self._buf[:end]))
            del self._buf[: end + 1]
        if len(self._buf) >= MAX_LINE_BYTES:
            end = self._buf.find(b"\n")
            length = end + 1 if end >= 0 else len(self._buf)
            self._buf.clear()
            raise BeamProtocolError("line", f"longer than {MAX_LINE_BYTES} bytes (at least {length})", "line_too_long")
        return lines
