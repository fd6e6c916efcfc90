"""Tests of churnguard.clv.value: CLV against lifetimes, alignment, customer equity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.clv.purchase import PurchaseModel
from churnguard.clv.spend import SpendModel
from churnguard.clv.value import (
    KeptPrior,
    customer_equity,
    customer_lifetime_value,
    fit_kept_prior,
    kept_share,
    no_purchase_frame,
    value_frame,
)


@pytest.fixture(scope="module")
def models(cdnow_rfm: pd.DataFrame) -> dict[str, object]:
    return {
        "bgnbd": PurchaseModel("bgnbd").fit(cdnow_rfm),
        "pareto": PurchaseModel("pareto").fit(cdnow_rfm),
        "spend": SpendModel().fit(cdnow_rfm),
    }


# lifetimes' own CLV evaluates the Pareto/NBD expectation at t=0, where it takes log(0)
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
@pytest.mark.parametrize("key", ["bgnbd", "pareto"])
@pytest.mark.parametrize(("months", "discount_rate"), [(12, 0.01), (6, 0.03)])
def test_clv_equals_lifetimes(
    cdnow_rfm: pd.DataFrame, models: dict, key: str, months: int, discount_rate: float
) -> None:
    purchase_model, spend_model = models[key], models["spend"]
    theirs = spend_model.fitter_.customer_lifetime_value(
        purchase_model.fitter_,
        cdnow_rfm["frequency"],
        cdnow_rfm["recency"],
        cdnow_rfm["T"],
        cdnow_rfm["monetary_value"],
        time=months,
        discount_rate=discount_rate,
        freq="W",
    )
    ours = customer_lifetime_value(
        purchase_model, spend_model, cdnow_rfm, months=months, discount_rate=discount_rate
    )
    assert ours.shape == (len(cdnow_rfm),)
    np.testing.assert_allclose(ours, theirs.to_numpy(), rtol=1e-9)


def test_undiscounted_clv_is_spend_times_purchases(cdnow_rfm: pd.DataFrame, models: dict) -> None:
    purchase_model, spend_model = models["bgnbd"], models["spend"]
    clv = customer_lifetime_value(
        purchase_model, spend_model, cdnow_rfm, months=12, discount_rate=0.0, time_unit="W"
    )
    purchases = purchase_model.expected_purchases(cdnow_rfm, 12 * 4.345)
    np.testing.assert_allclose(clv, spend_model.expected_spend(cdnow_rfm) * purchases, rtol=1e-10)


def test_clv_is_positional_on_any_index(cdnow_rfm: pd.DataFrame, models: dict) -> None:
    purchase_model, spend_model = models["bgnbd"], models["spend"]
    base = customer_lifetime_value(purchase_model, spend_model, cdnow_rfm)
    order = np.random.default_rng(5).permutation(len(cdnow_rfm))
    shuffled = cdnow_rfm.iloc[order].set_index(cdnow_rfm["customer_id"].iloc[order].to_numpy())
    np.testing.assert_allclose(
        customer_lifetime_value(purchase_model, spend_model, shuffled), base[order]
    )


def test_value_frame_columns_and_consistency(cdnow_rfm: pd.DataFrame, models: dict) -> None:
    purchase_model, spend_model = models["bgnbd"], models["spend"]
    rfm = cdnow_rfm.set_axis(pd.RangeIndex(100, 100 + len(cdnow_rfm)))
    before = rfm.copy()
    out = value_frame(purchase_model, spend_model, rfm, 39, months=6, discount_rate=0.02)
    pd.testing.assert_frame_equal(rfm, before)
    assert list(out.columns) == [
        "customer_id",
        "p_alive",
        "expected_purchases",
        "p_no_purchase",
        "expected_spend",
        "predicted_clv",
        "value_if_retained",
    ]
    assert out.index.equals(rfm.index)
    assert out["customer_id"].tolist() == rfm["customer_id"].tolist()
    predicted = purchase_model.predict(rfm, 39)
    pd.testing.assert_frame_equal(out[predicted.columns], predicted)
    np.testing.assert_allclose(out["expected_spend"], spend_model.expected_spend(rfm))
    np.testing.assert_allclose(
        out["predicted_clv"],
        customer_lifetime_value(purchase_model, spend_model, rfm, months=6, discount_rate=0.02),
    )


def test_value_if_retained_is_a_steady_stream_of_the_alive_rate(
    cdnow_rfm: pd.DataFrame, models: dict
) -> None:
    """Value if retained: the alive purchase rate (r + x) / (alpha + T) for every month,
    discounted, times the expected spend; never below the expected CLV."""
    from churnguard.clv import value_if_retained

    pm, sm = models["bgnbd"], models["spend"]
    out = value_if_retained(pm, sm, cdnow_rfm, months=12, discount_rate=0.01)
    p = pm.params_
    rate = (p["r"] + cdnow_rfm["frequency"]) / (p["alpha"] + cdnow_rfm["T"])
    annuity = sum(1.01**-i for i in range(1, 13))
    expected = rate * 4.345 * annuity * sm.expected_spend(cdnow_rfm)
    np.testing.assert_allclose(out, expected, rtol=1e-10)
    clv = customer_lifetime_value(pm, sm, cdnow_rfm, months=12, discount_rate=0.01)
    assert (out >= clv - 1e-9).all()
    # A long-lapsed heavy buyer is worth little in expectation but much if retained.
    lapsed = (cdnow_rfm["frequency"] >= 5) & (cdnow_rfm["T"] - cdnow_rfm["recency"] > 20)
    assert lapsed.any()
    assert (out[lapsed.to_numpy()] > 5 * clv[lapsed.to_numpy()]).all()


def test_customer_equity() -> None:
    assert customer_equity(np.array([1.5, 2.5, 6.0])) == 10.0
    assert customer_equity(pd.Series([1.0, 2.0], index=["x", "y"])) == 3.0
    with pytest.raises(ValueError, match="1 missing or infinite"):
        customer_equity(np.array([1.0, np.nan]))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"time_unit": "Y"}, ValueError, "time_unit must be one of"),
        ({"months": 0}, ValueError, "months must be >= 1"),
        ({"months": 1.5}, TypeError, "months must be an int"),
        ({"discount_rate": -1.0}, ValueError, "monthly rate"),
    ],
)
def test_bad_arguments(
    cdnow_rfm: pd.DataFrame, models: dict, kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        customer_lifetime_value(models["bgnbd"], models["spend"], cdnow_rfm, **kwargs)


@pytest.mark.parametrize("key", ["bgnbd", "pareto"])
def test_no_purchase_frame_is_value_frame_bit_for_bit(
    cdnow_rfm: pd.DataFrame, models: dict, key: str
) -> None:
    # The level correction reads the prior from it instead of value_frame: any difference
    # in the last bit would change the trained model.
    rfm = cdnow_rfm.iloc[::-1].set_index(np.arange(len(cdnow_rfm)) * 3)
    full = value_frame(models[key], models["spend"], rfm, horizon=13.0)
    lean = no_purchase_frame(models[key], rfm, horizon=13.0)
    assert list(lean.columns) == ["customer_id", "expected_purchases", "p_no_purchase"]
    pd.testing.assert_frame_equal(lean, full[lean.columns.tolist()], check_exact=True)


def test_kept_share_is_net_over_gross_spend_clipped() -> None:
    frame = pd.DataFrame(
        {
            "total_spend": [100.0, 75.0, 0.0, -50.0, 30.0, np.nan],
            "returned_amount": [0.0, 25.0, 40.0, 150.0, 0.0, 10.0],
        }
    )
    # no return, a quarter back, everything back, more back than bought (returns of
    # purchases before the log), no return, unknown net spend with a return
    np.testing.assert_array_equal(kept_share(frame), [1.0, 0.75, 0.0, 0.0, 1.0, 0.0])


def test_kept_share_is_none_without_any_return() -> None:
    assert (
        kept_share(pd.DataFrame({"total_spend": [1.0, 2.0], "returned_amount": [0.0, 0.0]})) is None
    )
    assert kept_share(pd.DataFrame({"total_spend": [1.0]})) is None


def test_fit_kept_prior_pools_the_base() -> None:
    frame = pd.DataFrame(
        {"total_spend": [90.0, 0.0, 50.0, -10.0], "returned_amount": [10.0, 0.0, 50.0, 10.0]}
    )
    prior = fit_kept_prior(frame)
    # gross 100 + 0 + 100 + 0 = 200, of which 70 returned; 2 customers with gross spend
    assert prior == KeptPrior(share=pytest.approx(130 / 200), weight=pytest.approx(100.0))
    assert fit_kept_prior(pd.DataFrame({"total_spend": [1.0]})) is None


def test_kept_share_with_a_prior_shrinks_towards_the_pooled_share() -> None:
    prior = KeptPrior(share=0.8, weight=100.0)
    frame = pd.DataFrame(
        {
            "total_spend": [0.0, 100.0, 1000.0, 0.0],
            "returned_amount": [50.0, 0.0, 0.0, 0.0],
        }
    )
    share = kept_share(frame, prior)
    # one returned purchase of 50: (0 + 80) / (50 + 100); no return yet: (100 + 80) / 200;
    # a long clean history stays near 1; no spend at all: the pooled share
    np.testing.assert_allclose(share, [80 / 150, 180 / 200, 1080 / 1100, 0.8])
    assert kept_share(frame) is not None and kept_share(frame)[0] == 0.0  # so far: nothing kept
    # A base without returns leaves a log without returns exactly as it is.
    clean = frame.assign(returned_amount=0.0, total_spend=[1.0, 2.0, 3.0, 4.0])
    assert kept_share(clean, KeptPrior(share=1.0, weight=100.0)) is None
    assert kept_share(clean, prior) is not None
