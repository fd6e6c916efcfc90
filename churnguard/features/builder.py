"""Point-in-time customer features: RFM (lifetimes-compatible) and behaviour.

Convention: a feature "as of" cutoff ``c`` uses every transaction dated on or
before ``c`` (the cutoff day counts as the past) and nothing after it. Times of
day are ignored: a transaction at 23:59 on the cutoff day is in the past.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from churnguard._dates import DAYS_PER_UNIT, to_date
from churnguard.data.columns import OPTIONAL_COLUMNS
from churnguard.exceptions import InputDataError, ParameterError, ParameterTypeError
from churnguard.features.engine import aggregate_customers, aggregate_customers_at, last_date

log = logging.getLogger(__name__)

__all__ = ["RFM_COLUMNS", "TIME_UNITS", "FeatureBuilder", "rfm_summary"]

#: Days per model time unit (the same table as churnguard._dates.DAYS_PER_UNIT).
TIME_UNITS = DAYS_PER_UNIT
RFM_COLUMNS = ["frequency", "recency", "T", "monetary_value"]
_REQUIRED = ("customer_id", "date", "amount")


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """``num / den`` with NaN where the denominator is zero (no basis for comparison)."""
    den = den.astype("float64")
    return (num.astype("float64") / den.where(den > 0)).astype("float64")


class FeatureBuilder(BaseEstimator):
    """Build one row of features per customer as of a cutoff date.

    ``fit`` learns the schema (which optional columns the log has, hence which
    features exist); ``transform`` computes the features at any cutoff, so the
    same fitted builder gives identical columns at training and scoring time.

    Parameters
    ----------
    time_unit : {"D", "W"}
        Unit of ``recency`` and ``T`` (days or weeks). Day-based behavioural
        features (``days_since_last``, gaps, windows) are always in days.
    windows : sequence of int
        Trailing windows (days) for spend and purchase counts.
    trend_window : int
        The trend features compare the last ``trend_window`` days with the
        ``trend_window`` days before them.

    Attributes
    ----------
    optional_columns_ : list of str
        Optional transaction columns found at fit time.
    feature_names_ : list of str
        Columns ``transform`` returns besides ``customer_id``.

    Notes
    -----
    * Purchase occasions: all transactions of a customer on one day with amount
      >= 0 form one occasion (zero amounts count, as in CDNOW). ``frequency`` is
      the number of *repeat* occasions; ``recency`` the time between the first and
      the last occasion; ``T`` the time from the first occasion to the cutoff;
      ``monetary_value`` the mean total of the repeat occasions (0 for one-time
      buyers), exactly as ``lifetimes.utils.summary_data_from_transaction_data``.
    * Single-purchase customers have ``frequency == 0``, ``recency == 0``, and NaN
      gap statistics and ``overdue_ratio`` (they have no usual gap yet).
    * Negative amounts are returns: they lower ``total_spend`` (net revenue) and
      feed ``return_rate``/``returned_amount``, but are not purchase occasions.
      A customer whose only transactions are returns has no row.
    """

    def __init__(
        self,
        time_unit: str = "D",
        windows: Sequence[int] = (30, 90, 180, 365),
        trend_window: int = 90,
    ) -> None:
        self.time_unit = time_unit
        self.windows = windows
        self.trend_window = trend_window

    def _validate_params(self) -> None:
        if self.time_unit not in TIME_UNITS:
            raise ParameterError(
                f"time_unit must be one of {list(TIME_UNITS)}; got {self.time_unit!r}."
            )
        if not self.windows or any(int(w) <= 0 for w in self.windows):
            raise ParameterError(f"windows must be positive day counts; got {self.windows!r}.")
        if int(self.trend_window) <= 0:
            raise ParameterError(
                f"trend_window must be a positive day count; got {self.trend_window!r}."
            )

    def fit(self, transactions: Any, y: Any = None) -> FeatureBuilder:
        """Learn which optional columns exist in ``transactions``.

        Parameters
        ----------
        transactions : DataFrame
            Canonical transactions (see :func:`churnguard.data.clean_transactions`).
        """
        self._validate_params()
        columns = _columns_of(transactions)
        self.optional_columns_ = [c for c in OPTIONAL_COLUMNS if c in columns]
        sample = pd.DataFrame(
            {
                "customer_id": pd.Series(["x"], dtype=object),
                "date": pd.to_datetime(["2000-01-01"]),
                "amount": [1.0],
            }
            | {
                c: ([1.0] if c in ("margin", "cost", "quantity") else ["a"])
                for c in self.optional_columns_
            }
        )
        self.feature_names_ = [
            c for c in self._compute(sample, dt.date(2000, 1, 1)).columns if c != "customer_id"
        ]
        return self

    def transform(self, transactions: Any, cutoff: Any = None) -> pd.DataFrame:
        """Compute the features as of ``cutoff``.

        Parameters
        ----------
        transactions : DataFrame, pyarrow.Table or str
            Canonical transactions, or the path of a Parquet file of them.
        cutoff : date-like, optional
            Last day counted as the past. Defaults to the last transaction date.

        Returns
        -------
        DataFrame
            ``customer_id`` plus :attr:`feature_names_`, one row per customer with a
            purchase on or before the cutoff, sorted by ``customer_id``.
        """
        check_is_fitted(self, "feature_names_")
        if cutoff is None:
            cutoff = last_date(transactions)
        missing = [c for c in self.optional_columns_ if c not in _columns_of(transactions)]
        if missing:
            # Optional means optional: the features built on a missing column are
            # missing (the churn model reads them as unknown), never an error.
            log.warning(
                "the log has no %s column(s), which the model was trained with; the features "
                "built on them are left missing",
                ", ".join(missing),
            )
            transactions = _with_missing(transactions, missing)
        out = self._compute(transactions, to_date(cutoff))
        columns = ["customer_id", *self.feature_names_]
        return out if list(out.columns) == columns else out[columns]

    def fit_transform(self, transactions: Any, y: Any = None, cutoff: Any = None) -> pd.DataFrame:
        """Fit, then transform at ``cutoff``."""
        return self.fit(transactions).transform(transactions, cutoff)

    def transform_many(
        self, transactions: Any, cutoffs: Sequence[Any]
    ) -> Iterator[tuple[dt.date, pd.DataFrame]]:
        """The features at each cutoff, sorting the log once (rolling snapshots).

        Same frames as :meth:`transform` at each cutoff, in increasing cutoff order;
        at 24 cutoffs of a 10M-row log about three times faster than 24 transforms.
        """
        check_is_fitted(self, "feature_names_")
        missing = [c for c in self.optional_columns_ if c not in _columns_of(transactions)]
        if missing:
            transactions = _with_missing(transactions, missing)
        columns = ["customer_id", *self.feature_names_]
        for cutoff, agg in aggregate_customers_at(
            transactions, [to_date(c) for c in cutoffs], **self._engine_args()
        ):
            out = self._finish(agg)
            yield cutoff, (out if list(out.columns) == columns else out[columns])

    def _engine_args(self) -> dict[str, Any]:
        return {
            "windows": sorted({int(w) for w in self.windows}),
            "trend_window": int(self.trend_window),
            "optional": getattr(self, "optional_columns_", []),
        }

    def _compute(self, transactions: Any, cutoff: dt.date) -> pd.DataFrame:
        return self._finish(aggregate_customers(transactions, cutoff, **self._engine_args()))

    def _finish(self, agg: pd.DataFrame) -> pd.DataFrame:
        """Features from the engine's raw per-customer aggregates."""
        tw = int(self.trend_window)
        windows = sorted({int(w) for w in self.windows})
        unit = TIME_UNITS[self.time_unit]
        first_age = agg["first_age"].astype("float64")
        last_age = agg["last_age"].astype("float64")
        frequency = (agg["n_purchases"] - 1).astype("int64")
        recency_days = first_age - last_age
        repeat_spend = agg["gross_spend"] - agg["first_gross"]
        f: dict[str, Any] = {"customer_id": agg["customer_id"].astype(object)}
        f["frequency"] = frequency
        f["recency"] = recency_days / unit
        f["T"] = first_age / unit
        f["monetary_value"] = np.where(frequency > 0, repeat_spend / frequency.clip(lower=1), 0.0)
        f["n_purchases"] = agg["n_purchases"].to_numpy("int64")
        f["n_transactions"] = agg["n_transactions"].to_numpy("int64")
        f["total_spend"] = agg["gross_spend"] - agg["returned_amount"]
        f["avg_purchase_value"] = agg["gross_spend"] / agg["n_purchases"]
        f["days_since_first"] = first_age
        f["days_since_last"] = last_age
        mean_gap = (recency_days / frequency.where(frequency > 0)).astype("float64")
        f["mean_gap_days"] = mean_gap
        f["gap_std_days"] = agg["gap_std"].astype("float64").where(frequency > 1)
        f["gap_cv"] = f["gap_std_days"] / mean_gap
        f["max_gap_days"] = agg["gap_max"].astype("float64")
        f["overdue_ratio"] = last_age / mean_gap
        f["purchase_rate_per_year"] = agg["n_purchases"] / np.maximum(first_age, 1.0) * 365.25
        for w in windows:
            f[f"purchases_{w}d"] = agg[f"purchases_{w}d"].to_numpy("int64")
            f[f"spend_{w}d"] = agg[f"spend_{w}d"].to_numpy("float64")
        f[f"spend_prev_{tw}d"] = agg[f"spend_prev_{tw}d"].to_numpy("float64")
        f[f"purchases_prev_{tw}d"] = agg[f"purchases_prev_{tw}d"].to_numpy("int64")
        recent_spend = _window_spend(agg, tw)
        recent_count = _window_count(agg, tw)
        f[f"spend_ratio_{tw}d"] = _ratio(recent_spend, agg[f"spend_prev_{tw}d"])
        f[f"purchases_ratio_{tw}d"] = _ratio(recent_count, agg[f"purchases_prev_{tw}d"])
        f["n_returns"] = agg["n_returns"].to_numpy("int64")
        f["returned_amount"] = agg["returned_amount"].to_numpy("float64")
        f["return_rate"] = agg["n_returns"] / (agg["n_transactions"] + agg["n_returns"])
        if "margin_total" in agg:
            f["margin_total"] = agg["margin_total"].to_numpy("float64")
            f["margin_rate"] = _ratio(agg["margin_total"], agg["gross_spend"])
        if "quantity_total" in agg:
            f["quantity_total"] = agg["quantity_total"].to_numpy("float64")
            f["avg_quantity_per_purchase"] = agg["quantity_total"] / agg["n_purchases"]
        for col in [c for c in agg.columns if c.startswith("n_products") or c == "n_channels"]:
            f[col] = agg[col].fillna(0).astype("int64")
        # One frame from arrays, without copies: assigning ~30 columns one by one to a
        # frame copies each (a quarter of a second at 1M customers).
        out = pd.DataFrame({k: np.asarray(v) for k, v in f.items()}, copy=False)
        if not out["customer_id"].is_monotonic_increasing:  # the engine already sorts
            out = out.sort_values("customer_id", kind="stable").reset_index(drop=True)
        return out


