"""Point-in-time customer features: RFM (lifetimes-compatible) and behaviour.

Convention: a feature "as of" cutoff ``c`` uses every transaction dated on or
before ``c`` (the cutoff day counts as the past) and nothing after it. Times of
day are ignored: a transaction at 23:59 on the cutoff day (or at 23:59:59.999999999, which a
plain DuckDB cast would round into the next day) is in the past.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from churnguard._dates import to_date
from churnguard.data.columns import OPTIONAL_COLUMNS
from churnguard.exceptions import ParameterError
from churnguard.features.compute import (
    RFM_COLUMNS,
    TIME_UNITS,
    columns_of,
    feature_frame,
    with_missing,
)
from churnguard.features.engine import aggregate_customers, aggregate_customers_at, last_date

log = logging.getLogger(__name__)

__all__ = ["RFM_COLUMNS", "TIME_UNITS", "FeatureBuilder", "rfm_summary"]


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
        columns = columns_of(transactions)
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
        missing = [c for c in self.optional_columns_ if c not in columns_of(transactions)]
        if missing:
            # Optional means optional: the features built on a missing column are
            # missing (the churn model reads them as unknown), never an error.
            log.warning(
                "the log has no %s column(s), which the model was trained with; the features "
                "built on them are left missing",
                ", ".join(missing),
            )
            transactions = with_missing(transactions, missing)
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
        missing = [c for c in self.optional_columns_ if c not in columns_of(transactions)]
        if missing:
            transactions = with_missing(transactions, missing)
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
        return feature_frame(
            agg, time_unit=self.time_unit, windows=self.windows, trend_window=self.trend_window
        )


def rfm_summary(transactions: Any, cutoff: Any = None, time_unit: str = "D") -> pd.DataFrame:
    """Return the lifetimes-compatible RFM table (``customer_id`` + :data:`RFM_COLUMNS`).

    Equivalent to ``lifetimes.utils.summary_data_from_transaction_data`` with
    ``observation_period_end=cutoff`` (and ``freq_multiplier=7`` for weeks), but
    vectorised in DuckDB and point-in-time: transactions after ``cutoff`` are ignored.
    """
    builder = FeatureBuilder(time_unit=time_unit).fit(transactions)
    return builder.transform(transactions, cutoff)[["customer_id", *RFM_COLUMNS]]
