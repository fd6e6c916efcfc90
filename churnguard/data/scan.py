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
import math
import os
import re
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnguard._duckdb import quote_identifier, quote_literal
from churnguard.data.io import (
    atomic_path,
    check_readable,
    csv_columns,
    csv_relation,
    escape_formulas_sql,
    normalize_encoding,
    readable_csv,
    table_format,
    translate_csv_error,
)
from churnguard.exceptions import InputDataError, ParameterError, ParameterTypeError

__all__ = [
    "OPTIONAL_COLUMNS",
    "OPTIONAL_NUMERIC",
    "ColumnMap",
    "DataQualityWarning",
    "ScannedTransactions",
    "resolve_columns",
    "scan_transactions",
]

log = logging.getLogger(__name__)

#: What :func:`scan_transactions` reads.
Source: TypeAlias = str | os.PathLike[str] | pd.DataFrame | pa.Table

# Row codes: 0 used, 1-6 quarantined (first failing rule), 7 after as-of.
_USED, _AFTER = 0, 7
_REASONS = {
    1: "missing customer id",
    2: "unparsable date",
    3: "date in the future",
    4: "date before {floor}",
    5: "non-numeric amount",
    6: "implausible amount",
}
# Python's str.strip() whitespace: ids are stripped exactly as clean_transactions
# stripped them with pandas.
_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
# pandas' default missing-value markers: in an optional numeric column they mean
# "missing", not "unreadable" (compared in lower case).
_NA_MARKERS = (
    "", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan",
    "<na>", "n/a", "na", "null", "nan", "none",
)  # fmt: skip
# ISO-like shapes DuckDB's cast does not take but pandas' ISO 8601 parser did.
_EXTRA_DATE_FORMATS = ("%Y%m%d", "%Y/%m/%d", "%Y-%m", "%Y")
_NUMERIC_TYPE = re.compile(
    r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|REAL|DECIMAL\(.*\)|BOOLEAN)$"
)
_NAIVE_TEMPORAL = ("DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")
# nanosecond timestamps (the canonical dtype) end here; later dates cannot be held.
_NS_MIN, _NS_MAX = dt.date(1678, 1, 1), dt.date(2262, 4, 10)
_BLOCK = 1 << 16  # rows per block of NumPy work that should stay in cache
_MAX_ID_BYTES = 24  # longer ids are sorted as text
_BATCH_ROWS = 1 << 30  # rows per Arrow batch fetched from DuckDB (as few as it makes)


# --------------------------------------------------------------------------- column mapping

#: Optional canonical columns, picked up automatically when the log has them.
OPTIONAL_COLUMNS = ("margin", "cost", "quantity", "product", "channel")
#: Optional columns that hold numbers (read as float64).
OPTIONAL_NUMERIC = ("margin", "cost", "quantity")
_FLAG = {"customer": "--customer-col", "date": "--date-col", "amount": "--amount-col"}


@dataclass(frozen=True)
class ColumnMap:
    """Names of the user's columns for each canonical column.

    Parameters
    ----------
    customer, date, amount : str
        Required columns: customer identifier, transaction date, amount (revenue).
    optional : dict
        Canonical optional name (``margin``, ``cost``, ``quantity``, ``product``,
        ``channel``) to the user's column. Columns already named canonically are
        found without being listed.
    date_format : str, optional
        ``strftime`` format of the dates (e.g. ``%Y%m%d``); inferred when ``None``.
    encoding : str, optional
        Text encoding of a CSV log (default UTF-8; e.g. ``latin-1``): like the date
        format, how this log is read, so it travels with the column names.
    """

    customer: str = "customer_id"
    date: str = "date"
    amount: str = "amount"
    optional: dict[str, str] = field(default_factory=dict)
    date_format: str | None = None
    encoding: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Return the mapping as plain data (for model metadata)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _delimiter_hint(columns: list[str]) -> str:
    """Why a table may have come back as one column: it uses another delimiter."""
    if len(columns) != 1:
        return ""
    found = [d for d in (";", "\t", "|", ",") if d in str(columns[0])]
    if not found:
        return ""
    shown = "a tab" if found[0] == "\t" else repr(found[0])
    return (
        f" It was read as a single column: the file seems to use {shown} as its delimiter. "
        "Re-save it with commas, or read it with pandas.read_csv(path, sep=...) and pass the "
        "frame."
    )


def _missing_column_error(kind: str, name: str, columns: list[str], source: str) -> InputDataError:
    flag = _FLAG.get(kind, f"--{kind}-col")
    return InputDataError(
        f"{kind} column '{name}' not found in {source}; its columns are {columns}. "
        f"Pass {flag} NAME (or ColumnMap({kind}=NAME) from Python) to say which column holds "
        f"the {kind}.{_delimiter_hint(columns)}"
    )


def resolve_columns(columns: list[str], cmap: ColumnMap, source: str) -> dict[str, str]:
    """Map each canonical column to the user's column, validating the required ones.

    Parameters
    ----------
    columns : list of str
        The columns the source has.
    cmap : ColumnMap
        Where the user says the columns are.
    source : str
        Name of the source in messages.

    Returns
    -------
    dict
        Canonical name (``customer_id``, ``date``, ``amount``, then optional ones:
        first those named in ``cmap.optional``, then those found under their
        canonical name) to the user's column name.

    Raises
    ------
    InputDataError
        If a required or listed optional column is missing (naming the columns there
        are, the flag to pass and, for a table read as one column, the delimiter it
        seems to use), or an optional kind is unknown.
    """
    resolved: dict[str, str] = {}
    for kind in ("customer", "date", "amount"):
        name = getattr(cmap, kind)
        if name not in columns:
            raise _missing_column_error(kind, name, columns, source)
        resolved[{"customer": "customer_id"}.get(kind, kind)] = name
    for canon, name in cmap.optional.items():
        if canon not in OPTIONAL_COLUMNS:
            raise InputDataError(
                f"unknown optional column kind '{canon}'; expected one of {list(OPTIONAL_COLUMNS)}."
            )
        if name not in columns:
            raise _missing_column_error(canon, name, columns, source)
        resolved[canon] = name
    for canon in OPTIONAL_COLUMNS:
        if canon not in resolved and canon in columns and canon not in resolved.values():
            resolved[canon] = canon
    return resolved


def _release() -> None:
    """Hand memory freed in Arrow's default pool back to the system.

    pyarrow's default allocator (mimalloc) keeps freed memory for reuse; the scan
    frees a whole column at a time and allocates its next arrays elsewhere (NumPy),
    so without this the freed columns would still count in the peak.
    """
    pa.default_memory_pool().release_unused()


