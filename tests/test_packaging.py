"""The wheel holds every package of the tree: pyproject.toml lists its packages one by one
(replay_data/ and benchmarks/ are installed under other names), so a new sub-package
that is not listed would be missing from every install but the editable one."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_tree_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    where = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    for top in ("tracking", "gating", "hardware", "maestro", "maestro_replay_data", "maestro_benchmarks"):
        base = where.get(top, ROOT / top)
        for init in base.rglob("__init__.py"):
            parts = init.parent.relative_to(base).parts
            name = ".".join((top, *parts))
            assert name in listed, f"pyproject.toml [tool.setuptools] packages: {name} ({init.parent}) is not listed"
