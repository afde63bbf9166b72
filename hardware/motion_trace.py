"""Read recorded tumour motion traces (KIM liver trajectories) from plain-text files.

The KIM-QA liver trajectories (ACRF Image X Institute, ``KIM-QA-Analysis``, MIT licence)
are plain text, whitespace separated, one sample per line with 7 columns::

    time_s  x_mm  y_mm  z_mm  rx  ry  rz

sampled every 0.2 s. The files do not name their axes. Following
``../shared/data/README.md``, the second translation (column 3, by far the largest
excursion) is taken to be superior-inferior, column 4 anterior-posterior and column 2
left-right. The signs are taken to follow the IEC 61217 patient convention (+SI toward
the head, +AP toward the front): in every trace the large excursions are negative SI
together with positive AP, i.e. inhalation moving the liver inferior and anterior. Both
are assumptions, stated here and in :class:`MotionTrace`; the rotations are read and
ignored (they are all zero in the published files).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["MotionTrace", "find_trace_files", "read_kim_trace"]

#: Columns in a KIM trajectory file.
KIM_COLUMNS = 7
#: Largest accepted |translation|, mm: beyond this a file is not a tumour trajectory.
MAX_TRANSLATION_MM = 200.0


@dataclass(frozen=True, eq=False)
class MotionTrace:
    """A recorded 3D target trajectory.

    Attributes
    ----------
    times_s : (N,) float64 ndarray
        Sample times in s, strictly increasing, starting where the file starts.
    si_mm : (N,) float64 ndarray
        Superior-inferior position, mm, **+ superior** (file column 3; assumption).
    ap_mm : (N,) float64 ndarray
        Anterior-posterior position, mm, **+ anterior** (file column 4; assumption).
    lr_mm : (N,) float64 ndarray
        Left-right position, mm (file column 2; assumption). Its sign does not matter
        to a sagittal slice, which sees it as through-plane motion.
    source : str
        Where the trace came from (the file path).
    """

    times_s: np.ndarray
    si_mm: np.ndarray
    ap_mm: np.ndarray
    lr_mm: np.ndarray
    source: str

    @property
    def duration_s(self) -> float:
        """Time from the first to the last sample, s."""
        return float(self.times_s[-1] - self.times_s[0])

    @property
    def name(self) -> str:
        """File stem without the ``LiverTraj_`` prefix and ``_robot`` suffix."""
        stem = Path(self.source).stem
        stem = stem.removeprefix("LiverTraj_").removesuffix("_robot")
        return stem

    @property
    def sample_period_s(self) -> float:
        """Median interval between samples, s."""
        return float(np.median(np.diff(self.times_s)))


def read_kim_trace(path: str | Path) -> MotionTrace:
    """Read one KIM trajectory file.

    Parameters
    ----------
    path : str or Path
        A plain-text file of 7 whitespace-separated numeric columns (time in s, three
        translations in mm, three rotations), at least 2 rows, times strictly
        increasing, every value finite.

    Returns
    -------
    MotionTrace
        Arrays are read-only.

    Raises
    ------
    InputError
        When the file is missing or unreadable, or a row breaks the format; the message
        names the file, the line and the rule.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise InputError(path, "file", "does not exist; give a KIM trajectory .txt file") from None
    except IsADirectoryError:
        raise InputError(path, "file", "is a folder; give a KIM trajectory .txt file") from None
    except UnicodeDecodeError:
        raise InputError(path, "file", "is not text; a KIM trajectory is plain text") from None
    except OSError as exc:
        raise InputError(path, "file", f"cannot be read ({exc.strerror})") from None
    rows: list[list[float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != KIM_COLUMNS:
            raise InputError(
                path, f"line {number}",
                f"must have {KIM_COLUMNS} columns (time, 3 translations, 3 rotations), "
                f"has {len(fields)}",
            )
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise InputError(path, f"line {number}", "every column must be a number") from None
        if not all(math.isfinite(v) for v in values):
            raise InputError(path, f"line {number}", "values must be finite (no NaN or inf)")
        if max(abs(v) for v in values[1:4]) > MAX_TRANSLATION_MM:
            raise InputError(
                path, f"line {number}",
                f"translations must be within +-{MAX_TRANSLATION_MM:g} mm",
            )
        rows.append(values)
    if len(rows) < 2:
        raise InputError(path, "rows", f"must hold at least 2 samples, has {len(rows)}")
    data = np.asarray(rows, dtype=np.float64)
    steps = np.diff(data[:, 0])
    if not np.all(steps > 0.0):
        bad = int(np.argmax(steps <= 0.0)) + 1
        raise InputError(path, "time", f"must increase strictly (sample {bad + 1} does not)")
    trace = MotionTrace(
        times_s=data[:, 0].copy(),
        si_mm=data[:, 2].copy(),
        ap_mm=data[:, 3].copy(),
        lr_mm=data[:, 1].copy(),
        source=str(path),
    )
    for array in (trace.times_s, trace.si_mm, trace.ap_mm, trace.lr_mm):
        array.setflags(write=False)
    log.debug("read %s: %d samples over %.1f s", path, len(rows), trace.duration_s)
    return trace


def find_trace_files(folder: str | Path, option: str = "--traces") -> list[Path]:
    """The ``*.txt`` trajectory files directly in ``folder``, sorted by name.

    Raises
    ------
    InputError
        When ``folder`` is not a folder or holds no ``.txt`` file; ``option`` names the
        command-line option that gave it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, option, "must be a folder of KIM trajectory .txt files")
    files = sorted(p for p in folder.glob("*.txt") if p.is_file())
    if not files:
        raise InputError(folder, option, "holds no .txt trajectory file")
    return files