def _pool() -> pa.MemoryPool:
    """Arrow memory for the big columns of a scan: the system allocator.

    Its large blocks go back to the operating system as soon as they are freed, so
    releasing a column early lowers the peak. (pyarrow's default mimalloc pool keeps
    freed memory for a while, which is faster for small allocations but leaves the
    peak as if nothing had been released.)
    """
    return pa.system_memory_pool()


class DataQualityWarning(UserWarning):
    """Rows or values of a transaction log were set aside or could not be read."""


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


# --------------------------------------------------------------------------- SQL helpers


def _q(name: str) -> str:
    return quote_identifier(str(name))


def _s(text: str) -> str:
    return quote_literal(str(text))


def _chars(text: str) -> str:
    """A SQL string of ``text`` built from chr() calls (control characters included)."""
    return " || ".join(f"chr({ord(c)})" for c in text)


def _fetch(rel: duckdb.DuckDBPyRelation, batch_rows: int = 1 << 17) -> pa.Table:
    # duckdb >= 1.4 names it to_arrow_table; older releases only have arrow().
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    table = fetch(batch_rows)
    return table if isinstance(table, pa.Table) else table.read_all()


def _to_date(value: Any, what: str) -> dt.date:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"{what} must be a date such as '2024-03-31'; got {value!r}.") from exc
    if pd.isna(ts):
        raise ParameterError(f"{what} must be a date such as '2024-03-31'; got {value!r}.")
    return ts.date()


# --------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """Where the raw columns come from, as SQL."""

    relation: str  # FROM item of the main query
    rows_relation: str  # FROM item exposing the row number as "_row"
    name: str  # for messages
    raw: dict[str, str]  # canonical column -> SQL expression of the raw column
    types: dict[str, str]  # canonical column -> DuckDB type (upper case)
    zones: dict[str, str]  # canonical column -> time zone of a TIMESTAMPTZ column
    labels: np.ndarray | None = None  # source_row of each position (DataFrame index)
    csv: tuple[Path, str] | None = None  # (file, encoding) of a CSV, for error messages


def _types(con: duckdb.DuckDBPyConnection, relation: str, names: dict[str, str]) -> dict[str, str]:
    select = ", ".join(f"{expr} AS {_q(canon)}" for canon, expr in names.items())
    described = con.sql(f"DESCRIBE SELECT {select} FROM {relation}").fetchall()
    return {str(row[0]): str(row[1]).upper() for row in described}


def _offset_zone(zone: str) -> str:
    """ICU's name of a fixed UTC offset (Arrow writes ``-05:00``; ICU wants ``UTC-05:00``)."""
    return f"UTC{zone}" if re.fullmatch(r"[+-]\d{2}:?\d{2}", zone) else zone


def _arrow_column(values: pd.Series, name: str) -> pa.ChunkedArray | pa.Array:
    """One column of a DataFrame as Arrow, typed so that DuckDB can read it.

    Mixed Python objects (say ``"10.5"`` next to ``3``) become their text, as
    ``astype("string")`` made them before; time-zone-aware datetimes become the
    wall-clock time of their zone.
    """
    if isinstance(values, pd.DataFrame):
        raise InputDataError(
            f"the frame has several columns named '{name}'; expected one. Rename the "
            "duplicates before cleaning it."
        )
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_localize(None)
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        array = pa.array(values.astype("string"), from_pandas=True)
    if pa.types.is_null(array.type):  # all missing: DuckDB would type it NULL
        array = pa.nulls(len(array), pa.string())
    return _naive(array)


