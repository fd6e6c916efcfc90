"""Rows already in customer and day order, made ready for the per-customer reductions.

The rows of a log that :func:`churnguard.data.scan_transactions` has sorted already,
taken as they are (no second DuckDB pass, no second sort key), and the id lookup the
engine's sorted paths share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnguard.exceptions import ParameterError

__all__ = ["presorted_rows", "take_ids"]

_NS_PER_DAY = 86_400_000_000_000


def presorted_rows(
    table: pa.Table, starts: np.ndarray | None, optional: Sequence[str]
) -> tuple[pa.Table, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The engine's sorted rows, first-row flags and id lookup, from a scanned log.

    ``table`` holds canonical columns in customer and day order (``date`` as
    ``timestamp[ns]``, ``amount`` float64), as :func:`churnguard.data.scan_transactions`
    returns them, and ``starts`` the first row of each customer. Every row is kept
    (the engine drops those after a cutoff, as on its other paths). The columns are those
    of the engine's SQL (``day``, ``amount``, ``margin`` from ``margin`` or
    ``amount - cost``, ``quantity`` on purchases only), computed in Arrow with SQL's
    semantics: the day is the floor of the nanoseconds (as the engine's ``day_sql``),
    and NaN amounts count as purchases, as NaN compares above every number in SQL.
    """
    n = table.num_rows
    starts = np.asarray([] if starts is None else starts, dtype=np.int64)
    if n and (
        len(starts) == 0
        or starts[0] != 0
        or starts[-1] >= n
        or (len(starts) > 1 and not (np.diff(starts) > 0).all())
    ):
        raise ParameterError(
            "customer_starts must be the increasing first row of each customer of the "
            f"table, starting at 0 and below its {n:,} rows (as "
            "ScannedTransactions.customer_starts gives them); got "
            f"{len(starts):,} values from {starts[:3].tolist()}..."
        )
    stamps = np.asarray(table.column("date").combine_chunks().cast(pa.int64()).to_numpy())
    days = (stamps // _NS_PER_DAY).astype(np.int32)
    del stamps
    new_cust = np.zeros(n, dtype=bool)
    new_cust[starts] = True
    # Rows out of day order inside a customer would give wrong gaps and recency silently
    # (a public caller can pass any table): one pass over the days, ~1% of a build.
    back = np.flatnonzero((np.diff(days) < 0) & ~new_cust[1:])
    if back.size:
        raise ParameterError(
            f"customer_starts was given, but the table's rows are not in day order within "
            f"each customer (row {int(back[0]) + 1:,}, counting from 0, is dated before the row "
            "above it, of the same customer); pass a table as scan_transactions returns it, or "
            "leave customer_starts out to have the rows sorted."
        )
    amount = table.column("amount").combine_chunks().cast(pa.float64())
    payload: dict[str, pa.Array] = {"amount": amount}
    opt = set(optional)
    if "margin" in opt:
        payload["margin"] = table.column("margin").combine_chunks().cast(pa.float64())
    elif "cost" in opt:
        cost = table.column("cost").combine_chunks().cast(pa.float64())
        payload["margin"] = pc.subtract(amount, cost)
    if "quantity" in opt:
        purchase = pc.or_(pc.greater_equal(amount, 0.0), pc.is_nan(amount))
        quantity = table.column("quantity").combine_chunks().cast(pa.float64())
        payload["quantity"] = pc.if_else(purchase, quantity, pa.scalar(None, pa.float64()))
    rows = pa.table({"day": pa.array(days).view(pa.date32())} | payload)

    ids = table.column("customer_id")
    return rows, new_cust, lambda at: take_ids(ids, at)


def take_ids(ids: pa.ChunkedArray, rows: np.ndarray) -> np.ndarray:
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
