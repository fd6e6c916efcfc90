"""The DuckDB steps of a partitioned scoring run: split the log, find its as-of date, write.

Why a module of its own: :func:`churnguard.execution.partitioned.score_parquet_partitioned`
orchestrates partitions, threads and memory; the SQL it runs around them is here. The
log is split into Parquet partitions by a stable hash of the stripped customer id
(:func:`split_log`), its last usable date is found with the scan's rules
(:func:`default_as_of`), and the quarantine file and the retention list are written by
DuckDB ``COPY`` through :func:`churnguard.data.io.atomic_path`, with CSV text cells made
inert for spreadsheets as :func:`churnguard.data.io.write_table` does
(:func:`write_quarantine_csv`, :func:`write_list`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from churnguard._dates import to_date
from churnguard._duckdb import connect, fetch_frame, timestamp_sql
from churnguard._duckdb import quote_identifier as _q
from churnguard._duckdb import quote_literal as _s
from churnguard.data import DEFAULT_DATE_FLOOR, DEFAULT_MAX_AMOUNT, ColumnMap
from churnguard.data._scan_sql import column_types, id_text_sql, parquet_zones
from churnguard.data.io import atomic_path, escape_formulas_sql, table_format
from churnguard.decision.retention import (
    CONTRACT_COLUMNS,
    DECIMAL_COLUMNS,
    MONEY_COLUMNS,
    PROBABILITY_COLUMNS,
    SUPPORTING_COLUMNS,
)
from churnguard.exceptions import InputDataError
from churnguard.execution._sizing import DEFAULT_MAX_MEMORY_GB
from churnguard.execution.outputs import quarantine_path

__all__ = [
    "default_as_of",
    "scans_like_partitions",
    "limit_duckdb",
    "open_duckdb",
    "read_head",
    "scalar",
    "split_log",
    "write_list",
    "write_quarantine_csv",
]

# Columns of the list (build_retention_list's extras) copied from the slim frame.
_LIST_FROM_SLIM = {"historical_revenue", "expected_spend", "frequency", "days_since_last"}
# Python's str.strip() whitespace (ASCII part): ids are stripped before they are hashed.
_WS = " \t\n\r\x0b\x0c"
_TEMPORAL = ("DATE", "TIMESTAMP")
_DATE_FLOOR = DEFAULT_DATE_FLOOR
_MAX_AMOUNT = float(DEFAULT_MAX_AMOUNT)


def scalar(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    """The first value of the first row of ``query`` (None when it has no rows)."""
    rows = con.sql(query).fetchall()
    return rows[0][0] if rows else None


def limit_duckdb(
    con: duckdb.DuckDBPyConnection, max_memory_gb: float | None, *, share: float
) -> None:
    """Let DuckDB use ``share`` of the run's memory budget (at least 0.25 GB)."""
    budget = DEFAULT_MAX_MEMORY_GB if max_memory_gb is None else float(max_memory_gb)
    con.sql(f"SET memory_limit = '{max(budget * share, 0.25):.2f}GB'")


def open_duckdb(workdir: Path, max_memory_gb: float | None) -> duckdb.DuckDBPyConnection:
    """A connection on half of the budget that spills to ``workdir/spill``."""
    con = connect()
    limit_duckdb(con, max_memory_gb, share=0.5)
    con.sql(f"SET temp_directory = {_s(workdir / 'spill')}")
    return con


def split_log(
    con: duckdb.DuckDBPyConnection, path: Path, resolved: dict[str, str], n: int, dest: Path
) -> None:
    """Write the mapped columns to ``dest/part=<i>/`` by a stable hash of the stripped id."""
    raw_id = _q(resolved["customer_id"])
    typ = column_types(con, f"read_parquet({_s(path)})", {"customer_id": raw_id})["customer_id"]
    # The scan's text of an id (whole floats without ".0"), so both paths give one list.
    cid = id_text_sql(raw_id, typ)
    select = [f"{cid} AS customer_id"]
    # A zone-aware date is written as the wall-clock time of its zone, as the scan of the
    # whole file reads it: DuckDB would write the instant in UTC, and the partitions'
    # days would then be UTC days.
    zones = parquet_zones(path, resolved)
    for canon, src in resolved.items():
        if canon != "customer_id":
            column = _q(src)
            if canon in zones:
                column = f"timezone({_s(zones[canon])}, {column})"
            select.append(f"{column} AS {_q(canon)}")
    select.append("file_row_number AS source_row")
    # Trimming every id costs more than the rest of the split; only ids that start or
    # end with a control/space character (ord <= 32) need it.
    x = f"COALESCE({cid}, '')"
    key = (
        f"CASE WHEN ord({x}[1]) <= 32 OR ord({x}[-1]) <= 32 THEN trim({x}, {_s(_WS)}) ELSE {x} END"
    )
    select.append(f"CAST(hash({key}) % {int(n)} AS BIGINT) AS part")
    con.sql(
        f"COPY (SELECT {', '.join(select)} FROM read_parquet({_s(path)}, file_row_number = true)) "
        f"TO {_s(dest)} (FORMAT parquet, PARTITION_BY (part))"
    )


