"""The bundled recordings, installed with the package so that ``maestro replay`` runs
anywhere (a checkout or a wheel): a 30 s MRIdian-like phantom session at 8 frames/s in
the TrackRAD2025 layout, and its first 10 s as a SendExternal ``.dat`` with the console
tracker's ``.roi`` contours. How they were made is in the README (*The bundled phantom
session*)."""

from __future__ import annotations

from pathlib import Path

#: This folder, wherever the package is installed.
FOLDER = Path(__file__).resolve().parent
#: The session ``maestro replay`` runs with no SOURCE.
BUNDLED_SESSION = FOLDER / "mridian-8fps-seed1"
