"""Loading a raw transaction log into churnguard's canonical shape.

Whatever the user's column names, a cleaned log has the columns ``customer_id``
(text, exactly as given once surrounding whitespace is stripped), ``date``
(``datetime64[ns]``) and ``amount`` (float), plus the optional columns that were
found: ``margin``, ``cost``, ``quantity``, ``product``, ``channel``. Rows that cannot
be used (missing id, unparsable or implausible date, non-numeric or implausible
amount) are not dropped silently: they are returned in a quarantine frame with the
reason and their row number in the source.

The work is done by :func:`churnguard.data.scan.scan_transactions` (a DuckDB scan
that returns Arrow and counts); :func:`load_transactions` and
:func:`clean_transactions` are its pandas face, kept for callers that want frames.
The column mapping (:class:`ColumnMap`, :func:`resolve_columns`) lives with the
scan and is re-exported here, where callers have always found it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from churnguard.data.columns import (
    DEFAULT_DATE_FLOOR,
    DEFAULT_MAX_AMOUNT,
    ColumnMap,
    resolve_columns,
)
from churnguard.data.scan import ScannedTransactions, scan_transactions
from churnguard.exceptions import ParameterTypeError

__all__ = ["LoadedTransactions", "clean_transactions", "duplicate_rows_note", "load_transactions"]


@dataclass
class LoadedTransactions:
    """A cleaned transaction log and the rows that were set aside.

    ``scan`` holds the :class:`~churnguard.data.scan.ScannedTransactions` it was
    built from (counts by reason, rows after as-of, unreadable values,
    returns-only customers), when it came from a scan.
    """

    transactions: pd.DataFrame
    quarantine: pd.DataFrame
    source: str = "<frame>"
    scan: ScannedTransactions | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_scan(cls, scan: ScannedTransactions) -> LoadedTransactions:
        """The pandas face of a scan: its rows as a frame, its quarantine, its counts."""
        return cls(scan.to_pandas(), scan.quarantine, scan.source, scan=scan)

    @property
    def n_quarantined(self) -> int:
        """Number of rows that were set aside (also when they were written to a file)."""
        if self.scan is not None:
            return self.scan.rows_quarantined
        return len(self.quarantine)

    def summary(self) -> dict[str, object]:
        """Counts for logs and run summaries."""
        tx = self.transactions
        return {
            "source": self.source,
            "rows_used": len(tx),
            "rows_quarantined": self.n_quarantined,
            "customers": int(tx["customer_id"].nunique()),
            "first_date": tx["date"].min().date().isoformat() if len(tx) else None,
            "last_date": tx["date"].max().date().isoformat() if len(tx) else None,
        }


#: Former private name, still imported by other modules.
_resolve_columns = resolve_columns


def clean_transactions(
    frame: pd.DataFrame,
    columns: ColumnMap | None = None,
    *,
    source: str = "<frame>",
    today: Any = None,
    date_floor: Any = DEFAULT_DATE_FLOOR,
    max_amount: float = DEFAULT_MAX_AMOUNT,
) -> LoadedTransactions:
    """Validate and canonicalise a raw transaction frame.

    A pandas face of :func:`churnguard.data.scan.scan_transactions`, which documents
    the rules (missing ids, dates, amounts, quarantine reasons).

    Parameters
    ----------
    frame : DataFrame
        Raw transactions, one row per transaction. Not modified.
    columns : ColumnMap, optional
        Where the required and optional columns are (defaults: ``customer_id``,
        ``date``, ``amount``).
    source : str
        Name used in messages.
    today, date_floor, max_amount
        Plausibility limits, as in :func:`~churnguard.data.scan.scan_transactions`.

    Returns
    -------
    LoadedTransactions
        ``transactions`` sorted by customer and date with canonical columns, and
        ``quarantine`` holding every unusable row with a ``reason`` and its
        ``source_row`` (the frame's index label).

    Raises
    ------
    TypeError
        If ``frame`` is not a DataFrame.
    InputDataError
        If a column is missing, the frame is empty, or no row at all is usable
        (for example every date fails to parse).
    """
    if not isinstance(frame, pd.DataFrame):
        raise ParameterTypeError(
            f"transactions must be a pandas DataFrame; got {type(frame).__name__}. Read a file "
            "with load_transactions, or pass a DataFrame."
        )
    scanned = scan_transactions(
        frame, columns, name=source, today=today, date_floor=date_floor, max_amount=max_amount
    )
    return LoadedTransactions.from_scan(scanned)


def load_transactions(
    path: str | os.PathLike[str],
    columns: ColumnMap | None = None,
    *,
    encoding: str | None = None,
    today: Any = None,
    date_floor: Any = DEFAULT_DATE_FLOOR,
    max_amount: float = DEFAULT_MAX_AMOUNT,
) -> LoadedTransactions:
    """Read a CSV or Parquet transaction log and clean it (see :func:`clean_transactions`).

    The file is read by DuckDB (:func:`churnguard.data.scan.scan_transactions`): only
    the needed columns, every CSV column as text so identifiers such as ``00042`` or
    ``NA`` come back unchanged, the delimiter sniffed, in ``encoding`` (default
    UTF-8; e.g. ``latin-1``).
    """
    if encoding is None and columns is not None:
        encoding = columns.encoding
    scanned = scan_transactions(
        path, columns, encoding=encoding, today=today, date_floor=date_floor, max_amount=max_amount
    )
    return LoadedTransactions.from_scan(scanned)


def duplicate_rows_note(transactions: pd.DataFrame) -> str:
    """One line when rows repeat another row exactly, else ''.

    Such rows are kept: a log of line items can hold two identical lines on one day (CDNOW
    has 255 of 69,659), so they are not errors. But an export that duplicated rows
    inflates revenue and purchase counts, and only the user knows which it is.
    """
    if transactions.empty:
        return ""
    repeated = int(transactions.duplicated().sum())
    if not repeated:
        return ""
    return (
        f"{repeated:,} of {len(transactions):,} rows repeat another row exactly (same customer, "
        "date, amount and other columns); they count as separate lines. If the export "
        "duplicated rows, remove them and retrain."
    )
