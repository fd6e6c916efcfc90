"""Rolling historical snapshots: features at a cutoff plus the label that followed.

A snapshot at cutoff ``c`` pairs the features as of ``c`` with what happened in
the label window ``(c + gap, c + gap + horizon]``. A customer *churned* at ``c``
when they made no purchase in that window. A snapshot is usable for training only
when its label window is fully observed, i.e. ends on or before the last day of
the log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from churnguard._dates import to_date
from churnguard.exceptions import InsufficientHistoryError
from churnguard.features.builder import FeatureBuilder
from churnguard.features.engine import count_purchase_days, last_date

__all__ = ["label_window", "make_labels", "make_snapshots", "snapshot_cutoffs"]


def label_window(cutoff: Any, horizon_days: int, gap_days: int = 0) -> tuple[dt.date, dt.date]:
    """Return the label window ``(start, end]`` that follows ``cutoff``."""
    c = to_date(cutoff)
    start = c + dt.timedelta(days=int(gap_days))
    return start, start + dt.timedelta(days=int(horizon_days))


def snapshot_cutoffs(
    data_start: Any,
    data_end: Any,
    *,
    horizon_days: int,
    gap_days: int = 0,
    step_days: int = 28,
    n_snapshots: int | None = None,
    min_history_days: int = 28,
) -> list[dt.date]:
    """List cutoffs whose label windows are fully observed, oldest first.

    The latest cutoff is ``data_end - gap - horizon``; earlier ones step back by
    ``step_days`` while at least ``min_history_days`` of history precede them.

    Raises
    ------
    InsufficientHistoryError
        If not even one fully observed cutoff fits in the data.
    """
    start, end = to_date(data_start), to_date(data_end)
    latest = end - dt.timedelta(days=int(horizon_days) + int(gap_days))
    earliest = start + dt.timedelta(days=int(min_history_days))
    if latest < earliest:
        span = (end - start).days
        raise InsufficientHistoryError(
            f"the log spans {span} days ({start} to {end}), but a {horizon_days}-day horizon"
            f" with a {gap_days}-day gap and {min_history_days} days of history needs at least "
            f"{horizon_days + gap_days + min_history_days} days. Use a longer log or a shorter "
            "--horizon-days."
        )
    cutoffs: list[dt.date] = []
    c = latest
    while c >= earliest and (n_snapshots is None or len(cutoffs) < n_snapshots):
        cutoffs.append(c)
        c -= dt.timedelta(days=int(step_days))
    return sorted(cutoffs)


def make_labels(
    transactions: Any, customers: pd.Series, cutoff: Any, horizon_days: int, gap_days: int = 0
) -> pd.DataFrame:
    """Label ``customers`` at ``cutoff``: future purchases and ``churned`` (0/1).

    Returns
    -------
    DataFrame
        ``customer_id``, ``future_purchases`` (occasions in the label window) and
        ``churned`` (1 when there were none), in the order of ``customers``.
    """
    start, end = label_window(cutoff, horizon_days, gap_days)
    counts = count_purchase_days(transactions, start, end).set_index("customer_id")["purchases"]
    future = counts.reindex(pd.Index(customers, dtype=object)).fillna(0).astype("int64")
    return pd.DataFrame(
        {
            "customer_id": customers.to_numpy(),
            "future_purchases": future.to_numpy(),
            "churned": (future.to_numpy() == 0).astype("int8"),
        }
    )


def make_snapshots(
    transactions: Any,
    cutoffs: Sequence[Any],
    *,
    horizon_days: int,
    gap_days: int = 0,
    builder: FeatureBuilder | None = None,
    require_observed: bool = True,
) -> pd.DataFrame:
    """Stack features and labels at each cutoff.

    Parameters
    ----------
    transactions : DataFrame
        Canonical transactions.
    cutoffs : sequence of date-like
        Snapshot dates (see :func:`snapshot_cutoffs`).
    horizon_days, gap_days : int
        Label window ``(c + gap, c + gap + horizon]``.
    builder : FeatureBuilder, optional
        A fitted builder; a default one is fitted on ``transactions`` when omitted.
    require_observed : bool
        Refuse cutoffs whose label window runs past the end of the log (their
        labels would call customers churned who simply had no time to buy).

    Returns
    -------
    DataFrame
        ``cutoff`` (datetime), ``customer_id``, the features, ``future_purchases``
        and ``churned``; one row per customer and cutoff.
    """
    fb = builder if builder is not None else FeatureBuilder().fit(transactions)
    last = last_date(transactions)
    frames = []
    for cutoff in cutoffs:
        c = to_date(cutoff)
        _, end = label_window(c, horizon_days, gap_days)
        if require_observed and end > last:
            raise InsufficientHistoryError(
                f"the label window of cutoff {c} ends on {end}, "
                f"after the last transaction ({last}); "
                f"choose cutoffs on or before {last - dt.timedelta(days=horizon_days + gap_days)}."
            )
        feats = fb.transform(transactions, c)
        labels = make_labels(transactions, feats["customer_id"], c, horizon_days, gap_days)
        feats.insert(0, "cutoff", pd.Timestamp(c))
        feats["future_purchases"] = labels["future_purchases"].to_numpy()
        feats["churned"] = labels["churned"].to_numpy()
        frames.append(feats)
    if not frames:
        raise InsufficientHistoryError(
            "no cutoffs were given; expected at least one snapshot date."
        )
    return pd.concat(frames, ignore_index=True)
