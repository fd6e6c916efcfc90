"""Tests of PurchaseModel's stable predictions and degenerate-fit detection."""

from __future__ import annotations

import logging
import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import ParetoNBDFitter

from churnguard.clv import purchase
from churnguard.clv.purchase import (
    DROPOUT_SHARE_THRESHOLD,
    DegenerateFitWarning,
    PurchaseModel,
)
from churnguard.exceptions import InputDataError, NotFittedError

BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PARETO = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
HEAVY = {"r": 0.5, "alpha": 0.01, "s": 0.5, "beta": 1000.0}


def _heavy_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "frequency": [5000.0, 1000.0, 10.0, 0.0],
            "recency": [4990.0, 300.0, 5.0, 0.0],
            "T": [5000.0, 1000.0, 100.0, 100.0],
        }
    )


def _steady_buyers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Poisson buyers with Gamma(1, 5) rates who never leave: no dropout to estimate."""
    T = rng.uniform(26.0, 52.0, n)
    x = rng.poisson(rng.gamma(1.0, 1 / 5.0, n) * T)
    # the last of x uniform purchase times in (0, T]
    recency = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    return pd.DataFrame(
        {"customer_id": np.arange(n), "frequency": x.astype(float), "recency": recency, "T": T}
    )


# --- predictions -------------------------------------------------------------------------


def test_p_no_purchase_frame_and_arrays_agree(cdnow_rfm: pd.DataFrame) -> None:
    model = PurchaseModel.from_params(BGNBD)
    out = model.p_no_purchase(cdnow_rfm, 39.0)
    x, tx, T = (cdnow_rfm[c].to_numpy() for c in ("frequency", "recency", "T"))
    np.testing.assert_array_equal(out, model.p_no_purchase_arrays(39.0, x, tx, T))
    alive = model.p_alive(cdnow_rfm)
    closed = (
        1 - alive + alive * ((BGNBD["alpha"] + T) / (BGNBD["alpha"] + T + 39.0)) ** (BGNBD["r"] + x)
    )
    np.testing.assert_allclose(out, closed, rtol=1e-13)
    assert (model.p_no_purchase(cdnow_rfm, 0) == 1).all()


def test_expected_purchases_if_alive(cdnow_rfm: pd.DataFrame) -> None:
    model = PurchaseModel.from_params(PARETO, model="pareto")
    x, T = cdnow_rfm["frequency"].to_numpy(), cdnow_rfm["T"].to_numpy()
    out = model.expected_purchases_if_alive(cdnow_rfm, 52.0)
    np.testing.assert_allclose(out, 52.0 * (PARETO["r"] + x) / (PARETO["alpha"] + T), rtol=1e-14)
    # an upper bound of the unconditional expectation, which also counts the risk of leaving
    assert (out >= model.expected_purchases(cdnow_rfm, 52.0) - 1e-12).all()
    assert (model.expected_purchases_if_alive(cdnow_rfm, 0.0) == 0).all()


@pytest.mark.parametrize("method", ["p_no_purchase", "expected_purchases_if_alive"])
def test_new_methods_validate_like_the_old_ones(cdnow_rfm: pd.DataFrame, method: str) -> None:
    model = PurchaseModel.from_params(BGNBD)
    with pytest.raises(ValueError, match="t must be a finite number >= 0"):
        getattr(model, method)(cdnow_rfm, -1.0)
    with pytest.raises(InputDataError, match="missing column"):
        getattr(model, method)(cdnow_rfm.drop(columns="recency"), 10.0)
    with pytest.raises(InputDataError, match="recency exceeds T"):
        getattr(model, f"{method}_arrays")(10.0, [1.0], [5.0], [4.0])
    with pytest.raises(NotFittedError):
        getattr(PurchaseModel(), method)(cdnow_rfm, 10.0)


def test_p_alive_is_stable_for_heavy_pareto_buyers() -> None:
    model = PurchaseModel.from_params(HEAVY, model="pareto")
    frame = _heavy_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = model.fitter_.conditional_probability_alive(
            frame["frequency"], frame["recency"], frame["T"]
        )
    assert np.isnan(theirs[:2]).all()  # lifetimes' hyp2f1 form gives up
    ours = model.p_alive(frame)
    assert np.isfinite(ours).all() and ((ours >= 0) & (ours <= 1)).all()
    np.testing.assert_allclose(ours[2:], theirs[2:], rtol=1e-10)
    expected = model.expected_purchases(frame, 52.0)
    assert np.isfinite(expected).all() and (expected >= 0).all()
    assert np.isfinite(model.p_no_purchase(frame, 52.0)).all()


def test_pareto_expected_purchases_fallback_equals_lifetimes_where_finite(
    cdnow_rfm: pd.DataFrame,
) -> None:
    from churnguard.clv._likelihood import pareto_expected_purchases

    model = PurchaseModel.from_params(PARETO, model="pareto")
    x, tx, T = (cdnow_rfm[c].to_numpy() for c in ("frequency", "recency", "T"))
    np.testing.assert_allclose(
        pareto_expected_purchases(PARETO, x, tx, T, 39.0),
        model.expected_purchases(cdnow_rfm, 39.0),
        rtol=1e-10,
    )
    # s = 1, where lifetimes divides 0 by 0: the limit is finite and continuous
    at_one = pareto_expected_purchases({**PARETO, "s": 1.0}, x, tx, T, 39.0)
    near_one = pareto_expected_purchases({**PARETO, "s": 1.0 + 1e-7}, x, tx, T, 39.0)
    np.testing.assert_allclose(at_one, near_one, rtol=1e-6)


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_p_alive_arrays_keeps_grid_shapes(model: str) -> None:
    params = {"bgnbd": BGNBD, "mbgnbd": BGNBD, "pareto": PARETO}[model]
    fitted = PurchaseModel.from_params(params, model=model)
    rec, freq = np.meshgrid(np.arange(40.0), np.arange(10.0), indexing="ij")
    grid = fitted.p_alive_arrays(freq, rec, np.full(freq.shape, 39.0))
    assert grid.shape == (40, 10)
    assert fitted.p_alive_arrays(2.0, 30.0, 39.0).shape == ()


# --- degenerate fits ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["bgnbd", "mbgnbd", "pareto"])
def test_healthy_cdnow_fit_is_not_degenerate(cdnow_rfm: pd.DataFrame, key: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = PurchaseModel(key).fit(cdnow_rfm)
    assert model.degenerate_ is None
    assert model.dropout_identified
    assert model.n_nonfinite_ == 0
    # far from the threshold: a fifth to a half of CDNOW's customers leave within 39 weeks
    assert model.dropout_share_ > 100 * DROPOUT_SHARE_THRESHOLD


def test_nobody_churns_flags_the_bgnbd_fit() -> None:
    rfm = _steady_buyers(np.random.default_rng(1), 3_000)
    with pytest.warns(DegenerateFitWarning, match="nobody ever leaves"):
        model = PurchaseModel("bgnbd").fit(rfm)
    assert model.params_["a"] < 1e-4  # the optimiser ran a into its boundary
    assert not model.dropout_identified
    assert model.dropout_share_ < DROPOUT_SHARE_THRESHOLD
    assert model.degenerate_ is not None and model.degenerate_.startswith("nobody ever leaves")
    assert "a/(a+b)" in model.degenerate_
    assert model.n_nonfinite_ == 0
    # fit still returns the fitted model, and predicts as before: P(alive) ~1 for everyone
    assert model.p_alive(rfm).min() > 0.999


class _NaNForHeaviest(ParetoNBDFitter):
    """lifetimes' P(alive) as if its hyp2f1 term had failed for the heaviest buyers."""

    def conditional_probability_alive(self, frequency, recency, T):
        out = np.array(super().conditional_probability_alive(frequency, recency, T), dtype=float)
        out[np.asarray(frequency) >= 10] = np.nan
        return out


