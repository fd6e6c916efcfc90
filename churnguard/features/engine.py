"""The aggregation engine behind the feature builder: one DuckDB query per cutoff.

Pandas alone needs several passes and a full sort to build regularity features on
tens of millions of rows; DuckDB does the whole point-in-time aggregation in one
parallel, bounded-memory query over the same in-memory frame (or Arrow table, or
Parquet file). The query works at the level of *purchase occasions*: all of a
customer's transactions on one calendar day with a non-negative amount form one
occasion, as in the buy-till-you-die literature. Negative amounts are returns:
they reduce net spend and feed the return features but are not purchases.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

__all__ = ["aggregate_customers", "count_purchase_days", "to_date"]


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
        purchase occasion on or before the cutoff.
    """
    c = _lit(cutoff)
    opt = set(optional)
    day_cols = ["customer_id", "day", "gross", "n_buy", "n_ret", "returned"]
    day_aggs = [
        "SUM(CASE WHEN amount >= 0 THEN amount ELSE 0 END) AS gross",
        "COUNT(*) FILTER (WHERE amount >= 0) AS n_buy",
        "COUNT(*) FILTER (WHERE amount < 0) AS n_ret",
        "COALESCE(-SUM(amount) FILTER (WHERE amount < 0), 0) AS returned",
    ]
    if "margin" in opt:
        day_aggs.append("SUM(margin) AS margin")
    elif "cost" in opt:
        day_aggs.append("SUM(amount - cost) AS margin")
    if "margin" in opt or "cost" in opt:
        day_cols.append("margin")
    if "quantity" in opt:
        day_aggs.append("SUM(quantity) FILTER (WHERE amount >= 0) AS quantity")
        day_cols.append("quantity")

    cust = [
        "customer_id",
        "COUNT(*) FILTER (WHERE n_buy > 0) AS n_purchases",
        "SUM(n_buy) AS n_transactions",
        "SUM(n_ret) AS n_returns",
        "SUM(returned) AS returned_amount",
        "SUM(gross) AS gross_spend",
        f"{c} - MIN(day) FILTER (WHERE n_buy > 0) AS first_age",
        f"{c} - MAX(day) FILTER (WHERE n_buy > 0) AS last_age",
        "ARG_MIN(gross, day) FILTER (WHERE n_buy > 0) AS first_gross",
        "STDDEV_POP(gap) AS gap_std",
        "MAX(gap) AS gap_max",
    ]
    for w in windows:
        inside = f"n_buy > 0 AND day > {c} - {int(w)}"
        cust.append(f"COUNT(*) FILTER (WHERE {inside}) AS purchases_{w}d")
        cust.append(f"COALESCE(SUM(gross) FILTER (WHERE {inside}), 0) AS spend_{w}d")
    tw = int(trend_window)
    prev = f"n_buy > 0 AND day > {c} - {2 * tw} AND day <= {c} - {tw}"
    cust.append(f"COUNT(*) FILTER (WHERE {prev}) AS purchases_prev_{tw}d")
    cust.append(f"COALESCE(SUM(gross) FILTER (WHERE {prev}), 0) AS spend_prev_{tw}d")
    if "margin" in day_cols:
        cust.append("SUM(margin) AS margin_total")
    if "quantity" in day_cols:
        cust.append("SUM(quantity) AS quantity_total")

    extra_ctes = ""
    joins = ""
    tx_aggs = []
    if "product" in opt:
        tx_aggs.append("COUNT(DISTINCT product) FILTER (WHERE amount >= 0) AS n_products")
        tx_aggs.append(
            f"COUNT(DISTINCT product) FILTER (WHERE amount >= 0 AND day > {c} - {int(recent_window)})"
            f" AS n_products_{int(recent_window)}d"
        )
    if "channel" in opt:
        tx_aggs.append("COUNT(DISTINCT channel) AS n_channels")
    if tx_aggs:
        extra_ctes = f", txa AS (SELECT customer_id, {', '.join(tx_aggs)} FROM tx GROUP BY customer_id)"
        joins = " LEFT JOIN txa USING (customer_id)"

    select_tx = ["customer_id", 'CAST("date" AS DATE) AS day', "amount"] + [
        col for col in ("margin", "cost", "quantity", "product", "channel") if col in opt
    ]
    query = f"""
    WITH tx AS (
        SELECT {", ".join(select_tx)} FROM src WHERE CAST("date" AS DATE) <= {c}
    ),
    days AS (
        SELECT customer_id, day, {", ".join(day_aggs)} FROM tx GROUP BY customer_id, day
    ),
    occ AS (
        SELECT {", ".join(day_cols)},
            CASE WHEN n_buy > 0 THEN
                day - LAG(day) OVER (PARTITION BY customer_id, n_buy > 0 ORDER BY day)
            END AS gap
        FROM days
    ),
    cust AS (
        SELECT {", ".join(cust)} FROM occ GROUP BY customer_id
        HAVING COUNT(*) FILTER (WHERE n_buy > 0) > 0
    ){extra_ctes}
    SELECT * FROM cust{joins}
    """
    con = _connect(source)
    try:
        return con.execute(query).df()
    finally:
        con.close()


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
