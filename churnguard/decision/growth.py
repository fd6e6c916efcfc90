"""Growth candidates: stable-tier customers who behave like today's VIPs.

"Loyal is not profitable": a middle-tier customer whose behaviour (how often, how
recently, how long, how likely still active) matches the VIPs' but whose value does
not yet, is a *clone* of the best customers with potential above current value, the
best target for growth spend.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from churnguard._checks import check_number, require_columns, require_frame, require_numeric
from churnguard.decision._ranks import percentile_rank
from churnguard.decision.tiers import risk_band
from churnguard.exceptions import InputDataError

__all__ = [
    "DEFAULT_GROWTH_FEATURES",
    "GROWTH_FIT_ROWS",
    "flag_growth_candidates",
    "growth_candidates",
    "look_alike_scores",
]

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
    require_frame(df, "growth_candidates")
    require_columns(
        df, [tier_col], func="growth_candidates", hint="Add it with assign_value_tiers(df)."
    )
    cols = [c for c in DEFAULT_GROWTH_FEATURES if c in df.columns] if features is None else features
    if not cols:
        raise InputDataError(
            f"growth_candidates() found none of the behavioural features "
            f"{list(DEFAULT_GROWTH_FEATURES)}; pass features= naming columns that exist."
        )
    require_numeric(
        df, cols, func="growth_candidates", hint="Pass features= naming columns that exist."
    )
    is_vip = (df[tier_col].astype(str) == "vip").to_numpy()
    # Column by column into one matrix: no copy of the input columns on the way.
    x = np.empty((len(df), len(cols)))
    for j, col in enumerate(cols):
        x[:, j] = percentile_rank(df[col].to_numpy(dtype=float))
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
    require_frame(df, "flag_growth_candidates")
    check_number(threshold, "threshold", low=0.0, high=1.0, example="0.5")
    require_numeric(
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
