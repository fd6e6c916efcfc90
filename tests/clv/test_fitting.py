"""Tests of churnguard.clv._fitting: parity with lifetimes, recovery, weights, gradients, bounds."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

from churnguard.clv import _fitting, _fitting_pareto, _likelihood
from churnguard.clv.purchase import DegenerateFitWarning, PurchaseModel
from churnguard.clv.spend import SpendModel

LIFETIMES_CLASSES = {
    "bgnbd": BetaGeoFitter,
    "mbgnbd": ModifiedBetaGeoFitter,
    "pareto": ParetoNBDFitter,
}
# Parameter points where the gradients are checked (time unit: weeks of CDNOW). The last
# Pareto/NBD ones have min(α, β) << max(α, β), where the series hands over to quadrature.
GRADIENT_POINTS = [
    ("bgnbd", {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4}),
    ("bgnbd", {"r": 2.0, "alpha": 0.5, "a": 1e-6, "b": 5e4}),
    ("mbgnbd", {"r": 0.52, "alpha": 6.2, "a": 0.89, "b": 1.6}),
    ("pareto", {"r": 0.55, "alpha": 10.6, "s": 0.61, "beta": 11.7}),
    ("pareto", {"r": 0.55, "alpha": 50.0, "s": 1.5, "beta": 0.3}),
    ("pareto", {"r": 0.55, "alpha": 0.05, "s": 0.3, "beta": 2000.0}),
]


def _patterns(rfm: pd.DataFrame) -> tuple[np.ndarray, ...]:
    grouped = rfm.groupby(["frequency", "recency", "T"]).size().reset_index(name="w")
    return tuple(grouped[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T", "w"))


def _lifetimes_fit(model: str, x, tx, T, w, penalizer: float = 0.0) -> dict[str, float]:
    # lifetimes divides its Pareto/NBD objective by mean(w) instead of sum(w)
    coef = penalizer * len(w) if model == "pareto" else penalizer
    fitter = LIFETIMES_CLASSES[model](penalizer_coef=coef)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if model == "pareto":
            fitter.fit(x, tx, T, weights=w, initial_params=np.ones(4), tol=1e-8)
        else:
            fitter.fit(x, tx, T, weights=w)
    return {k: float(v) for k, v in fitter.params_.items()}


def _total_ll(model: str, params: dict[str, float], x, tx, T, w) -> float:
    return float(w @ _likelihood.log_likelihood(model, params, x, tx, T))


@pytest.fixture(scope="module")
def cdnow_patterns(cdnow_rfm: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return _patterns(cdnow_rfm)


# --- parity with lifetimes -----------------------------------------------------------------


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
@pytest.mark.parametrize("penalizer", [0.0, 0.01])
def test_purchase_fit_matches_lifetimes_on_cdnow(
    cdnow_patterns: tuple[np.ndarray, ...], model: str, penalizer: float
) -> None:
    x, tx, T, w = cdnow_patterns
    result = _fitting.fit_purchase(model, _fitting.prepare_purchase(x, tx, T, w), penalizer)
    theirs = _lifetimes_fit(model, x, tx, T, w, penalizer)
    assert result.converged and result.at_bound == () and result.n_fallback == 0
    assert result.params == pytest.approx(theirs, rel=1e-3)
    theirs_ll = _total_ll(model, theirs, x, tx, T, w)
    assert result.log_likelihood == pytest.approx(_total_ll(model, result.params, x, tx, T, w))
    if penalizer == 0:
        # the maximum likelihood: never below lifetimes' estimate (beyond rounding)
        assert result.log_likelihood >= theirs_ll - 1e-6 * abs(theirs_ll)


@pytest.mark.parametrize("penalizer", [0.0, 0.001])
def test_gamma_gamma_fit_matches_lifetimes_on_cdnow(
    cdnow_rfm: pd.DataFrame, penalizer: float
) -> None:
    repeat = cdnow_rfm[cdnow_rfm["frequency"] > 0]
    x, m = repeat["frequency"].to_numpy(float), repeat["monetary_value"].to_numpy(float)
    result = _fitting.fit_gamma_gamma(_fitting.prepare_gamma_gamma(x, m), penalizer)
    theirs = GammaGammaFitter(penalizer_coef=penalizer).fit(x, m)
    assert result.converged
    assert result.params == pytest.approx(dict(theirs.params_), rel=1e-3)
    theirs_ll = -GammaGammaFitter._negative_log_likelihood(
        np.log(theirs.params_.to_numpy()), x, m, np.ones_like(x), 0.0
    ) * len(x)
    ours_ll = -GammaGammaFitter._negative_log_likelihood(
        np.log(list(result.params.values())), x, m, np.ones_like(x), 0.0
    ) * len(x)
    assert result.log_likelihood == pytest.approx(ours_ll, rel=1e-12)
    if penalizer == 0:
        assert result.log_likelihood >= theirs_ll - 1e-6 * abs(theirs_ll)


def test_models_fit_with_churnguard_and_keep_lifetimes_predictions(
    cdnow_rfm: pd.DataFrame,
) -> None:
    model = PurchaseModel("pareto").fit(cdnow_rfm)
    assert model.backend_ == "churnguard" and model.at_bound_ == ()
    assert dict(model.fitter_.params_) == model.params_
    # lifetimes' own helpers still work on the fitter churnguard set up
    direct = model.fitter_.predict(39.0, 2.0, 30.43, 38.86)
    assert model.expected_purchases_arrays(39.0, 2.0, 30.43, 38.86) == pytest.approx(direct)
    spend = SpendModel().fit(cdnow_rfm)
    assert spend.backend_ == "churnguard"
    assert dict(spend.fitter_.params_) == spend.params_


# --- recovery of known parameters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "truth", "tolerance"),
    [
        # about four standard errors at n = 20,000
        ("bgnbd", {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}, (0.03, 0.45, 0.16, 0.65)),
        ("mbgnbd", {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}, (0.03, 0.45, 0.16, 0.65)),
        ("pareto", {"r": 0.5, "alpha": 5.0, "s": 0.8, "beta": 12.0}, (0.03, 0.45, 0.2, 4.0)),
    ],
)
def test_recovers_simulated_purchase_parameters(
    btyd_future_sampler: Callable[..., pd.DataFrame],
    model: str,
    truth: dict[str, float],
    tolerance: tuple[float, ...],
) -> None:
    rng = np.random.default_rng(20240601)
    n = 20_000
    sim = btyd_future_sampler(rng, model, n, truth, T=rng.uniform(26, 52, n), horizon=1.0)
    x, tx, T, w = _patterns(sim)
    result = _fitting.fit_purchase(model, _fitting.prepare_purchase(x, tx, T, w))
    assert result.converged
    for (name, value), tol in zip(truth.items(), tolerance, strict=True):
        assert abs(result.params[name] - value) < tol, (name, result.params[name])


def test_recovers_simulated_spend_parameters(
    gamma_gamma_sampler: Callable[..., np.ndarray],
) -> None:
    rng = np.random.default_rng(7)
    x = np.maximum(rng.poisson(3, 50_000), 1).astype(float)
    m = gamma_gamma_sampler(rng, x, p=6.0, q=4.0, v=15.0)
    result = _fitting.fit_gamma_gamma(_fitting.prepare_gamma_gamma(x, m))
    assert result.converged
    assert result.params == pytest.approx({"p": 6.0, "q": 4.0, "v": 15.0}, rel=0.15)


# --- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_weighted_patterns_equal_expanded_rows(cdnow_rfm: pd.DataFrame, model: str) -> None:
    rows = cdnow_rfm[["frequency", "recency", "T"]].to_numpy(dtype=float).T
    x, tx, T, w = _patterns(cdnow_rfm)
    expanded = _fitting.fit_purchase(model, _fitting.prepare_purchase(*rows))
    weighted = _fitting.fit_purchase(model, _fitting.prepare_purchase(x, tx, T, w))
    assert len(w) < rows.shape[1]
    assert weighted.params == pytest.approx(expanded.params, rel=1e-6)
    assert weighted.log_likelihood == pytest.approx(expanded.log_likelihood, rel=1e-12)
    # the objective is a mean: scaling every weight changes nothing but the total
    doubled = _fitting.fit_purchase(model, _fitting.prepare_purchase(x, tx, T, 2 * w))
    assert doubled.params == pytest.approx(weighted.params, rel=1e-6)
    assert doubled.log_likelihood == pytest.approx(2 * weighted.log_likelihood, rel=1e-12)


def test_gamma_gamma_weights_equal_expanded_rows(cdnow_rfm: pd.DataFrame) -> None:
    repeat = cdnow_rfm[cdnow_rfm["frequency"] > 0]
    x, m = repeat["frequency"].to_numpy(float), repeat["monetary_value"].to_numpy(float)
    # three copies of every row against one weighted row
    expanded = _fitting.fit_gamma_gamma(_fitting.prepare_gamma_gamma(np.tile(x, 3), np.tile(m, 3)))
    weighted = _fitting.fit_gamma_gamma(_fitting.prepare_gamma_gamma(x, m, np.full(len(x), 3.0)))
    assert weighted.params == pytest.approx(expanded.params, rel=1e-6)
    assert weighted.log_likelihood == pytest.approx(expanded.log_likelihood, rel=1e-12)


# --- gradients and likelihood values -------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "params", "penalizer"),
    # a penalty on parameters of 1e4 would dwarf the likelihood and the differences' precision
    [(*point, 0.0) for point in GRADIENT_POINTS]
    + [(*point, 0.05) for point in GRADIENT_POINTS if max(point[1].values()) < 100],
)
def test_purchase_gradient_matches_finite_differences(
    cdnow_patterns: tuple[np.ndarray, ...], model: str, params: dict, penalizer: float
) -> None:
    data = _fitting.prepare_purchase(*cdnow_patterns)
    theta = np.log([params[k] * (data.scale if k in ("alpha", "beta") else 1.0) for k in params])
    _, grad = _fitting.purchase_objective(model, theta, data, penalizer)
    h = 1e-5
    numeric = np.array(
        [
            (
                _fitting.purchase_objective(model, theta + h * e, data, penalizer)[0]
                - _fitting.purchase_objective(model, theta - h * e, data, penalizer)[0]
            )
            / (2 * h)
            for e in np.eye(4)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("penalizer", [0.0, 0.05])
def test_gamma_gamma_gradient_matches_finite_differences(
    cdnow_rfm: pd.DataFrame, penalizer: float
) -> None:
    repeat = cdnow_rfm[cdnow_rfm["frequency"] > 0]
    data = _fitting.prepare_gamma_gamma(
        repeat["frequency"].to_numpy(float), repeat["monetary_value"].to_numpy(float)
    )
    points = [[6.25, 3.74, 15.44]] + ([[0.5, 30.0, 2000.0]] if penalizer == 0 else [])
    for point in points:
        theta = np.log(point)
        _, grad = _fitting.gamma_gamma_objective(theta, data, penalizer)
        h = 1e-5
        numeric = [
            (
                _fitting.gamma_gamma_objective(theta + h * e, data, penalizer)[0]
                - _fitting.gamma_gamma_objective(theta - h * e, data, penalizer)[0]
            )
            / (2 * h)
            for e in np.eye(3)
        ]
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("model", "params"), GRADIENT_POINTS)
def test_pattern_log_likelihood_equals_likelihood_module(
    cdnow_patterns: tuple[np.ndarray, ...], model: str, params: dict
) -> None:
    x, tx, T, _ = cdnow_patterns
    ours, _ = _fitting.purchase_log_likelihood(model, params, _fitting.prepare_purchase(x, tx, T))
    # atol: at a = 1e-6, b = 5e4 _likelihood's betaln differences are off by ~1e-10 (against
    # 40-digit mpmath); the products of (b+j)/(a+b+j) here are exact to rounding
    np.testing.assert_allclose(
        ours, _likelihood.log_likelihood(model, params, x, tx, T), rtol=1e-12, atol=1e-9
    )


def test_pareto_series_and_quadrature_agree() -> None:
    """The series (fast path) and the split with quadrature give the same log G and gradient."""
    rng = np.random.default_rng(5)
    x = np.repeat([0.0, 1.0, 4.0, 30.0, 400.0], 40)
    u = rng.uniform(0, 1, len(x))
    u[::5] = 0.0
    for r, alpha, s, beta in [(0.6, 0.4, 0.7, 1.5), (2.5, 3.0, 0.2, 0.8), (0.3, 0.02, 1.4, 0.3)]:
        log_g, grad, n_quad = _fitting.pareto_log_g(r, x, s, alpha, beta, u)
        assert n_quad < len(x) // 2
        quad_g, quad_grad = _fitting_pareto.log_g_split(r, x, s, alpha, beta, u)
        np.testing.assert_allclose(quad_g, log_g, rtol=1e-12)
        np.testing.assert_allclose(quad_grad, grad, rtol=1e-9, atol=1e-12)


# --- boundaries ------------------------------------------------------------------------------


def _steady_buyers(n: int, seed: int) -> pd.DataFrame:
    """Poisson buyers with Gamma(1, 5) rates who never leave: dropout at its boundary."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(26.0, 52.0, n)
    x = rng.poisson(rng.gamma(1.0, 1 / 5.0, n) * T)
    recency = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    return pd.DataFrame(
        {"customer_id": np.arange(n), "frequency": x.astype(float), "recency": recency, "T": T}
    )


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_nobody_leaves_fits_converge_and_are_flagged(model: str) -> None:
    rfm = _steady_buyers(2_000, seed=1)
    with pytest.warns(DegenerateFitWarning, match="nobody ever leaves"):
        fitted = PurchaseModel(model).fit(rfm)
    assert fitted.backend_ == "churnguard"
    assert not fitted.dropout_identified
    dropout = fitted.params_["s" if model == "pareto" else "a"]
    assert dropout < 1e-3
    # the purchase process is still estimated: mean rate r / alpha = 1/5 per week
    assert fitted.params_["r"] / fitted.params_["alpha"] == pytest.approx(0.2, rel=0.05)


