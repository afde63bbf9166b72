"""The record of a session: ``frames.csv`` written as each frame is decided, and
``session.json`` written atomically at start and at finish.

The recording is the evidence of what the gate did, so each row is flushed to the
operating system as soon as the frame's beam command has been issued: a session that is
killed leaves a readable file up to its last decided frame.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Columns of ``frames.csv``, in order. Documented in README.md.
FRAME_COLUMNS: tuple[str, ...] = (
    "frame",
    "t_acq_s",
    "row_mm",
    "col_mm",
    "confidence",
    "outside_pct",
    "beam",
    "reason",
    "latency_us",
    "peak_zncc",
    "sharpness",
    "true_row_mm",
    "true_col_mm",
    "true_outside_pct",
    "error_mm",
)


#: Columns of ``events.csv``: what happened that is not a frame. Documented in README.md.
EVENT_COLUMNS: tuple[str, ...] = ("t_s", "frame", "event", "beam", "reason", "detail")


@dataclass(slots=True)
class FrameRecord:
    """One row of ``frames.csv``: what the loop decided for one frame.

    Displacements are the target's offset from its reference position in mm along image
    rows (+ = increasing row index) and columns (+ = increasing column index). ``true_*``
    and ``error_mm`` are NaN when the recording has no per-frame label; the session's
    ground-truth observer writes them before the record is kept, and nothing else changes a
    record.
    """

    frame: int
    t_acq_s: float
    row_mm: float
    col_mm: float
    confidence: float
    outside_pct: float
    beam: str
    reason: str
    latency_us: float
    peak_zncc: float
    sharpness: float
    true_row_mm: float = math.nan
    true_col_mm: float = math.nan
    true_outside_pct: float = math.nan
    error_mm: float = math.nan


#: Text columns; every other column but ``frame`` is a float written with 4 decimals
#: (``nan`` when absent).
_TEXT_COLUMNS = frozenset({"beam", "reason"})
#: One format for a whole row: formatting it costs a fifth of formatting field by field.
_ROW_FORMAT = ",".join(
    "{}" if c in _TEXT_COLUMNS else "{:d}" if c == "frame" else "{:.4f}" for c in FRAME_COLUMNS
) + "\n"
_row_values = operator.attrgetter(*FRAME_COLUMNS)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON to ``path`` via a temporary file and a rename.

    A reader sees either the previous complete file or the new complete file, never a
    partial one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False, default=_json_default)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()  # type: ignore[no-any-return]
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class SessionRecorder:
    """Writes one session's recording into a folder.

    Parameters
    ----------
    out_dir : Path
        Folder to write into; created if missing. Existing ``frames.csv`` and
        ``session.json`` in it are replaced.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.frames_path = self.out_dir / "frames.csv"
        self.events_path = self.out_dir / "events.csv"
        self.session_path = self.out_dir / "session.json"
        # Line-buffered text files: each row reaches the OS when it is written.
        self._fh = open(self.frames_path, "w", encoding="utf-8", newline="", buffering=1)
        self._fh.write(",".join(FRAME_COLUMNS) + "\n")
        self._events = open(self.events_path, "w", encoding="utf-8", newline="", buffering=1)
        self._events.write(",".join(EVENT_COLUMNS) + "\n")
        self.n_rows = 0
        self.n_events = 0

    def start(self, session: dict[str, Any]) -> None:
        """Write ``session.json`` at the start of the session (status ``running``)."""
        write_json_atomic(self.session_path, {**session, "status": "running"})

    def write_frame(self, record: FrameRecord) -> None:
        """Append one decided frame to ``frames.csv`` and hand it to the OS."""
        self._fh.write(_ROW_FORMAT.format(*_row_values(record)))
        self.n_rows += 1

    def write_event(self, t_s: float, frame: int | None, event: str, beam: str, reason: str = "", detail: str = "") -> None:
        """Append one event (not a frame) to ``events.csv`` and hand it to the OS.

        Parameters
        ----------
        t_s : float
            Seconds since the session started, on the monotonic clock.
        frame : int or None
            Index of the last frame decided before the event.
        event : str
            What happened (``session_start``, ``beam_hold``, ``beam_release``,
            ``watchdog``, ``source_fault``, ``source_recovered``, ``frame_out_of_order``,
            ``operator_stop``, ``recording_fault``, ``session_end``).
        beam : str
            Beam state commanded after the event (``on``/``hold``).
        """
        if self._events.closed:
            return
        clean = detail.replace("\n", " ").replace(",", ";").replace('"', "'")
        frame_text = "" if frame is None else str(frame)
        self._events.write(f"{t_s:.6f},{frame_text},{event},{beam},{reason},{clean}\n")
        self.n_events += 1

    def finish(self, session: dict[str, Any]) -> None:
        """Close ``frames.csv`` and rewrite ``session.json`` with the final state."""
        self.close()
        write_json_atomic(self.session_path, session)

    def close(self) -> None:
        """Flush and close ``frames.csv`` and ``events.csv``; idempotent.

        Closing never raises: a file that cannot be flushed (disk full) is still closed.
        """
        for fh in (self._fh, self._events):
            if fh.closed:
                continue
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                log.error("could not flush %s: %s", fh.name, exc)
            finally:
                try:
                    fh.close()
                except OSError as exc:
                    log.error("could not close %s: %s", fh.name, exc)
