"""The aggregation engine behind the feature builder: one sorted DuckDB scan per cutoff.

The engine works at the level of *purchase occasions*: all of a customer's
transactions on one calendar day with a non-negative amount form one occasion, as
in the buy-till-you-die literature. Negative amounts are returns: they reduce net
spend and feed the return features but are not purchases.

How it is computed, and why: DuckDB reads the source (in-memory frame, Arrow table
or Parquet file; for Parquet it skips row groups wholly after the cutoff by their
statistics), keeps the transactions on or before the cutoff and returns them sorted
by customer and day, as Arrow. Everything per customer is then a segmented
reduction over contiguous runs of that sorted array in NumPy (``ufunc.reduceat``,
``bincount``), by blocks of whole customers on a few threads. At 10M transactions this
replaces three string-keyed passes of the earlier pure-SQL plan (a hash group-by on
customer-day with ~as many groups as rows, a window sort for the gaps between
occasions, and a final group-by) with a single parallel sort, several times faster
for the same results. Distinct counts of the optional ``product``/``channel``
columns stay in SQL (a second query, only when those columns exist): they need
hashing anyway.

Semantics follow SQL exactly: a NULL amount is neither a purchase nor a return, NaN
compares above every number (so it counts as a purchase and propagates through
sums), and sums of columns with NULLs skip the NULLs (NULL when nothing is left).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard.features.sortkeys import pack_keys

__all__ = ["aggregate_customers", "count_purchase_days", "to_date"]

_EPOCH = dt.date(1970, 1, 1)
#: Rows per block of the NumPy stage (whole customers; see _aggregate_sorted).
_BLOCK_ROWS = 1 << 18
_THREADS = max(1, min(os.cpu_count() or 1, 8))


class _Spec(NamedTuple):
    """What the per-customer reductions need besides the rows."""

    cutoff_day: int
    windows: tuple[int, ...]
    trend_window: int


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
    # A library must not draw DuckDB's progress bar on the caller's stdout (it does
    # for any query over 2 s, e.g. every build on a 10M-row log).
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:
        # Under Jupyter without ipywidgets DuckDB refuses to touch the setting (and
        # draws no bar there either), so there is nothing to turn off.
        pass
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
    """DATE column as int32 days since the epoch (no NULLs: the cutoff filter drops them)."""
    chunks = [chunk.view(pa.int32()) for chunk in column.chunks]
    return np.asarray(pa.chunked_array(chunks, type=pa.int32()).to_numpy(), dtype=np.int32)


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
    """Per-customer occasion features from purchase rows sorted by customer and day.

    Works on rows, never materialising occasions: a row opens an occasion when its
    day differs from the row before (or it starts a customer), and same-day rows add
    a zero step, which changes neither the largest gap nor the sum of squared gaps.
    """
    n = len(bday)
    first = np.flatnonzero(bnew)
    lengths = np.diff(np.append(first, n))
    last = first + lengths - 1
    step = np.zeros(n, dtype=np.int64)
    np.subtract(bday[1:], bday[:-1], out=step[1:])
    step[first] = 0
    new_occ = step != 0
    new_occ[first] = True
    n_occ = np.add.reduceat(new_occ, first, dtype=np.int64)

    n_gaps = n_occ - 1
    has_gap = n_gaps > 0
    # Population std from exact integer moments: the sum of gaps telescopes to last - first.
    s1 = (bday[last] - bday[first]).astype(np.int64)
    s2 = np.add.reduceat(step * step, first)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_std = np.where(
            has_gap, np.sqrt((n_gaps * s2 - s1 * s1).astype(np.float64)) / n_gaps, np.nan
        )
    in_first = bday == np.repeat(bday[first], lengths)

    out: dict[str, Any] = {
        "n_purchases": n_occ,
        "first_age": (cutoff_day - bday[first]).astype(np.int64),
        "last_age": (cutoff_day - bday[last]).astype(np.int64),
        "first_gross": np.add.reduceat(np.where(in_first, bgross, 0.0), first),
        "gap_std": gap_std,
        "gap_max": np.maximum.reduceat(step, first),
        "has_gap": has_gap,
    }
    out.update(_window_features(bday, bgross, new_occ, bnew, cutoff_day, windows, trend_window))
    return out


def _window_features(
    bday: np.ndarray,
    bgross: np.ndarray,
    new_occ: np.ndarray,
    bnew: np.ndarray,
    cutoff_day: int,
    windows: Sequence[int],
    trend_window: int,
) -> dict[str, np.ndarray]:
    """Occasion counts and spend per trailing window and for the previous trend window.

    One pass for all windows: each row falls in one band between consecutive window
    edges (by its age, days before the cutoff); two ``bincount`` calls sum the bands
    per customer and a window is a run of bands.
    """
    tw = int(trend_window)
    edges = np.array(sorted({int(w) for w in windows} | {tw, 2 * tw}), dtype=np.int64)
    n_bands = len(edges) + 1
    # key = customer * n_bands + band, the band being the number of edges <= age,
    # looked up in a small table by age (one gather instead of a pass per edge).
    age = cutoff_day - bday
    top = int(edges[-1])
    band_of_age = np.searchsorted(edges, np.arange(top + 1), side="right").astype(np.int64)
    key = np.cumsum(bnew, dtype=np.int64) - 1
    key *= n_bands
    key += band_of_age[np.minimum(age, top)]
    n_cust = int(bnew.sum())
    size = n_cust * n_bands
    counts = np.bincount(key, weights=new_occ, minlength=size).reshape(n_cust, n_bands)
    spend = np.bincount(key, weights=bgross, minlength=size).reshape(n_cust, n_bands)
    at = {int(e): i for i, e in enumerate(edges)}
    out: dict[str, np.ndarray] = {}
    for w in windows:
        k = at[int(w)] + 1
        out[f"purchases_{w}d"] = counts[:, :k].sum(axis=1).astype(np.int64)
        out[f"spend_{w}d"] = spend[:, :k].sum(axis=1)
    lo, hi = at[tw] + 1, at[2 * tw] + 1
    out[f"purchases_prev_{tw}d"] = counts[:, lo:hi].sum(axis=1).astype(np.int64)
    out[f"spend_prev_{tw}d"] = spend[:, lo:hi].sum(axis=1)
    return out


def _empty_frame(columns: list[str]) -> pd.DataFrame:
    ints = (
        "n_purchases",
        "first_age",
        "last_age",
        "gap_max",
        "purchases_",
        "n_products",
        "n_channels",
    )
    dtypes = {c: ("int64" if c.startswith(ints) else "float64") for c in columns}
    dtypes["customer_id"] = "object"
    return pd.DataFrame({c: pd.Series([], dtype=dtypes[c]) for c in columns})


def _block(rows: pa.Table, new_cust: np.ndarray, offset: int, spec: _Spec) -> dict[str, Any] | None:
    """Aggregates of the customers of one block of whole customers (None: no buyer in it)."""
    day = _days(rows.column("day"))
    amount, amount_valid = _floats(rows.column("amount"))
    starts = np.flatnonzero(new_cust)
    with np.errstate(invalid="ignore"):
        ret = amount < 0
    # SQL orders NaN above every number: a NaN amount is a purchase, never a return;
    # a NULL amount (NaN here too, told apart by the validity mask) is neither.
    buy = ~ret
    if amount_valid is not None:
        buy &= amount_valid

    totals: dict[str, Any] = {}
    if buy.all():
        totals["n_transactions"] = np.diff(np.append(starts, len(day))).astype(np.float64)
        totals["n_returns"] = np.zeros(len(starts))
        totals["returned_amount"] = np.zeros(len(starts))
        totals["gross_spend"] = np.add.reduceat(amount, starts)
        bday, bgross, bnew = day, amount, new_cust
        keep = np.arange(len(starts))
    else:
        totals["n_transactions"] = np.add.reduceat(buy, starts, dtype=np.int64).astype(np.float64)
        totals["n_returns"] = np.add.reduceat(ret, starts, dtype=np.int64).astype(np.float64)
        totals["returned_amount"] = 0.0 - np.add.reduceat(np.where(ret, amount, 0.0), starts)
        totals["gross_spend"] = np.add.reduceat(np.where(buy, amount, 0.0), starts)
        sel = np.flatnonzero(buy)
        if len(sel) == 0:
            return None
        bseg = (np.cumsum(new_cust) - 1)[sel]
        bday, bgross = day[sel], amount[sel]
        bnew = np.ones(len(sel), dtype=bool)
        bnew[1:] = bseg[1:] != bseg[:-1]
        keep = bseg[bnew]
    for col in ("margin", "quantity"):
        if col in rows.column_names:
            values, valid = _floats(rows.column(col))
            totals[f"{col}_total"] = _segment_sum(values, starts, valid)

    out: dict[str, Any] = {"row": starts[keep] + offset}
    out.update({name: values[keep] for name, values in totals.items()})
    out.update(
        _occasion_features(bday, bgross, bnew, spec.cutoff_day, spec.windows, spec.trend_window)
    )
    return out


def _block_bounds(starts: np.ndarray, n_rows: int, size: int) -> list[tuple[int, int]]:
    """Row ranges of about ``size`` rows that never split a customer."""
    at = np.searchsorted(starts, np.arange(size, n_rows, size))
    cuts = starts[at[at < len(starts)]]
    edges = np.unique(np.concatenate([[0], cuts, [n_rows]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _take(ids: pa.ChunkedArray, rows: np.ndarray) -> np.ndarray:
    """``ids[rows]`` (sorted row numbers) as an object array, chunk by chunk.

    Taking across a many-chunk array would first concatenate it, and pandas-style
    string deduplication is slow; neither is needed here.
    """
    bounds = np.cumsum([0] + [len(chunk) for chunk in ids.chunks])
    cut = np.searchsorted(rows, bounds)
    parts = [
        chunk.take(pa.array(rows[cut[i] : cut[i + 1]] - bounds[i])).to_numpy(zero_copy_only=False)
        for i, chunk in enumerate(ids.chunks)
        if cut[i + 1] > cut[i]
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def _aggregate_sorted(
    rows: pa.Table,
    new_cust: np.ndarray,
    ids_at: Callable[[np.ndarray], np.ndarray],
    spec: _Spec,
) -> pd.DataFrame | None:
    """Per-customer aggregates from rows sorted by customer then ``day`` (None: no buyer).

    ``new_cust`` flags the first row of each customer and ``ids_at`` gives the ids of
    rows by their numbers. The rows are cut into blocks of whole customers:
    block-sized temporaries stay in cache and are recycled by the allocator instead
    of being faulted in afresh for every full-length array, and blocks run on several
    threads (NumPy releases the GIL).
    """
    if rows.num_rows == 0:
        return None
    starts = np.flatnonzero(new_cust)
    bounds = _block_bounds(starts, rows.num_rows, _BLOCK_ROWS)

    def run(bound: tuple[int, int]) -> dict[str, Any] | None:
        a, b = bound
        return _block(rows.slice(a, b - a), new_cust[a:b], a, spec)

    if len(bounds) > 1 and _THREADS > 1:
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            parts = [p for p in pool.map(run, bounds) if p is not None]
    else:
        parts = [p for p in map(run, bounds) if p is not None]
    if not parts:
        return None
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    has_gap = merged.pop("has_gap")
    gap_max: Any = merged.pop("gap_max")
    if not has_gap.all():  # SQL MAX of no gap is NULL: a nullable integer column, as DuckDB gives
        gap_max = pd.array(gap_max, dtype="Int64")
        gap_max[~has_gap] = pd.NA
    frame: dict[str, Any] = {"customer_id": ids_at(merged.pop("row"))}
    for name in ("n_purchases", "n_transactions", "n_returns", "returned_amount", "gross_spend"):
        frame[name] = merged.pop(name)
    for name in ("first_age", "last_age", "first_gross", "gap_std"):
        frame[name] = merged.pop(name)
    frame["gap_max"] = gap_max
    totals = [name for name in ("margin_total", "quantity_total") if name in merged]
    frame.update({name: values for name, values in merged.items() if name not in totals})
    frame.update({name: merged[name] for name in totals})
    # copy=False keeps one block per column: consolidating would copy every column.
    return pd.DataFrame(frame, copy=False)


def _sorted_rows(
    con: duckdb.DuckDBPyConnection, tx: str
) -> tuple[pa.Table, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The rows of ``tx`` sorted by customer and day, first-row flags and an id lookup.

    Short text ids are sorted as packed integer keys (see
    :mod:`churnguard.features.sortkeys`), several times faster than as text; the
    ``day`` column then comes back from the keys and ``customer_id`` is dropped.
    """
    scan = _arrow(con, tx)
    keys = pack_keys(scan.column("customer_id"), _days(scan.column("day")))
    if keys is None:
        con.register("scan", scan)
        rows = _arrow(con, "SELECT * FROM scan ORDER BY customer_id, day")
        ids = rows.column("customer_id")
        return rows, _new_customer(ids), lambda at: _take(ids, at)
    names = [f"_k{i}" for i in range(len(keys.keys))]
    payload = [c for c in scan.column_names if c not in ("customer_id", "day")]
    keyed = pa.table(
        dict(zip(names, keys.keys, strict=True)) | {c: scan.column(c) for c in payload}
    )
    del scan
    con.register("keyed", keyed)
    ordered = _arrow(con, f"SELECT * FROM keyed ORDER BY {', '.join(names)}")
    con.unregister("keyed")
    del keyed
    words = [np.asarray(ordered.column(name).to_numpy()) for name in names]
    rows = pa.table({"day": keys.days(words)} | {c: ordered.column(c) for c in payload})
    return rows, keys.new_customer(words), lambda at: keys.ids([w[at] for w in words])


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
        recent = f"amount >= 0 AND day > {c} - {r}"
        distinct.append(f"COUNT(DISTINCT product) FILTER (WHERE {recent}) AS n_products_{r}d")
    if "channel" in opt:
        distinct.append("COUNT(DISTINCT channel) AS n_channels")

    con = _connect(source)
    try:
        rows, new_cust, ids_at = _sorted_rows(con, tx)
        extra = None
        if distinct:
            cols = [col for col in ("product", "channel") if col in opt]
            day = 'CAST("date" AS DATE)'
            sub = f"SELECT customer_id, {day} AS day, amount, {', '.join(cols)} FROM src"
            extra = con.execute(
                f"WITH tx AS ({sub} WHERE {day} <= {c}) "
                f"SELECT customer_id, {', '.join(distinct)} FROM tx GROUP BY customer_id"
            ).df()
    finally:
        con.close()

    spec = _Spec((cutoff - _EPOCH).days, tuple(windows), int(trend_window))
    out = _aggregate_sorted(rows, new_cust, ids_at, spec)
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


def count_purchase_days(source: Any, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Count purchase occasions per customer on days in ``(start, end]``.

    Returns
    -------
    DataFrame
        ``customer_id`` and ``purchases`` for customers with at least one occasion.
    """
    day = 'CAST("date" AS DATE)'
    query = f"""
    SELECT customer_id, COUNT(DISTINCT {day}) AS purchases
    FROM src
    WHERE amount >= 0 AND {day} > {_lit(start)} AND {day} <= {_lit(end)}
    GROUP BY customer_id
    """
    con = _connect(source)
    try:
        return con.execute(query).df()
    finally:
        con.close()