_TIMESTAMPS = ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")
_FLOATS = ("DOUBLE", "FLOAT")
_INTEGERS = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT")


def scans_like_partitions(path: Path, resolved: dict[str, str]) -> bool:
    """Whether one scan of the whole log gives exactly what its partitions would.

    The partitions (:func:`split_log`) are read back through pandas when their types
    need it, and their as-of date comes from :func:`default_as_of`; a scan of the
    whole file (:func:`churnguard.data.scan_transactions`) agrees with both, row for
    row and in the quarantine's text, when: the date is a zone-less timestamp (no
    estimate from text); numbers are floats without NaN (pandas would make NaN NULL)
    or integers without NULLs (pandas would make them floats); other columns are
    text; and no customer id starts or ends with a space, a control character or a
    non-ASCII character (ids that only stripping makes equal would keep another tie
    order, and the SQL as-of rule strips ASCII whitespace only). One pass over the
    mapped columns, on a connection of its own: DuckDB 2.0 folds ``isnan`` to false
    from the Parquet statistics, which leave NaN out, unless statistics propagation is
    off.
    """
    con = connect()
    try:
        return _reads_like_partitions(con, path, resolved)
    finally:
        con.close()


def _reads_like_partitions(
    con: duckdb.DuckDBPyConnection, path: Path, resolved: dict[str, str]
) -> bool:
    select = ", ".join(f"{_q(user)} AS {_q(canon)}" for canon, user in resolved.items())
    described = con.sql(f"DESCRIBE SELECT {select} FROM read_parquet({_s(path)})").fetchall()
    types = {str(r[0]): str(r[1]).upper() for r in described}
    if types.get("date") not in _TIMESTAMPS:
        return False
    checks = []
    for canon, kind in types.items():
        column = _q(resolved[canon])
        if canon == "customer_id":
            text = f"CAST({column} AS VARCHAR)"
            # An empty id is missing on both routes; only a padded one would differ.
            ends = (
                f"ord({text}[1]) NOT BETWEEN 33 AND 126 OR ord({text}[-1]) NOT BETWEEN 33 AND 126"
            )
            edge = f"({text} <> '' AND ({ends}))"
            checks.append(f"COALESCE(bool_or({edge}), false)")
        elif kind in _FLOATS:
            checks.append(f"COALESCE(bool_or(isnan({column})), false)")
        elif kind in _INTEGERS:
            checks.append(f"count(*) > count({column})")
        elif kind != "VARCHAR" and canon != "date":
            return False
    con.sql("SET disabled_optimizers = 'statistics_propagation'")
    found = con.sql(f"SELECT {' OR '.join(checks)} FROM read_parquet({_s(path)})").fetchall()
    return not found[0][0]


def default_as_of(con: duckdb.DuckDBPyConnection, split: Path, cmap: ColumnMap) -> tuple[Any, bool]:
    """Last usable date of the log, and whether it was parsed from text (then only an estimate)."""
    glob = _s(split / "*" / "*.parquet")
    types = {
        r[0]: r[1]
        for r in con.sql(f"DESCRIBE SELECT date, amount FROM read_parquet({glob})").fetchall()
    }
    date_type = str(types["date"]).upper()
    ok_id = f"customer_id IS NOT NULL AND trim(customer_id, {_s(_WS)}) <> ''"
    amount = (
        "amount"
        if str(types["amount"]).upper() in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER")
        else "TRY_CAST(amount AS DOUBLE)"
    )
    # The rows the partitions keep: a known id, a finite amount within the scan's limit,
    # a date between the floor and today (churnguard.data.scan quarantines the others,
    # and a future-dated typo must not move the as-of date).
    ok_amount = (
        f"{amount} IS NOT NULL AND isfinite(CAST({amount} AS DOUBLE)) "
        f"AND abs(CAST({amount} AS DOUBLE)) <= {_MAX_AMOUNT!r}"
    )
    if date_type.startswith(_TEMPORAL):
        column = "date"
        if date_type.startswith("TIMESTAMPTZ") or "TIME ZONE" in date_type:
            # The split keeps the instant, written as UTC, and the partitions read it
            # back as UTC: the session's time zone must not move the day.
            column = "timezone('UTC', date)"
        day, estimated = timestamp_sql(con, column, f"read_parquet({glob})"), False
    elif cmap.date_format:
        day, estimated = f"try_strptime(CAST(date AS VARCHAR), {_s(cmap.date_format)})", True
    else:
        day, estimated = "TRY_CAST(trim(CAST(date AS VARCHAR)) AS TIMESTAMP)", True
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    ok_amount += (
        f" AND {day} >= TIMESTAMP '{_DATE_FLOOR}' AND {day} < TIMESTAMP '{tomorrow.isoformat()}'"
    )
    last = None
    if not estimated:
        # Fast path: the latest date usually has a usable row; check only those rows.
        latest = scalar(con, f"SELECT max({day}) FROM read_parquet({glob})")
        if latest is not None:
            since = f"TIMESTAMP '{to_date(latest).isoformat()}'"
            last = scalar(
                con,
                f"SELECT max({day}) FROM read_parquet({glob}) "
                f"WHERE {day} >= {since} AND {ok_id} AND {ok_amount}",
            )

    if last is None:
        where = f"WHERE {ok_id} AND {ok_amount}"
        last = scalar(con, f"SELECT max({day}) FROM read_parquet({glob}) {where}")
    if last is None:
        raise InputDataError(
            "no usable transaction date found in the log; pass as_of (--as-of YYYY-MM-DD) and "
            "check --date-col / --date-format."
        )
    return to_date(last), estimated


