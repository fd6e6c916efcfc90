"""The SQL side of :func:`churnguard.data.scan.scan_transactions`.

Opening a source (CSV, Parquet, pandas or Arrow) as a DuckDB relation, and the SQL
that parses ids, dates, amounts and optional columns while flagging unreadable values.
Shared internals of the scan; not a public API.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnguard._duckdb import limit_threads, quote_identifier, quote_literal
from churnguard.data.columns import (
    OPTIONAL_NUMERIC,
    ColumnMap,
    resolve_columns,
    wanted_columns,
)
from churnguard.data.io import (
    check_readable,
    check_unique_headers,
    csv_columns,
    csv_relation,
    normalize_encoding,
    readable_csv,
    table_format,
    translate_csv_error,
)
from churnguard.exceptions import InputDataError, ParameterError, ParameterTypeError

BATCH_ROWS = 1 << 30  # rows per Arrow batch fetched from DuckDB (as few as it makes)

#: What :func:`churnguard.data.scan_transactions` reads.
Source: TypeAlias = str | os.PathLike[str] | pd.DataFrame | pa.Table

__all__ = [
    "BATCH_ROWS",
    "FLOAT_ID_TYPES",
    "column_types",
    "id_text_sql",
    "big_column_pool",
    "release_arrow_memory",
    "connect_scan",
    "run_query",
    "stream_query",
    "translate_error",
    "sample_values",
    "Source",
    "WHITESPACE",
    "Limits",
    "SourceRelation",
    "check_options",
    "fetch_arrow",
    "open_source",
    "parquet_zones",
    "parsed_sql",
    "quote_name",
    "quote_text",
]


# Python's str.strip() whitespace: ids are stripped exactly as clean_transactions
# stripped them with pandas.
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


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


def release_arrow_memory() -> None:
    """Hand memory freed in Arrow's default pool back to the system.

    pyarrow's default allocator (mimalloc) keeps freed memory for reuse; the scan
    frees a whole column at a time and allocates its next arrays elsewhere (NumPy),
    so without this the freed columns would still count in the peak.
    """
    pa.default_memory_pool().release_unused()


def big_column_pool() -> pa.MemoryPool:
    """Arrow memory for the big columns of a scan: the system allocator.

    Its large blocks go back to the operating system as soon as they are freed, so
    releasing a column early lowers the peak. (pyarrow's default mimalloc pool keeps
    freed memory for a while, which is faster for small allocations but leaves the
    peak as if nothing had been released.)
    """
    return pa.system_memory_pool()


def quote_name(name: str) -> str:
    return quote_identifier(str(name))


def quote_text(text: str) -> str:
    return quote_literal(str(text))


def _chars(text: str) -> str:
    """A SQL string of ``text`` built from chr() calls (control characters included)."""
    return " || ".join(f"chr({ord(c)})" for c in text)


def fetch_arrow(rel: duckdb.DuckDBPyRelation, batch_rows: int = 1 << 17) -> pa.Table:
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


@dataclass
class SourceRelation:
    """Where the raw columns come from, as SQL."""

    relation: str  # FROM item of the main query
    rows_relation: str  # FROM item exposing the row number as "_row"
    name: str  # for messages
    raw: dict[str, str]  # canonical column -> SQL expression of the raw column
    types: dict[str, str]  # canonical column -> DuckDB type (upper case)
    zones: dict[str, str]  # canonical column -> time zone of a TIMESTAMPTZ column
    labels: np.ndarray | None = None  # source_row of each position (DataFrame index)
    csv: tuple[Path, str] | None = None  # (file, encoding) of a CSV, for error messages


def column_types(
    con: duckdb.DuckDBPyConnection, relation: str, names: dict[str, str]
) -> dict[str, str]:
    """DuckDB type (upper case) of each expression of ``names`` over ``relation``, by name."""
    select = ", ".join(f"{expr} AS {quote_name(canon)}" for canon, expr in names.items())
    described = con.sql(f"DESCRIBE SELECT {select} FROM {relation}").fetchall()
    return {str(row[0]): str(row[1]).upper() for row in described}


def _offset_zone(zone: str) -> str:
    """ICU's name of a fixed UTC offset (Arrow writes ``-05:00``; ICU wants ``UTC-05:00``)."""
    return f"UTC{zone}" if re.fullmatch(r"[+-]\d{2}:?\d{2}", zone) else zone


