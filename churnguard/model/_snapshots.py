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
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from churnguard._money import KEPT_SHARE
from churnguard._resources import cpu_budget
from churnguard.clv import DegenerateFitWarning
from churnguard.features import FeatureBuilder
from churnguard.features.engine import window_activity
from churnguard.model.value_choice import ACTIVE_SPEND

__all__ = ["NOT_FEATURES", "customer_sample", "in_order", "snapshot_table"]

#: Threads building snapshots at once (each holds one cutoff's frames).
_MAX_WORKERS = 2

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
    # A value factor carried for the value columns; a snapshot without returns has none.
    KEPT_SHARE,
}


def _sample(tx: pd.DataFrame, n_cutoffs: int, max_rows: int) -> tuple[pd.DataFrame, int]:
    """The transactions of the customers the snapshots are built from, and their count.

    Every customer when customers x snapshots fits ``max_rows``; else the customers
    whose id hashes lowest (a sample that is the same on every run and does not depend
    on the order of the log).
    """
    room = max(int(max_rows) // max(n_cutoffs, 1), 1_000)
    sample, total = customer_sample(tx, room)
    if total > room:
        log.info(
            "snapshots from a fixed sample of %s of %s customers (max_snapshot_rows=%s)",
            f"{room:,}", f"{total:,}", f"{int(max_rows):,}",
        )  # fmt: skip
    return sample, min(room, total)


def customer_sample(tx: pd.DataFrame, size: int) -> tuple[pd.DataFrame, int]:
    """The transactions of at most ``size`` customers, and how many customers ``tx`` has.

    The customers whose id hashes lowest: a sample that is the same on every run and
    does not depend on the order of the log. ``tx`` itself when it has no more.
    """
    ids = pd.Series(tx["customer_id"].unique())
    if len(ids) <= size:
        return tx, len(ids)
    hashes = pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()
    chosen = ids.iloc[np.argpartition(hashes, size - 1)[:size]]
    return tx.loc[tx["customer_id"].isin(chosen)], len(ids)


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

    def labelled(c: dt.date, feats: pd.DataFrame) -> pd.DataFrame:
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
        return frame

    # The fits of fit_first silence their DegenerateFitWarning (the kept model reports it).
    quiet = (RuntimeWarning, DegenerateFitWarning)
    frames = in_order(labelled, builder.transform_many(sample, cutoffs), quiet=quiet)
    return pd.concat(frames, ignore_index=True), customers


def in_order(
    task: Callable[[Any, Any], pd.DataFrame],
    items: Iterable[tuple[Any, Any]],
    workers: int | None = None,
    *,
    quiet: tuple[type[Warning], ...] = (RuntimeWarning,),
) -> list[pd.DataFrame]:
    """``[task(*item) for item in items]``, computed on ``workers`` threads.

    Each cutoff's purchase-model fit and closed forms are independent of the others and
    mostly NumPy/SciPy work that releases the GIL, so two cutoffs run at once on two
    cores (about 3 s less of a CDNOW train); the results are the same and in the same
    order. The inputs are bounded: at most one item waits beyond those running, so the
    producer never builds every cutoff's features ahead of the fits (the results are
    kept, as the sequential loop keeps them, until the caller concatenates them).

    Warnings of the ``quiet`` categories are ignored for the whole run, on one thread as
    on several. ``warnings.catch_warnings``, which the fits use to silence exactly these,
    is not thread-safe: a thread leaving its block restores the filter list it saw on
    entry, dropping another thread's additions. Ignored by an outer context, every list a
    thread can restore still ignores them, and the outer context restores the caller's
    filters at the end. lifetimes' fits, which also swap ``sys.stdout``, hold a lock of
    their own (:func:`churnguard.clv._estimator_support.quiet_fit`).
    """
    n = cpu_budget(_MAX_WORKERS) if workers is None else max(1, int(workers))
    out: list[pd.DataFrame] = []
    with warnings.catch_warnings():
        for category in quiet:
            warnings.simplefilter("ignore", category)
        if n == 1:
            return [task(*item) for item in items]
        with ThreadPoolExecutor(max_workers=n) as pool:
            pending: deque[Future[pd.DataFrame]] = deque()
            try:
                for item in items:
                    pending.append(pool.submit(task, *item))
                    if len(pending) > n:
                        out.append(pending.popleft().result())
                out.extend(future.result() for future in list(pending))
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    return out