def _window_spend(agg: pd.DataFrame, days: int) -> pd.Series:
    if f"spend_{days}d" in agg:
        return agg[f"spend_{days}d"]
    raise ParameterError(f"trend_window={days} must be one of the windows.")


def _window_count(agg: pd.DataFrame, days: int) -> pd.Series:
    if f"purchases_{days}d" in agg:
        return agg[f"purchases_{days}d"]
    raise ParameterError(f"trend_window={days} must be one of the windows.")


def _with_missing(transactions: Any, columns: list[str]) -> Any:
    """``transactions`` with the given optional columns added, all values missing."""
    import pyarrow as pa

    numeric = {"margin", "cost", "quantity"}
    if isinstance(transactions, pd.DataFrame):
        extra = {c: (np.nan if c in numeric else None) for c in columns}
        return transactions.assign(**extra)
    table = transactions
    if isinstance(transactions, str):
        import pyarrow.parquet as pq

        table = pq.read_table(transactions)
    for c in columns:
        kind = pa.float64() if c in numeric else pa.string()
        table = table.append_column(c, pa.nulls(table.num_rows, type=kind))
    return table


def _columns_of(transactions: Any) -> list[str]:
    if isinstance(transactions, pd.DataFrame):
        cols = list(transactions.columns)
    elif isinstance(transactions, str):
        import pyarrow.parquet as pq

        cols = list(pq.read_schema(transactions).names)
    elif hasattr(transactions, "column_names"):
        cols = list(transactions.column_names)
    else:
        raise ParameterTypeError(
            "transactions must be a pandas DataFrame, a pyarrow Table or a Parquet path; "
            f"got {type(transactions).__name__}."
        )
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        raise InputDataError(
            f"transactions lack the canonical columns {missing}; columns are {cols}. "
            "Load raw logs with churnguard.data.load_transactions (or clean_transactions) first."
        )
    return cols


def rfm_summary(transactions: Any, cutoff: Any = None, time_unit: str = "D") -> pd.DataFrame:
    """Return the lifetimes-compatible RFM table (``customer_id`` + :data:`RFM_COLUMNS`).

    Equivalent to ``lifetimes.utils.summary_data_from_transaction_data`` with
    ``observation_period_end=cutoff`` (and ``freq_multiplier=7`` for weeks), but
    vectorised in DuckDB and point-in-time: transactions after ``cutoff`` are ignored.
    """
    builder = FeatureBuilder(time_unit=time_unit).fit(transactions)
    return builder.transform(transactions, cutoff)[["customer_id", *RFM_COLUMNS]]
