"""Where a scoring run's files go: the list, its quarantine file, its report.

One convention for every executor: unusable rows go to ``<out>.quarantine.csv`` beside
the list (``<folder>/quarantine.csv`` for a folder), and a run that has none removes a
quarantine file an earlier run left there, so a list never sits beside another run's
rejects.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from churnguard.data.io import quarantine_path, write_table

__all__ = ["quarantine_path", "write_quarantine"]

log = logging.getLogger(__name__)


def write_quarantine(quarantine: pd.DataFrame, output: str | os.PathLike[str]) -> Path | None:
    """Write a run's unusable rows beside ``output`` (atomically); None when there are none.

    A stale quarantine file of an earlier run to the same output is removed.
    """
    path = quarantine_path(output)
    if quarantine.empty:
        path.unlink(missing_ok=True)
        return None
    write_table(quarantine, path)
    reasons = quarantine["reason"].value_counts().to_dict() if "reason" in quarantine else {}
    log.warning("%d unusable rows set aside in %s: %s", len(quarantine), path, reasons)
    return path