def test_nonfinite_backend_patterns_are_counted(
    cdnow_rfm: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, own_fits_fail
) -> None:
    # only a lifetimes fit can see NaN: churnguard's own likelihood stays finite
    own_fits_fail()
    monkeypatch.setitem(purchase._FITTER_CLASSES, "pareto", _NaNForHeaviest)
    with pytest.warns(DegenerateFitWarning, match="non-finite"):
        model = PurchaseModel("pareto").fit(cdnow_rfm)
    assert model.backend_ == "lifetimes"
    heavy = int((cdnow_rfm["frequency"] >= 10).sum())
    assert heavy > 0
    assert model.n_nonfinite_ == heavy
    assert model.degenerate_ == (
        f"{heavy} of 2357 customers have a non-finite log-likelihood or P(alive) at the fitted "
        "parameters in lifetimes' Pareto/NBD (typically heavy buyers), so its optimiser saw NaN "
        "and the estimate may not be the maximum-likelihood one"
    )
    assert model.dropout_identified  # the other failure mode is independent
    assert np.isfinite(model.p_alive(cdnow_rfm)).all()  # churnguard's own values stay finite


def _one_and_done_or_steady(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Half buy once and leave, half buy monthly and stay: 3-9 months of a subscription shop."""
    age = rng.uniform(100, 270, n)
    stay = rng.random(n) < 0.5
    x = np.where(stay, rng.poisson(age / 30.0), 0)
    last = np.clip(age - rng.exponential(15.0, n), 0, age)
    return pd.DataFrame(
        {"frequency": x.astype(float), "recency": np.round(np.where(x > 0, last, 0.0)),
         "T": np.round(age)}
    )  # fmt: skip


def test_a_fit_whose_expected_purchases_are_not_finite_is_degenerate() -> None:
    # MBG/NBD runs to r, alpha ~ 1e11 (one purchase rate) and a, b ~ 1e-12 (each customer
    # leaves at once or never): likelihood and P(alive) are finite, the expectation is NaN.
    rfm = _one_and_done_or_steady(np.random.default_rng(1), 3_000)
    with pytest.warns(DegenerateFitWarning, match="non-finite expected purchase count"):
        model = PurchaseModel("mbgnbd").fit(rfm)
    assert model.params_["r"] > 1e6 and model.params_["a"] < 1e-6
    assert model.n_nonfinite_ == 0 and np.isfinite(model.p_alive(rfm)).all()
    assert model.n_nonfinite_predictions_ == len(rfm)
    assert not np.isfinite(model.expected_purchases(rfm, 30.0)).any()
    assert model.degenerate_ is not None and "value predictions are unusable" in model.degenerate_
    # BG/NBD on the same customers predicts: the fallback the value stage takes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateFitWarning)
        other = PurchaseModel("bgnbd").fit(rfm)
    assert other.n_nonfinite_predictions_ == 0
    assert np.isfinite(other.expected_purchases(rfm, 30.0)).all()


def test_from_params_has_no_span_to_judge() -> None:
    model = PurchaseModel.from_params({**BGNBD, "a": 1e-6})
    assert np.isnan(model.dropout_share_)
    assert model.dropout_identified and model.degenerate_ is None and model.n_nonfinite_ == 0


def test_dropout_identified_needs_a_fit() -> None:
    with pytest.raises(NotFittedError):
        _ = PurchaseModel().dropout_identified


def test_degenerate_state_survives_pickling() -> None:
    rfm = _steady_buyers(np.random.default_rng(1), 3_000)
    with pytest.warns(DegenerateFitWarning):
        model = PurchaseModel("bgnbd").fit(rfm)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.degenerate_ == model.degenerate_
    assert clone.dropout_share_ == model.dropout_share_
    assert not clone.dropout_identified
    np.testing.assert_array_equal(clone.p_no_purchase(rfm, 10.0), model.p_no_purchase(rfm, 10.0))


@pytest.mark.parametrize("steady", [False, True])
def test_pickles_without_diagnostics_still_load(cdnow_rfm: pd.DataFrame, steady: bool) -> None:
    """Models pickled before fits recorded diagnostics get them from parameters and span."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateFitWarning)
        rfm = _steady_buyers(np.random.default_rng(1), 3_000) if steady else cdnow_rfm
        model = PurchaseModel("bgnbd").fit(rfm)
    state = model.__getstate__()
    for name in ("degenerate_", "n_nonfinite_", "dropout_share_"):
        state.pop(name)
    old = PurchaseModel.__new__(PurchaseModel)
    old.__setstate__(state)
    assert old.dropout_share_ == model.dropout_share_
    assert old.degenerate_ == model.degenerate_
    assert old.n_nonfinite_ == 0
    assert old.dropout_identified is (not steady)
    np.testing.assert_array_equal(old.p_alive(rfm), model.p_alive(rfm))


def test_full_period_cdnow_sample_is_not_degenerate(cdnow_sample_tx: pd.DataFrame) -> None:
    """The 1/10 sample from churnguard.data.load_cdnow(sample=True), all 78 weeks, in weeks."""
    from churnguard.features import rfm_summary

    rfm = rfm_summary(cdnow_sample_tx, time_unit="W")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateFitWarning)
        model = PurchaseModel("bgnbd").fit(rfm)
    assert model.degenerate_ is None
    assert model.dropout_share_ > 100 * DROPOUT_SHARE_THRESHOLD


def test_the_fallback_to_lifetimes_is_logged_with_its_time(
    cdnow_rfm: pd.DataFrame, own_fits_fail, caplog: pytest.LogCaptureFixture
) -> None:
    own_fits_fail()
    with caplog.at_level(logging.INFO, logger="churnguard.clv._estimator_support"):
        model = PurchaseModel("bgnbd").fit(cdnow_rfm)
    assert model.backend_ == "lifetimes"
    text = caplog.text
    assert "BG/NBD (penalizer 0): " in text and "fitting with lifetimes' optimiser" in text
    assert re.search(r"BG/NBD: lifetimes' fit took \d+\.\d s", text)
