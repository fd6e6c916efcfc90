"""The snapshot table the churn and spend models of ChurnGuardModel learn from.

Why a module of its own: the table is built from plain data (the log, the cutoffs, the
feature builder and the value columns fitted at each cutoff), and the choices it makes
(which customers when the table would be too large, how a cutoff is labelled, which
columns are labels rather than churn signals) are easier to read apart from the fitting.
One row per customer and cutoff holds the features and value columns as of the cutoff
and the label of the window ``(cutoff + gap, cutoff + gap + horizon]``:
``future_purchases``, ``future_spend`` and ``churned`` (no purchase in the window).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from churnguard.features import FeatureBuilder
from churnguard.features.engine import window_activity
from churnguard.model.value_choice import ACTIVE_SPEND

__all__ = ["NOT_FEATURES", "snapshot_table"]

# A step of ChurnGuardModel.fit: its log lines keep the estimator's logger name.
log = logging.getLogger("churnguard.model.estimator")

#: Columns of a snapshot that are labels, ids or value (not churn signals): the list's
#: value columns are corrected by the value model after the churn model has scored, so
#: the churn model must not read them.
NOT_FEATURES = {
    "customer_id",
    "cutoff",
    "future_purchases",
    "future_spend",
    "churned",
    "expected_spend",
    "predicted_clv",
    "value_if_retained",
    ACTIVE_SPEND,
}


def _sample(tx: pd.DataFrame, n_cutoffs: int, max_rows: int) -> tuple[pd.DataFrame, int]:
    """The transactions of the customers the snapshots are built from, and their count.

    Every customer when customers x snapshots fits ``max_rows``; else the customers
    whose id hashes lowest (a sample that is the same on every run and does not depend
    on the order of the log).
    """
    ids = pd.Series(tx["customer_id"].unique())
    room = max(int(max_rows) // max(n_cutoffs, 1), 1_000)
    if len(ids) <= room:
        return tx, len(ids)
    hashes = pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()
    chosen = ids.iloc[np.argpartition(hashes, room - 1)[:room]]
    log.info(
        "snapshots from a fixed sample of %s of %s customers (max_snapshot_rows=%s)",
        f"{room:,}", f"{len(ids):,}", f"{int(max_rows):,}",
    )  # fmt: skip
    return tx.loc[tx["customer_id"].isin(chosen)], room


def snapshot_table(
    tx: pd.DataFrame,
    cutoffs: list[dt.date],
    builder: FeatureBuilder,
    values: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    gap_days: int,
    horizon_days: int,
    max_rows: int,
) -> tuple[pd.DataFrame, int]:
    """Labelled snapshots at ``cutoffs``, and the number of customers they are built from.

    Parameters
    ----------
    tx : DataFrame
        The canonical training log.
    cutoffs : list of datetime.date
        Snapshot dates, oldest first (at least one).
    builder : FeatureBuilder
        Fitted feature builder.
    values : callable
        The features at a cutoff -> the feature table with the value columns of purchase
        and spend models fitted at that cutoff.
    gap_days, horizon_days : int
        The label window of cutoff ``c`` is ``(c + gap, c + gap + horizon]``.
    max_rows : int
        Most rows (customers x snapshots); a larger base is sampled (see ``_sample``).
    """
    log.info("building %d snapshots (%s .. %s)", len(cutoffs), cutoffs[0], cutoffs[-1])
    sample, customers = _sample(tx, len(cutoffs), max_rows)
    frames = []
    for c, feats in builder.transform_many(sample, cutoffs):
        frame = values(feats)
        frame.insert(0, "cutoff", pd.Timestamp(c))
        start = c + dt.timedelta(days=int(gap_days))
        window = start + dt.timedelta(days=int(horizon_days))
        act = window_activity(sample, start, window).set_index("customer_id")
        act = act.reindex(pd.Index(feats["customer_id"], dtype=object))
        purchases = act["purchases"].fillna(0).to_numpy(dtype=np.int64)
        frame["future_purchases"] = purchases
        frame["future_spend"] = np.clip(act["spend"].fillna(0.0).to_numpy(dtype=float), 0, None)
        frame["churned"] = (purchases == 0).astype(np.int8)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), customers