def write_list(
    con: duckdb.DuckDBPyConnection,
    slim: Path,
    whole: Path,
    reasons: Path | None,
    note: str,
    out: Path,
) -> None:
    """Join the slim columns, the whole-base columns and the reasons; write by priority."""
    fmt = table_format(out, role="output")
    has = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet({_s(whole)})").fetchall()}
    source = {"historical_revenue": "total_spend"}
    select = []
    for col in CONTRACT_COLUMNS + [
        c for c in SUPPORTING_COLUMNS if c in has or c in _LIST_FROM_SLIM
    ]:
        if col == "reasons":
            expr = f"COALESCE(r.reasons, {_s(note)})" if reasons is not None else _s(note)
        elif fmt == "csv" and col in ("growth_candidate", "contact"):
            # pandas writes booleans as True/False; keep the CSV identical to the in-memory one.
            expr = f"CASE WHEN t.{col} THEN 'True' ELSE 'False' END"
        elif col in ("r_score", "f_score", "m_score"):
            expr = f"CAST(t.{col} AS BIGINT)"
        elif fmt == "csv" and col in MONEY_COLUMNS:
            expr = f"ROUND(t.{_q(source.get(col, col))}, 2)"
        elif fmt == "csv" and col in (*PROBABILITY_COLUMNS, *DECIMAL_COLUMNS):
            expr = f"ROUND(t.{_q(col)}, 4)"
        else:
            expr = f"t.{_q(source.get(col, col))}"
        select.append(f"{expr} AS {_q(col)}")
    join = ""
    if reasons is not None:
        join = f"LEFT JOIN read_parquet({_s(reasons / '*.parquet')}) r USING (customer_id)"
    # Join, then sort, in two statements: in one, DuckDB 2.0 cannot spill the join
    # under the sort and runs out of memory at ~5M customers with a 1 GB limit.
    joined = slim.with_name("joined.parquet")
    con.sql(
        f"COPY (SELECT {', '.join(select)} FROM (SELECT * FROM read_parquet({_s(slim)}) "
        f"POSITIONAL JOIN read_parquet({_s(whole)})) t {join}) TO {_s(joined)} (FORMAT parquet)"
    )
    options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    columns = _csv_safe_columns(con, f"read_parquet({_s(joined)})") if fmt == "csv" else "*"
    with atomic_path(out) as tmp:
        con.sql(
            f"COPY (SELECT {columns} FROM read_parquet({_s(joined)}) ORDER BY priority) "
            f"TO {_s(tmp)} ({options})"
        )


def _csv_safe_columns(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """Select list of ``relation`` with text cells made inert for spreadsheets.

    The same rule as :func:`churnguard.data.io.write_table` applies to in-memory CSVs:
    a customer id or a reason starting with ``=`` must not run when the list is opened.
    """
    described = con.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    parts = []
    for name, dtype, *_ in described:
        if str(dtype).upper() == "VARCHAR":
            parts.append(f"{escape_formulas_sql(_q(name))} AS {_q(name)}")
        else:
            parts.append(_q(name))
    return ", ".join(parts)


def write_quarantine_csv(con: duckdb.DuckDBPyConnection, work: Path, out: Path) -> Path | None:
    """Gather the partitions' unusable rows into ``<out>.quarantine.csv`` (None: none)."""
    path = quarantine_path(out)
    if not any(work.glob("quarantine_*.parquet")):
        path.unlink(missing_ok=True)  # a stale one from an earlier run
        return None
    rejects = f"read_parquet({_s(work / 'quarantine_*.parquet')}, union_by_name = true)"
    with atomic_path(path) as tmp:
        con.sql(
            f"COPY (SELECT {_csv_safe_columns(con, rejects)} FROM {rejects} ORDER BY source_row) "
            f"TO {_s(tmp)} (FORMAT csv, HEADER true)"
        )
    return path


def read_head(con: duckdb.DuckDBPyConnection, path: Path, n: int) -> pd.DataFrame:
    """The first ``n`` rows of the written list."""
    if table_format(path) == "csv":
        return pd.read_csv(path, nrows=max(int(n), 1), dtype={"customer_id": str}).head(int(n))
    return fetch_frame(con, f"SELECT * FROM read_parquet({_s(path)}) LIMIT {int(n)}")
