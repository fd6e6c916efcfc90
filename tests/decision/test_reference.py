"""Tiers, risk bands and RFM scores measured against a stored reference base."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.decision import Playbook, decide
from churnguard.decision.reference import DecisionReference, EmpiricalCDF, RiskBands
from churnguard.decision.retention import WIN_BACK_SEGMENT, FrameSource, assemble_list
from churnguard.exceptions import ParameterError


def _scored(n: int, seed: int, base_rate: float = 0.6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frequency = rng.poisson(2.0, n)
    T = rng.uniform(100, 700, n)
    churn = rng.beta(2.0, 2.0 * (1 - base_rate) / base_rate, n)
    value = np.round(rng.lognormal(4.0, 1.0, n), 2)
    return pd.DataFrame(
        {
            "customer_id": [f"{i:05d}" for i in range(n)],
            "frequency": frequency,
            "recency": T * rng.uniform(0, 1, n) * (frequency > 0),
            "T": T,
            "monetary_value": np.round(rng.gamma(2.0, 20.0, n), 0) * (frequency > 0),
            "total_spend": np.round(rng.gamma(2.0, 80.0, n), 2),
            "days_since_last": rng.integers(0, 700, n).astype(float),
            "mean_gap_days": np.where(frequency > 0, rng.uniform(10, 90, n), np.nan),
            "p_alive": rng.uniform(0, 1, n),
            "expected_purchases": rng.gamma(1.0, 1.0, n),
            "expected_spend": rng.gamma(2.0, 20.0, n),
            "predicted_clv": value * (1 - churn),
            "value_if_retained": value,
            "churn_probability": churn,
            "value_at_risk": churn * value,
            "reasons": "",
        }
    )


def test_empirical_cdf_ranks_like_pandas_on_its_own_sample() -> None:
    values = pd.Series(np.random.default_rng(0).integers(0, 50, 500).astype(float))
    cdf = EmpiricalCDF.fit(values)
    np.testing.assert_allclose(cdf.percentile_rank(values), values.rank(pct=True), atol=1e-12)


def test_scoring_a_subset_gives_the_full_runs_answers() -> None:
    base = _scored(3000, 1)
    reference = DecisionReference.fit(base)
    full = decide(FrameSource(base), reference=reference).columns
    subset = base.iloc[[5, 17, 250, 999, 2999]].reset_index(drop=True)
    part = decide(FrameSource(subset), reference=reference, sorted_by_id=True).columns
    rows = [5, 17, 250, 999, 2999]
    for col in ("value_tier", "r_score", "f_score", "m_score", "segment", "risk_band", "action"):
        got = pd.Series(np.asarray(part[col])).astype(str).tolist()
        want = pd.Series(np.asarray(full[col])[rows]).astype(str).tolist()
        assert got == want, col
    # Without the reference, the five are ranked among themselves (the old behaviour).
    alone = decide(FrameSource(subset)).columns
    assert pd.Series(np.asarray(alone["value_tier"])).astype(str).nunique() > 1


@pytest.mark.parametrize("base_rate", [0.05, 0.3, 0.6, 0.95])
@pytest.mark.parametrize("method", ["odds", "quantile"])
def test_no_risk_band_is_structurally_empty_at_any_base_rate(base_rate: float, method: str) -> None:
    base = _scored(4000, 2, base_rate=base_rate)
    reference = DecisionReference.fit(base)
    bands = RiskBands(method=method)
    lo, hi = reference.risk_edges(bands)
    p = base["churn_probability"]
    counts = [(p < lo).sum(), ((p >= lo) & (p < hi)).sum(), (p >= hi).sum()]
    assert min(counts) > 0.05 * len(base), (base_rate, method, counts)
    if method == "odds":  # relative to the base rate: the average customer is medium risk
        assert lo < p.mean() < hi


def test_bad_band_settings_are_refused() -> None:
    with pytest.raises(ParameterError, match="odds_ratios"):
        RiskBands(method="odds", odds_ratios=(1.5, 0.67))
    with pytest.raises(ParameterError, match="sum"):
        RiskBands(shares=(0.5, 0.5, 0.5))


def test_lost_vips_get_the_win_back_track_and_no_value_customers_no_paid_action() -> None:
    base = _scored(2000, 3)
    big = base["total_spend"].quantile(0.99)
    lost = dict(base.iloc[0]) | {
        "customer_id": "99998",
        "total_spend": big,
        "frequency": 21,
        "days_since_last": 445.0,
        "mean_gap_days": 21.0,
        "churn_probability": 0.999,
        "value_if_retained": 3800.0,
        "value_at_risk": 0.999 * 3800.0,
        "predicted_clv": 1e-13,
    }
    nothing = dict(base.iloc[1]) | {
        "customer_id": "99999",
        "total_spend": 0.0,
        "churn_probability": 0.95,
        "value_at_risk": 0.95 * 500.0,
        "value_if_retained": 500.0,
    }
    frame = pd.concat([base, pd.DataFrame([lost, nothing])], ignore_index=True)
    reference = DecisionReference.fit(base)
    book = Playbook.load()
    decision = decide(FrameSource(frame), reference=reference, playbook=book, capacity=50)
    listed = assemble_list(frame, decision.columns).set_index("customer_id")
    assert listed.loc["99998", "segment"] == WIN_BACK_SEGMENT
    assert listed.loc["99998", "action"] == book.win_back.treatment.action  # type: ignore[union-attr]
    assert listed.loc["99998", "priority"] <= 3  # priced by what they were worth
    assert listed.loc["99999", "action"] == book.no_value.action
    assert listed.loc["99999", "unit_cost"] == 0.0 and not listed.loc["99999", "contact"]


def test_with_a_contact_limit_priority_follows_the_contact_decision() -> None:
    base = _scored(1500, 4)
    decision = decide(FrameSource(base), reference=DecisionReference.fit(base), capacity=40)
    listed = assemble_list(base, decision.columns)
    head = listed.head(40)
    assert head["contact"].all() and not listed["contact"].iloc[40:].any()
    assert head["expected_net_benefit"].is_monotonic_decreasing
    assert (head["ranked_by"] == "contact decision").all()
    assert (listed["ranked_by"].iloc[40:] == "value at risk").all()
    assert listed["value_at_risk"].iloc[40:].is_monotonic_decreasing
    assert decision.summary["decision"]["ordered_by"].startswith("contact decision")
    plain = decide(FrameSource(base), reference=DecisionReference.fit(base))
    ordered = assemble_list(base, plain.columns)
    assert ordered["value_at_risk"].is_monotonic_decreasing and "ranked_by" not in ordered


def test_below_upto_counts_ties_like_two_searches() -> None:
    rng = np.random.default_rng(7)
    ref = EmpiricalCDF.fit(np.round(rng.lognormal(size=3000), 1))
    x = np.r_[np.round(rng.lognormal(size=2000), 1), ref.values[:5], [np.nan, -1.0, 1e9]]
    below, upto = ref.below_upto(x)
    cum = np.r_[0, ref.cumulative]
    np.testing.assert_array_equal(below, cum[np.searchsorted(ref.values, x, side="left")])
    np.testing.assert_array_equal(upto, cum[np.searchsorted(ref.values, x, side="right")])
    assert (upto > below).sum() >= 5  # ties with the reference are counted


def test_list_inputs_keeps_what_the_list_reads() -> None:
    from churnguard.decision.retention import DECISION_INPUTS, list_inputs

    columns = ["gap_cv", *DECISION_INPUTS, "reasons", "margin_total", "spend_90d"]
    kept = list_inputs(columns)
    assert "gap_cv" not in kept and "spend_90d" not in kept
    assert kept == [c for c in columns if c not in ("gap_cv", "spend_90d")]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_large_distribution_keeps_numpys_quantile_grid_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # heavy tail and ties: money amounts rounded to cents, beyond the 20,001-point limit
    v = np.round(rng.lognormal(3.0, 2.0, 60_000), 2)
    cdf = EmpiricalCDF.fit(np.r_[v, np.nan, np.inf])
    grid = np.quantile(np.sort(v), np.linspace(0.0, 1.0, 20_001))
    np.testing.assert_array_equal(cdf.values, np.unique(grid))
    assert cdf.n == v.size
    assert cdf.cumulative[-1] == v.size


def test_the_monetary_score_is_net_of_returns() -> None:
    """A customer whose returns cancelled their purchases is not scored as a big spender."""
    base = _scored(2000, 6).assign(returned_amount=0.0)
    base.loc[:9, "returned_amount"] = 50.0  # some returns, so the base is measured net
    big = base["monetary_value"].max()
    keeper = dict(base.iloc[20]) | {"customer_id": "k", "monetary_value": big}
    returner = keeper | {"customer_id": "r", "total_spend": 0.0, "returned_amount": 900.0}
    half = keeper | {"customer_id": "h", "total_spend": 450.0, "returned_amount": 450.0}
    frame = pd.concat([base, pd.DataFrame([keeper, returner, half])], ignore_index=True)
    reference = DecisionReference.fit(frame)
    m = reference.rfm(frame.set_index("customer_id", drop=False))["m_score"]
    assert m["k"] == 5 and m["r"] == 1
    # Half returned ranks like a customer who kept everything of half the spend.
    like = pd.DataFrame([keeper | {"monetary_value": big / 2, "returned_amount": 0.0}])
    assert m["h"] == reference.rfm(like)["m_score"].iloc[0]
    # Without the return columns the gross monetary value is ranked, as before.
    gross = reference.rfm(frame.drop(columns=["returned_amount"]))["m_score"].iloc[-3:]
    assert gross.tolist() == [5, 5, 5]
    listed = decide(FrameSource(frame), reference=reference).columns
    assert np.asarray(listed["m_score"])[-3:].tolist() == [5, 1, int(m["h"])]
