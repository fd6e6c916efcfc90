"""Tests of churnguard.clv.spend: published Gamma-Gamma fit, closed form, recovery, warnings."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from lifetimes import GammaGammaFitter
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value
from lifetimes.utils import ConvergenceError

from churnguard.clv import spend
from churnguard.clv.purchase import ModelFitError
from churnguard.clv.spend import SpendModel
from churnguard.exceptions import ConvergenceWarning, InputDataError, InsufficientHistoryError

# Fader, Hardie & Lee (2005) / Hardie's note 025, CDNOW sample: p, q, gamma.
GG_CDNOW = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cdnow_monetary() -> pd.DataFrame:
    return load_cdnow_summary_data_with_monetary_value().reset_index()


def test_reproduces_published_cdnow_fit(cdnow_monetary: pd.DataFrame) -> None:
    model = SpendModel().fit(cdnow_monetary)
    assert model.params_ == pytest.approx(GG_CDNOW, abs=0.01)
    assert model.n_customers_ == 946
    assert model.frequency_monetary_corr_ == pytest.approx(0.11, abs=0.01)
    assert model.population_mean_ == pytest.approx(6.25 * 15.44 / 2.74, rel=2e-3)


def test_raw_sample_calibration_gives_the_same_fit(cdnow_rfm: pd.DataFrame) -> None:
    assert SpendModel().fit(cdnow_rfm).params_ == pytest.approx(GG_CDNOW, abs=0.01)


def test_expected_spend_equals_lifetimes(cdnow_monetary: pd.DataFrame) -> None:
    model = SpendModel().fit(cdnow_monetary)
    theirs = GammaGammaFitter()
    theirs.params_ = pd.Series(model.params_)
    expected = theirs.conditional_expected_average_profit(
        cdnow_monetary["frequency"], cdnow_monetary["monetary_value"]
    )
    np.testing.assert_allclose(model.expected_spend(cdnow_monetary), expected, rtol=1e-12)


def test_no_history_gets_population_mean() -> None:
    model = SpendModel.from_params({"p": 6.0, "q": 4.0, "gamma": 15.0})
    frame = pd.DataFrame({"frequency": [0.0, 3.0, 2.0], "monetary_value": [0.0, 0.0, 50.0]})
    out = model.expected_spend(frame)
    assert out[0] == out[1] == pytest.approx(6.0 * 15.0 / 3.0)
    # credibility-weighted mix of own mean (50) and population mean (30), weight px/(px+q-1)
    assert out[2] == pytest.approx(0.8 * 50 + 0.2 * 30)


def test_recovers_simulated_parameters(gamma_gamma_sampler: Callable[..., np.ndarray]) -> None:
    rng = np.random.default_rng(42)
    frequency = np.maximum(rng.poisson(3, 50_000), 1).astype(float)
    monetary = gamma_gamma_sampler(rng, frequency, p=6.0, q=4.0, v=15.0)
    model = SpendModel().fit(pd.DataFrame({"frequency": frequency, "monetary_value": monetary}))
    assert model.params_ == pytest.approx({"p": 6.0, "q": 4.0, "v": 15.0}, rel=0.15)
    assert model.population_mean_ == pytest.approx(30.0, rel=0.03)


def test_only_repeat_buyers_are_used(cdnow_monetary: pd.DataFrame) -> None:
    repeaters = cdnow_monetary[cdnow_monetary["frequency"] > 0]
    assert SpendModel().fit(repeaters).params_ == pytest.approx(
        SpendModel().fit(cdnow_monetary).params_, rel=1e-9
    )


def test_correlated_spend_and_frequency_warns() -> None:
    rng = np.random.default_rng(12)
    frequency = np.maximum(rng.poisson(3, 3000), 1).astype(float)
    monetary = 10 + 5 * frequency + rng.gamma(2, 2, 3000)
    frame = pd.DataFrame({"frequency": frequency, "monetary_value": monetary})
    with pytest.warns(UserWarning, match="assumes they are independent"):
        model = SpendModel().fit(frame)
    assert model.frequency_monetary_corr_ > 0.9


def test_independent_spend_fits_without_warnings(cdnow_monetary: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SpendModel().fit(cdnow_monetary)


def test_heavy_tailed_spend_is_refused(gamma_gamma_sampler: Callable[..., np.ndarray]) -> None:
    rng = np.random.default_rng(11)
    frequency = np.maximum(rng.poisson(2, 5000), 1).astype(float)
    monetary = gamma_gamma_sampler(rng, frequency, p=2.0, q=0.6, v=10.0)
    with pytest.raises(ModelFitError, match="q=.* <= 1"):
        SpendModel().fit(pd.DataFrame({"frequency": frequency, "monetary_value": monetary}))


class _FailsUnpenalized(GammaGammaFitter):
    def fit(self, *args, **kwargs):
        if self.penalizer_coef == 0:
            raise ConvergenceError("forced failure")
        return super().fit(*args, **kwargs)


def test_convergence_failure_retries_with_penalizer(
    cdnow_monetary: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, own_fits_fail
) -> None:
    own_fits_fail(lambda model, pen: pen == 0)
    monkeypatch.setitem(spend._FITTER_CLASSES, "gamma_gamma", _FailsUnpenalized)
    with pytest.warns(ConvergenceWarning, match=r"penalizer=0\.0001"):
        model = SpendModel(penalizer_grid=(0.0001,)).fit(cdnow_monetary)
    assert model.penalizer_ == 0.0001
    assert model.backend_ == "churnguard"
    assert model.params_["q"] > 1


def test_own_failure_falls_back_to_lifetimes(cdnow_monetary: pd.DataFrame, own_fits_fail) -> None:
    ours = SpendModel().fit(cdnow_monetary)
    own_fits_fail()
    theirs = SpendModel().fit(cdnow_monetary)
    assert (ours.backend_, theirs.backend_) == ("churnguard", "lifetimes")
    assert theirs.params_ == pytest.approx(ours.params_, rel=1e-5)
    assert theirs.log_likelihood_ == pytest.approx(ours.log_likelihood_, rel=1e-10)


def test_input_errors() -> None:
    with pytest.raises(InputDataError, match="monetary_value"):
        SpendModel().fit(pd.DataFrame({"frequency": [1.0, 2.0]}))
    one_buyer = pd.DataFrame({"frequency": [0.0, 2.0], "monetary_value": [0.0, 10.0]})
    with pytest.raises(InsufficientHistoryError, match="1 of 2 customers did"):
        SpendModel().fit(one_buyer)
    with pytest.raises(ValueError, match="q > 1"):
        SpendModel.from_params({"p": 1.0, "q": 0.9, "v": 1.0})
