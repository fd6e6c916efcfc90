"""The feature table of a whole log, as the ``churnguard features`` command builds it.

The log is validated, cleaned and quarantined by the DuckDB scan
(:func:`churnguard.data.scan_transactions`) and handed to the
:func:`~churnguard.features.compute_features` (what
:class:`~churnguard.features.FeatureBuilder` computes) as Arrow, already in customer and day
order (the engine then skips its sort): pandas never holds the raw log, and bad rows
go to ``<out>.quarantine.csv`` straight from DuckDB.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.data import ColumnMap, LoadedTransactions, scan_transactions
from churnguard.data.io import check_not_input, quarantine_path, table_format, write_table
from churnguard.features.compute import compute_features

__all__ = ["FeaturesResult", "build_features"]

log = logging.getLogger(__name__)


@dataclass
class FeaturesResult:
    """A feature table and where it went.

    Attributes
    ----------
    features : DataFrame
        ``customer_id`` and the features, one row per customer, sorted by id.
    out : Path or None
        The file written, if any.
    quarantined : int
        Unusable rows set aside.
    quarantine_file : Path or None
        ``<out>.quarantine.csv`` when rows were set aside and ``out`` was given.
    """

    features: pd.DataFrame
    out: Path | None = None
    quarantined: int = 0
    quarantine_file: Path | None = None


def build_features(
    transactions: str | os.PathLike[str] | pd.DataFrame | LoadedTransactions,
    out: str | os.PathLike[str] | None = None,
    *,
    as_of: Any = None,
    time_unit: str = "D",
    columns: ColumnMap | None = None,
) -> FeaturesResult:
    """Point-in-time features of every customer as of a date (default: the last date).

    Parameters
    ----------
    transactions : path, DataFrame or LoadedTransactions
        A CSV/Parquet log, a raw frame, or a log cleaned already.
    out : path, optional
        Where to write the table (``.parquet`` or ``.csv``, atomically); checked before
        the log is read.
    as_of : date-like, optional
        The cutoff: transactions after it are not used.
    time_unit : str
        Unit of ``recency``/``T`` (see :data:`churnguard.features.TIME_UNITS`).
    columns : ColumnMap, optional
        The log's column names (and CSV encoding).

    Returns
    -------
    FeaturesResult
    """
    if out is not None:
        table_format(out, role="output")  # before the log is read
        check_not_input(out, transactions)
    if isinstance(transactions, LoadedTransactions):
        table = compute_features(transactions.transactions, as_of, time_unit=time_unit)
        result = FeaturesResult(table, quarantined=transactions.n_quarantined)
        if out is not None:
            result.out = write_table(table, out)
            if not transactions.quarantine.empty:
                result.quarantine_file = write_table(
                    transactions.quarantine, quarantine_path(result.out)
                )
        return result
    target = quarantine_path(out) if out is not None else None
    scanned = scan_transactions(
        transactions,
        columns,
        as_of=as_of,
        encoding=columns.encoding if columns is not None else None,
        quarantine_to=target,
    )
    cutoff = as_of if as_of is not None else scanned.last_date
    table = compute_features(
        scanned.transactions,
        cutoff,
        time_unit=time_unit,
        customer_starts=scanned.customer_starts,
    )
    result = FeaturesResult(table, quarantined=scanned.rows_quarantined)
    if out is not None:
        result.out = write_table(table, out)
        if scanned.rows_quarantined:
            result.quarantine_file = scanned.quarantine_path
            log.warning(
                "%d unusable rows set aside in %s: %s",
                scanned.rows_quarantined, scanned.quarantine_path, scanned.quarantined,
            )  # fmt: skip
        elif target is not None:
            target.unlink(missing_ok=True)  # a stale one from an earlier run
    return result
