"""DuckDB connections and SQL quoting shared by the feature engine and the executors."""

from __future__ import annotations

import os
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from churnguard._resources import cpu_budget

__all__ = [
    "connect",
    "day_sql",
    "fetch_arrow",
    "fetch_frame",
    "limit_threads",
    "quote_identifier",
    "quote_literal",
    "timestamp_sql",
]


def connect(source: Any = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory connection, optionally with ``source`` as the view ``src``.

    ``source`` is a Parquet path (read lazily) or a DataFrame / Arrow table
    (registered without a copy). A library must not draw DuckDB's progress bar on the
    caller's stdout (DuckDB does for any query over 2 s), so it is turned off.
    """
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:
        # Under Jupyter without ipywidgets DuckDB refuses to touch the setting (and
        # draws no bar there either), so there is nothing to turn off.
        pass
    limit_threads(con)
    if isinstance(source, str):
        con.execute(f"CREATE VIEW src AS SELECT * FROM read_parquet({quote_literal(source)})")
    elif source is not None:
        con.register("src", source)
    return con


def limit_threads(con: duckdb.DuckDBPyConnection) -> None:
    """Lower DuckDB's threads to the cores this process may use (never raise them).

    DuckDB starts one thread per core it sees; under a container's CPU quota or
    ``CHURNGUARD_THREADS`` that is more than the process may run at once.
    """
    budget = cpu_budget()
    if budget < _default_threads(con):
        con.execute(f"SET threads = {budget}")


_DEFAULT_THREADS: list[int] = []  # DuckDB's own thread count, once known


def _default_threads(con: duckdb.DuckDBPyConnection) -> int:
    # DuckDB's own count (the cores it sees) is the same for every new connection: asked
    # of the first one only (a connection is not kept).
    if not _DEFAULT_THREADS:
        _DEFAULT_THREADS.append(
            int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
        )
    return _DEFAULT_THREADS[0]


def quote_literal(text: str | os.PathLike[str]) -> str:
    """``text`` as a SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    """``name`` as a SQL identifier (any column name a log may have)."""
    return '"' + name.replace('"', '""') + '"'


def fetch_arrow(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """Query result as an Arrow table (duckdb >= 1.4 names it ``to_arrow_table``)."""
    rel = con.sql(query)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    table = fetch()
    return table if isinstance(table, pa.Table) else table.read_all()


def fetch_frame(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    """Query result as pandas with Arrow-backed text: cleaning strips and sorts it faster."""
    text = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    return fetch_arrow(con, query).to_pandas(types_mapper=text.get)


def _floor_div(expr: str, divisor: int) -> str:
    """``floor(expr / divisor)`` in exact integer arithmetic.

    DuckDB's ``//`` truncates towards zero and ``%`` takes the dividend's sign, so a
    negative ``expr`` with a remainder is one too high; subtracting first instead could
    overflow INT64 at the earliest nanosecond timestamps (1677-09-21).
    """
    return f"(({expr}) // {divisor} - CASE WHEN ({expr}) % {divisor} < 0 THEN 1 ELSE 0 END)"


def _column_type(con: duckdb.DuckDBPyConnection, column: str, relation: str) -> str:
    described = con.sql(f"DESCRIBE SELECT {column} FROM {relation}").fetchall()
    return str(described[0][1]).upper() if described else ""


def _finer_than_microseconds(con: duckdb.DuckDBPyConnection, column: str, relation: str) -> bool:
    """Whether ``column`` is a nanosecond timestamp (with or without a zone) holding a time
    that is not whole microseconds.

    Logs written by pandas are nanosecond timestamps, but almost always whole
    microseconds (or seconds): then DuckDB's cast rounds nothing and stays the fast path
    (the exact arithmetic costs ~10% of the feature build's CPU at 10M rows).
    """
    if _column_type(con, column, relation) not in ("TIMESTAMP_NS", "TIMESTAMPTZ_NS"):
        return False
    found = con.sql(f"SELECT bool_or(epoch_ns({column}) % 1000 <> 0) FROM {relation}").fetchall()
    return bool(found and found[0][0])


def day_sql(con: duckdb.DuckDBPyConnection, column: str = '"date"', relation: str = "src") -> str:
    """SQL for the calendar day of ``column``, floored as pandas and NumPy floor it.

    DuckDB's ``CAST(x AS DATE)`` first rounds a ``TIMESTAMP_NS`` to microseconds, so a
    time in the last 500 ns of a day (``23:59:59.999999999``, a common "end of day"
    stamp) would fall on the next day, while the validating scan and pandas keep it on
    its own: with ``--as-of`` that day the purchase would be dropped. For that type the
    day comes from the nanoseconds by an exact floor division; other types cast as
    before (their cast already floors, also before 1970).
    """
    if not _finer_than_microseconds(con, column, relation):
        return f"CAST({column} AS DATE)"
    days = _floor_div(f"epoch_ns({column})", 86_400_000_000_000)
    return f"(DATE '1970-01-01' + CAST({days} AS INTEGER))"


def timestamp_sql(
    con: duckdb.DuckDBPyConnection, column: str = '"date"', relation: str = "src"
) -> str:
    """``CAST(column AS TIMESTAMP)``, floored to the microsecond for ``TIMESTAMP_NS``.

    See :func:`day_sql`: the plain cast rounds, which can move a time to the next day.
    """
    if not _finer_than_microseconds(con, column, relation):
        return f"CAST({column} AS TIMESTAMP)"
    return f"make_timestamp({_floor_div(f'epoch_ns({column})', 1000)})"
