"""Tests of churnguard.model.btyd: the prior alone equals the prior of the full value table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from churnguard.churn.candidates import PRIOR_COLUMN
from churnguard.clv import PurchaseModel, SpendModel
from churnguard.model.btyd import (
    BTYDStage,
    degenerate_note,
    p_alive_feature,
    reported_p_alive,
)


def _feats(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    T = rng.integers(60, 400, n).astype(float)
    frequency = rng.poisson(2.0, n)
    recency = np.where(frequency > 0, np.floor(T * rng.uniform(0.1, 1.0, n)), 0.0)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(n)],
            "frequency": frequency,
            "recency": recency,
            "T": T,
            "monetary_value": np.where(frequency > 0, rng.gamma(3.0, 20.0, n), 0.0),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[BTYDStage, pd.DataFrame, PurchaseModel, SpendModel]:
    stage = BTYDStage(time_unit="W", horizon_days=91, clv_months=12, discount_rate=0.01)
    feats = _feats()
    rfm = stage.rfm(feats)
    return stage, feats, PurchaseModel("bgnbd").fit(rfm), SpendModel().fit(rfm)


_WINDOW = [PRIOR_COLUMN, "expected_purchases", "expected_spend"]


def test_window_columns_are_the_value_tables_bit_for_bit(fitted: tuple) -> None:
    stage, feats, pm, sm = fitted
    window, value = stage.window_columns(feats, pm, sm), stage.value(feats, pm, sm)
    for col in _WINDOW:
        np.testing.assert_array_equal(window[col].to_numpy(), value[col].to_numpy())


def test_window_prior_falls_back_like_the_value_table_where_not_finite(
    fitted: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage, feats, pm, sm = fitted
    exact = pm.p_no_purchase_arrays

    def broken(*args: object) -> np.ndarray:
        out = np.array(exact(*args), dtype=float)
        out[::7] = np.nan
        return out

    monkeypatch.setattr(pm, "p_no_purchase_arrays", broken)
    prior = stage.window_columns(feats, pm, sm)[PRIOR_COLUMN].to_numpy()
    assert np.isfinite(prior).all()
    np.testing.assert_array_equal(prior, stage.value(feats, pm, sm)[PRIOR_COLUMN])


def test_fit_first_reports_a_degenerate_fit_by_its_note_not_a_warning() -> None:
    # Steady Poisson buyers who never leave: BG/NBD puts its dropout on the boundary.
    # A training run fits at every snapshot; the warning would repeat for each of them.
    rng = np.random.default_rng(1)
    n = 3_000
    weeks = rng.uniform(26.0, 52.0, n)
    x = rng.poisson(rng.gamma(1.0, 1 / 5.0, n) * weeks)
    feats = pd.DataFrame(
        {
            "customer_id": [f"s{i}" for i in range(n)],
            "frequency": x,
            "recency": np.where(x > 0, weeks * rng.beta(np.maximum(x, 1), 1.0), 0.0) * 7,
            "T": weeks * 7,
            "monetary_value": np.where(x > 0, rng.gamma(3.0, 10.0, n), 0.0),
        }
    )
    stage = BTYDStage(time_unit="W", horizon_days=91, clv_months=12, discount_rate=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kind, pm, _ = stage.fit_first(feats, ["bgnbd"])
    assert kind == "bgnbd"
    assert pm.degenerate_ is not None and pm.degenerate_.startswith("nobody ever leaves")
    assert "by slow buying, not by leaving" in degenerate_note(pm)


def test_value_columns_are_net_of_each_customers_returns(fitted: tuple) -> None:
    stage, feats, pm, sm = fitted
    gross = stage.value(feats.assign(total_spend=100.0, returned_amount=0.0), pm, sm)
    returns = np.zeros(len(feats))
    returns[:3] = [25.0, 100.0, 250.0]  # a quarter, all, and more than was bought
    net = stage.value(feats.assign(total_spend=100.0 - returns, returned_amount=returns), pm, sm)
    for col in ("predicted_clv", "value_if_retained"):
        np.testing.assert_allclose(
            net[col].to_numpy()[:3], gross[col].to_numpy()[:3] * [0.75, 0, 0]
        )
        np.testing.assert_array_equal(net[col].to_numpy()[3:], gross[col].to_numpy()[3:])
    # The purchase side and Gamma-Gamma's spend per purchase do not change.
    for col in ("p_alive", "expected_purchases", PRIOR_COLUMN, "expected_spend"):
        np.testing.assert_array_equal(net[col].to_numpy(), gross[col].to_numpy())


def test_reported_p_alive_is_empty_where_bgnbd_assumes_it(fitted: tuple) -> None:
    stage, feats, pm, sm = fitted
    values = stage.value(feats, pm, sm)
    frame = feats.assign(p_alive=values["p_alive"].to_numpy())
    once = frame["frequency"].to_numpy() == 0
    assert once.any() and (~once).any()
    # BG/NBD: exactly 1 for every customer without a repeat purchase, whatever their age.
    assert (frame.loc[once, "p_alive"] == 1.0).all()
    shown = reported_p_alive(pm, frame)
    assert np.isnan(shown[once]).all()
    np.testing.assert_array_equal(shown[~once], frame.loc[~once, "p_alive"])
    assert (frame.loc[once, "p_alive"] == 1.0).all()  # the caller's frame is left alone
    # Read back for explaining, the churn model's inputs come back bit for bit.
    restored = p_alive_feature(pm, frame.assign(p_alive=shown))
    assert restored is not None
    np.testing.assert_array_equal(restored, frame["p_alive"])
    assert p_alive_feature(pm, frame) is None  # nothing blank: nothing to restore
    # Pareto/NBD lets them leave at any time: its P(alive) is evidence, reported as is.
    pareto = PurchaseModel("pareto").fit(stage.rfm(feats))
    frame = feats.assign(p_alive=stage.value(feats, pareto, sm)["p_alive"].to_numpy())
    assert (frame.loc[once, "p_alive"] < 1.0).all()
    np.testing.assert_array_equal(reported_p_alive(pareto, frame), frame["p_alive"])
    assert p_alive_feature(pareto, frame.assign(p_alive=np.nan)) is None