def parquet_zones(path: Path, resolved: dict[str, str]) -> dict[str, str]:
    """The time zone of each zone-aware timestamp column of a Parquet file, by canonical name.

    From the Arrow schema pandas and pyarrow write (ICU names, fixed offsets as
    ``UTC-05:00``); a column without one (Spark's "adjusted to UTC") is not listed.
    """
    schema = pq.read_schema(path)
    zones = {}
    for canon, user in resolved.items():
        typ = schema.field(user).type
        if pa.types.is_timestamp(typ) and typ.tz is not None:
            zones[canon] = _offset_zone(typ.tz)
    return zones


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
) -> SourceRelation:
    if isinstance(source, pd.DataFrame):
        columns = {canon: _arrow_column(source[user], user) for canon, user in resolved.items()}
        labels = source.index.to_numpy()
    else:
        columns = {canon: _naive(source.column(user)) for canon, user in resolved.items()}
        labels = None
    table = pa.table(columns)
    con.register("src", table)
    raw = {canon: quote_name(canon) for canon in resolved}
    rows = "(SELECT *, row_number() OVER () - 1 AS _row FROM src)"
    return SourceRelation("src", rows, name, raw, column_types(con, "src", raw), {}, labels)


def _parquet_source(
    con: duckdb.DuckDBPyConnection, path: Path, resolved: dict[str, str], name: str
) -> SourceRelation:
    zones = parquet_zones(path, resolved)
    relation = f"read_parquet({quote_text(str(path))})"
    numbered = f"read_parquet({quote_text(str(path))}, file_row_number = true)"
    rows = f"(SELECT *, file_row_number AS _row FROM {numbered})"
    raw = {canon: quote_name(user) for canon, user in resolved.items()}
    types = column_types(con, relation, raw)
    # Parquet written without Arrow's schema (Spark...) says only "adjusted to UTC".
    for canon, typ in types.items():
        if typ.startswith("TIMESTAMP WITH TIME ZONE") or typ.startswith("TIMESTAMPTZ"):
            zones.setdefault(canon, "UTC")
    return SourceRelation(relation, rows, name, raw, types, zones)


def _csv_source(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    encoding: str,
    cmap: ColumnMap,
    name: str,
    display: Path,
) -> tuple[SourceRelation, dict[str, str]]:
    available, delimiter = csv_columns(con, path, encoding, display=display)
    # Before the names are resolved: a second 'Amount' leaves no column named 'amount'.
    wanted = wanted_columns(cmap)
    check_unique_headers(con, path, encoding, delimiter, available, wanted, display=display)
    resolved = resolve_columns(available, cmap, name)
    relation = csv_relation(path, encoding, delimiter)
    rows = f"(SELECT *, row_number() OVER () - 1 AS _row FROM {relation})"
    raw = {canon: quote_name(user) for canon, user in resolved.items()}
    types = {canon: "VARCHAR" for canon in resolved}
    source = SourceRelation(relation, rows, name, raw, types, {}, csv=(display, encoding))
    return source, resolved


@contextmanager
def open_source(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    cmap: ColumnMap,
    encoding: str | None,
    name: str | None,
) -> Iterator[tuple[SourceRelation, dict[str, str]]]:
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
        resolved = resolve_columns(names, cmap, label, fold_case=True)  # DuckDB folds case
        yield _parquet_source(con, path, resolved, label), resolved
        return
    with readable_csv(path, normalize_encoding(encoding)) as (readable, duck_encoding):
        # Messages name the user's file, not a transcoded copy.
        yield _csv_source(con, readable, duck_encoding, cmap, label, display=path)


#: DuckDB types of an id column stored as floating point (see :func:`id_text_sql`).
FLOAT_ID_TYPES = ("FLOAT", "DOUBLE", "REAL")


def id_text_sql(raw: str, typ: str) -> str:
    """SQL of an id column of DuckDB type ``typ`` as text (also used by the partition split)."""
    # Ids pass through untouched: any string expression would copy ten million of
    # them (~1.5 s). Stripping happens in Arrow, and only when some id needs it.
    if typ in FLOAT_ID_TYPES:
        # A pandas integer column with one missing value is saved as floats: 10002.0 is
        # the id 10002 (up to 2^53, where doubles stop holding every integer).
        whole = f"{raw} = trunc({raw}) AND abs({raw}) < 9007199254740992"
        return (
            f"CASE WHEN {whole} THEN CAST(CAST({raw} AS BIGINT) AS VARCHAR) "
            f"ELSE CAST({raw} AS VARCHAR) END"
        )
    return raw if typ == "VARCHAR" else f"CAST({raw} AS VARCHAR)"


def _text_date_sql(text: str, date_format: str | None) -> str:
    stripped = f"trim({text}, {_chars(WHITESPACE)})"
    if date_format is None:
        # DuckDB's cast reads ISO 8601 and drops a UTC offset (the time as written);
        # the fallbacks only run for the rows it could not read.
        formats = "[" + ", ".join(quote_text(f) for f in _EXTRA_DATE_FORMATS) + "]"
        return (
            f"COALESCE(TRY_CAST({text} AS TIMESTAMP), CASE WHEN {text} IS NOT NULL THEN "
            f"COALESCE(TRY_CAST({stripped} AS TIMESTAMP), try_strptime({stripped}, {formats})) END)"
        )
    fmt = date_format
    zone = re.search(r"\s*%[zZ]\s*$", fmt)
    if zone:
        # strptime would convert to UTC; keep the local time as written instead.
        fmt = fmt[: zone.start()]
        offset = quote_text(r"\s*(Z|[+-]\d{2}(:?\d{2})?|[A-Za-z_/]+)$")
        stripped = f"regexp_replace({stripped}, {offset}, '')"
        return f"try_strptime({stripped}, {quote_text(fmt)})"
    if "%z" in fmt or "%Z" in fmt:
        raise InputDataError(
            f"date format '{date_format}' has a time zone (%z/%Z) before its end; churnguard "
            "keeps the local time as written and only supports a zone at the end of the "
            "format. Pass a --date-format without it."
        )
    fmt_sql = quote_text(fmt)
    return f"COALESCE(try_strptime({text}, {fmt_sql}), try_strptime({stripped}, {fmt_sql}))"


