"""Baselines the classifier has to beat, computed on the same snapshot.

* ``recency``: days since the last purchase (longer = riskier). What a CRM team
  does without any model.
* ``bgnbd_expected``: the buy-till-you-die model's expected purchases over the
  horizon (fewer = riskier); reported as ``P(no purchase)`` under a Poisson
  approximation so it is also a probability: ``exp(-E[X])``.
* ``bgnbd_p_dead``: ``1 - P(alive)``. Under BG/NBD a one-time buyer has
  ``P(alive) = 1`` (the model only lets customers die right after a purchase), so
  this baseline scores every one-time buyer 0: it is kept as the literature
  defines it, ties and all, which is one reason it ranks poorly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["BASELINE_PROBABILITIES", "baseline_scores"]

#: Baselines whose score is a churn probability (so Brier, log loss and ECE apply).
BASELINE_PROBABILITIES = ("bgnbd_expected", "bgnbd_p_dead")


def baseline_scores(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Compute the baseline churn scores (higher = more likely to churn).

    Parameters
    ----------
    frame : DataFrame
        Needs ``days_since_last``, ``expected_purchases`` and ``p_alive``.

    Returns
    -------
    dict of str to ndarray
    """
    missing = [c for c in ("days_since_last", "expected_purchases", "p_alive") if c not in frame]
    if missing:
        raise ValueError(f"baselines need the columns {missing}; got {list(frame.columns)}.")
    return {
        "recency": frame["days_since_last"].to_numpy(dtype=float),
        "bgnbd_expected": np.exp(-frame["expected_purchases"].to_numpy(dtype=float)),
        "bgnbd_p_dead": 1.0 - frame["p_alive"].to_numpy(dtype=float),
    }
