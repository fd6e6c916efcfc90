"""How well a value prediction ranks and sizes what customers spend next.

The retention list is ordered by value at risk, so the value side is judged like the
churn side, out of time: predictions made as of a date against the spend actually
observed in the window that followed. Ranking is what orders the list (normalised
Gini, Spearman, share of next-window revenue captured by the top of the list);
size is what budgets are set with (decile-level error, aggregate error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from churnguard.exceptions import InputDataError

__all__ = [
    "VALUE_METRICS",
    "compare_values",
    "decile_table",
    "normalized_gini",
    "top_share",
    "value_report",
]

#: Keys of :func:`value_report`, in order.
VALUE_METRICS: tuple[str, ...] = (
    "gini",
    "spearman",
    "top_decile_share",
    "top20_share",
    "decile_mape",
    "aggregate_error",
    "actual_total",
    "predicted_total",
    "n",
)


def _arrays(actual: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if a.ndim != 1 or a.shape != p.shape or a.size == 0:
        raise InputDataError(
            "actual and predicted must be non-empty 1-D arrays of the same length; got shapes "
            f"{a.shape} and {p.shape}. Align both on customer_id first."
        )
    if not (np.isfinite(a).all() and np.isfinite(p).all()):
        raise InputDataError(
            "actual and predicted must be finite; fill missing spend with 0 and drop customers "
            "without a prediction first."
        )
    return a, p


def _captured(actual: np.ndarray, predicted: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Share of total actual captured by the top ``fraction`` of customers by prediction.

    Customers with tied predictions share the places at a cut pro rata (the expectation
    over random tie-breaking), so ties are never resolved in the model's favour.
    """
    total = actual.sum()
    order = np.argsort(-predicted, kind="stable")
    p, a = predicted[order], actual[order]
    # One group per distinct prediction: its size and its actual total.
    new = np.ones(len(p), dtype=bool)
    new[1:] = p[1:] != p[:-1]
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, len(p)))
    sums = np.add.reduceat(a, starts)
    cum_n = np.concatenate([[0], np.cumsum(sizes)])
    cum_a = np.concatenate([[0.0], np.cumsum(sums)])
    k = np.asarray(fraction, dtype=float) * len(p)
    g = np.clip(np.searchsorted(cum_n, k, side="right") - 1, 0, len(sizes) - 1)
    inside = np.clip(k - cum_n[g], 0, sizes[g])
    got = cum_a[g] + sums[g] * inside / sizes[g]
    return got / total if total > 0 else np.full_like(k, np.nan)


def normalized_gini(actual: Any, predicted: Any) -> float:
    """Gini of ``actual`` ordered by ``predicted``, over the Gini of the perfect order.

    1 is a perfect ranking of spend, 0 is random, negative is worse than random. Ties in
    the prediction count as their random-order expectation.
    """
    a, p = _arrays(actual, predicted)
    if a.sum() <= 0:
        return float("nan")
    grid = np.arange(1, len(a) + 1) / len(a)
    model = _captured(a, p, grid)
    best = _captured(a, a, grid)
    # Area between the cumulative capture curve and the diagonal (trapezoid-free: the
    # curve is evaluated at every customer).
    return float((model - grid).sum() / (best - grid).sum())


def top_share(actual: Any, predicted: Any, fraction: float = 0.1) -> float:
    """Share of total actual spend held by the top ``fraction`` of customers by prediction."""
    a, p = _arrays(actual, predicted)
    return float(_captured(a, p, np.array([fraction]))[0])


def decile_table(actual: Any, predicted: Any, n_bins: int = 10) -> pd.DataFrame:
    """Predicted and actual totals per decile of the prediction (highest first)."""
    a, p = _arrays(actual, predicted)
    order = np.argsort(-p, kind="stable")
    bins = np.minimum(np.arange(len(a)) * n_bins // len(a), n_bins - 1)
    d = np.empty(len(a), dtype=int)
    d[order] = bins
    return pd.DataFrame(
        {
            "decile": np.arange(1, n_bins + 1),
            "customers": np.bincount(d, minlength=n_bins),
            "predicted": np.bincount(d, weights=p, minlength=n_bins),
            "actual": np.bincount(d, weights=a, minlength=n_bins),
        }
    )


def value_report(actual: Any, predicted: Any) -> dict[str, float]:
    """Ranking and size metrics of a value prediction (see :data:`VALUE_METRICS`).

    ``decile_mape`` is the decile-level absolute error relative to the actual total,
    ``sum_d |predicted_d - actual_d| / sum_d actual_d`` over the ten deciles of the
    prediction: a plain mean of per-decile ratios is infinite as soon as a decile of
    lapsed customers spends nothing, which on most bases the bottom ones do.
    ``aggregate_error`` is ``(sum predicted - sum actual) / sum actual``.
    """
    a, p = _arrays(actual, predicted)
    total = float(a.sum())
    deciles = decile_table(a, p)
    rho = spearmanr(a, p).statistic if np.ptp(a) > 0 and np.ptp(p) > 0 else np.nan
    return {
        "gini": normalized_gini(a, p),
        "spearman": float(rho),
        "top_decile_share": top_share(a, p, 0.1),
        "top20_share": top_share(a, p, 0.2),
        "decile_mape": float((deciles["predicted"] - deciles["actual"]).abs().sum() / total)
        if total > 0
        else float("nan"),
        "aggregate_error": float((p.sum() - total) / total) if total > 0 else float("nan"),
        "actual_total": total,
        "predicted_total": float(p.sum()),
        "n": float(len(a)),
    }


def compare_values(actual: Any, predictions: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`value_report` of several predictions of the same customers, one row each."""
    if not isinstance(predictions, Mapping) or not predictions:
        raise TypeError("predictions must be a non-empty mapping of name to array.")
    rows = [{"score": name, **value_report(actual, pred)} for name, pred in predictions.items()]
    return pd.DataFrame(rows).set_index("score")
