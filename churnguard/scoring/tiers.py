"""Value tiers (20/60/20), value concentration, risk bands and growth candidates.

Retention money is allocated unequally: the top 20% of customers by value (VIP)
get personal attention, the middle 60% (stable) get incentives and cross-sell,
the bottom 20% (low) get cheap automated contact at most. This module ranks a
per-customer frame into those tiers, reports how concentrated value is (the
Pareto view), turns churn probabilities into risk bands, and finds *growth
candidates*: stable-tier customers who behave like today's VIPs ("clones" of the
best customers) and so have potential above their current value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype
from sklearn.linear_model import LogisticRegression

from churnguard.exceptions import InputDataError

__all__ = [
    "DEFAULT_GROWTH_FEATURES",
    "GROWTH_FIT_ROWS",
    "RISK_BANDS",
    "TIERS",
    "assign_value_tiers",
    "concentration",
    "flag_growth_candidates",
    "growth_candidates",
    "look_alike_scores",
    "pareto_curve",
    "percentile_ranks",
    "risk_band",
    "value_score",
]

TIERS: tuple[str, str, str] = ("vip", "stable", "low")
"""Value tiers, best first."""

RISK_BANDS: tuple[str, str, str] = ("low", "medium", "high")
"""Churn-risk bands, safest first."""

GROWTH_FIT_ROWS = 200_000
"""Most customers the look-alike model of :func:`growth_candidates` is fitted on."""

DEFAULT_GROWTH_FEATURES: tuple[str, ...] = (
    "frequency",
    "monetary_value",
    "recency",
    "T",
    "expected_purchases",
    "p_alive",
)
"""Behavioural columns the look-alike model uses when they are present."""


# The private helpers below are shared with segments.py and playbook.py, so every
# stage of the decision layer words its errors the same way.
def _require_frame(df: object, func: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"{func}() expects a pandas DataFrame with one row per customer; "
            f"received {type(df).__name__}. Build the frame with churnguard's feature "
            "builder or pd.DataFrame(...)."
        )
    return df


def _require_columns(df: pd.DataFrame, columns: Sequence[str], *, func: str, hint: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        cols = [str(c) for c in df.columns]
        shown = ", ".join(cols[:25]) + (", ..." if len(cols) > 25 else "")
        raise InputDataError(
            f"{func}() needs column(s) {missing}, but the frame has [{shown}]. {hint}"
        )


def _require_numeric(df: pd.DataFrame, columns: Sequence[str], *, func: str, hint: str) -> None:
    """Check that ``columns`` exist, are numeric and hold no missing values."""
    _require_columns(df, columns, func=func, hint=hint)
    for col in columns:
        if not is_numeric_dtype(df[col]):
            raise TypeError(
                f"{func}(): column '{col}' must be numeric; received dtype {df[col].dtype}. "
                "Convert it with pd.to_numeric(df[col])."
            )
        n_missing = int(df[col].isna().sum())
        if n_missing:
            raise InputDataError(
                f"{func}(): column '{col}' has {n_missing} missing value(s); expected a value "
                "for every customer. Fill them (e.g. 0 for a customer with no spend) or drop "
                "those customers first."
            )


def _round_half_up(x: float) -> int:
    # Python's round() is banker's rounding (round(2.5) == 2); counts of customers
    # should move up at .5 so that 12.5 customers means 13, as a reader expects.
    return int(math.floor(x + 0.5))


def _check_number(value: object, name: str, *, low: float, high: float, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number; received {value!r} ({type(value).__name__}).")
    if not low <= float(value) <= high:
        raise ValueError(
            f"{name} must be in [{low}, {high}]; received {value}. Use e.g. {example}."
        )
    return float(value)


def _check_thresholds(thresholds: object) -> tuple[float, float]:
    """Validate risk-band edges ``0 <= low < high <= 1``."""
    if not isinstance(thresholds, Sequence) or len(thresholds) != 2:
        raise TypeError(
            f"risk thresholds must be two numbers, e.g. (0.3, 0.6); got {thresholds!r}."
        )
    lo, hi = (
        _check_number(t, "a risk threshold", low=0.0, high=1.0, example="0.3") for t in thresholds
    )
    if not lo < hi:
        raise ValueError(f"risk thresholds must be increasing (low < high); received ({lo}, {hi}).")
    return lo, hi


def _ranked_positions(score: pd.Series, df: pd.DataFrame) -> np.ndarray:
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


def _sorted_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _tie_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value: how many values are smaller, and how many are smaller or equal.

    One stable argsort and a pass over runs of equal values (searching every value
    in the sorted column costs twice as much on a million rows: random access).
    ``values`` must hold no NaN.
    """
    n = len(values)
    order, starts, sizes = _sorted_runs(values)
    below, upto = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    below[order] = np.repeat(starts, sizes)
    upto[order] = np.repeat(starts + sizes, sizes)
    return below, upto


