"""The whole-base columns computed column group by column group equal build_retention_list's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from churnguard.scoring.retention import build_retention_list, retention_summary
from churnguard.scoring.wholebase import whole_base_columns


def _slim(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frequency = rng.poisson(2.0, n)
    T = rng.uniform(10, 100, n)
    clv = np.round(rng.lognormal(3.0, 1.0, n), 1)  # rounded: many tied value scores
    churn = rng.uniform(0, 1, n)
    frame = pd.DataFrame(
        {
            "customer_id": [f"{i:05d}" for i in range(n)],  # sorted, as the batch path gives
            "frequency": frequency,
            "recency": T * rng.uniform(0, 1, n) * (frequency > 0),
            "T": T,
            "monetary_value": np.round(rng.gamma(2.0, 20.0, n), 0) * (frequency > 0),
            "total_spend": np.round(rng.gamma(2.0, 50.0, n), 0),
            "days_since_last": rng.integers(0, 700, n),
            "p_alive": rng.uniform(0, 1, n),
            "expected_purchases": rng.gamma(1.0, 1.0, n),
            "expected_spend": rng.gamma(2.0, 20.0, n),
            "predicted_clv": clv,
            "churn_probability": churn,
            "value_at_risk": churn * clv,
        }
    )
    return frame


def test_columns_and_priorities_match_the_in_memory_list(tmp_path: Path) -> None:
    slim = _slim(3000, seed=5)
    slim.to_parquet(tmp_path / "slim.parquet", index=False)
    summary = whole_base_columns(
        tmp_path / "slim.parquet",
        tmp_path / "whole.parquet",
        playbook=None,
        segment_rules=None,
        capacity=200,
        budget=None,
    )
    got = pd.read_parquet(tmp_path / "whole.parquet")
    expected = build_retention_list(slim.assign(reasons=""), capacity=200)
    expected = expected.set_index("customer_id").loc[slim["customer_id"]].reset_index()
    for col in ["value_tier", "segment", "action", "growth_candidate", "contact", "priority"]:
        assert got[col].astype(str).tolist() == expected[col].astype(str).tolist(), col
    np.testing.assert_allclose(got["growth_score"], expected["growth_score"], rtol=0, atol=1e-12)
    # The summary's sums are taken in priority order, as for the in-memory list: equal bit for bit.
    assert summary == retention_summary(build_retention_list(slim.assign(reasons=""), capacity=200))
