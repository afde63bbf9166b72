"""The recordings of a cohort."""

from __future__ import annotations

from pathlib import Path


def find_cases(source: Path) -> list[Path]:
    """The recordings under SOURCE: itself when it is one, else its sub-folders.

    Raises
    ------
    InputError
        SOURCE does not exist or holds neither a recording nor folders.
    """
    from hardware import InputError

    source = Path(source)
    if not source.exists():
        raise InputError(source, "source", "does not exist")
    if not source.is_dir():
        raise InputError(source, "source", "is a file; pass a recording folder or a folder of recordings")
    if (source / "images").is_dir():
        return [source]
    subdirs = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        return subdirs
    return [source]  # a DICOM series folder (the reader checks it)
