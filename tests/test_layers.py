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
    maestro.validation and maestro.phantom import bottom up, and validation not the command line; maestro.evaluation
    sits below the rest of the application."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not installed: install the dev extra (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 7 kept, 0 broken" in proc.stdout, proc.stdout


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


#: The application modules maestro.evaluation may import: what it reads (the frame record,
#: the observer protocol) and plain helpers. Every other one is forbidden by its contract.
EVALUATION_MAY_IMPORT = {"recording", "observer", "stats", "defaults", "evaluation"}


def test_the_evaluation_contract_names_every_module_above_it() -> None:
    """A module added to maestro/ is forbidden to maestro.evaluation unless listed here:
    the contract cannot fall behind the tree."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c.get("source_modules") == ["maestro.evaluation"])
    forbidden = {m.removeprefix("maestro.") for m in contract["forbidden_modules"]}
    modules = {p.stem if p.is_file() else p.name for p in (ROOT / "maestro").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert modules - EVALUATION_MAY_IMPORT == forbidden
