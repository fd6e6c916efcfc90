"""The churn model's inputs: churn signals only, never the value columns' factors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard._money import KEPT_SHARE
from churnguard.data import clean_transactions
from churnguard.model.estimator import ChurnGuardModel


def _log_with_returns(n: int = 600, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 12, n)
    owner = np.repeat(np.arange(n), counts)
    day = rng.integers(0, 700, owner.size)
    amount = np.round(rng.gamma(3.0, 12.0, owner.size), 2)
    buys = pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in owner],
            "date": pd.Timestamp("2022-01-01") + pd.to_timedelta(day, unit="D"),
            "amount": amount,
        }
    )
    # Returns only late in the log: early snapshots see none, the last ones do.
    late = buys[buys["date"] > pd.Timestamp("2023-09-01")]
    returned = late.sample(frac=0.2, random_state=seed).assign(amount=lambda f: -f["amount"])
    return pd.concat([buys, returned], ignore_index=True)


def test_the_kept_share_is_not_a_churn_feature() -> None:
    tx = clean_transactions(_log_with_returns()).transactions
    assert (tx["amount"] < 0).any()
    model = ChurnGuardModel(
        horizon_days=60,
        max_snapshots=4,
        classifier_params={"lgbm_params": {"n_estimators": 10}},
    ).fit(tx)
    # It scales the value columns; as a feature it would be missing (NaN) in every
    # snapshot without returns and always present when scoring.
    assert KEPT_SHARE not in model.feature_names_
    assert KEPT_SHARE in model.features(tx).columns
