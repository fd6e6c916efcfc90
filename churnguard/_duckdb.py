"""DuckDB connections and SQL quoting shared by the feature engine and the executors."""

from __future__ import annotations

import os
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

__all__ = ["connect", "fetch_arrow", "fetch_frame", "quote_identifier", "quote_literal"]


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
    if isinstance(source, str):
        con.execute(f"CREATE VIEW src AS SELECT * FROM read_parquet({quote_literal(source)})")
    elif source is not None:
        con.register("src", source)
    return con


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
