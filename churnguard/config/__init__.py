"""The packaged, editable configuration: ``playbook.toml`` and ``segments.toml``."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from churnguard.exceptions import InputDataError

__all__ = ["CONFIG_FILES", "copy_defaults"]

#: The files :func:`copy_defaults` writes.
CONFIG_FILES = ("playbook.toml", "segments.toml")


def copy_defaults(out_dir: str | os.PathLike[str] = "churnguard-config") -> list[Path]:
    """Copy the default playbook and segment rules into ``out_dir`` to edit.

    Raises
    ------
    InputDataError
        When a file of that name exists already (it is never overwritten).
    """
    folder = Path(out_dir)
    existing = [folder / name for name in CONFIG_FILES if (folder / name).exists()]
    if existing:
        raise InputDataError(
            f"{existing[0]} already exists; remove it or choose another --out-dir."
        )
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONFIG_FILES:
        target = folder / name
        target.write_text(resources.files("churnguard.config").joinpath(name).read_text())
        written.append(target)
    return written
