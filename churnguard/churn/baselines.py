"""Baselines the churn model has to beat, computed on the same customers and date.

* ``recency``: days since the last purchase (longer = riskier). What a CRM team does
  without any model; a ranking, not a probability.
* ``btyd_expected``: the buy-till-you-die model's expected purchases over the horizon
  ``E[X]``, as the probability of none under a Poisson approximation, ``exp(-E[X])``.
  What a data scientist gets from ``lifetimes`` in an afternoon.
* ``btyd_p_no_purchase``: the same model's exact closed-form probability of no purchase
  in the horizon (Fader & Hardie). It is also the churn model's prior.

``1 - P(alive)`` is not a baseline: under BG/NBD a one-time buyer has ``P(alive) = 1``
(death only happens right after a repeat purchase), so it scores most of a young base
as certain to stay and is worse than random on CDNOW.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.exceptions import InputDataError

__all__ = ["BASELINES", "BASELINE_PROBABILITIES", "baseline_scores"]

#: Baseline names, in the order they are reported.
BASELINES = ("recency", "btyd_expected", "btyd_p_no_purchase")
#: Baselines whose score is a churn probability (so Brier, log loss and ECE apply).
BASELINE_PROBABILITIES = ("btyd_expected", "btyd_p_no_purchase")

_NEEDS = ("days_since_last", "expected_purchases", "p_no_purchase")


def baseline_scores(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Compute the baseline churn scores (higher = more likely to churn).

    Parameters
    ----------
    frame : DataFrame
        Needs ``days_since_last``, ``expected_purchases`` and ``p_no_purchase``.
        Non-finite values (a buy-till-you-die model can overflow for extreme
        customers) are replaced by the least informative value, so a baseline never
        stops an evaluation.

    Returns
    -------
    dict of str to ndarray
    """
    missing = [c for c in _NEEDS if c not in frame]
    if missing:
        raise InputDataError(
            f"baselines need the columns {missing}; got {list(frame.columns)}. Score the "
            "frame with the model's features (ChurnGuardModel.features) first."
        )
    recency = frame["days_since_last"].to_numpy(dtype=float)
    expected = frame["expected_purchases"].to_numpy(dtype=float)
    p0 = frame["p_no_purchase"].to_numpy(dtype=float)
    expected = np.where(np.isfinite(expected), np.clip(expected, 0.0, None), 0.0)
    p0 = np.where(np.isfinite(p0), np.clip(p0, 0.0, 1.0), np.nanmean(p0) if p0.size else 0.5)
    return {
        "recency": np.nan_to_num(recency, nan=float(np.nanmax(recency, initial=0.0))),
        "btyd_expected": np.exp(-expected),
        "btyd_p_no_purchase": p0,
    }