def _percentile_rank(values: np.ndarray) -> np.ndarray:
    """Percentile ranks of one column, as ``Series.rank(pct=True, method="average")``."""
    v = np.asarray(values, dtype=float)
    valid = ~np.isnan(v)
    m = int(valid.sum())
    order, starts, sizes = _sorted_runs(v if m == len(v) else v[valid])
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
    out = {col: _percentile_rank(frame[col].to_numpy(dtype=float)) for col in frame.columns}
    return pd.DataFrame(out, index=frame.index)


def _check_weights(weights: object) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise TypeError(
            "weights must be a mapping of column name to weight, e.g. "
            f"{{'predicted_clv': 0.5, 'total_spend': 0.5}}; received {type(weights).__name__}."
        )
    if not weights:
        raise ValueError(
            "weights is empty; name at least one value column, e.g. {'predicted_clv': 1.0}."
        )
    checked: dict[str, float] = {}
    for col, w in weights.items():
        checked[str(col)] = _check_number(
            w, f"weight of '{col}'", low=0.0, high=math.inf, example="0.5 (0 ignores it)"
        )
    if sum(checked.values()) <= 0:
        raise ValueError(f"weights {checked} sum to 0; give at least one column a positive weight.")
    return checked


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
        ``{"predicted_clv": 0.5, "total_spend": 0.5}``; when the frame has a
        ``margin_total`` column, margin replaces revenue:
        ``{"predicted_clv": 0.5, "margin_total": 0.5}``.

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
    _require_frame(df, "value_score")
    if weights is None:
        # Margin measures what a customer is worth better than revenue when it is known.
        history = "margin_total" if "margin_total" in df.columns else "total_spend"
        weights = {"predicted_clv": 0.5, history: 0.5}
    w = _check_weights(weights)
    _require_numeric(
        df,
        list(w),
        func="value_score",
        hint=(
            "Join the missing column (predicted_clv comes from the CLV model, total_spend "
            "from the feature builder) or pass weights= naming columns that exist, "
            "e.g. weights={'total_spend': 1.0}."
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
    _require_frame(df, "assign_value_tiers")
    if not isinstance(shares, Sequence) or len(shares) != 3:
        raise TypeError(f"shares must be three numbers, e.g. (0.2, 0.6, 0.2); received {shares!r}.")
    vip_share, stable_share, low_share = (
        _check_number(s, "each tier share", low=0.0, high=1.0, example="(0.2, 0.6, 0.2)")
        for s in shares
    )
    if not math.isclose(vip_share + stable_share + low_share, 1.0, abs_tol=1e-9):
        raise ValueError(
            f"shares must sum to 1; received {tuple(shares)}. Use e.g. (0.2, 0.6, 0.2)."
        )
    score = value_score(df, weights)
    n = len(df)
    n_vip = _round_half_up(n * vip_share)
    n_vip_or_stable = _round_half_up(n * (vip_share + stable_share))
    # Category codes (low=0, stable=1, vip=2), not text: one byte per customer.
    by_rank = np.zeros(n, dtype=np.int8)
    by_rank[:n_vip] = 2
    by_rank[n_vip:n_vip_or_stable] = 1
    codes = np.empty(n, dtype=np.int8)
    codes[_ranked_positions(score, df)] = by_rank
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
    _require_frame(df, "concentration")
    if isinstance(value_cols, str):
        raise TypeError(f"value_cols must be a sequence of names; use ({value_cols!r},).")
    top_share = _check_number(top_share, "top_share", low=1e-12, high=1.0, example="0.2")
    cols = list(value_cols)
    _require_numeric(
        df,
        cols,
        func="concentration",
        hint="Pass value_cols= naming the value columns that exist, e.g. ('total_spend',).",
    )
    n = len(df)
    n_top = min(n, max(1, _round_half_up(n * top_share))) if n else 0
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
        raise ValueError(
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
    lo, hi = _check_thresholds(thresholds)
    p = (
        churn_probability.astype(float)
        if isinstance(churn_probability, pd.Series)
        else pd.Series(np.asarray(churn_probability, dtype=float))
    )
    if p.isna().any() or ((p < 0) | (p > 1)).any():
        bad = p[p.isna() | (p < 0) | (p > 1)]
        raise ValueError(
            f"churn_probability must be in [0, 1] with no missing values; {len(bad)} value(s) "
            f"are not, e.g. {bad.head(3).tolist()}. Pass the classifier's predict_proba output."
        )
    band = pd.cut(p, bins=[-np.inf, lo, hi, np.inf], right=False, labels=list(RISK_BANDS))
    return band.rename("risk_band")


def growth_candidates(
    df: pd.DataFrame,
    features: Sequence[str] | None = None,
    tier_col: str = "value_tier",
) -> pd.Series:
    """Look-alike score: how much each customer behaves like today's VIPs.

    "Loyal is not profitable": a middle-tier customer whose behaviour (how
    often, how recently, how long, how likely still active) matches the VIPs'
    but whose value does not yet, is a *clone* of the best customers with
    potential above current value, the best target for growth spend.

    A logistic regression (VIP vs the rest, balanced classes so 0.5 means "as
    VIP-like as not") is fitted at every call on percentile ranks of the
    behavioural features: scale-free, and always today's VIPs. Deterministic;
    on bases larger than :data:`GROWTH_FIT_ROWS` it is fitted on a fixed-seed
    sample of that many customers and applied to all.

    Parameters
    ----------
    df : DataFrame
        One row per customer with ``tier_col`` (see :func:`assign_value_tiers`).
    features : sequence of str, optional
        Behavioural columns to compare on. Default: those of
        :data:`DEFAULT_GROWTH_FEATURES` that ``df`` has. Value columns
        (``predicted_clv``, ``total_spend``) are deliberately left out: they
        define the tiers, so they would only measure current value.
    tier_col : str, default "value_tier"
        Column holding ``vip`` / ``stable`` / ``low``.

    Returns
    -------
    Series
        Float in [0, 1] named ``growth_score``, indexed like ``df``; all
        ``nan`` (with a ``UserWarning``) when there are no VIPs or only VIPs,
        since there is then nothing to learn from.
    """
    _require_frame(df, "growth_candidates")
    _require_columns(
        df, [tier_col], func="growth_candidates", hint="Add it with assign_value_tiers(df)."
    )
    cols = [c for c in DEFAULT_GROWTH_FEATURES if c in df.columns] if features is None else features
    if not cols:
        raise InputDataError(
            f"growth_candidates() found none of the behavioural features "
            f"{list(DEFAULT_GROWTH_FEATURES)}; pass features= naming columns that exist."
        )
    _require_numeric(
        df, cols, func="growth_candidates", hint="Pass features= naming columns that exist."
    )
    is_vip = (df[tier_col].astype(str) == "vip").to_numpy()
    # Column by column into one matrix: no copy of the input columns on the way.
    x = np.empty((len(df), len(cols)))
    for j, col in enumerate(cols):
        x[:, j] = _percentile_rank(df[col].to_numpy(dtype=float))
    return pd.Series(look_alike_scores(x, is_vip), index=df.index, name="growth_score")


_PREDICT_ROWS = 1_000_000


def look_alike_scores(x: np.ndarray, is_vip: np.ndarray) -> np.ndarray:
    """The look-alike score of :func:`growth_candidates` from its feature matrix.

    Parameters
    ----------
    x : ndarray of shape (n_customers, n_features)
        Percentile ranks of the behavioural features, as ``growth_candidates`` builds them.
    is_vip : ndarray of bool
        Whether each customer is in the VIP tier.

    Returns
    -------
    ndarray of float
        P(VIP-like) per customer; all ``nan`` (with a ``UserWarning``) when every
        customer or none is VIP.
    """
    is_vip = np.asarray(is_vip, dtype=bool)
    if is_vip.all() or not is_vip.any():
        warnings.warn(
            f"growth_candidates(): {int(is_vip.sum())} of {len(is_vip)} customers are VIP, so "
            "there is no contrast to learn a look-alike score from; returning nan.",
            UserWarning,
            stacklevel=3,
        )
        return np.full(len(is_vip), np.nan)
    fit_rows = np.arange(len(x))
    if len(x) > GROWTH_FIT_ROWS:
        # A handful of coefficients is pinned down long before a million rows; a
        # fixed-seed sample keeps the fit at a fraction of a second at any base size.
        rng = np.random.default_rng(0)
        fit_rows = np.sort(rng.choice(len(x), GROWTH_FIT_ROWS, replace=False))
    model = LogisticRegression(C=1.0, class_weight="balanced").fit(
        x[fit_rows], is_vip[fit_rows].astype(int)
    )
    # Predicted in blocks: predict_proba's temporaries would otherwise cost 24 bytes
    # per customer on top of the matrix. Rows are independent, so blocks change nothing.
    out = np.empty(len(x))
    for i in range(0, len(x), _PREDICT_ROWS):
        out[i : i + _PREDICT_ROWS] = model.predict_proba(x[i : i + _PREDICT_ROWS])[:, 1]
    return out


def flag_growth_candidates(
    df: pd.DataFrame,
    features: Sequence[str] | None = None,
    tier_col: str = "value_tier",
    threshold: float = 0.5,
    risk_thresholds: Sequence[float] = (0.3, 0.6),
    scores: pd.Series | None = None,
) -> pd.Series:
    """Flag stable-tier, not-high-risk customers who look like VIPs.

    True where the customer is in the ``stable`` tier, their
    :func:`growth_candidates` score is above ``threshold``, and their churn
    risk band (from ``churn_probability``) is ``low`` or ``medium``: growth
    spend goes to customers likely to stay, retention spend to the others.

    Parameters
    ----------
    df : DataFrame
        One row per customer with ``tier_col`` and ``churn_probability``.
    features, tier_col
        Passed to :func:`growth_candidates`.
    threshold : float, default 0.5
        Minimum look-alike score (exclusive), in [0, 1].
    risk_thresholds : two floats, default (0.3, 0.6)
        Passed to :func:`risk_band`.
    scores : Series, optional
        Look-alike scores already computed by :func:`growth_candidates` on ``df``
        (saves fitting the look-alike model twice).

    Returns
    -------
    Series
        Boolean named ``growth_candidate``, indexed like ``df``.
    """
    _require_frame(df, "flag_growth_candidates")
    _check_number(threshold, "threshold", low=0.0, high=1.0, example="0.5")
    _require_numeric(
        df,
        ["churn_probability"],
        func="flag_growth_candidates",
        hint="Join churn_probability from the churn classifier first.",
    )
    score = growth_candidates(df, features, tier_col) if scores is None else scores
    band = risk_band(df["churn_probability"], risk_thresholds)
    tiers = df[tier_col]
    if not isinstance(tiers.dtype, pd.CategoricalDtype):  # categories compare as codes
        tiers = tiers.astype(str)
    flag = (
        (tiers == "stable")
        & (score > threshold)  # nan compares False: no VIPs, no candidates
        & (band != "high")
    )
    return flag.astype(bool).rename("growth_candidate")
