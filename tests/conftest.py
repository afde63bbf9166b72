"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Real recordings kept outside the repository (see ../shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real test recordings, or skip when this checkout has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: real recordings are outside the repo; see ../shared/data/README.md")
    return SHARED_DATA.resolve()