def test_optimum_on_the_box_is_returned_and_reported() -> None:
    """Identical customers: no rate heterogeneity, so r and alpha run off to infinity."""
    rfm = pd.DataFrame({"customer_id": range(10), "frequency": 3.0, "recency": 5.0, "T": 10.0})
    x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    result = _fitting.fit_purchase("bgnbd", _fitting.prepare_purchase(x, tx, T))
    assert result.converged and "r" in result.at_bound
    assert result.params["r"] == pytest.approx(math.exp(_fitting.LOG_BOUND), rel=1e-6)
    assert math.isfinite(result.log_likelihood)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateFitWarning)
        model = PurchaseModel("bgnbd").fit(rfm)
    assert model.at_bound_ == result.at_bound and model.backend_ == "churnguard"
    assert np.isfinite(model.p_alive(rfm)).all()


def test_fits_are_deterministic(cdnow_patterns: tuple[np.ndarray, ...]) -> None:
    """No global random state: lifetimes' Pareto/NBD drew its start from numpy's."""
    data = _fitting.prepare_purchase(*cdnow_patterns)
    np.random.seed(1)  # noqa: NPY002 (the legacy global state is what must not matter)
    first = _fitting.fit_purchase("pareto", data)
    np.random.seed(2)  # noqa: NPY002
    assert _fitting.fit_purchase("pareto", data).params == first.params
