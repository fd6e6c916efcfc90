"""The aggregation engine behind the feature builder: one sorted DuckDB scan per cutoff.

The engine works at the level of *purchase occasions*: all of a customer's
transactions on one calendar day with a non-negative amount form one occasion, as
in the buy-till-you-die literature. Negative amounts are returns: they reduce net
spend and feed the return features but are not purchases.

How it is computed, and why: DuckDB reads the source (in-memory frame, Arrow table
or Parquet file, with the cutoff filter pushed into the Parquet scan), keeps the
transactions on or before the cutoff and returns them sorted by customer and day,
as Arrow. Everything per customer is then a segmented reduction over contiguous
runs of that sorted array in NumPy (``ufunc.reduceat``). At 10M transactions this
replaces three string-keyed passes of the earlier pure-SQL plan (a hash group-by on
customer-day with ~as many groups as rows, a window sort for the gaps between
occasions, and a final group-by) with a single parallel sort, several times faster
for the same results. Distinct counts of the optional ``product``/``channel``
columns stay in SQL (a second, small query) because they need hashing anyway.

Semantics follow SQL exactly: a NULL amount is neither a purchase nor a return, NaN
compares above every number (so it counts as a purchase and propagates through
sums), and sums of columns with NULLs skip the NULLs (NULL when nothing is left).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["aggregate_customers", "count_purchase_days", "to_date"]

_EPOCH = dt.date(1970, 1, 1)


def to_date(value: Any) -> dt.date:
    """Coerce a date-like value (``str``, ``datetime``, ``Timestamp``) to ``datetime.date``."""
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        raise ValueError(f"expected a date such as '2024-03-31'; got {value!r}.")
    return ts.date()


def _lit(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


def _connect(source: Any) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if isinstance(source, str):
        con.execute(f"CREATE VIEW src AS SELECT * FROM read_parquet('{source}')")
    else:
        con.register("src", source)
    return con


def _arrow(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    rel = con.sql(query)
    # duckdb >= 1.4 names it to_arrow_table; older releases only have arrow().
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    table = fetch()
    return table if isinstance(table, pa.Table) else table.read_all()


def _floats(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """Values as float64 and, when the column has NULLs, a validity mask."""
    values = column.to_numpy()
    if column.null_count == 0:
        return np.asarray(values, dtype=np.float64), None
    valid = pc.is_valid(column).to_numpy()
    return np.asarray(values, dtype=np.float64), np.asarray(valid, dtype=bool)


def _days(column: pa.ChunkedArray) -> np.ndarray:
    """DATE column as int64 days since the epoch (no NULLs: the cutoff filter drops them)."""
    chunks = [chunk.view(pa.int32()) for chunk in column.chunks]
    if not chunks:
        return np.empty(0, dtype=np.int64)
    return pa.chunked_array(chunks, type=pa.int32()).to_numpy().astype(np.int64)


def _new_customer(ids: pa.ChunkedArray) -> np.ndarray:
    """True on the first row of each run of equal ids (NULL ids form one run, sorted last)."""
    n = len(ids)
    flags = np.ones(n, dtype=bool)
    if n > 1:
        head, tail = ids.slice(0, n - 1), ids.slice(1)
        differ = pc.not_equal(tail, head)
        if ids.null_count:
            both_null = pc.and_(pc.is_null(tail), pc.is_null(head))
            differ = pc.if_else(both_null, False, pc.fill_null(differ, True))
        flags[1:] = differ.to_numpy(zero_copy_only=False)
    return flags


def _segment_sum(values: np.ndarray, starts: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """SQL ``SUM`` per segment: NULLs skipped, NaN when a segment has no value at all."""
    if valid is None:
        return np.add.reduceat(values, starts)
    sums = np.add.reduceat(np.where(valid, values, 0.0), starts)
    counts = np.add.reduceat(valid, starts, dtype=np.int64)
    return np.where(counts > 0, sums, np.nan)


def _occasion_features(
    bday: np.ndarray,
    bgross: np.ndarray,
    bnew: np.ndarray,
    cutoff_day: int,
    windows: Sequence[int],
    trend_window: int,
) -> dict[str, Any]:
    """Per-customer occasion features from purchase rows sorted by customer and day."""
    new_occ = bnew.copy()
    new_occ[1:] |= bday[1:] != bday[:-1]
    occ_start = np.flatnonzero(new_occ)
    occ_day = bday[occ_start]
    occ_gross = np.add.reduceat(bgross, occ_start)
    occ_first = bnew[occ_start]
    first = np.flatnonzero(occ_first)
    n_occ = np.diff(np.append(first, len(occ_day)))
    last = first + n_occ - 1

    # Gaps between consecutive occasions; a customer's first occasion has no gap (0
    # here, which neither the max nor the sum of squares of a real gap (>= 1) sees).
    gaps = np.zeros(len(occ_day), dtype=np.int64)
    gaps[1:] = occ_day[1:] - occ_day[:-1]
    gaps[occ_first] = 0
    n_gaps = n_occ - 1
    has_gap = n_gaps > 0
    gap_max = pd.array(np.maximum.reduceat(gaps, first), dtype="Int64")
    gap_max[~has_gap] = pd.NA
    # Population std from exact integer moments: sum of gaps telescopes to last - first.
    s1 = occ_day[last] - occ_day[first]
    s2 = np.add.reduceat(gaps * gaps, first)
    num = n_gaps * s2 - s1 * s1
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_std = np.where(has_gap, np.sqrt(num.astype(np.float64)) / n_gaps, np.nan)

    out: dict[str, Any] = {
        "n_purchases": n_occ.astype(np.int64),
        "first_age": cutoff_day - occ_day[first],
        "last_age": cutoff_day - occ_day[last],
        "first_gross": occ_gross[first],
        "gap_std": gap_std,
        "gap_max": gap_max if not has_gap.all() else gap_max.astype(np.int64),
    }

    def window(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        # Every occasion is on or before the cutoff: trailing windows need one bound.
        inside = occ_day > lo if hi >= cutoff_day else (occ_day > lo) & (occ_day <= hi)
        count = np.add.reduceat(inside, first, dtype=np.int64)
        spend = np.add.reduceat(np.where(inside, occ_gross, 0.0), first)
        return count, spend

    for w in windows:
        out[f"purchases_{w}d"], out[f"spend_{w}d"] = window(cutoff_day - int(w), cutoff_day)
    tw = int(trend_window)
    prev = window(cutoff_day - 2 * tw, cutoff_day - tw)
    out[f"purchases_prev_{tw}d"], out[f"spend_prev_{tw}d"] = prev
    return out


def _empty_frame(columns: list[str]) -> pd.DataFrame:
    ints = ("n_purchases", "first_age", "last_age", "gap_max", "purchases_", "n_products", "n_channels")
    dtypes = {c: ("int64" if c.startswith(ints) else "float64") for c in columns}
    dtypes["customer_id"] = "object"
    return pd.DataFrame({c: pd.Series([], dtype=dtypes[c]) for c in columns})


def _aggregate_sorted(
    rows: pa.Table,
    cutoff: dt.date,
    windows: Sequence[int],
    trend_window: int,
) -> pd.DataFrame | None:
    """Per-customer aggregates from rows sorted by ``customer_id`` then ``day`` (None: no buyer)."""
    if rows.num_rows == 0:
        return None
    cutoff_day = (cutoff - _EPOCH).days
    ids = rows.column("customer_id")
    day = _days(rows.column("day"))
    amount, amount_valid = _floats(rows.column("amount"))
    new_cust = _new_customer(ids)
    starts = np.flatnonzero(new_cust)

    with np.errstate(invalid="ignore"):
        # SQL orders NaN above every number: a NaN amount is a purchase, never a return.
        buy = (amount >= 0) | np.isnan(amount)
        ret = amount < 0
    if amount_valid is not None:
        buy &= amount_valid
    all_buy = bool(buy.all())

    totals: dict[str, Any] = {}
    if all_buy:
        totals["n_transactions"] = np.diff(np.append(starts, len(day))).astype(np.float64)
        totals["n_returns"] = np.zeros(len(starts))
        totals["returned_amount"] = np.zeros(len(starts))
        totals["gross_spend"] = np.add.reduceat(amount, starts)
        bday, bgross, bnew = day, amount, new_cust
        keep = np.arange(len(starts))
    else:
        totals["n_transactions"] = np.add.reduceat(buy, starts, dtype=np.int64).astype(np.float64)
        totals["n_returns"] = np.add.reduceat(ret, starts, dtype=np.int64).astype(np.float64)
        returned = np.add.reduceat(np.where(ret, amount, 0.0), starts)
        totals["returned_amount"] = 0.0 - returned
        totals["gross_spend"] = np.add.reduceat(np.where(buy, amount, 0.0), starts)
        seg = np.cumsum(new_cust) - 1
        sel = np.flatnonzero(buy)
        bseg, bday, bgross = seg[sel], day[sel], amount[sel]
        bnew = np.ones(len(sel), dtype=bool)
        bnew[1:] = bseg[1:] != bseg[:-1]
        keep = bseg[bnew]
    for col in ("margin", "quantity"):
        if col in rows.column_names:
            values, valid = _floats(rows.column(col))
            totals[f"{col}_total"] = _segment_sum(values, starts, valid)
    if len(keep) == 0:
        return None

    occ = _occasion_features(bday, bgross, bnew, cutoff_day, windows, trend_window)
    frame: dict[str, Any] = {"customer_id": ids.take(pa.array(starts[keep])).to_pandas()}
    frame["n_purchases"] = occ.pop("n_purchases")
    for name in ("n_transactions", "n_returns", "returned_amount", "gross_spend"):
        frame[name] = totals.pop(name)[keep]
    frame.update(occ)
    for name, values in totals.items():
        frame[name] = values[keep]
    return pd.DataFrame(frame)


def aggregate_customers(
    source: Any,
    cutoff: dt.date,
    *,
    windows: Sequence[int] = (30, 90, 180, 365),
    trend_window: int = 90,
    optional: Sequence[str] = (),
    recent_window: int = 90,
) -> pd.DataFrame:
    """Aggregate transactions on or before ``cutoff`` to one row per customer.

    Parameters
    ----------
    source : DataFrame, pyarrow.Table or str
        Canonical transactions (``customer_id``, ``date``, ``amount`` and any of the
        optional columns), or the path of a Parquet file with those columns.
    cutoff : datetime.date
        Last day that counts as the past (inclusive).
    windows : sequence of int
        Trailing windows in days; window ``w`` covers days in ``(cutoff - w, cutoff]``.
    trend_window : int
        Length of the two adjacent windows compared by the trend features.
    optional : sequence of str
        Optional columns present in ``source`` (``margin``, ``cost``, ``quantity``,
        ``product``, ``channel``).
    recent_window : int
        Window for recent basket breadth.

    Returns
    -------
    DataFrame
        Raw aggregates with day offsets (``first_age``/``last_age``: days from the
        first/last purchase to the cutoff); only customers with at least one
        purchase occasion on or before the cutoff, sorted by ``customer_id``.
    """
    c = _lit(cutoff)
    opt = set(optional)
    select = ["customer_id", 'CAST("date" AS DATE) AS day', "CAST(amount AS DOUBLE) AS amount"]
    if "margin" in opt:
        select.append("CAST(margin AS DOUBLE) AS margin")
    elif "cost" in opt:
        select.append("CAST(amount - cost AS DOUBLE) AS margin")
    if "quantity" in opt:
        select.append("CAST(CASE WHEN amount >= 0 THEN quantity END AS DOUBLE) AS quantity")
    tx = f'SELECT {", ".join(select)} FROM src WHERE CAST("date" AS DATE) <= {c}'

    distinct = []
    if "product" in opt:
        r = int(recent_window)
        distinct.append("COUNT(DISTINCT product) FILTER (WHERE amount >= 0) AS n_products")
        distinct.append(
            f"COUNT(DISTINCT product) FILTER (WHERE amount >= 0 AND day > {c} - {r}) AS n_products_{r}d"
        )
    if "channel" in opt:
        distinct.append("COUNT(DISTINCT channel) AS n_channels")

    con = _connect(source)
    try:
        rows = _arrow(con, f"SELECT * FROM ({tx}) ORDER BY customer_id, day")
        extra = None
        if distinct:
            cols = [col for col in ("product", "channel") if col in opt]
            sub = f'SELECT customer_id, CAST("date" AS DATE) AS day, amount, {", ".join(cols)} FROM src'
            extra = con.execute(
                f'WITH tx AS ({sub} WHERE CAST("date" AS DATE) <= {c}) '
                f"SELECT customer_id, {', '.join(distinct)} FROM tx GROUP BY customer_id"
            ).df()
    finally:
        con.close()

    out = _aggregate_sorted(rows, cutoff, windows, trend_window)
    if out is None:
        names = _column_names(windows, trend_window, rows.column_names)
        names += [] if extra is None else [col for col in extra.columns if col != "customer_id"]
        return _empty_frame(names)
    if extra is not None:
        out = _join_distinct(out, extra)
    return out


def _column_names(windows: Sequence[int], trend_window: int, row_columns: list[str]) -> list[str]:
    names = ["customer_id", "n_purchases", "n_transactions", "n_returns", "returned_amount"]
    names += ["gross_spend", "first_age", "last_age", "first_gross", "gap_std", "gap_max"]
    for w in windows:
        names += [f"purchases_{w}d", f"spend_{w}d"]
    tw = int(trend_window)
    names += [f"purchases_prev_{tw}d", f"spend_prev_{tw}d"]
    return names + [f"{col}_total" for col in ("margin", "quantity") if col in row_columns]


def _join_distinct(out: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """LEFT JOIN on ``customer_id`` with SQL key semantics (a NULL id matches nothing)."""
    joined = out.merge(extra, on="customer_id", how="left", sort=False)
    null_id = joined["customer_id"].isna().to_numpy()
    if null_id.any():
        for col in extra.columns.drop("customer_id"):
            joined[col] = joined[col].astype("Int64").mask(null_id)
    return joined


def count_purchase_days(
    source: Any, start: dt.date, end: dt.date
) -> pd.DataFrame:
    """Count purchase occasions per customer on days in ``(start, end]``.

    Returns
    -------
    DataFrame
        ``customer_id`` and ``purchases`` for customers with at least one occasion.
    """
    query = f"""
    SELECT customer_id, COUNT(DISTINCT CAST("date" AS DATE)) AS purchases
    FROM src
    WHERE amount >= 0 AND CAST("date" AS DATE) > {_lit(start)} AND CAST("date" AS DATE) <= {_lit(end)}
    GROUP BY customer_id
    """
    con = _connect(source)
    try:
        return con.execute(query).df()
    finally:
        con.close()
