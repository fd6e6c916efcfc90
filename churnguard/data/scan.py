"""Validating, cleaning and quarantining a raw transaction log in one DuckDB scan.

:func:`scan_transactions` turns a CSV or Parquet file, a pandas DataFrame or a
pyarrow Table into churnguard's canonical log (see
:mod:`churnguard.data.transactions`) without the raw log ever passing through
pandas: DuckDB reads the mapped columns, parses and checks every value in SQL, and
hands back Arrow columns. Every input row ends in exactly one of three places:

* **used**: in :attr:`ScannedTransactions.transactions`;
* **quarantined** with a reason (:attr:`ScannedTransactions.quarantine`, or a CSV
  written by DuckDB when ``quarantine_to`` is given);
* **after as-of**: dated after ``as_of``, counted but not used (not an error).

so ``rows_read == rows_used + rows_quarantined + rows_after_as_of`` always holds.

Rules, in the order they are applied (the first that fails names the reason):

1. ``missing customer id``: the id is null or empty once surrounding whitespace is
   stripped. Texts such as ``NA``, ``NULL``, ``None``, ``nan`` or ``N/A`` are ids
   and kept as written (a CSV is read as text, never through pandas' NA markers).
2. ``unparsable date``: the date cannot be read. Text dates are ISO 8601
   (``2024-03-31``, ``2024-03-31T10:00``, ``20240331``, ``2024/03/31``...) or follow
   ``date_format`` (``strftime`` codes). A date with a UTC offset
   (``1997-01-01T23:30:00-05:00``) keeps the local date and time *as written*
   (1997-01-01 23:30): the offset is dropped, never applied, so the result does not
   depend on the machine's time zone. Parquet/Arrow timestamps with a time zone
   become the wall-clock time of their stored zone.
3. ``date in the future``: after ``today`` (default: the machine's date), with a
   :class:`DataQualityWarning` naming how many; such a row (say 2099-12-31) must not
   move the default as-of date.
4. ``date before <date_floor>`` (default 1970-01-01): placeholder dates such as
   1900-01-01 are not accepted silently.
5. ``non-numeric amount``: missing, text, NaN or infinite.
6. ``implausible amount``: ``|amount| > max_amount`` (default 1e12); two rows of
   1e308 would otherwise overflow a sum downstream.

Optional numeric columns (``margin``, ``cost``, ``quantity``) never quarantine a
row: a value that cannot be read (``two``, ``3 pcs``) becomes missing, is counted
per column in :attr:`ScannedTransactions.unreadable` and reported in a warning.
Empty cells and the usual missing-value markers (``NA``, ``null``...) are simply
missing. Customers whose every used row is a return (amount < 0) have no purchase
and therefore no features; they are listed in
:attr:`ScannedTransactions.returns_only_customers`.

How it stays fast and small. One DuckDB query parses the columns (ids pass through
untouched: no string is copied in SQL) and its result is made contiguous, column by
column, before DuckDB's own buffers are released. Every check that only needs
numbers (date ranges, amounts, missing ids) is a vectorised NumPy/Arrow test that
gives each row a one-byte code (used / reason / after as-of); the counts are a
``bincount`` of the codes. The used rows are then ordered by customer, date and
source position with integer keys: short ids become integers in their order (a
mixed-radix number over their bytes), the day, the time of day and the position
are appended, so one SIMD ``numpy.sort`` of 64-bit keys gives the stable order; a
log already in order is recognised and not sorted. Independent steps run on two
threads (NumPy and Arrow release the GIL), and each source column is released as
soon as it has been gathered into the output. Unusable rows are read a second time,
by position, only when there are any, and a ``quarantine_to`` file is written by
DuckDB directly.

Measured on the seeded 10M-row / 1M-customer log of ``benchmarks/synthetic.py`` (2
cores, each call in a fresh process): from Parquet about 1.6 s and 0.95 GB peak
RSS (0.2 GB of it the imports) against 1.0-1.1 s for a bare DuckDB ``GROUP BY``
aggregate over the same file; the gap is the sort by customer, which the aggregate
does not need. :func:`churnguard.data.load_transactions` on the same file (pandas
frame out): 2.5 s and 1.05 GB, against 16.5 s and 2.5 GB for the pandas cleaning it
replaced.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard.data._scan_checks import (
    check_columns,
    check_dates_read,
    check_formatted_amounts,
    check_usable,
    unreadable_values,
    warn_as_of_after_log,
    warn_as_of_after_today,
    warn_float_ids,
    warn_future,
    warn_quoted_ids,
    warn_returns_only,
    warn_thousands_dots,
)
from churnguard.data._scan_quarantine import (
    REASONS,
    empty_quarantine,
    quarantine_frame,
)
from churnguard.data._scan_rows import (
    AFTER,
    USED,
    gather,
    id_runs,
    id_values,
    release_arrow_memory,
    row_codes,
    sort_order,
    strip_ids,
)
from churnguard.data._scan_sql import (
    Limits,
    Source,
    SourceRelation,
    check_options,
    connect_scan,
    open_source,
    parsed_sql,
    stream_query,
)
from churnguard.data.columns import DEFAULT_DATE_FLOOR, DEFAULT_MAX_AMOUNT, ColumnMap
from churnguard.exceptions import DataQualityWarning, InputDataError

__all__ = [
    "DataQualityWarning",
    "ScannedTransactions",
    "scan_transactions",
]

log = logging.getLogger(__name__)


@dataclass
class ScannedTransactions:
    """The result of :func:`scan_transactions`: used rows, quarantine and counts.

    Attributes
    ----------
    transactions : pyarrow.Table
        Usable rows on or before ``as_of``, canonical columns (``customer_id``
        string, ``date`` timestamp[ns], ``amount`` float64, optional ``margin``,
        ``cost``, ``quantity`` float64, ``product``, ``channel`` string), sorted by
        customer then date, ties in source order.
    quarantine : DataFrame
        Unusable rows: ``source_row`` (0-based data row; the frame's index label for
        a DataFrame source), the raw mapped columns as text, ``reason``. Empty (same
        columns) when they were written to :attr:`quarantine_path` instead.
    source : str
        Name of the source in messages.
    rows_read : int
        Data rows in the source.
    quarantined : dict
        Reason to number of rows (only reasons that occurred).
    rows_after_as_of : int
        Usable rows dated after ``as_of``: counted, not used.
    unreadable : dict
        Optional numeric column to the number of used rows whose value could not be
        read and became missing.
    returns_only_customers : list of str
        Customers whose every used row is a return (amount < 0), in id order.
    customers : int
        Distinct customers among the used rows.
    as_of : datetime.date or None
        The as-of date given, if any.
    first_date, last_date : datetime.date or None
        First and last date of the used rows.
    quarantine_path : Path or None
        The CSV the unusable rows were written to (``quarantine_to``), if any.
    columns : dict
        Canonical column to the source column it was read from.
    customer_starts : ndarray of int64 or None
        The first row of each customer in :attr:`transactions` (the scan finds them
        while sorting): a feature build given them skips re-deriving the customer runs.
    """

    transactions: pa.Table
    quarantine: pd.DataFrame
    source: str
    rows_read: int
    quarantined: dict[str, int]
    rows_after_as_of: int
    unreadable: dict[str, int]
    returns_only_customers: list[str]
    customers: int
    as_of: dt.date | None = None
    first_date: dt.date | None = None
    last_date: dt.date | None = None
    quarantine_path: Path | None = None
    columns: dict[str, str] = field(default_factory=dict)
    customer_starts: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def rows_used(self) -> int:
        """Rows in :attr:`transactions`."""
        return int(self.transactions.num_rows)

    @property
    def rows_quarantined(self) -> int:
        """Rows set aside, whatever the reason."""
        return int(sum(self.quarantined.values()))

    @property
    def n_returns_only(self) -> int:
        """Number of customers with returns only (see :attr:`returns_only_customers`)."""
        return len(self.returns_only_customers)

    def summary(self) -> dict[str, object]:
        """Counts for logs and run summaries (plain JSON-able values)."""
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_quarantined": self.rows_quarantined,
            "quarantined": dict(self.quarantined),
            "rows_after_as_of": self.rows_after_as_of,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "unreadable_values": dict(self.unreadable),
            "customers": self.customers,
            "returns_only_customers": self.n_returns_only,
            "first_date": self.first_date.isoformat() if self.first_date else None,
            "last_date": self.last_date.isoformat() if self.last_date else None,
            "quarantine_file": str(self.quarantine_path) if self.quarantine_path else None,
        }

    def to_pandas(self) -> pd.DataFrame:
        """The used rows as the pandas frame :func:`clean_transactions` returns.

        ``customer_id`` is an object column of ``str``, ``date`` ``datetime64[ns]``,
        numbers ``float64`` and ``product``/``channel`` pandas ``string``.
        """
        data: dict[str, Any] = {}
        for name in self.transactions.column_names:
            column = self.transactions.column(name)
            if name in ("product", "channel"):
                data[name] = column.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
            elif name == "customer_id":
                # Repeated ids share one Python string (Arrow deduplicates them).
                data[name] = column.to_pandas().astype(object)
            else:
                data[name] = column.to_pandas()
        return pd.DataFrame(data)


def scan_transactions(
    source: Source,
    columns: ColumnMap | None = None,
    *,
    as_of: Any = None,
    date_floor: Any = DEFAULT_DATE_FLOOR,
    max_amount: float = DEFAULT_MAX_AMOUNT,
    encoding: str | None = None,
    quarantine_to: str | os.PathLike[str] | None = None,
    today: Any = None,
    name: str | None = None,
) -> ScannedTransactions:
    """Validate, clean and quarantine a transaction log in a DuckDB scan.

    Parameters
    ----------
    source : path, DataFrame or pyarrow.Table
        A ``.csv`` or ``.parquet`` log, or raw transactions in memory (not modified).
        A CSV is read by DuckDB with every column as text (``00042`` stays
        ``00042``, ``NA`` stays an id) and its delimiter sniffed.
    columns : ColumnMap, optional
        Where the required and optional columns are, and the ``date_format``.
    as_of : date-like, optional
        Rows dated after it are counted in ``rows_after_as_of`` and not used (not an
        error). Default: every usable row is used.
    date_floor : date-like
        Earlier dates are quarantined as ``date before <date_floor>``.
    max_amount : float
        Larger absolute amounts are quarantined as ``implausible amount``.
    encoding : str, optional
        Text encoding of a CSV (default UTF-8), e.g. ``latin-1`` or ``cp1252``.
    quarantine_to : path, optional
        Write the unusable rows to this CSV (by DuckDB, atomically, formula-like text
        escaped as in :func:`~churnguard.data.io.write_table`) instead of returning
        them in :attr:`ScannedTransactions.quarantine`: a million bad rows never pass
        through pandas. Nothing is written when no row is unusable.
    today : date-like, optional
        Dates after it are quarantined as ``date in the future``; default the
        machine's current date.
    name : str, optional
        The source's name in messages (default the path, or ``<frame>``).

    Returns
    -------
    ScannedTransactions
        Used rows (Arrow, sorted by customer then date, ties in source order), the
        quarantine and the counts; see the module docstring for the rules.

    Raises
    ------
    InputDataError
        If the file is missing, empty or unreadable (not UTF-8, ragged rows), a
        column is missing, there are no rows, no date at all can be parsed, no
        amount is numeric, or no row is usable.
    ParameterTypeError
        If ``source`` is neither a path, a DataFrame nor a pyarrow Table.
    ParameterError
        If an option is out of range (``max_amount`` <= 0, ``date_floor`` after
        ``today``...).

    Warns
    -----
    DataQualityWarning
        When rows are dated in the future, or optional values cannot be read.
    """
    cmap = columns or ColumnMap()
    limits = check_options(as_of, date_floor, max_amount, today)
    warn_as_of_after_today(limits)
    con = connect_scan()
    try:
        with open_source(con, source, cmap, encoding, name) as (src, resolved):
            return _scan(con, src, resolved, cmap, limits, quarantine_to)
    finally:
        con.close()


def _scan(
    con: duckdb.DuckDBPyConnection,
    src: SourceRelation,
    resolved: dict[str, str],
    cmap: ColumnMap,
    limits: Limits,
    quarantine_to: str | os.PathLike[str] | None,
) -> ScannedTransactions:
    sql, flags = parsed_sql(src, cmap)
    warn_float_ids(src)
    warn_thousands_dots(con, src)
    table = stream_query(con, src, sql, cmap)
    n = table.num_rows
    if n == 0:
        raise InputDataError(
            f"{src.name} has a header but no rows; expected at least one transaction."
        )
    check_columns(con, src, cmap, table, n)
    dates = table.column("date")
    unit = dates.type.unit
    per_day = 86_400 * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    # The ids (stripped, then made sort keys) do not depend on the date and amount
    # checks: they are done meanwhile on the other core (NumPy and Arrow release the
    # GIL). Stripping almost never changes an id, so the keys are built from the ids
    # as read, at the same time, and rebuilt only if stripping changed them.
    with ThreadPoolExecutor(max_workers=2) as pool:
        raw_ids = table.column("customer_id")
        stripped = pool.submit(strip_ids, raw_ids)
        packed = pool.submit(id_values, raw_ids)
        # The dates are needed whole (checks, sort keys, the output column); the
        # amounts are checked by slices and never copied whole.
        stamps = np.asarray(dates.to_numpy()).view(np.int64)
        del dates
        code = row_codes(stamps, per_day, table.column("amount"), limits)
        ids, missing_id = stripped.result()
        warn_quoted_ids(src, ids)
        code[missing_id] = 1  # the first rule: it wins over every other
        del missing_id
        release_arrow_memory()
        counts = np.bincount(code, minlength=AFTER + 1)
        floor = limits.floor.isoformat()
        reasons = {REASONS[c].format(floor=floor): int(counts[c]) for c in REASONS if counts[c]}
        check_usable(src, limits, counts, reasons, n)
        if counts[2]:  # unparsable dates
            check_dates_read(con, src, cmap, np.flatnonzero(code == 2), n)
        if counts[5]:  # non-numeric amounts
            check_formatted_amounts(con, src, np.flatnonzero(code == 5), n)
        if counts[3]:
            warn_future(src, limits, stamps, code, unit)
        used_mask = code == USED
        unreadable = unreadable_values(con, src, resolved, table, flags, used_mask)
        used = None if counts[USED] == n else np.flatnonzero(used_mask).astype(np.int64)
        del used_mask
        if ids is not raw_ids:
            packed.cancel()
            packed = pool.submit(id_values, ids)
        del raw_ids
        positions, starts = sort_order(ids, stamps, per_day, used, packed)
        del used, packed
    # Handed over whole: gather releases each source column once it is gathered.
    columns: dict[str, Any] = {c: table.column(c) for c in resolved}
    columns.update(customer_id=ids, date=stamps)
    del table, ids, stamps
    out = gather(columns, unit, positions, starts, list(resolved))
    del positions
    if starts is None:
        starts = id_runs(out.column("customer_id"))
    amounts = np.asarray(out.column("amount").to_numpy(), dtype=np.float64)
    purchases = np.add.reduceat((amounts >= 0).astype(np.int64), starts)
    returns_only = out.column("customer_id").take(pa.array(starts[purchases == 0])).to_pylist()
    if returns_only:
        warn_returns_only(src, returns_only)
    extremes = pc.min_max(out.column("date"))
    first, last = extremes["min"], extremes["max"]
    if last.is_valid:
        warn_as_of_after_log(src, limits.as_of, last.as_py().date())
    written = None
    quarantine = empty_quarantine(["source_row", *src.raw, "reason"])
    if reasons:
        target = Path(quarantine_to) if quarantine_to is not None else None
        quarantine = quarantine_frame(con, src, cmap, limits, code, target)
        written = target
        log.info("%d unusable rows of %s set aside: %s", sum(reasons.values()), src.name, reasons)
    return ScannedTransactions(
        transactions=out,
        quarantine=quarantine,
        source=src.name,
        rows_read=n,
        quarantined=reasons,
        rows_after_as_of=int(counts[AFTER]),
        unreadable=unreadable,
        returns_only_customers=[str(v) for v in returns_only],
        customers=len(starts),
        as_of=limits.as_of,
        first_date=first.as_py().date() if first.is_valid else None,
        last_date=last.as_py().date() if last.is_valid else None,
        quarantine_path=written,
        columns=dict(resolved),
        customer_starts=starts,
    )
