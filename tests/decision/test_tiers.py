"""Tests for churnguard.decision.tiers: value tiers, concentration, risk bands, growth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.decision._ranks import percentile_ranks
from churnguard.decision._ranks import ranked_positions as _ranked_positions
from churnguard.decision.growth import flag_growth_candidates, growth_candidates
from churnguard.decision.tiers import (
    assign_value_tiers,
    concentration,
    pareto_curve,
    risk_band,
    value_score,
)
from churnguard.exceptions import InputDataError


def _customers(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "total_spend": rng.lognormal(3.0, 1.2, n),
            "predicted_clv": rng.lognormal(3.5, 1.0, n),
        }
    )


# --------------------------------------------------------------------------- value score


def test_percentile_ranks_are_pandas_ranks_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "ties": rng.integers(0, 7, 5000).astype(float),
            "smooth": rng.lognormal(0.0, 2.0, 5000),
            "gaps": np.where(rng.random(5000) < 0.1, np.nan, rng.integers(0, 50, 5000)),
        },
        index=rng.permutation(5000),
    )
    expected = frame.rank(pct=True, method="average")
    got = percentile_ranks(frame)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_ranked_positions_break_ties_by_id_then_row() -> None:
    rng = np.random.default_rng(12)
    n = 3000
    df = pd.DataFrame(
        {
            "customer_id": rng.choice([f"c{i:04d}" for i in range(800)], n),  # repeated ids too
            "score": rng.integers(0, 40, n).astype(float),
        }
    )
    df.loc[::7, "score"] = rng.random(len(df.loc[::7]))  # some untied scores
    expected = (
        pd.DataFrame({"s": df["score"], "cid": df["customer_id"], "pos": np.arange(n)})
        .sort_values(["s", "cid", "pos"], ascending=[False, True, True])["pos"]
        .to_numpy()
    )
    np.testing.assert_array_equal(_ranked_positions(df["score"], df), expected)
    by_row = np.argsort(-df["score"].to_numpy(), kind="stable")
    np.testing.assert_array_equal(_ranked_positions(df["score"], df[["score"]]), by_row)


def test_value_score_is_scale_free_and_mean_of_percentile_ranks() -> None:
    df = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "total_spend": [10.0, 20.0, 30.0, 40.0],
            "predicted_clv": [400.0, 300.0, 200.0, 100.0],
        }
    )
    score = value_score(df, {"total_spend": 3.0, "predicted_clv": 1.0})
    # ranks pct: spend (.25,.5,.75,1), clv (1,.75,.5,.25); weights 3/4 and 1/4
    np.testing.assert_allclose(score, [0.4375, 0.5625, 0.6875, 0.8125])
    rescaled = df.assign(predicted_clv=df["predicted_clv"] * 1e6)
    pd.testing.assert_series_equal(
        score, value_score(rescaled, {"total_spend": 3, "predicted_clv": 1})
    )
    assert score.name == "value_score"


def test_default_weights_use_margin_instead_of_revenue_when_present() -> None:
    df = _customers(50, seed=1)
    df["margin_total"] = df["total_spend"] * 0.3
    base = value_score(df)
    reshuffled_revenue = df.assign(total_spend=df["total_spend"].to_numpy()[::-1])
    pd.testing.assert_series_equal(base, value_score(reshuffled_revenue))
    reshuffled_margin = df.assign(margin_total=df["margin_total"].to_numpy()[::-1])
    assert not base.equals(value_score(reshuffled_margin))


def test_default_weights_rank_the_value_if_retained_not_the_risk_discounted_clv() -> None:
    # Five customers with the same history: the lapsed one (3) would be worth the most
    # if kept, but its risk-discounted CLV is the smallest.
    df = pd.DataFrame(
        {
            "customer_id": ["0", "1", "2", "3", "4"],
            "total_spend": [100.0, 100.0, 100.0, 100.0, 100.0],
            "predicted_clv": [50.0, 40.0, 30.0, 1.0, 20.0],
            "value_if_retained": [60.0, 50.0, 40.0, 500.0, 30.0],
        }
    )
    tiers = assign_value_tiers(df)
    assert tiers.tolist() == ["stable", "stable", "stable", "vip", "low"]
    # Without value_if_retained (a frame of the user's own), predicted_clv decides.
    by_clv = assign_value_tiers(df.drop(columns="value_if_retained"))
    assert by_clv.tolist() == ["vip", "stable", "stable", "low", "stable"]


def test_missing_weighted_column_names_available_columns_and_fix() -> None:
    df = _customers(5, seed=2).drop(columns="predicted_clv")
    with pytest.raises(InputDataError, match=r"predicted_clv.*customer_id, total_spend.*weights="):
        value_score(df)


@pytest.mark.parametrize(
    ("weights", "error"),
    [
        ({"total_spend": -1.0}, ValueError),
        ({"total_spend": 0.0}, ValueError),
        ({}, ValueError),
        ({"total_spend": "1"}, TypeError),
        ([("total_spend", 1.0)], TypeError),
    ],
)
def test_bad_weights_are_rejected(weights: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        value_score(_customers(5, seed=3), weights)  # type: ignore[arg-type]


def test_value_score_rejects_missing_values() -> None:
    df = _customers(5, seed=4)
    df.loc[2, "predicted_clv"] = np.nan
    with pytest.raises(InputDataError, match="1 missing value"):
        value_score(df)


# --------------------------------------------------------------------------- tiers


def test_tiers_are_exactly_20_60_20_on_1000_customers_and_ordered_by_score() -> None:
    df = _customers(1000, seed=5)
    tiers = assign_value_tiers(df)
    assert tiers.value_counts().to_dict() == {"vip": 200, "stable": 600, "low": 200}
    score = value_score(df)
    assert score[tiers == "vip"].min() >= score[tiers == "stable"].max()
    assert score[tiers == "stable"].min() >= score[tiers == "low"].max()
    assert tiers.name == "value_tier" and list(tiers.cat.categories) == ["low", "stable", "vip"]


def test_tiers_on_10_customers_pick_the_top_and_bottom_two() -> None:
    df = pd.DataFrame(
        {
            "customer_id": [f"id{i}" for i in range(10)],
            "total_spend": [5.0, 90.0, 1.0, 50.0, 60.0, 70.0, 80.0, 2.0, 40.0, 100.0],
        }
    )
    tiers = assign_value_tiers(df, weights={"total_spend": 1.0})
    assert set(df.loc[tiers == "vip", "customer_id"]) == {"id9", "id1"}
    assert set(df.loc[tiers == "low", "customer_id"]) == {"id2", "id7"}
    assert (tiers == "stable").sum() == 6


def test_ties_are_broken_by_customer_id_whatever_the_row_order() -> None:
    ids = [f"c{i:02d}" for i in range(10)]
    df = pd.DataFrame({"customer_id": ids, "total_spend": 7.0, "predicted_clv": 3.0})
    shuffled = df.iloc[np.random.default_rng(6).permutation(len(df))]
    for frame in (df, shuffled):
        tiers = assign_value_tiers(frame)
        assert sorted(frame.loc[tiers == "vip", "customer_id"]) == ["c00", "c01"]
        assert sorted(frame.loc[tiers == "low", "customer_id"]) == ["c08", "c09"]
    # customer_id is kept as given, string ids are never cast
    assert shuffled["customer_id"].tolist() != ids


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, {"vip": 0, "stable": 1, "low": 0}),
        (2, {"vip": 0, "stable": 2, "low": 0}),
        (3, {"vip": 1, "stable": 1, "low": 1}),
        (4, {"vip": 1, "stable": 2, "low": 1}),
        (5, {"vip": 1, "stable": 3, "low": 1}),
        (0, {"vip": 0, "stable": 0, "low": 0}),
    ],
)
def test_tiny_bases(n: int, expected: dict[str, int]) -> None:
    tiers = assign_value_tiers(_customers(n, seed=7))
    assert tiers.value_counts().to_dict() == expected


def test_custom_shares_and_bad_shares() -> None:
    tiers = assign_value_tiers(_customers(20, seed=8), shares=(0.1, 0.5, 0.4))
    assert tiers.value_counts().to_dict() == {"vip": 2, "stable": 10, "low": 8}
    # halves round up: 1.5 vip -> 2, 4.5 vip-or-stable -> 5 (Python's round() would give 4)
    tiers = assign_value_tiers(_customers(6, seed=8), shares=(0.25, 0.5, 0.25))
    assert tiers.value_counts().to_dict() == {"vip": 2, "stable": 3, "low": 1}
    with pytest.raises(ValueError, match="sum to 1"):
        assign_value_tiers(_customers(20, seed=8), shares=(0.2, 0.6, 0.3))
    with pytest.raises(TypeError, match="three numbers"):
        assign_value_tiers(_customers(20, seed=8), shares=(0.5, 0.5))


def test_tiers_do_not_mutate_input_and_keep_index() -> None:
    df = _customers(10, seed=9).set_axis(list("abcdefghij"))
    before = df.copy()
    tiers = assign_value_tiers(df)
    pd.testing.assert_frame_equal(df, before)
    assert list(tiers.index) == list("abcdefghij")


def test_non_frame_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="DataFrame"):
        assign_value_tiers([1, 2, 3])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- concentration


def test_concentration_on_a_hand_built_frame() -> None:
    df = pd.DataFrame(
        {
            "customer_id": list("abcdefghij"),
            "total_spend": [600.0, 200.0, 50, 50, 20, 20, 20, 20, 10, 10],
            "predicted_clv": [10.0, 10, 10, 10, 10, 10, 10, 10, 10, 10],
        }
    )
    out = concentration(df)
    assert out["n_customers"] == 10 and out["n_top"] == 2
    assert out["top_share_total_spend"] == pytest.approx(0.8)
    assert out["top_share_predicted_clv"] == pytest.approx(0.2)
    assert out["customer_equity"] == pytest.approx(100.0)
    assert concentration(df, value_cols=("total_spend",), top_share=0.1)[
        "top_share_total_spend"
    ] == pytest.approx(0.6)


def test_concentration_without_clv_and_with_bad_arguments() -> None:
    df = pd.DataFrame({"total_spend": [3.0, 1.0]})
    out = concentration(df, value_cols=["total_spend"])
    assert out["customer_equity"] is None and out["n_top"] == 1
    assert out["top_share_total_spend"] == pytest.approx(0.75)
    with pytest.raises(InputDataError, match="predicted_clv"):
        concentration(df)
    with pytest.raises(TypeError, match="sequence"):
        concentration(df, value_cols="total_spend")
    with pytest.raises(ValueError, match="top_share"):
        concentration(df, value_cols=["total_spend"], top_share=1.5)


def test_pareto_curve() -> None:
    curve = pareto_curve(pd.Series([1.0, 6.0, 3.0]))
    assert list(curve.columns) == ["share_customers", "share_value"]
    np.testing.assert_allclose(curve["share_customers"], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve["share_value"], [0, 0.6, 0.9, 1.0])
    with pytest.raises(ValueError, match="positive total"):
        pareto_curve([0.0, 0.0])


# --------------------------------------------------------------------------- risk bands


def test_risk_band_edges_and_index() -> None:
    p = pd.Series([0.0, 0.2999, 0.3, 0.5999, 0.6, 1.0], index=list("uvwxyz"))
    band = risk_band(p)
    assert band.tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert list(band.index) == list("uvwxyz") and band.name == "risk_band"
    assert risk_band([0.5], thresholds=(0.1, 0.4)).tolist() == ["high"]


@pytest.mark.parametrize(
    ("probs", "thresholds", "error"),
    [
        ([0.1, 1.2], (0.3, 0.6), ValueError),
        ([0.1, np.nan], (0.3, 0.6), ValueError),
        ([0.1], (0.6, 0.3), ValueError),
        ([0.1], (0.3,), TypeError),
    ],
)
def test_risk_band_rejects_bad_input(
    probs: list[float], thresholds: tuple[float, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        risk_band(probs, thresholds)


# --------------------------------------------------------------------------- growth candidates


def _growth_frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = {"vip": 12, "stable": 36, "low": 12}
    profile = {  # (frequency, p_alive, monetary_value, days since last -> recency)
        "vip": ((10, 16), (0.85, 1.0), (80, 120), (0, 30)),
        "stable": ((1, 5), (0.3, 0.7), (20, 50), (60, 200)),
        "low": ((0, 2), (0.05, 0.3), (5, 15), (200, 360)),
    }
    parts = []
    for tier, n in groups.items():
        f, pa, m, dsl = profile[tier]
        parts.append(
            pd.DataFrame(
                {
                    "value_tier": tier,
                    "frequency": rng.integers(f[0], f[1], n),
                    "p_alive": rng.uniform(*pa, n),
                    "monetary_value": rng.uniform(*m, n),
                    "recency": 365 - rng.uniform(*dsl, n),
                    "T": 365.0,
                    "churn_probability": rng.uniform(0.05, 0.5, n),
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    extra = pd.DataFrame(
        {  # a stable customer who behaves like a VIP, one who does not, a risky VIP-alike
            "value_tier": ["stable", "stable", "stable"],
            "frequency": [13, 2, 13],
            "p_alive": [0.95, 0.5, 0.95],
            "monetary_value": [100.0, 30.0, 100.0],
            "recency": [355.0, 250.0, 355.0],
            "T": 365.0,
            "churn_probability": [0.1, 0.1, 0.8],
        }
    )
    df = pd.concat([df, extra], ignore_index=True)
    df.insert(0, "customer_id", [f"g{i:03d}" for i in range(len(df))])
    return df


def test_growth_candidates_flag_the_stable_customer_who_mirrors_vips() -> None:
    df = _growth_frame(seed=10)
    mirror, unlike, risky = df.index[-3:]
    score = growth_candidates(df)
    assert score[mirror] > 0.5 > score[unlike]
    assert score[df["value_tier"] == "vip"].mean() > score[df["value_tier"] == "low"].mean()
    flags = flag_growth_candidates(df)
    assert flags[mirror] and not flags[unlike]
    assert not flags[risky]  # high churn risk: retention, not growth
    assert not flags[df["value_tier"] != "stable"].any()
    assert flags.dtype == bool and flags.name == "growth_candidate"


def test_growth_candidates_are_deterministic_and_row_order_free() -> None:
    df = _growth_frame(seed=11)
    first = growth_candidates(df)
    pd.testing.assert_series_equal(first, growth_candidates(df))
    shuffled = df.iloc[np.random.default_rng(12).permutation(len(df))]
    np.testing.assert_allclose(growth_candidates(shuffled).sort_index(), first, atol=1e-8)


def test_growth_candidates_without_vips_warn_and_flag_nobody() -> None:
    df = _growth_frame(seed=13).assign(value_tier="stable")
    with pytest.warns(UserWarning, match="no contrast"):
        assert growth_candidates(df).isna().all()
    with pytest.warns(UserWarning):
        assert not flag_growth_candidates(df).any()


def test_growth_candidates_need_tier_and_features() -> None:
    df = _growth_frame(seed=14)
    with pytest.raises(InputDataError, match="assign_value_tiers"):
        growth_candidates(df.drop(columns="value_tier"))
    with pytest.raises(InputDataError, match="features="):
        growth_candidates(df[["customer_id", "value_tier"]])
    with pytest.raises(InputDataError, match="churn_probability"):
        flag_growth_candidates(df.drop(columns="churn_probability"))
