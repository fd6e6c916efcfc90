"""The scoring core: clean one part of a log, score its customers, set bad rows aside.

A *part* is the whole log (in memory), one customer partition of it (partitioned), or
one Spark partition: every customer's transactions lie in exactly one part, so parts
are scored independently by this one function and only the whole-base decision steps
(:func:`churnguard.decision.retention.decide`) see every customer. The executors only
decide how parts are formed and gathered.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard._dates import to_date
from churnguard.data import ColumnMap, LoadedTransactions, ScannedTransactions, clean_transactions
from churnguard.exceptions import InputDataError

__all__ = ["ScoredPart", "has_customers", "score_part"]


@dataclass
class ScoredPart:
    """One scored part: its customers (None when it has none), its rejects, its facts."""

    scored: pd.DataFrame | None
    quarantine: pd.DataFrame
    rows: int
    last_date: dt.date | None
    as_of: dt.date | None


def has_customers(transactions: pd.DataFrame | pa.Table, as_of: Any) -> bool:
    """Whether some customer has a purchase (amount >= 0) on or before ``as_of``."""
    day_after = pd.Timestamp(to_date(as_of)) + pd.Timedelta(days=1)
    if isinstance(transactions, pa.Table):
        dates, amounts = transactions.column("date"), transactions.column("amount")
        day = pa.scalar(day_after.to_datetime64(), type=dates.type)
        kept = pc.and_(pc.less(dates, day), pc.greater_equal(amounts, 0.0))
        return bool(pc.any(kept).as_py())
    return bool(((transactions["date"] < day_after) & (transactions["amount"] >= 0)).any())


def score_part(
    model: Any,
    part: pd.DataFrame | LoadedTransactions | ScannedTransactions,
    *,
    as_of: Any = None,
    columns: ColumnMap | None = None,
    reasons_limit: int | None,
    source: str = "<frame>",
    require_customers: bool = True,
    currency: str = "",
    num_threads: int | None = None,
) -> ScoredPart:
    """Clean ``part`` (unless already cleaned), score it as of ``as_of`` and keep its rejects.

    Parameters
    ----------
    model : ChurnGuardModel
        The fitted model (read only; parts may be scored on several threads).
    part : DataFrame, LoadedTransactions or ScannedTransactions
        Raw rows of the part (their index is their row number in the source), or rows
        cleaned already (as a pandas frame, or as the Arrow rows of a scan).
    as_of : date-like, optional
        Scoring date; default the part's last date.
    columns : ColumnMap, optional
        The raw rows' column names.
    reasons_limit : int or None
        See :meth:`ChurnGuardModel.predict`.
    source : str
        Named in messages.
    require_customers : bool
        Raise when no customer has a purchase on or before ``as_of`` (a whole log);
        a partition may simply have none.
    currency : str
        Prefix of money amounts in the reasons.
    num_threads : int, optional
        LightGBM threads of the models (default all cores; fewer when several parts
        are scored at once).
    """
    if isinstance(part, ScannedTransactions):
        # Arrow rows straight from the scan: the log never becomes a pandas frame.
        tx: pd.DataFrame | pa.Table = part.transactions
        quarantine, n_bad, last = part.quarantine, part.rows_quarantined, part.last_date
        n_rows = part.transactions.num_rows
    else:
        loaded = (
            part
            if isinstance(part, LoadedTransactions)
            else clean_transactions(part, columns, source=source)
        )
        tx, quarantine, n_bad = loaded.transactions, loaded.quarantine, loaded.n_quarantined
        last = to_date(tx["date"].max()) if len(tx) else None
        n_rows = len(tx)
        del loaded
    day = to_date(as_of) if as_of is not None else last
    scored = None
    if day is not None and has_customers(tx, day):
        frame = model.features(tx, day)
        del tx, part  # the scoring below needs the features only
        scored = model.predict_features(
            frame,
            reasons_limit=reasons_limit,
            currency=currency,
            copy=False,
            num_threads=num_threads,
            as_of=day,
        )
    elif require_customers:
        raise InputDataError(
            f"no customer has a purchase on or before {day}; choose a later --as-of."
        )
    return ScoredPart(scored, quarantine, n_rows + n_bad, last, day)
