"""Value tiers (20/60/20), value concentration and risk bands.

Retention money is allocated unequally: the top 20% of customers by value (VIP)
get personal attention, the middle 60% (stable) get incentives and cross-sell,
the bottom 20% (low) get cheap automated contact at most. This module ranks a
per-customer frame into those tiers, reports how concentrated value is (the
Pareto view) and turns churn probabilities into risk bands. Growth candidates
(stable customers who look like VIPs) are in :mod:`churnguard.decision.growth`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from churnguard._checks import (
    check_number,
    check_thresholds,
    require_frame,
    require_numeric,
    round_half_up,
)
from churnguard.decision._ranks import percentile_ranks, ranked_positions
from churnguard.exceptions import ParameterError, ParameterTypeError

__all__ = [
    "RISK_BANDS",
    "TIERS",
    "assign_value_tiers",
    "default_tier_weights",
    "concentration",
    "pareto_curve",
    "risk_band",
    "value_score",
]

TIERS: tuple[str, str, str] = ("vip", "stable", "low")
"""Value tiers, best first."""

RISK_BANDS: tuple[str, str, str] = ("low", "medium", "high")
"""Churn-risk bands, safest first."""


def _check_weights(weights: object) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise ParameterTypeError(
            "weights must be a mapping of column name to weight, e.g. "
            f"{{'predicted_clv': 0.5, 'total_spend': 0.5}}; received {type(weights).__name__}."
        )
    if not weights:
        raise ParameterError(
            "weights is empty; name at least one value column, e.g. {'predicted_clv': 1.0}."
        )
    checked: dict[str, float] = {}
    for col, w in weights.items():
        checked[str(col)] = check_number(
            w, f"weight of '{col}'", low=0.0, high=math.inf, example="0.5 (0 ignores it)"
        )
    if sum(checked.values()) <= 0:
        raise ParameterError(
            f"weights {checked} sum to 0; give at least one column a positive weight."
        )
    return checked


def default_tier_weights(df: pd.DataFrame) -> dict[str, float]:
    """The default value-score weights: half future value, half historical value.

    The future value is ``value_if_retained`` when the frame has it, else
    ``predicted_clv``. A tier says how much a customer is worth, the risk band how
    likely they are to leave; ``predicted_clv`` already multiplies the value by the
    chance of staying, so tiers on it would push every valuable customer at risk out of
    ``vip`` and leave the playbook's "VIP at risk" treatment almost nobody to treat.
    Margin measures what a customer is worth better than revenue when it is known, so
    ``margin_total`` replaces ``total_spend`` when the frame has it.
    """
    future = "value_if_retained" if "value_if_retained" in df.columns else "predicted_clv"
    history = "margin_total" if "margin_total" in df.columns else "total_spend"
    return {future: 0.5, history: 0.5}


def value_score(df: pd.DataFrame, weights: Mapping[str, float] | None = None) -> pd.Series:
    """Weighted value score in (0, 1], higher is more valuable.

    Each weighted column is turned into its percentile rank among the customers
    of ``df`` before the weighted average is taken. Value columns live on very
    different, heavy-tailed scales (a 10-year CLV versus last year's revenue, a
    handful of whales): summing raw amounts would let the largest-scale column
    and its outliers decide everything. On ranks a weight means what it says:
    ``{"predicted_clv": 0.5, "total_spend": 0.5}`` gives the past and the
    predicted future the same say in the ordering.

    Parameters
    ----------
    df : DataFrame
        One row per customer.
    weights : mapping of str to float, optional
        Column name to non-negative weight (normalised to sum to 1). Default
        :func:`default_tier_weights`: ``{"value_if_retained": 0.5, "total_spend": 0.5}``
        (``predicted_clv`` when the frame has no ``value_if_retained``; ``margin_total``
        in place of revenue when present).

    Returns
    -------
    Series
        Float score named ``value_score``, indexed like ``df``.

    Raises
    ------
    InputDataError
        A weighted column is missing or has missing values (a ``ValueError``).
    TypeError, ValueError
        Bad ``df`` or column type; a negative, non-finite or all-zero weight.
    """
    require_frame(df, "value_score")
    w = _check_weights(default_tier_weights(df) if weights is None else weights)
    require_numeric(
        df,
        list(w),
        func="value_score",
        hint=(
            "Join the missing column (predicted_clv and value_if_retained come from the CLV "
            "model, total_spend from the feature builder) or pass weights= naming columns "
            "that exist, e.g. weights={'total_spend': 1.0}."
        ),
    )
    total = sum(w.values())
    ranks = percentile_ranks(df[list(w)])
    score = ranks.mul(pd.Series(w) / total, axis=1).sum(axis=1)
    return score.astype(float).rename("value_score")


def assign_value_tiers(
    df: pd.DataFrame,
    weights: Mapping[str, float] | None = None,
    shares: Sequence[float] = (0.2, 0.6, 0.2),
) -> pd.Series:
    """Split customers into ``vip`` / ``stable`` / ``low`` value tiers.

    Customers are ordered by :func:`value_score` (best first); ties are broken
    by ``customer_id`` (as text, ascending) when the column exists, otherwise by
    row position, so the result never depends on chance. The first
    ``round(n * shares[0])`` customers are VIP, the customers up to
    ``round(n * (shares[0] + shares[1]))`` are stable, the rest low, with
    halves rounded up. Proportions are therefore exact up to rounding
    (200/600/200 of 1000, 2/6/2 of 10), and customers with identical scores
    can land in different tiers at a boundary: exact proportions win over
    keeping ties together.

    Tiny bases follow the same rounding: with 1 or 2 customers everyone is
    ``stable`` (20% of them is less than half a customer, and there is nothing
    to contrast against); with 3 or 4 customers one is ``vip`` and one ``low``.

    Parameters
    ----------
    df : DataFrame
        One row per customer, with the columns named by ``weights``.
    weights : mapping of str to float, optional
        Passed to :func:`value_score`.
    shares : sequence of three floats, default (0.2, 0.6, 0.2)
        Shares of the vip, stable and low tiers; must sum to 1.

    Returns
    -------
    Series
        Ordered categorical named ``value_tier`` (``low < stable < vip``),
        indexed like ``df``.
    """
    require_frame(df, "assign_value_tiers")
    if not isinstance(shares, Sequence) or len(shares) != 3:
        raise ParameterTypeError(
            f"shares must be three numbers, e.g. (0.2, 0.6, 0.2); received {shares!r}."
        )
    vip_share, stable_share, low_share = (
        check_number(s, "each tier share", low=0.0, high=1.0, example="(0.2, 0.6, 0.2)")
        for s in shares
    )
    if not math.isclose(vip_share + stable_share + low_share, 1.0, abs_tol=1e-9):
        raise ParameterError(
            f"shares must sum to 1; received {tuple(shares)}. Use e.g. (0.2, 0.6, 0.2)."
        )
    score = value_score(df, weights)
    n = len(df)
    n_vip = round_half_up(n * vip_share)
    n_vip_or_stable = round_half_up(n * (vip_share + stable_share))
    # Category codes (low=0, stable=1, vip=2), not text: one byte per customer.
    by_rank = np.zeros(n, dtype=np.int8)
    by_rank[:n_vip] = 2
    by_rank[n_vip:n_vip_or_stable] = 1
    codes = np.empty(n, dtype=np.int8)
    codes[ranked_positions(score, df)] = by_rank
    cat = pd.Categorical.from_codes(codes, categories=pd.Index(list(reversed(TIERS))), ordered=True)
    return pd.Series(cat, index=df.index, name="value_tier")


def concentration(
    df: pd.DataFrame,
    value_cols: Sequence[str] = ("total_spend", "predicted_clv"),
    top_share: float = 0.2,
) -> dict[str, Any]:
    """How much of each value column the top customers hold (the Pareto view).

    For each column separately, customers are ranked by that column and the
    top ``round(n * top_share)`` of them (at least one) are taken. Shares are
    of the net column total, so with negative values (net refunds) a share can
    exceed 1; a column whose total is <= 0 gets ``nan``.

    Parameters
    ----------
    df : DataFrame
        One row per customer.
    value_cols : sequence of str, default ("total_spend", "predicted_clv")
        Value columns to report on.
    top_share : float, default 0.2
        Fraction of customers counted as "top", in (0, 1].

    Returns
    -------
    dict
        ``n_customers``, ``top_fraction``, ``n_top``, ``customer_equity`` (sum of
        ``predicted_clv``, or ``None`` without that column) and one
        ``top_share_<column>`` entry per value column. Flat, so it can be logged
        as metrics directly.
    """
    require_frame(df, "concentration")
    if isinstance(value_cols, str):
        raise ParameterTypeError(f"value_cols must be a sequence of names; use ({value_cols!r},).")
    top_share = check_number(top_share, "top_share", low=1e-12, high=1.0, example="0.2")
    cols = list(value_cols)
    require_numeric(
        df,
        cols,
        func="concentration",
        hint="Pass value_cols= naming the value columns that exist, e.g. ('total_spend',).",
    )
    n = len(df)
    n_top = min(n, max(1, round_half_up(n * top_share))) if n else 0
    out: dict[str, Any] = {
        "n_customers": n,
        "top_fraction": float(top_share),
        "n_top": n_top,
        "customer_equity": (
            float(df["predicted_clv"].sum()) if "predicted_clv" in df.columns else None
        ),
    }
    for col in cols:
        values = np.sort(df[col].to_numpy(dtype=float))[::-1]
        total = values.sum()
        out[f"top_share_{col}"] = float(values[:n_top].sum() / total) if total > 0 else math.nan
    return out


def pareto_curve(values: pd.Series | np.ndarray | Sequence[float]) -> pd.DataFrame:
    """Cumulative share of value against cumulative share of customers.

    Customers are sorted by value, largest first; the curve runs from (0, 0)
    to (1, 1). At ``share_customers == 0.2`` it reads "the top 20% hold X%".

    Parameters
    ----------
    values : array-like of float
        One value per customer (e.g. ``df["total_spend"]``), no missing values.

    Returns
    -------
    DataFrame
        Columns ``share_customers`` and ``share_value``, ``len(values) + 1`` rows.
    """
    arr = np.asarray(values, dtype=float)
    total = arr.sum()
    if arr.ndim != 1 or arr.size == 0 or np.isnan(arr).any() or total <= 0:
        raise ParameterError(
            "values must be a non-empty 1-D array with no missing values and a positive total; "
            f"received shape {arr.shape} summing to {total:.6g}. Fill or drop missing values; "
            "a Pareto curve of no value is undefined."
        )
    cum = np.concatenate([[0.0], np.cumsum(np.sort(arr)[::-1])])
    return pd.DataFrame(
        {
            "share_customers": np.arange(arr.size + 1) / arr.size,
            "share_value": cum / total,
        }
    )


def risk_band(
    churn_probability: pd.Series | np.ndarray | Sequence[float],
    thresholds: Sequence[float] = (0.3, 0.6),
) -> pd.Series:
    """Band churn probabilities into ``low`` / ``medium`` / ``high`` risk.

    ``p < thresholds[0]`` is low, ``thresholds[0] <= p < thresholds[1]`` is
    medium, ``p >= thresholds[1]`` is high.

    Parameters
    ----------
    churn_probability : array-like of float
        Probabilities in [0, 1]. A Series keeps its index.
    thresholds : two floats, default (0.3, 0.6)
        Band edges, ``0 <= low_edge < high_edge <= 1``.

    Returns
    -------
    Series
        Ordered categorical named ``risk_band`` (``low < medium < high``).
    """
    lo, hi = check_thresholds(thresholds)
    p = (
        churn_probability.astype(float)
        if isinstance(churn_probability, pd.Series)
        else pd.Series(np.asarray(churn_probability, dtype=float))
    )
    if p.isna().any() or ((p < 0) | (p > 1)).any():
        bad = p[p.isna() | (p < 0) | (p > 1)]
        raise ParameterError(
            f"churn_probability must be in [0, 1] with no missing values; {len(bad)} value(s) "
            f"are not, e.g. {bad.head(3).tolist()}. Pass the classifier's predict_proba output."
        )
    band = pd.cut(p, bins=[-np.inf, lo, hi, np.inf], right=False, labels=list(RISK_BANDS))
    return band.rename("risk_band")
