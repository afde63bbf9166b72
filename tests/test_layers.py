"""The architecture is a contract: the layers of pyproject.toml's [tool.importlinter]."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    """maestro sits above tracking | gating | hardware; tracking and gating do no I/O; maestro opens no sockets;
    maestro.validation and maestro.phantom import bottom up, and validation not the command line."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not installed: install the dev extra (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 6 kept, 0 broken" in proc.stdout, proc.stdout


def test_libraries_do_not_import_application_or_each_other() -> None:
    """A cheap textual double-check that survives a misconfigured linter."""
    for package, others in {
        "tracking": ("gating", "hardware", "maestro"),
        "gating": ("tracking", "hardware", "maestro"),
        "hardware": ("tracking", "gating", "maestro"),
    }.items():
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for other in others:
                pattern = rf"^\s*(from|import)\s+{other}\b"
                assert not re.search(pattern, text, flags=re.MULTILINE), f"{path} imports {other}"
