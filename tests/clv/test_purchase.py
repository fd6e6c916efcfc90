"""Tests of churnguard.clv.purchase: published CDNOW fits, recovery, closed forms, errors."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError
from scipy.special import hyp2f1
from sklearn.base import clone

from churnguard.clv import purchase
from churnguard.clv.purchase import ModelFitError, PurchaseModel, check_rfm
from churnguard.exceptions import ConvergenceWarning, InputDataError, NotFittedError

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", CDNOW 1/10th sample.
BGNBD_CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PARETO_CDNOW = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}


def _bgnbd_conditional(t, x, t_x, T, r, alpha, a, b):
    """FHL 2005 eq. (10), written out independently of lifetimes."""
    z = t / (alpha + T + t)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
    numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    denominator = 1 + (x > 0) * a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (
        r + x
    )
    return numerator / denominator


def test_raw_cdnow_sample_matches_published_summary(cdnow_rfm: pd.DataFrame) -> None:
    published = pd.read_csv(str(files("lifetimes") / "datasets" / "cdnow_customers_summary.csv"))
    ours = cdnow_rfm.assign(ID=cdnow_rfm["customer_id"].astype(int)).sort_values("ID")
    assert len(ours) == 2357
    np.testing.assert_array_equal(ours["frequency"].to_numpy(), published["frequency"].to_numpy())
    np.testing.assert_allclose(ours["recency"], published["recency"], atol=0.005)
    np.testing.assert_allclose(ours["T"], published["T"], atol=0.005)
    assert ours["T"].max() == pytest.approx(38.86, abs=0.005)


def test_bgnbd_reproduces_published_cdnow_fit(cdnow_rfm: pd.DataFrame) -> None:
    model = PurchaseModel("bgnbd").fit(cdnow_rfm)
    assert model.params_ == pytest.approx(BGNBD_CDNOW, abs=1e-3)
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)
    assert model.penalizer_ == 0.0
    assert model.n_customers_ == 2357
    assert model.n_patterns_ < model.n_customers_
    assert model.model_name == "BG/NBD"


def test_pareto_reproduces_published_cdnow_fit(cdnow_rfm: pd.DataFrame) -> None:
    model = PurchaseModel("pareto").fit(cdnow_rfm)
    assert model.params_ == pytest.approx(PARETO_CDNOW, abs=2e-3)
    assert model.log_likelihood_ == pytest.approx(-9595.0, abs=0.1)
    assert model.model_name == "Pareto/NBD"


def test_mbgnbd_lets_customers_die_before_any_repeat(cdnow_rfm: pd.DataFrame) -> None:
    model = PurchaseModel("mbgnbd").fit(cdnow_rfm)
    zero = cdnow_rfm[cdnow_rfm["frequency"] == 0]
    assert model.model_name == "MBG/NBD"
    assert np.isfinite(model.log_likelihood_)
    # BG/NBD has P(alive)=1 at frequency 0; MBG/NBD lets customers drop right after buying once
    assert (model.p_alive(zero) < 1).all()
    assert (PurchaseModel("bgnbd").fit(cdnow_rfm).p_alive(zero) == 1).all()


def test_bgnbd_recovers_simulated_parameters(bgnbd_sampler: Callable[..., pd.DataFrame]) -> None:
    rng = np.random.default_rng(20240501)
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    rfm = bgnbd_sampler(rng, 20_000, T=rng.uniform(26, 52, 20_000), **truth)
    fitted = PurchaseModel("bgnbd").fit(rfm).params_
    # about four standard errors at n = 20k: a wrong likelihood or time scaling lands far outside
    tolerance = {"r": 0.03, "alpha": 0.45, "a": 0.16, "b": 0.65}
    for name, value in truth.items():
        assert abs(fitted[name] - value) < tolerance[name], (name, fitted[name])


def test_published_conditional_expectation_and_p_alive() -> None:
    model = PurchaseModel.from_params(BGNBD_CDNOW, model="bgnbd")
    customer = pd.DataFrame(
        {"customer_id": ["0001"], "frequency": [2.0], "recency": [30.43], "T": [38.86]}
    )
    # FHL 2005: customer 1 is expected to make 1.226 purchases in the next 39 weeks
    assert model.expected_purchases(customer, 39)[0] == pytest.approx(1.226, abs=5e-4)
    p = BGNBD_CDNOW
    expected_alive = 1 / (
        1 + p["a"] / (p["b"] + 1) * ((p["alpha"] + 38.86) / (p["alpha"] + 30.43)) ** (p["r"] + 2)
    )
    assert model.p_alive(customer)[0] == pytest.approx(expected_alive, rel=1e-12)
    assert expected_alive == pytest.approx(0.7266, abs=1e-4)


def test_conditional_expectation_matches_closed_form_for_many_customers(
    cdnow_rfm: pd.DataFrame,
) -> None:
    model = PurchaseModel.from_params(BGNBD_CDNOW, model="bgnbd")
    x, t_x, T = (cdnow_rfm[c].to_numpy() for c in ("frequency", "recency", "T"))
    expected = _bgnbd_conditional(52.0, x, t_x, T, **BGNBD_CDNOW)
    np.testing.assert_allclose(model.expected_purchases(cdnow_rfm, 52.0), expected, rtol=1e-10)


def test_unconditional_expectation_matches_closed_form() -> None:
    model = PurchaseModel.from_params(BGNBD_CDNOW, model="bgnbd")
    r, alpha, a, b = BGNBD_CDNOW.values()
    t = np.array([0.0, 1.0, 39.0, 78.0])
    closed = (
        (a + b - 1)
        / (a - 1)
        * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    )
    np.testing.assert_allclose(model.expected_purchases_new(t), closed, rtol=1e-12)
    assert float(model.expected_purchases_new(39.0)) == pytest.approx(closed[2])


@pytest.mark.parametrize(
    ("key", "fitter_cls"), [("bgnbd", BetaGeoFitter), ("mbgnbd", ModifiedBetaGeoFitter)]
)
def test_weighted_pattern_fit_equals_per_customer_fit(
    cdnow_rfm: pd.DataFrame, key: str, fitter_cls: type
) -> None:
    ours = PurchaseModel(key).fit(cdnow_rfm)
    theirs = fitter_cls().fit(cdnow_rfm["frequency"], cdnow_rfm["recency"], cdnow_rfm["T"])
    for name, value in ours.params_.items():
        assert value == pytest.approx(theirs.params_[name], rel=1e-4)


def test_weighted_pareto_fit_equals_per_customer_fit(cdnow_rfm: pd.DataFrame) -> None:
    ours = PurchaseModel("pareto").fit(cdnow_rfm)
    theirs = ParetoNBDFitter().fit(
        cdnow_rfm["frequency"],
        cdnow_rfm["recency"],
        cdnow_rfm["T"],
        initial_params=np.ones(4),
        tol=1e-8,
    )
    for name, value in ours.params_.items():
        assert value == pytest.approx(theirs.params_[name], rel=1e-4)


def test_duplicated_customers_change_counts_not_parameters(cdnow_rfm: pd.DataFrame) -> None:
    once = PurchaseModel("bgnbd").fit(cdnow_rfm)
    twice = PurchaseModel("bgnbd").fit(pd.concat([cdnow_rfm, cdnow_rfm], ignore_index=True))
    assert twice.n_customers_ == 2 * once.n_customers_
    assert twice.n_patterns_ == once.n_patterns_
    assert twice.log_likelihood_ == pytest.approx(2 * once.log_likelihood_, rel=1e-9)
    assert twice.params_ == pytest.approx(once.params_, rel=1e-6)


class _FailsUnpenalized(BetaGeoFitter):
    def fit(self, *args, **kwargs):
        if self.penalizer_coef == 0:
            raise ConvergenceError("forced failure")
        return super().fit(*args, **kwargs)


class _AlwaysNaN(BetaGeoFitter):
    def fit(self, *args, **kwargs):
        fitted = super().fit(*args, **kwargs)
        fitted.params_ = fitted.params_ * np.nan
        return fitted


def test_convergence_failure_retries_with_penalizer_and_warns(
    cdnow_rfm: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, own_fits_fail
) -> None:
    # both churnguard's optimiser and the lifetimes fallback fail without a penalty
    own_fits_fail(lambda model, pen: pen == 0)
    monkeypatch.setitem(purchase._FITTER_CLASSES, "bgnbd", _FailsUnpenalized)
    with pytest.warns(ConvergenceWarning, match=r"penalizer=0\.001"):
        model = PurchaseModel("bgnbd").fit(cdnow_rfm)
    assert model.penalizer_ == 0.001
    assert model.backend_ == "churnguard"
    assert np.isfinite(list(model.params_.values())).all()


def test_own_failure_falls_back_to_lifetimes_at_the_same_penalizer(
    cdnow_rfm: pd.DataFrame, own_fits_fail
) -> None:
    own_fits_fail()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = PurchaseModel("bgnbd").fit(cdnow_rfm)
    assert model.backend_ == "lifetimes" and model.penalizer_ == 0.0
    assert model.params_ == pytest.approx(BGNBD_CDNOW, abs=1e-3)


def test_non_finite_fit_on_every_penalizer_raises(
    cdnow_rfm: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, own_fits_fail
) -> None:
    own_fits_fail()
    monkeypatch.setitem(purchase._FITTER_CLASSES, "bgnbd", _AlwaysNaN)
    with pytest.raises(ModelFitError, match=r"penalizer=0\.1: churnguard's optimiser"):
        PurchaseModel("bgnbd", penalizer_grid=(0.1,)).fit(cdnow_rfm)


def test_clean_fit_emits_no_warning(cdnow_rfm: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PurchaseModel("bgnbd").fit(cdnow_rfm)


def _frame(**overrides: list) -> pd.DataFrame:
    data = {
        "customer_id": ["a", "b", "c"],
        "frequency": [0.0, 2.0, 5.0],
        "recency": [0.0, 10.0, 30.0],
        "T": [20.0, 30.0, 40.0],
    }
    data.update(overrides)
    return pd.DataFrame(data)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_frame().drop(columns="recency"), r"missing column\(s\) \['recency'\]"),
        (_frame(recency=[0.0, 31.0, 30.0]), "recency exceeds T"),
        (_frame(frequency=[0.0, 2.5, 5.0]), "whole numbers"),
        (_frame(T=[20.0, np.nan, 40.0]), "missing or infinite"),
        (_frame(recency=[1.0, 10.0, 30.0]), "frequency 0 but recency"),
        (_frame(frequency=[0.0, -1.0, 5.0]), "negative"),
        (_frame(T=["20", "30", "40"]), "must be numeric"),
        (_frame().iloc[:0], "no rows"),
    ],
)
def test_invalid_rfm_frames_are_rejected(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        PurchaseModel().fit(frame)


def test_non_dataframe_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="RFM pandas DataFrame"):
        check_rfm({"frequency": [1]})  # type: ignore[arg-type]


def test_bad_constructor_values_are_reported_at_fit() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        PurchaseModel("bgbb").fit(_frame())
    with pytest.raises(ValueError, match="penalizer"):
        PurchaseModel(penalizer=-1.0).fit(_frame())


def test_predicting_before_fit_raises_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        PurchaseModel().p_alive(_frame())


def test_predict_keeps_index_and_ids_and_is_positional(cdnow_rfm: pd.DataFrame) -> None:
    model = PurchaseModel("bgnbd").fit(cdnow_rfm)
    before = cdnow_rfm.copy()
    order = np.random.default_rng(3).permutation(len(cdnow_rfm))
    shuffled = cdnow_rfm.iloc[order].set_axis([f"row{i}" for i in order])
    out = model.predict(shuffled, horizon=39)
    pd.testing.assert_frame_equal(cdnow_rfm, before)
    assert list(out.columns) == ["customer_id", "p_alive", "expected_purchases"]
    assert out.index.equals(shuffled.index)
    assert out["customer_id"].tolist() == shuffled["customer_id"].tolist()
    assert out.loc["row0", "customer_id"] == "0001"  # string ids are never cast
    np.testing.assert_allclose(out["p_alive"], model.p_alive(cdnow_rfm)[order])
    np.testing.assert_allclose(
        out["expected_purchases"], model.expected_purchases(cdnow_rfm, 39)[order]
    )
    assert (model.expected_purchases(cdnow_rfm, 0) == 0).all()


def test_predict_without_customer_id_explains_fix(cdnow_rfm: pd.DataFrame) -> None:
    model = PurchaseModel.from_params(BGNBD_CDNOW)
    with pytest.raises(InputDataError, match="reset_index"):
        model.predict(cdnow_rfm.drop(columns="customer_id"), horizon=10)


def test_estimator_follows_sklearn_conventions() -> None:
    model = PurchaseModel("pareto", penalizer=0.1)
    assert clone(model).get_params() == {
        "model": "pareto",
        "penalizer": 0.1,
        "penalizer_grid": (0.001, 0.01, 0.1),
    }
    assert not hasattr(model, "params_")


def test_from_params_rejects_wrong_names() -> None:
    with pytest.raises(ValueError, match=r"needs parameters \['r', 'alpha', 's', 'beta'\]"):
        PurchaseModel.from_params(BGNBD_CDNOW, model="pareto")


def test_pareto_penalizer_means_the_same_as_for_bgnbd(cdnow_rfm: pd.DataFrame) -> None:
    # lifetimes penalizes the Pareto/NBD *total* log-likelihood but the BG/NBD *mean*; churnguard
    # uses the mean for both, i.e. lifetimes' per-customer Pareto fit with coef * n_customers
    n = len(cdnow_rfm)
    ours = PurchaseModel("pareto", penalizer=0.01).fit(cdnow_rfm)
    theirs = ParetoNBDFitter(penalizer_coef=0.01 * n).fit(
        cdnow_rfm["frequency"],
        cdnow_rfm["recency"],
        cdnow_rfm["T"],
        initial_params=np.ones(4),
        tol=1e-8,
    )
    assert ours.penalizer_ == 0.01
    for name, value in ours.params_.items():
        assert value == pytest.approx(theirs.params_[name], rel=1e-3)
    assert ours.params_["alpha"] < 0.95 * PARETO_CDNOW["alpha"]  # the penalty really bites


@pytest.mark.parametrize("kind", ["bgnbd", "mbgnbd"])
def test_pickle_round_trip_predicts_identically(kind: str) -> None:
    """Models are saved with joblib; lifetimes' fitters are rebuilt from the parameters."""
    import pickle

    rng = np.random.default_rng(3)
    n = 300
    freq = rng.integers(0, 5, n)
    T = rng.uniform(10, 40, n)
    rfm = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "frequency": freq,
            "recency": np.where(freq > 0, T * rng.uniform(0.1, 1, n), 0.0),
            "T": T,
            "monetary_value": np.where(freq > 0, rng.gamma(3, 10, n), 0.0),
        }
    )
    model = PurchaseModel(kind).fit(rfm)
    clone = pickle.loads(pickle.dumps(model))
    assert "fitter_" not in model.__getstate__()
    np.testing.assert_array_equal(clone.p_alive(rfm), model.p_alive(rfm))
    np.testing.assert_array_equal(
        clone.expected_purchases(rfm, 12), model.expected_purchases(rfm, 12)
    )
