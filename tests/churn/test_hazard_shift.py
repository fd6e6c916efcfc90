"""Tests of the drift correction: a dropout-hazard factor fitted on the latest window."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnguard.churn.hazard_shift import HazardShift, fit_hazard_shift
from churnguard.data import shifting_churn
from churnguard.features import FeatureBuilder


def _latest_window(
    multiplier: float,
) -> tuple[dict[str, float], tuple[np.ndarray, ...], np.ndarray]:
    """True pre-change Pareto/NBD parameters, histories at the change, silence since it."""
    world = shifting_churn(n_customers=30_000, seed=5, churn_multiplier=multiplier)
    as_of = world.suggested_as_of[-1].date()
    start = as_of - dt.timedelta(days=28)  # the world's change: 28 days before as_of
    tx = world.transactions
    feats = FeatureBuilder(time_unit="D").fit(tx).transform(tx, start)
    window = tx[(tx["date"] > pd.Timestamp(start)) & (tx["date"] <= pd.Timestamp(as_of))]
    silent = (~feats["customer_id"].isin(window["customer_id"])).to_numpy(dtype=float)
    arrays = tuple(feats[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    return world.truth["params"], arrays, silent


def _fit(multiplier: float, target: float = 0.0) -> HazardShift | None:
    params, arrays, silent = _latest_window(multiplier)
    return fit_hazard_shift(
        params, [(arrays, silent, 0.0)], target, window=28.0, horizon=91.0, time_unit="D",
        start="2023-12-03",
    )  # fmt: skip


def test_the_factor_of_a_tripled_hazard_is_found() -> None:
    shift = _fit(3.0)
    assert shift is not None and 2.2 < shift.k < 4.2
    assert shift.since == 28.0 and shift.horizon == 91.0
    record = shift.to_dict()
    assert record["k"] == pytest.approx(shift.k, abs=1e-4) and set(record["params"]) == {
        "r", "alpha", "s", "beta",
    }  # fmt: skip
    assert f"{shift.k:.2f}x" in shift.note and "since 2023-12-03" in shift.note


def test_without_a_change_the_factor_is_near_one() -> None:
    shift = _fit(1.0)
    # four weeks identify k loosely, which is why it is applied only when drift is flagged
    assert shift is not None and 0.4 < shift.k < 2.0


def test_each_customer_moves_by_their_own_history() -> None:
    shift = HazardShift(3.0, 28.0, 91.0, {"r": 1.0, "alpha": 30.0, "s": 2.0, "beta": 730.0},
                        "D", "2023-12-03")  # fmt: skip
    x = np.array([5.0, 5.0, 0.0, 20.0])
    tx = np.array([399.0, 300.0, 0.0, 399.0])
    move = shift.log_odds_shift(x, tx, np.full(4, 400.0))
    assert np.all(move > 0)
    # 400 days without a repeat purchase: most likely gone already, less left to move
    assert move[2] < move[:2].min()
    # a frequent buyer who just bought: the hazard is nearly all of their risk
    assert move[3] > move[0]
    same = HazardShift(1.0, 28.0, 91.0, shift.params, "D", "2023-12-03")
    np.testing.assert_allclose(same.log_odds_shift(x, tx, np.full(4, 400.0)), 0.0, atol=1e-9)


def test_a_higher_hazard_means_fewer_purchases_in_the_window() -> None:
    params = {"r": 1.0, "alpha": 30.0, "s": 2.0, "beta": 730.0}
    shift = HazardShift(3.0, 28.0, 91.0, params, "D", "2023-12-03")
    x = np.array([5.0, 5.0, 0.0, 20.0, 60.0])
    tx = np.array([399.0, 300.0, 0.0, 399.0, 399.9])
    T = np.full(5, 400.0)
    purchases, if_active = shift.window_factors(x, tx, T)
    assert np.all((purchases > 0.0) & (purchases < 1.0))
    # a frequent buyer who just bought keeps buying until the higher hazard ends it: fewer
    # purchases even among the windows that hold one
    assert if_active[3] < 1.0 and if_active[4] < 1.0
    same = HazardShift(1.0, 28.0, 91.0, params, "D", "2023-12-03").window_factors(x, tx, T)
    np.testing.assert_allclose(np.vstack(same), 1.0, atol=1e-9)


def test_no_factor_when_the_target_is_out_of_reach_or_nothing_varies() -> None:
    assert _fit(3.0, target=8.0) is None  # no factor within K_BOUNDS gets there
    params = {"r": 1.0, "alpha": 30.0, "s": 2.0, "beta": 730.0}
    ones = np.ones(5)
    args = {"window": 4.0, "horizon": 13.0, "time_unit": "W", "start": "2024-01-01"}
    assert fit_hazard_shift(params, [((ones, ones, ones * 9), ones, 0.0)], 0.0, **args) is None
    assert fit_hazard_shift(params, [], 0.0, **args) is None


def test_the_clv_factor_is_the_window_factor_over_the_same_undiscounted_span() -> None:
    params = {"r": 1.0, "alpha": 30.0, "s": 2.0, "beta": 730.0}
    shift = HazardShift(3.0, 28.0, 90.0, params, "D", "2023-12-03")
    x = np.array([5.0, 5.0, 0.0, 20.0])
    tx = np.array([399.0, 300.0, 0.0, 399.0])
    T = np.full(4, 400.0)
    purchases, _ = shift.window_factors(x, tx, T)
    # three 30-day months undiscounted: the 90-day window's purchases
    np.testing.assert_allclose(shift.clv_factor(x, tx, T, 3, 0.0), purchases, rtol=1e-9)
    twelve = shift.clv_factor(x, tx, T, 12, 0.01)
    assert np.all((twelve > 0.0) & (twelve < purchases))  # the change weighs more, longer
    same = HazardShift(1.0, 28.0, 90.0, params, "D", "2023-12-03")
    np.testing.assert_allclose(same.clv_factor(x, tx, T, 12, 0.01), 1.0, atol=1e-12)


def test_the_factors_of_near_dead_customers_are_exact() -> None:
    # 230 days silent after 50 purchases: a purchase in the window is ~1e-16 likely, where
    # 1 - P(no purchase) would be rounding noise (factors jumping between 0.85 and 1.7)
    params = {"r": 0.6, "alpha": 20.0, "s": 0.8, "beta": 200.0}
    shift = HazardShift(3.0, 28.0, 91.0, params, "D", "2023-12-03")
    tx = np.arange(165.0, 172.0)
    purchases, if_active = shift.window_factors(np.full(7, 50.0), tx, np.full(7, 400.0))
    np.testing.assert_allclose(if_active, if_active[0], rtol=1e-6)
    np.testing.assert_allclose(purchases, purchases[0], rtol=1e-6)
    assert 0.0 < if_active[0] < 1.0
