"""Ranks, ties and percentile ranks on large columns, without pandas' overhead.

Shared by the value tiers, RFM quintiles, the playbook's contact order and the growth
look-alike: each ranks millions of customers, deterministically (ties by customer id).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "lexsort_ties_by_id",
    "percentile_rank",
    "percentile_ranks",
    "ranked_positions",
    "sorted_runs",
    "tie_bounds",
]


def ranked_positions(score: pd.Series, df: pd.DataFrame) -> np.ndarray:
    """Row positions ordered best score first, ties by customer_id, then row position."""
    neg = -score.to_numpy(dtype=float)
    # A stable sort gives score order with ties by row position. Only rows whose
    # score is tied need the (slow) text comparison of ids, and tied rows sit
    # next to each other in that order, so they are re-sorted in place.
    order = np.argsort(neg, kind="stable")
    if "customer_id" not in df.columns or len(order) < 2:
        return order
    ordered = neg[order]
    same = ordered[1:] == ordered[:-1]
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    if not tied.any():
        return order
    rows = order[tied]
    key = pd.DataFrame(
        {
            "score": ordered[tied],
            "cid": df["customer_id"].astype(str).to_numpy()[rows],
            "pos": rows,
        }
    )
    order[tied] = key.sort_values(["score", "cid", "pos"])["pos"].to_numpy()
    return order


def lexsort_ties_by_id(keys: tuple[np.ndarray, ...], ids: np.ndarray | None) -> np.ndarray:
    """``np.lexsort((ids, *keys))``: ``keys`` as ``np.lexsort`` takes them (the last is the
    primary key), ties by ``ids``, then by row position; without ``ids``, ``np.lexsort(keys)``.

    Same positions as the one lexsort, but the text comparison of ids (most of the
    sort's time on a million rows) runs only on the rows whose keys are tied. NaN keys
    tie with each other, as in the sort.
    """
    order = np.lexsort(keys)
    if ids is None or len(order) < 2:
        return order
    same = np.ones(len(order) - 1, dtype=bool)
    for key in keys:
        ordered = np.asarray(key)[order]
        equal = ordered[1:] == ordered[:-1]
        if ordered.dtype.kind in "fc":
            equal |= np.isnan(ordered[1:]) & np.isnan(ordered[:-1])
        same &= equal
    if not same.any():
        return order
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    run = np.cumsum(np.r_[True, ~same])  # which run of equal keys each position is in
    rows = order[tied]
    # Runs stay in their slots (run numbers increase along the order); within a run the
    # stable lexsort puts ids in order and keeps the row order of equal ids.
    order[tied] = rows[np.lexsort((np.asarray(ids)[rows], run[tied]))]
    return order


def sorted_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stable argsort of ``values`` and the start and size of each run of equal values in it.

    ``values`` must hold no NaN.
    """
    n = len(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.ones(n, dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(new)
    return order, starts, np.diff(np.append(starts, n))


def tie_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value: how many values are smaller, and how many are smaller or equal.

    One stable argsort and a pass over runs of equal values (searching every value
    in the sorted column costs twice as much on a million rows: random access).
    ``values`` must hold no NaN.
    """
    n = len(values)
    order, starts, sizes = sorted_runs(values)
    below, upto = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    below[order] = np.repeat(starts, sizes)
    upto[order] = np.repeat(starts + sizes, sizes)
    return below, upto


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Percentile ranks of one column, as ``Series.rank(pct=True, method="average")``."""
    v = np.asarray(values, dtype=float)
    valid = ~np.isnan(v)
    m = int(valid.sum())
    order, starts, sizes = sorted_runs(v if m == len(v) else v[valid])
    ranked = np.empty(m)
    # The mean 1-based position of a run of ties is (below + 1 + upto) / 2, with
    # below = start and upto = start + size; straight from the runs, this needs no
    # per-value below/upto arrays (16 bytes per customer).
    ranked[order] = np.repeat((starts + 1 + (starts + sizes)) / 2 / m, sizes)
    if m == len(v):
        return ranked
    ranks = np.full(len(v), np.nan)
    ranks[valid] = ranked
    return ranks


def percentile_ranks(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame.rank(pct=True, method="average")``, several times faster on large frames.

    Each value's rank is the mean of the 1-based positions of its ties in the
    sorted column, divided by the column's count of non-missing values; missing
    values stay missing. Same numbers as pandas, bit for bit.
    """
    out = {col: percentile_rank(frame[col].to_numpy(dtype=float)) for col in frame.columns}
    return pd.DataFrame(out, index=frame.index)