def _naive(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Timestamps with a zone as the wall-clock time of that zone (else unchanged)."""
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        return pc.local_timestamp(array)
    return array


def _frame_source(
    con: duckdb.DuckDBPyConnection,
    source: pd.DataFrame | pa.Table,
    resolved: dict[str, str],
    name: str,
) -> _Source:
    if isinstance(source, pd.DataFrame):
        columns = {canon: _arrow_column(source[user], user) for canon, user in resolved.items()}
        labels = source.index.to_numpy()
    else:
        columns = {canon: _naive(source.column(user)) for canon, user in resolved.items()}
        labels = None
    table = pa.table(columns)
    con.register("src", table)
    raw = {canon: _q(canon) for canon in resolved}
    rows = "(SELECT *, row_number() OVER () - 1 AS _row FROM src)"
    return _Source("src", rows, name, raw, _types(con, "src", raw), {}, labels)


def _parquet_source(
    con: duckdb.DuckDBPyConnection, path: Path, resolved: dict[str, str], name: str
) -> _Source:
    schema = pq.read_schema(path)
    zones = {}
    for canon, user in resolved.items():
        typ = schema.field(user).type
        if pa.types.is_timestamp(typ) and typ.tz is not None:
            zones[canon] = _offset_zone(typ.tz)
    relation = f"read_parquet({_s(str(path))})"
    numbered = f"read_parquet({_s(str(path))}, file_row_number = true)"
    rows = f"(SELECT *, file_row_number AS _row FROM {numbered})"
    raw = {canon: _q(user) for canon, user in resolved.items()}
    types = _types(con, relation, raw)
    # Parquet written without Arrow's schema (Spark...) says only "adjusted to UTC".
    for canon, typ in types.items():
        if typ.startswith("TIMESTAMP WITH TIME ZONE") or typ.startswith("TIMESTAMPTZ"):
            zones.setdefault(canon, "UTC")
    return _Source(relation, rows, name, raw, types, zones)


def _csv_source(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    encoding: str,
    cmap: ColumnMap,
    name: str,
    display: Path,
) -> tuple[_Source, dict[str, str]]:
    available, delimiter = csv_columns(con, path, encoding, display=display)
    resolved = resolve_columns(available, cmap, name)
    relation = csv_relation(path, encoding, delimiter)
    rows = f"(SELECT *, row_number() OVER () - 1 AS _row FROM {relation})"
    raw = {canon: _q(user) for canon, user in resolved.items()}
    types = {canon: "VARCHAR" for canon in resolved}
    source = _Source(relation, rows, name, raw, types, {}, csv=(display, encoding))
    return source, resolved


@contextmanager
def _open_source(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    cmap: ColumnMap,
    encoding: str | None,
    name: str | None,
) -> Iterator[tuple[_Source, dict[str, str]]]:
    if isinstance(source, pd.DataFrame | pa.Table):
        label = name or "<frame>"
        resolved = resolve_columns(
            list(source.column_names if isinstance(source, pa.Table) else source.columns),
            cmap,
            label,
        )
        if source.shape[0] == 0:
            raise InputDataError(
                f"{label} has a header but no rows; expected at least one transaction."
            )
        yield _frame_source(con, source, resolved, label), resolved
        return
    if not isinstance(source, str | os.PathLike):
        raise ParameterTypeError(
            "transactions must be a CSV or Parquet path, a pandas DataFrame or a pyarrow "
            f"Table; got {type(source).__name__}."
        )
    path = Path(source)
    label = name or f"'{path}'"
    fmt = table_format(path)
    check_readable(path)
    if fmt == "parquet":
        try:
            names = list(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(
                f"cannot read {label} as Parquet ({exc}); expected a Parquet file. If it is a "
                "CSV, give it a .csv extension."
            ) from exc
        resolved = resolve_columns(names, cmap, label)
        yield _parquet_source(con, path, resolved, label), resolved
        return
    with readable_csv(path, normalize_encoding(encoding)) as (readable, duck_encoding):
        # Messages name the user's file, not a transcoded copy.
        yield _csv_source(con, readable, duck_encoding, cmap, label, display=path)


# --------------------------------------------------------------------------- parsing SQL


def _id_sql(raw: str, typ: str) -> str:
    # Ids pass through untouched: any string expression would copy ten million of
    # them (~1.5 s). Stripping happens in Arrow, and only when some id needs it.
    return raw if typ == "VARCHAR" else f"CAST({raw} AS VARCHAR)"


def _text_date_sql(text: str, date_format: str | None) -> str:
    stripped = f"trim({text}, {_chars(_WHITESPACE)})"
    if date_format is None:
        # DuckDB's cast reads ISO 8601 and drops a UTC offset (the time as written);
        # the fallbacks only run for the rows it could not read.
        formats = "[" + ", ".join(_s(f) for f in _EXTRA_DATE_FORMATS) + "]"
        return (
            f"COALESCE(TRY_CAST({text} AS TIMESTAMP), CASE WHEN {text} IS NOT NULL THEN "
            f"COALESCE(TRY_CAST({stripped} AS TIMESTAMP), try_strptime({stripped}, {formats})) END)"
        )
    fmt = date_format
    zone = re.search(r"\s*%[zZ]\s*$", fmt)
    if zone:
        # strptime would convert to UTC; keep the local time as written instead.
        fmt = fmt[: zone.start()]
        offset = _s(r"\s*(Z|[+-]\d{2}(:?\d{2})?|[A-Za-z_/]+)$")
        stripped = f"regexp_replace({stripped}, {offset}, '')"
        return f"try_strptime({stripped}, {_s(fmt)})"
    if "%z" in fmt or "%Z" in fmt:
        raise InputDataError(
            f"date format '{date_format}' has a time zone (%z/%Z) before its end; churnguard "
            "keeps the local time as written and only supports a zone at the end of the "
            "format. Pass a --date-format without it."
        )
    return f"COALESCE(try_strptime({text}, {_s(fmt)}), try_strptime({stripped}, {_s(fmt)}))"


def _date_sql(raw: str, typ: str, zone: str | None, date_format: str | None) -> str:
    if zone is not None:
        return f"timezone({_s(zone)}, {raw})"
    if typ == "TIMESTAMP_NS":
        return raw  # keep the nanoseconds (the canonical dtype has them)
    if typ in _NAIVE_TEMPORAL:
        return f"CAST({raw} AS TIMESTAMP)"
    text = raw if typ == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
    return _text_date_sql(text, date_format)


def _number_sql(raw: str, typ: str) -> str:
    if _NUMERIC_TYPE.match(typ):
        return f"CAST({raw} AS DOUBLE)"
    text = raw if typ == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
    return f"TRY_CAST({text} AS DOUBLE)"


def _unreadable_sql(raw: str, typ: str) -> str | None:
    """True where an optional number is present but not a number (None: cannot happen)."""
    if _NUMERIC_TYPE.match(typ):
        return None
    text = raw if typ == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
    markers = ", ".join(_s(m) for m in _NA_MARKERS)
    # CASE evaluates the marker test only on the rows whose cast failed.
    return (
        f"CASE WHEN {text} IS NOT NULL AND TRY_CAST({text} AS DOUBLE) IS NULL "
        f"THEN lower(trim({text}, {_chars(_WHITESPACE)})) NOT IN ({markers}) ELSE false END"
    )


@dataclass(frozen=True)
class _Limits:
    today: dt.date
    floor: dt.date
    max_amount: float
    as_of: dt.date | None


def _parsed_sql(src: _Source, cmap: ColumnMap) -> tuple[str, list[str]]:
    """SQL of every row, in source order, with canonical columns and unreadable flags.

    Returns the query and the names of the flag columns (``_bad_<column>``). The
    checks that only need numbers (date ranges, amounts) are made in NumPy on the
    result: several times cheaper than a SQL CASE over every row.
    """
    inner = [f"{expr} AS {_q('_raw_' + canon)}" for canon, expr in src.raw.items()]
    parsed, flags = [], []
    for canon in src.raw:
        raw, typ = _q("_raw_" + canon), src.types[canon]
        if canon == "customer_id":
            expr = _id_sql(raw, typ)
        elif canon == "date":
            expr = _date_sql(raw, typ, src.zones.get(canon), cmap.date_format)
        elif canon == "amount" or canon in OPTIONAL_NUMERIC:
            expr = _number_sql(raw, typ)
            bad = _unreadable_sql(raw, typ) if canon != "amount" else None
            if bad is not None:
                flags.append(f"_bad_{canon}")
                parsed.append(f"{bad} AS {_q('_bad_' + canon)}")
        else:
            expr = raw if typ == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
        parsed.append(f"{expr} AS {_q(canon)}")
    sql = f"SELECT {', '.join(parsed)} FROM (SELECT {', '.join(inner)} FROM {src.relation})"
    return sql, flags


# --------------------------------------------------------------------------- checks in NumPy


def _string_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (as stored: int32, or int64 for large strings) and bytes of a string chunk."""
    _, offsets, data = chunk.buffers()
    n = len(chunk)
    dtype = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    off = np.frombuffer(offsets, dtype=dtype)[chunk.offset : chunk.offset + n + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    return off, raw


def _strip_ids(ids: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Ids without surrounding whitespace, and where an id is missing (null or empty).

    Why not strip every id: that copies every string. The first and last byte of
    each id are checked in NumPy instead; only ids that start or end with a space, a
    control character or a non-ASCII character (possibly a Unicode space) are looked
    at, and the column is stripped (Python's whitespace set, as ``str.strip``) only
    if one of them really changes. Returns ``ids`` itself when nothing changes.
    """
    if ids.type not in (pa.string(), pa.large_string()):
        ids = ids.cast(pa.string())
    missing_at, suspects = [], []
    start = 0
    step = _BLOCK * 32  # by blocks: the temporaries stay small
    blocks = (c.slice(a, step) for c in ids.chunks for a in range(0, len(c), step))
    for chunk in blocks:
        off, raw = _string_buffers(chunk)
        lengths = np.diff(off)
        if chunk.null_count or not lengths.all():  # missing ids here: test the others
            present = lengths > 0
            if chunk.null_count:
                present &= np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            missing_at.append(np.flatnonzero(~present) + start)
            at = np.flatnonzero(present)
            first, last = raw[off[:-1][at]], raw[off[1:][at] - 1]
        else:
            at = None
            first, last = raw[off[:-1]], raw[off[1:] - 1]
        # A byte <= 32 or >= 128 is >= 95 once 33 is taken away (uint8 wraps around).
        edge = (first - np.uint8(33)) >= 95
        edge |= (last - np.uint8(33)) >= 95
        if edge.any():
            hits = np.flatnonzero(edge)
            suspects.append((hits if at is None else at[hits]) + start)
        start += len(chunk)
    missing = np.zeros(len(ids), dtype=bool)
    for positions in missing_at:
        missing[positions] = True
    suspect = np.concatenate(suspects) if suspects else np.zeros(0, dtype=np.int64)
    if not len(suspect):
        return ids, missing
    if len(suspect) <= 1 << 16:
        values = ids.take(pa.array(suspect)).to_pylist()
        if all(v == v.strip() for v in values):
            return ids, missing  # non-ASCII ids without surrounding spaces
    stripped = pc.utf8_trim(ids, characters=_WHITESPACE)
    empty = pc.fill_null(pc.equal(pc.binary_length(stripped), 0), True)
    missing |= np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)
    return stripped, missing


def _codes(
    stamps: np.ndarray,
    per_day: int,
    amount: pa.ChunkedArray,
    limits: _Limits,
) -> np.ndarray:
    """Row codes of the date and amount rules: 0 used, 2-6 the first that fails, 7 after as-of.

    (Rule 1, the missing id, comes first and is applied by the caller over these.)
    Most rows of most logs pass every rule: one combined test finds the others (NaT
    fails the date range, NaN, infinity and null the amount limit by themselves),
    and the rules are applied to those only, from the last to the first, so that the
    first failing rule wins. The amounts are tested by slices in Arrow: no
    full-length copy of them is made.
    """

    def start_of(day: dt.date) -> int:
        return (day - dt.date(1970, 1, 1)).days * per_day

    floor, future = start_of(limits.floor), start_of(limits.today + dt.timedelta(days=1))
    end = future
    if limits.as_of is not None:
        end = min(end, start_of(limits.as_of + dt.timedelta(days=1)))
    ok = stamps >= floor  # NaT is the smallest int64: fails here
    ok &= stamps < end
    at = 0  # NaN, null and (for a finite limit) infinity fail the amount limit
    # By slices: Arrow's temporaries stay small (a whole-column abs() is 80 MB for 10M).
    slices = (c.slice(a, _BLOCK * 16) for c in amount.chunks for a in range(0, len(c), _BLOCK * 16))
    for chunk in slices:
        fine = pc.less_equal(pc.abs(chunk), limits.max_amount)
        if np.isinf(limits.max_amount):  # then infinity passes the limit: test it apart
            fine = pc.and_(fine, pc.is_finite(chunk))
        fine = pc.fill_null(fine, False)
        ok[at : at + len(chunk)] &= np.asarray(fine.to_numpy(zero_copy_only=False), dtype=bool)
        at += len(chunk)
    code = np.zeros(len(stamps), dtype=np.uint8)
    rest = np.flatnonzero(~ok)
    if not len(rest):
        return code
    when = stamps[rest]
    value = np.asarray(amount.take(pa.array(rest)).to_numpy(zero_copy_only=False), dtype=float)
    sub = np.zeros(len(rest), dtype=np.uint8)
    if limits.as_of is not None:
        sub[when >= start_of(limits.as_of + dt.timedelta(days=1))] = _AFTER
    with np.errstate(invalid="ignore"):
        sub[np.abs(value) > limits.max_amount] = 6
    sub[~np.isfinite(value)] = 5  # a null became NaN
    nat = np.iinfo(np.int64).min  # NaT: the date could not be parsed
    sub[(when < floor) & (when != nat)] = 4
    sub[when >= future] = 3
    sub[when == nat] = 2
    code[rest] = sub
    return code


# --------------------------------------------------------------------------- ordering


def _already_sorted(ids: pa.ChunkedArray, stamps: np.ndarray) -> bool:
    """Whether the rows are in (customer_id, date) order already (then no sort is needed).

    Logs read back from a sorted store often are (the partitioned scorer sorts each
    partition in DuckDB); the first rows are checked in Python first, so an
    unsorted log costs next to nothing.
    """
    n = len(stamps)
    if n < 2:
        return True
    head = ids.slice(0, min(n, 4096)).to_pylist()
    if any(a > b for a, b in zip(head, head[1:], strict=False)):
        return False
    whole = ids.combine_chunks()
    first, second = whole.slice(0, n - 1), whole.slice(1)
    if not pc.all(pc.less_equal(first, second)).as_py():
        return False
    same = np.asarray(pc.equal(first, second).to_numpy(zero_copy_only=False), dtype=bool)
    return bool((stamps[:-1][same] <= stamps[1:][same]).all())


def _time_of_day(stamps: np.ndarray, per_day: int) -> tuple[int, np.ndarray | None]:
    """Radix and values of the times of day in their coarsest exact unit (1, None: midnight).

    Most logs hold dates without a time: that is checked by blocks, without a
    full-length array. Times to the second take 86,400 values, to the microsecond
    8.64e10: a coarser unit leaves more room for the customer and the position in
    one 64-bit key.
    """
    for a in range(0, len(stamps), _BLOCK):
        if (stamps[a : a + _BLOCK] % per_day).any():
            break
    else:
        return 1, None
    tod = stamps % per_day  # floor modulo: never negative, also before 1970
    unit = per_day // 86_400  # one second
    while unit > 1 and (tod % unit).any():
        unit //= 1000
    values = tod // unit if unit > 1 else tod
    return int(values.max()) + 1, values


def _padded_blocks(parts: list[tuple[np.ndarray, np.ndarray]], width: int) -> Iterator[np.ndarray]:
    """Consecutive blocks of ids as ``(rows, width)`` bytes, zero-padded on the right."""
    for off, raw in parts:
        n = len(off) - 1
        for a in range(0, n, _BLOCK):
            b = min(a + _BLOCK, n)
            o = off[a : b + 1]
            lengths = np.diff(o)
            if (lengths == width).all():  # fixed-width ids: a view of the bytes, no copy
                yield raw[o[0] : o[-1]].reshape(b - a, width)
                continue
            # Each id's bytes move by (row * width - offset): one scatter.
            block = np.zeros((b - a, width), dtype=np.uint8)
            shift = np.arange(b - a, dtype=np.int64) * width - (o[:-1] - o[0])
            dest = np.arange(o[-1] - o[0], dtype=np.int64) + np.repeat(shift, lengths)
            block.reshape(-1)[dest] = raw[o[0] : o[-1]]
            yield block


def _byte_ranges(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest byte at each position of a block of padded ids.

    Reduced over a wide view (rows folded into columns): reducing a narrow matrix
    along its rows is several times slower in NumPy.
    """
    n, width = block.shape
    k = 64
    head = (n // k) * k
    lo = np.full(width, 255, dtype=np.uint8)
    hi = np.zeros(width, dtype=np.uint8)
    if head:
        wide = block[:head].reshape(-1, k * width)
        lo = np.minimum(lo, wide.min(axis=0).reshape(k, width).min(axis=0))
        hi = np.maximum(hi, wide.max(axis=0).reshape(k, width).max(axis=0))
    if head < n:
        lo = np.minimum(lo, block[head:].min(axis=0))
        hi = np.maximum(hi, block[head:].max(axis=0))
    return lo, hi


def _id_values(ids: pa.ChunkedArray) -> tuple[np.ndarray, int] | None:
    """Each id as an integer in the ids' order, and how many values there can be.

    An id of up to :data:`_MAX_ID_BYTES` bytes, zero-padded to the longest, compares
    byte by byte as the text does (UTF-8 keeps the code point order; ids holding a
    NUL byte are refused, else ``"a"`` and ``"a\\0"`` would tie). Each byte position
    that varies is a digit of a mixed-radix number: the byte less the smallest seen
    there when that fits, else its rank among the bytes seen there (where padding
    sits next to text). Seven-digit ids take 10^7 values (24 bits), leaving room for
    the day, the time and the row in one 64-bit key. None when the ids are longer,
    or need more than 62 bits (random ids such as UUIDs).
    """
    chunks = [c if not c.null_count else pc.fill_null(c, "") for c in ids.chunks if len(c)]
    parts = [_string_buffers(c) for c in chunks]
    if not parts:
        return None
    width = max(int(np.diff(off).max()) for off, _ in parts)
    if not 0 < width <= _MAX_ID_BYTES:
        return None
    if any((raw[off[0] : off[-1]] == 0).any() for off, raw in parts):
        return None
    lo = np.full(width, 255, dtype=np.uint8)
    hi = np.zeros(width, dtype=np.uint8)
    for block in _padded_blocks(parts, width):
        block_lo, block_hi = _byte_ranges(block)
        np.minimum(lo, block_lo, out=lo)
        np.maximum(hi, block_hi, out=hi)
    radix = hi.astype(np.int64) - lo + 1
    tables: dict[int, np.ndarray] = {}
    if math.prod(int(r) for r in radix) >= 2**62:
        # Ranges are too wide (padding zeros next to letters or digits): rank the bytes
        # actually seen at those positions instead.
        wide = [p for p in range(width) if radix[p] > 16]
        seen = np.zeros((width, 256), dtype=bool)
        for block in _padded_blocks(parts, width):
            for p in wide:
                seen[p] |= np.bincount(block[:, p], minlength=256) > 0
        for p in wide:
            tables[p] = (np.cumsum(seen[p]) - 1).astype(np.uint64)
            radix[p] = int(seen[p].sum())
    digits = [p for p in range(width) if radix[p] > 1]  # constant positions cost nothing
    total = math.prod(int(radix[p]) for p in digits)
    if total >= 2**62:
        return None
    dtype = np.uint32 if total <= 2**32 else np.uint64  # half the memory when it fits
    values = np.empty(sum(len(off) - 1 for off, _ in parts), dtype=dtype)
    at = 0
    for block in _padded_blocks(parts, width):
        value = values[at : at + len(block)]
        value[:] = 0
        for p in digits:
            np.multiply(value, int(radix[p]), out=value, casting="unsafe")
            digit = tables[p][block[:, p]] if p in tables else block[:, p] - lo[p]
            np.add(value, digit, out=value, casting="unsafe")
        at += len(block)
    return values, total


def _order(
    ids: pa.ChunkedArray,
    stamps: np.ndarray,
    per_day: int,
    used: np.ndarray | None,
    id_values: Future[tuple[np.ndarray, int] | None] | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Positions of the used rows in (customer_id, date, position) order.

    ``stamps`` are the dates as integers (``per_day`` units a day), valid on used
    rows; ``used`` the positions of the used rows (None: all). Returns the positions
    (None when all rows are used and already in order) and, when the sort keys tell
    it for free, the first row of each customer in the sorted rows (else None).

    Why integer keys: sorting ten million rows by text costs ~6 s on two cores. Short
    ids become integers in their order (:func:`_id_values`); with the day, the time
    of day (when there is one) and the position as lower digits, every key is unique,
    so one unstable (SIMD) sort of 64-bit integers gives the stable order. When the
    key is too wide, a stable ``numpy.lexsort``; ids that cannot be made integers
    (long or random) are sorted as text by Arrow's stable sort. ``id_values`` may
    hold :func:`_id_values` of ``ids`` being computed on another thread.
    """
    n = len(stamps)
    if used is None and _already_sorted(ids, stamps):
        return None, None
    mine = stamps if used is None else stamps[used]
    packed_ids = id_values.result() if id_values is not None else _id_values(ids)
    if packed_ids is None:
        subset = ids if used is None else ids.take(pa.array(used))
        table = pa.table({"c": subset, "d": pa.array(mine)})
        order = pc.sort_indices(table, sort_keys=[("c", "ascending"), ("d", "ascending")])
        positions = np.asarray(order.to_numpy(), dtype=np.int64)
        return (positions if used is None else used[positions]), None
    values, id_radix = packed_ids
    if used is not None:
        values = values[used]
    day_lo = int(mine.min()) // per_day
    day_radix = int(mine.max()) // per_day - day_lo + 1
    tod_radix, tod = _time_of_day(mine, per_day)
    row_bits = max(1, (n - 1).bit_length())
    below_id = day_radix * tod_radix
    if id_radix * below_id << row_bits > 2**64:
        order = np.lexsort((mine, values))  # stable: ties keep their position
        return (order if used is None else used[order]), None
    packed = np.empty(len(mine), dtype=np.uint64)
    rows = np.uint64(row_bits)
    for a in range(0, len(mine), _BLOCK):  # by blocks: no full-length temporaries
        b = min(a + _BLOCK, len(mine))
        key = packed[a:b]
        np.multiply(values[a:b], np.uint64(day_radix), out=key)
        key += (mine[a:b] // per_day - day_lo).astype(np.uint64)
        if tod is not None:
            key *= np.uint64(tod_radix)
            key += tod[a:b].astype(np.uint64)
        key <<= rows
        key |= np.arange(a, b, dtype=np.uint64) if used is None else used[a:b].astype(np.uint64)
    del values, tod
    packed.sort()
    starts = _key_runs(packed, row_bits, below_id)
    packed &= np.uint64((1 << row_bits) - 1)
    return packed.view(np.int64), starts


def _key_runs(packed: np.ndarray, row_bits: int, below_id: int) -> np.ndarray:
    """First row of each customer in sorted keys (where the id digits change)."""
    new = np.ones(len(packed), dtype=bool)
    previous = None
    for a in range(0, len(packed), _BLOCK):
        part = (packed[a : a + _BLOCK] >> np.uint64(row_bits)) // np.uint64(below_id)
        new[a + 1 : a + len(part)] = part[1:] != part[:-1]
        if previous is not None:
            new[a] = part[0] != previous
        previous = part[-1]
    return np.flatnonzero(new)


def _take_ids(ids: pa.ChunkedArray, positions: np.ndarray, starts: np.ndarray | None) -> pa.Array:
    """``ids`` at ``positions`` (which are sorted by customer).

    Gathering ten million strings at random costs ~0.8 s. When the customer runs are
    known and the ids all have one length, only the first row of each run is
    gathered and the ids are repeated over their runs in NumPy.
    """
    n = len(positions)
    if starts is not None and len(starts):
        firsts = pc.take(ids, pa.array(positions[starts]), memory_pool=_pool()).combine_chunks()
        off, raw = _string_buffers(firsts)
        lengths = np.diff(off)
        width = int(lengths[0]) if len(lengths) else 0
        if width and not firsts.null_count and (lengths == width).all() and n * width < 2**31:
            items = raw[off[0] : off[-1]].view(np.dtype((np.void, width)))
            data = np.repeat(items, np.diff(np.append(starts, n)))
            offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
            return pa.StringArray.from_buffers(
                n, pa.py_buffer(offsets), pa.py_buffer(data.view(np.uint8))
            )
    return pc.take(ids, pa.array(positions), memory_pool=_pool()).combine_chunks(_pool())


def _gather(
    columns: dict[str, Any],
    unit: str,
    positions: np.ndarray | None,
    starts: np.ndarray | None,
    order: list[str],
) -> pa.Table:
    """The output table: every column at ``positions`` (as it is when None).

    ``columns`` holds the source columns (``date`` as int64 NumPy stamps) and is
    emptied: the caller keeps no other reference, so each source is released as soon
    as it has been gathered (a gather from a chunked column first concatenates it)
    and the peak holds the log about once plus one column, not twice.
    """
    date_type = pa.timestamp(unit)
    gathered: dict[str, pa.Array | pa.ChunkedArray] = {}
    stamps = columns.pop("date")
    if positions is None:
        gathered["date"] = pa.array(stamps.view(f"M8[{unit}]"), type=date_type)
        gathered.update(columns)
        columns.clear()
    else:
        index = pa.array(positions)

        def take(name: str) -> pa.Array:
            column = columns.pop(name)
            if name == "date":
                out = pa.array(column[positions].view(f"M8[{unit}]"), type=date_type)
            elif name == "customer_id":
                out = _take_ids(column, positions, starts)
            else:
                out = pc.take(column, index, memory_pool=_pool()).combine_chunks(_pool())
            del column
            _release()
            return out

        columns["date"] = stamps
        del stamps
        # Two at a time: each gather holds its source and its output, so the peak
        # grows with the number of threads, and two cores are what most machines
        # running this have free.
        with ThreadPoolExecutor(max_workers=2) as pool:
            names = list(columns)
            gathered.update(zip(names, pool.map(take, names), strict=True))
    out = pa.table({name: gathered.pop(name) for name in order})
    if unit != "ns":
        at = order.index("date")
        out = out.set_column(at, "date", out.column("date").cast(pa.timestamp("ns")))
    return out


def _runs(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """First row of each customer in rows sorted by customer."""
    n = len(ids)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    whole = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    new = np.ones(n, dtype=bool)
    if n > 1:
        differ = pc.not_equal(whole.slice(1), whole.slice(0, n - 1))
        new[1:] = np.asarray(differ.to_numpy(zero_copy_only=False), dtype=bool)
    return np.flatnonzero(new)


# --------------------------------------------------------------------------- the scan


def _check_options(as_of: Any, date_floor: Any, max_amount: float, today: Any) -> _Limits:
    floor = _to_date(date_floor, "date_floor")
    day = dt.date.today() if today is None else _to_date(today, "today")
    if not _NS_MIN <= floor <= _NS_MAX or not _NS_MIN <= day <= _NS_MAX:
        raise ParameterError(
            f"date_floor and today must lie between {_NS_MIN} and {_NS_MAX} (the range of "
            f"nanosecond timestamps); got date_floor={floor}, today={day}."
        )
    if floor > day:
        raise ParameterError(
            f"date_floor ({floor}) is after today ({day}): every row would be quarantined. "
            "Pass an earlier date_floor."
        )
    try:
        limit = float(max_amount)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"max_amount must be a positive number; got {max_amount!r}.") from exc
    if not limit > 0:
        raise ParameterError(f"max_amount must be a positive number; got {max_amount!r}.")
    cutoff = None if as_of is None else _to_date(as_of, "as_of")
    return _Limits(day, floor, limit, cutoff)


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # A library must not draw DuckDB's progress bar on the caller's stdout.
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:  # refused under Jupyter without ipywidgets; nothing is drawn there
        pass
    # Zone-aware values are converted explicitly; anything implicit is then UTC, never
    # the machine's zone, so results do not depend on TZ.
    con.execute("SET TimeZone = 'UTC'")
    # Row positions are the file order (stable ties, source rows): keep it.
    con.execute("SET preserve_insertion_order = true")
    return con


def _run(con: duckdb.DuckDBPyConnection, src: _Source, sql: str, cmap: ColumnMap) -> pa.Table:
    try:
        return _fetch(con.sql(sql))
    except duckdb.Error as exc:
        raise _translate(exc, src, cmap) from exc


def _stream(con: duckdb.DuckDBPyConnection, src: _Source, sql: str, cmap: ColumnMap) -> pa.Table:
    """The result of ``sql`` as a table of single-chunk columns that own their memory.

    Why: DuckDB's Arrow batches share one allocation across their columns, freed only
    when every column of the batch is, and a gather from a chunked column first
    concatenates it. Each column is therefore made contiguous once, in memory of
    its own (the system allocator returns it as soon as it is freed), and DuckDB's
    buffers are released and its cached memory handed back before the NumPy work
    starts: each column can then be freed as soon as it has been used.
    """
    try:
        rel = con.sql(sql)
        # Few large batches: the concatenation below is then one cheap pass.
        result = _fetch(rel, _BATCH_ROWS)
    except duckdb.Error as exc:
        raise _translate(exc, src, cmap) from exc

    def contiguous(column: pa.ChunkedArray) -> pa.ChunkedArray:
        return pa.chunked_array([column.combine_chunks(_pool())], type=column.type)

    with ThreadPoolExecutor(max_workers=2) as pool:
        table = pa.table(list(pool.map(contiguous, result.columns)), names=result.column_names)
    del result, rel
    _flush(con)
    _release()
    return table


def _flush(con: duckdb.DuckDBPyConnection) -> None:
    """Make DuckDB hand its cached memory back (lowering its limit evicts the cache)."""
    limit = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    try:
        con.execute("SET memory_limit = '32MB'")
    finally:
        con.execute(f"SET memory_limit = {_s(str(limit))}")


def _translate(exc: Exception, src: _Source, cmap: ColumnMap) -> Exception:
    text = str(exc)
    if cmap.date_format and ("format specifier" in text or "strptime" in text.lower()):
        first = text.splitlines()[0]
        return InputDataError(
            f"date format '{cmap.date_format}' is not a valid strftime format ({first}); "
            "pass --date-format with codes such as %Y%m%d or %d/%m/%Y."
        )
    if src.csv is not None:
        return translate_csv_error(exc, *src.csv)
    if isinstance(exc, duckdb.IOException | duckdb.InvalidInputException):
        return InputDataError(f"cannot read {src.name}: {text.splitlines()[0]}")
    return exc


def _sample(con: duckdb.DuckDBPyConnection, src: _Source, canon: str) -> list[str]:
    """Up to three non-null raw values of a column, for messages."""
    raw = src.raw[canon]
    sql = f"SELECT CAST({raw} AS VARCHAR) FROM {src.relation} WHERE {raw} IS NOT NULL LIMIT 3"
    try:
        return [str(row[0]) for row in con.sql(sql).fetchall()]
    except duckdb.Error:
        return []


def _rows_sql(src: _Source, positions: str, extra: str = "", *, escape: bool = False) -> str:
    """Raw columns (as text) of the rows listed in the registered table ``positions``.

    The rows are found by joining on their position, which the main query computed:
    the quarantine never re-implements a rule, so it cannot disagree with the counts.
    """
    cols = []
    for canon, expr in src.raw.items():
        text = f"CAST(r.{expr} AS VARCHAR)"
        cols.append(f"{escape_formulas_sql(text) if escape else text} AS {_q(canon)}")
    return (
        f"SELECT p._label AS source_row, {', '.join(cols)}{extra} "
        f"FROM {src.rows_relation} r JOIN {positions} p ON p._row = r._row ORDER BY p._row"
    )


def _register_rows(
    con: duckdb.DuckDBPyConnection, name: str, src: _Source, rows: np.ndarray, **extra: Any
) -> None:
    label = src.labels[rows] if src.labels is not None else rows
    data = {"_row": pa.array(rows, pa.int64()), "_label": _labels(label)}
    data.update({k: pa.array(v) for k, v in extra.items()})
    con.register(name, pa.table(data))


def _labels(labels: np.ndarray) -> pa.Array:
    try:
        return pa.array(labels)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([str(v) for v in labels])


def _empty_quarantine(columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([], dtype="string") for c in columns})
    return frame.astype({"source_row": "int64", "reason": object})


def _quarantine(
    con: duckdb.DuckDBPyConnection,
    src: _Source,
    cmap: ColumnMap,
    limits: _Limits,
    code: np.ndarray,
    quarantine_to: Path | None,
) -> pd.DataFrame:
    bad = np.flatnonzero((code >= 1) & (code <= 6)).astype(np.int64)
    _register_rows(con, "_bad", src, bad, _code=code[bad])
    whens = " ".join(
        f"WHEN {c} THEN {_s(text.format(floor=limits.floor.isoformat()))}"
        for c, text in _REASONS.items()
    )
    reason = f", CASE p._code {whens} END AS reason"
    columns = ["source_row", *src.raw, "reason"]
    if quarantine_to is not None:
        select = _rows_sql(src, "_bad", reason, escape=True)
        with atomic_path(quarantine_to) as tmp:
            try:
                con.sql(f"COPY ({select}) TO {_s(str(tmp))} (FORMAT csv, HEADER true)")
            except duckdb.Error as exc:
                raise _translate(exc, src, cmap) from exc
        return _empty_quarantine(columns)
    table = _run(con, src, _rows_sql(src, "_bad", reason), cmap)
    frame = pd.DataFrame(
        {c: pd.Series(pd.array(table.column(c).to_pylist(), dtype="string")) for c in src.raw}
    )
    frame.insert(0, "source_row", table.column("source_row").to_numpy(zero_copy_only=False))
    frame["reason"] = pd.Series(table.column("reason").to_pylist(), dtype=object)
    return frame


def _examples(
    con: duckdb.DuckDBPyConnection, src: _Source, canon: str, rows: np.ndarray
) -> list[str]:
    """Raw text of ``canon`` on up to three of ``rows`` (for a warning)."""
    _register_rows(con, "_examples", src, rows[:3])
    try:
        table = _fetch(con.sql(_rows_sql(src, "_examples")))
    except duckdb.Error:
        return []
    return [str(v) for v in table.column(canon).to_pylist()]


def scan_transactions(
    source: Source,
    columns: ColumnMap | None = None,
    *,
    as_of: Any = None,
    date_floor: Any = "1970-01-01",
    max_amount: float = 1e12,
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
    limits = _check_options(as_of, date_floor, max_amount, today)
    con = _connect()
    try:
        with _open_source(con, source, cmap, encoding, name) as (src, resolved):
            return _scan(con, src, resolved, cmap, limits, quarantine_to)
    finally:
        con.close()


def _scan(
    con: duckdb.DuckDBPyConnection,
    src: _Source,
    resolved: dict[str, str],
    cmap: ColumnMap,
    limits: _Limits,
    quarantine_to: str | os.PathLike[str] | None,
) -> ScannedTransactions:
    sql, flags = _parsed_sql(src, cmap)
    table = _stream(con, src, sql, cmap)
    n = table.num_rows
    if n == 0:
        raise InputDataError(
            f"{src.name} has a header but no rows; expected at least one transaction."
        )
    _check_columns(con, src, cmap, table, n)
    dates = table.column("date")
    unit = dates.type.unit
    per_day = 86_400 * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    # The ids (stripped, then made sort keys) do not depend on the date and amount
    # checks: they are done meanwhile on the other core (NumPy and Arrow release the
    # GIL). Stripping almost never changes an id, so the keys are built from the ids
    # as read, at the same time, and rebuilt only if stripping changed them.
    with ThreadPoolExecutor(max_workers=2) as pool:
        raw_ids = table.column("customer_id")
        stripped = pool.submit(_strip_ids, raw_ids)
        id_values = pool.submit(_id_values, raw_ids)
        # The dates are needed whole (checks, sort keys, the output column); the
        # amounts are checked by slices and never copied whole.
        stamps = np.asarray(dates.to_numpy()).view(np.int64)
        del dates
        code = _codes(stamps, per_day, table.column("amount"), limits)
        ids, missing_id = stripped.result()
        code[missing_id] = 1  # the first rule: it wins over every other
        del missing_id
        _release()
        counts = np.bincount(code, minlength=_AFTER + 1)
        floor = limits.floor.isoformat()
        reasons = {_REASONS[c].format(floor=floor): int(counts[c]) for c in _REASONS if counts[c]}
        _check_usable(src, limits, counts, reasons, n)
        if counts[3]:
            _warn_future(src, limits, stamps, code, unit)
        used_mask = code == _USED
        unreadable = _unreadable(con, src, resolved, table, flags, used_mask)
        used = None if counts[_USED] == n else np.flatnonzero(used_mask).astype(np.int64)
        del used_mask
        if ids is not raw_ids:
            id_values.cancel()
            id_values = pool.submit(_id_values, ids)
        del raw_ids
        positions, starts = _order(ids, stamps, per_day, used, id_values)
        del used, id_values
    # Handed over whole: _gather releases each source column once it is gathered.
    columns: dict[str, Any] = {c: table.column(c) for c in resolved}
    columns.update(customer_id=ids, date=stamps)
    del table, ids, stamps
    out = _gather(columns, unit, positions, starts, list(resolved))
    del positions
    if starts is None:
        starts = _runs(out.column("customer_id"))
    amounts = np.asarray(out.column("amount").to_numpy(), dtype=np.float64)
    purchases = np.add.reduceat((amounts >= 0).astype(np.int64), starts)
    returns_only = out.column("customer_id").take(pa.array(starts[purchases == 0])).to_pylist()
    extremes = pc.min_max(out.column("date"))
    first, last = extremes["min"], extremes["max"]
    written = None
    quarantine = _empty_quarantine(["source_row", *src.raw, "reason"])
    if reasons:
        target = Path(quarantine_to) if quarantine_to is not None else None
        quarantine = _quarantine(con, src, cmap, limits, code, target)
        written = target
        log.info("%d unusable rows of %s set aside: %s", sum(reasons.values()), src.name, reasons)
    return ScannedTransactions(
        transactions=out,
        quarantine=quarantine,
        source=src.name,
        rows_read=n,
        quarantined=reasons,
        rows_after_as_of=int(counts[_AFTER]),
        unreadable=unreadable,
        returns_only_customers=[str(v) for v in returns_only],
        customers=len(starts),
        as_of=limits.as_of,
        first_date=first.as_py().date() if first.is_valid else None,
        last_date=last.as_py().date() if last.is_valid else None,
        quarantine_path=written,
        columns=dict(resolved),
    )


def _check_usable(
    src: _Source, limits: _Limits, counts: np.ndarray, reasons: dict[str, int], n: int
) -> None:
    """Raise when no row is usable, saying why (and naming --as-of when it is the cause)."""
    if counts[_USED]:
        return
    after = ""
    if counts[_AFTER]:
        after = (
            f" {int(counts[_AFTER])} usable rows are dated after as_of {limits.as_of}; pass a "
            "later --as-of."
        )
    raise InputDataError(
        f"none of the {n} rows of {src.name} is usable; reasons: {reasons}.{after}"
    )


def _warn_future(
    src: _Source, limits: _Limits, stamps: np.ndarray, code: np.ndarray, unit: str
) -> None:
    future = code == 3
    latest = stamps[future].view(f"M8[{unit}]").max()
    warnings.warn(
        f"{int(future.sum())} rows of {src.name} are dated after today ({limits.today}), the "
        f"latest on {str(latest)[:10]}; they were quarantined as 'date in the future'. Check "
        "the date column (--date-col) and its format (--date-format); pass today=... if this "
        "machine's clock is wrong.",
        DataQualityWarning,
        stacklevel=4,
    )


def _unreadable(
    con: duckdb.DuckDBPyConnection,
    src: _Source,
    resolved: dict[str, str],
    table: pa.Table,
    flags: list[str],
    used_mask: np.ndarray,
) -> dict[str, int]:
    """Optional values of used rows that could not be read, per column; warns about each."""
    unreadable = {}
    for flag in flags:
        bad = np.asarray(table.column(flag).to_numpy(zero_copy_only=False), dtype=bool)
        hits = np.flatnonzero(bad & used_mask)
        if not len(hits):
            continue
        canon = flag.removeprefix("_bad_")
        unreadable[canon] = len(hits)
        warnings.warn(
            f"{len(hits)} values of column '{resolved[canon]}' ({canon}) in {src.name} are not "
            f"numbers (e.g. {_examples(con, src, canon, hits)}); those rows are kept with "
            f"{canon} missing. Clean the column or map another one (--{canon}-col).",
            DataQualityWarning,
            stacklevel=4,
        )
    return unreadable


def _check_columns(
    con: duckdb.DuckDBPyConnection, src: _Source, cmap: ColumnMap, table: pa.Table, n: int
) -> None:
    """The whole-column errors: no date can be parsed, no amount is numeric."""
    if table.column("date").null_count == n:
        sample = _sample(con, src, "date")
        fmt = f" with format '{cmap.date_format}'" if cmap.date_format else ""
        raise InputDataError(
            f"no date in column '{cmap.date}' of {src.name} could be parsed{fmt}; first values: "
            f"{sample}. Expected dates such as 2024-03-31; pass --date-format (e.g. %Y%m%d) or "
            "--date-col if this is the wrong column."
        )
    finite = pc.fill_null(pc.is_finite(table.column("amount")), False)
    if not pc.any(finite).as_py():
        sample = _sample(con, src, "amount")
        comma = any(re.fullmatch(r"-?\d+,\d+", v.strip()) for v in sample)
        hint = (
            " The values use a decimal comma: convert them to a decimal point (19.99)."
            if comma
            else ""
        )
        raise InputDataError(
            f"no value in column '{cmap.amount}' of {src.name} is numeric; first values: "
            f"{sample}. Expected amounts such as 19.99; pass --amount-col if this is the wrong "
            f"column.{hint}"
        )