def _date_sql(raw: str, typ: str, zone: str | None, date_format: str | None) -> str:
    if zone is not None:
        return f"timezone({quote_text(zone)}, {raw})"
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
    markers = ", ".join(quote_text(m) for m in _NA_MARKERS)
    # CASE evaluates the marker test only on the rows whose cast failed.
    return (
        f"CASE WHEN {text} IS NOT NULL AND TRY_CAST({text} AS DOUBLE) IS NULL "
        f"THEN lower(trim({text}, {_chars(WHITESPACE)})) NOT IN ({markers}) ELSE false END"
    )


@dataclass(frozen=True)
class Limits:
    today: dt.date
    floor: dt.date
    max_amount: float
    as_of: dt.date | None


def parsed_sql(src: SourceRelation, cmap: ColumnMap) -> tuple[str, list[str]]:
    """SQL of every row, in source order, with canonical columns and unreadable flags.

    Returns the query and the names of the flag columns (``_bad_<column>``). The
    checks that only need numbers (date ranges, amounts) are made in NumPy on the
    result: several times cheaper than a SQL CASE over every row.
    """
    inner = [f"{expr} AS {quote_name('_raw_' + canon)}" for canon, expr in src.raw.items()]
    parsed, flags = [], []
    for canon in src.raw:
        raw, typ = quote_name("_raw_" + canon), src.types[canon]
        if canon == "customer_id":
            expr = id_text_sql(raw, typ)
        elif canon == "date":
            expr = _date_sql(raw, typ, src.zones.get(canon), cmap.date_format)
        elif canon == "amount" or canon in OPTIONAL_NUMERIC:
            expr = _number_sql(raw, typ)
            bad = _unreadable_sql(raw, typ) if canon != "amount" else None
            if bad is not None:
                flags.append(f"_bad_{canon}")
                parsed.append(f"{bad} AS {quote_name('_bad_' + canon)}")
        else:
            expr = raw if typ == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
        parsed.append(f"{expr} AS {quote_name(canon)}")
    sql = f"SELECT {', '.join(parsed)} FROM (SELECT {', '.join(inner)} FROM {src.relation})"
    return sql, flags


def check_options(as_of: Any, date_floor: Any, max_amount: float, today: Any) -> Limits:
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
    return Limits(day, floor, limit, cutoff)


def connect_scan() -> duckdb.DuckDBPyConnection:
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
    limit_threads(con)
    return con


def run_query(
    con: duckdb.DuckDBPyConnection, src: SourceRelation, sql: str, cmap: ColumnMap
) -> pa.Table:
    try:
        return fetch_arrow(con.sql(sql))
    except duckdb.Error as exc:
        raise translate_error(exc, src, cmap) from exc


def stream_query(
    con: duckdb.DuckDBPyConnection, src: SourceRelation, sql: str, cmap: ColumnMap
) -> pa.Table:
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
        result = fetch_arrow(rel, BATCH_ROWS)
    except duckdb.Error as exc:
        raise translate_error(exc, src, cmap) from exc

    def contiguous(column: pa.ChunkedArray) -> pa.ChunkedArray:
        return pa.chunked_array([column.combine_chunks(big_column_pool())], type=column.type)

    with ThreadPoolExecutor(max_workers=2) as pool:
        table = pa.table(list(pool.map(contiguous, result.columns)), names=result.column_names)
    del result, rel
    _flush(con)
    release_arrow_memory()
    return table


def _flush(con: duckdb.DuckDBPyConnection) -> None:
    """Make DuckDB hand its cached memory back (lowering its limit evicts the cache)."""
    limit = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    try:
        con.execute("SET memory_limit = '32MB'")
    finally:
        con.execute(f"SET memory_limit = {quote_text(str(limit))}")


def translate_error(exc: Exception, src: SourceRelation, cmap: ColumnMap) -> Exception:
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


def sample_values(con: duckdb.DuckDBPyConnection, src: SourceRelation, canon: str) -> list[str]:
    """Up to three non-null raw values of a column, for messages."""
    raw = src.raw[canon]
    sql = f"SELECT CAST({raw} AS VARCHAR) FROM {src.relation} WHERE {raw} IS NOT NULL LIMIT 3"
    try:
        return [str(row[0]) for row in con.sql(sql).fetchall()]
    except duckdb.Error:
        return []
