"""Per-customer reasons from feature contributions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.churn import describe_feature, explain

FEATURES = pd.DataFrame(
    {
        "days_since_last": [42.0, 300.0],
        "mean_gap_days": [20.0, np.nan],
        "spend_ratio_90d": [0.4, np.nan],
        "spend_prev_90d": [10.0, 0.0],
        "frequency": [3, 0],
        "purchases_90d": [0, 2],
    }
)


def test_feature_phrases() -> None:
    assert describe_feature("days_since_last", FEATURES).tolist() == [
        "42 days since last purchase vs usual 20-day gap",
        "300 days since first and only purchase",
    ]
    assert describe_feature("spend_ratio_90d", FEATURES).tolist()[0] == (
        "spend down 60% vs previous 90 days"
    )
    assert describe_feature("purchases_90d", FEATURES).tolist() == [
        "no purchase in the last 90 days",
        "2 purchase days in the last 90 days",
    ]
    assert describe_feature("frequency", FEATURES).tolist()[1] == "0 repeat purchases so far"


def test_top_drivers_split_by_direction_and_order() -> None:
    contrib = pd.DataFrame(
        {
            "days_since_last": [1.0, 0.1],
            "spend_ratio_90d": [0.5, 0.0],
            "frequency": [-0.7, -0.05],
            "purchases_90d": [0.01, -2.0],
            "bias": [3.0, 3.0],
        }
    )
    out = explain(contrib, FEATURES, top_k=3).tolist()
    assert out[0] == (
        "raises risk: 42 days since last purchase vs usual 20-day gap; "
        "spend down 60% vs previous 90 days | lowers risk: 3 repeat purchases so far"
    )
    assert out[1].startswith(
        "raises risk: 300 days since first and only purchase | lowers risk: 2 purchase"
    )
