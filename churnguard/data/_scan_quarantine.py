"""The quarantine of :func:`churnguard.data.scan.scan_transactions`.

Rows that break a rule are read back from the source by position, as text, with
their reason (and a few examples for the warning). Shared internals of the scan; not a
public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from churnguard.data._scan_sql import (
    Limits,
    SourceRelation,
    fetch_arrow,
    quote_name,
    quote_text,
    run_query,
    translate_error,
)
from churnguard.data.columns import ColumnMap
from churnguard.data.io import (
    atomic_path,
    escape_formulas_sql,
)

#: Quarantine reasons by row code: the first rule a row breaks (0 is a used row, 7 one
#: after the as-of date).
REASONS = {
    1: "missing customer id",
    2: "unparsable date",
    3: "date in the future",
    4: "date before {floor}",
    5: "non-numeric amount",
    6: "implausible amount",
}

__all__ = [
    "REASONS",
    "empty_quarantine",
    "quarantine_frame",
    "examples",
]


def _rows_sql(src: SourceRelation, positions: str, extra: str = "", *, escape: bool = False) -> str:
    """Raw columns (as text) of the rows listed in the registered table ``positions``.

    The rows are found by joining on their position, which the main query computed:
    the quarantine never re-implements a rule, so it cannot disagree with the counts.
    """
    cols = []
    for canon, expr in src.raw.items():
        text = f"CAST(r.{expr} AS VARCHAR)"
        cols.append(f"{escape_formulas_sql(text) if escape else text} AS {quote_name(canon)}")
    return (
        f"SELECT p._label AS source_row, {', '.join(cols)}{extra} "
        f"FROM {src.rows_relation} r JOIN {positions} p ON p._row = r._row ORDER BY p._row"
    )


def _register_rows(
    con: duckdb.DuckDBPyConnection, name: str, src: SourceRelation, rows: np.ndarray, **extra: Any
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


def empty_quarantine(columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([], dtype="string") for c in columns})
    return frame.astype({"source_row": "int64", "reason": object})


def quarantine_frame(
    con: duckdb.DuckDBPyConnection,
    src: SourceRelation,
    cmap: ColumnMap,
    limits: Limits,
    code: np.ndarray,
    quarantine_to: Path | None,
) -> pd.DataFrame:
    bad = np.flatnonzero((code >= 1) & (code <= 6)).astype(np.int64)
    _register_rows(con, "_bad", src, bad, _code=code[bad])
    whens = " ".join(
        f"WHEN {c} THEN {quote_text(text.format(floor=limits.floor.isoformat()))}"
        for c, text in REASONS.items()
    )
    reason = f", CASE p._code {whens} END AS reason"
    columns = ["source_row", *src.raw, "reason"]
    if quarantine_to is not None:
        select = _rows_sql(src, "_bad", reason, escape=True)
        with atomic_path(quarantine_to) as tmp:
            try:
                con.sql(f"COPY ({select}) TO {quote_text(str(tmp))} (FORMAT csv, HEADER true)")
            except duckdb.Error as exc:
                raise translate_error(exc, src, cmap) from exc
        return empty_quarantine(columns)
    table = run_query(con, src, _rows_sql(src, "_bad", reason), cmap)
    frame = pd.DataFrame(
        {c: pd.Series(pd.array(table.column(c).to_pylist(), dtype="string")) for c in src.raw}
    )
    frame.insert(0, "source_row", table.column("source_row").to_numpy(zero_copy_only=False))
    frame["reason"] = pd.Series(table.column("reason").to_pylist(), dtype=object)
    return frame


def examples(
    con: duckdb.DuckDBPyConnection, src: SourceRelation, canon: str, rows: np.ndarray
) -> list[str]:
    """Raw text of ``canon`` on up to three of ``rows`` (for a warning)."""
    _register_rows(con, "examples", src, rows[:3])
    try:
        table = fetch_arrow(con.sql(_rows_sql(src, "examples")))
    except duckdb.Error:
        return []
    return [str(v) for v in table.column(canon).to_pylist()]
