"""Monte Carlo calibration of the purchase models' predictions against simulated customers.

Customers are drawn from each model with known parameters (``btyd_future_sampler`` in
conftest), observed at T, and followed over (T, T + t]. The predictions of a model built
``from_params`` with the true parameters must then match what the simulated customers did,
overall and within deciles of the prediction, to within Monte Carlo error (4 standard
errors; the draws are seeded, so a pass is reproducible).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from churnguard.clv.purchase import PurchaseModel

TRUTH = {
    "bgnbd": {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5},
    "mbgnbd": {"r": 0.6, "alpha": 8.0, "a": 0.55, "b": 1.0},
    "pareto": {"r": 0.6, "alpha": 10.0, "s": 0.6, "beta": 12.0},
}
N_CUSTOMERS = 40_000
HORIZON = 26.0
Z = 4.0


@pytest.fixture(params=sorted(TRUTH))
def simulated(
    request: pytest.FixtureRequest, btyd_future_sampler: Callable[..., pd.DataFrame]
) -> tuple[PurchaseModel, pd.DataFrame]:
    model = request.param
    rng = np.random.default_rng({"bgnbd": 11, "mbgnbd": 12, "pareto": 13}[model])
    T = rng.uniform(26.0, 52.0, N_CUSTOMERS)
    sim = btyd_future_sampler(rng, model, N_CUSTOMERS, TRUTH[model], T=T, horizon=HORIZON)
    return PurchaseModel.from_params(TRUTH[model], model=model), sim


def _assert_calibrated(
    predicted: np.ndarray, observed: np.ndarray, variance: np.ndarray, what: str
) -> None:
    """Overall and per-decile means of observed vs predicted, within Z standard errors.

    ``variance`` is each customer's variance of ``observed`` under the model (a sum of
    independent draws, so a group's standard error is sqrt(sum variance) / n).
    """
    order = np.argsort(predicted, kind="stable")
    groups = [np.arange(len(predicted))] + np.array_split(order, 10)
    for i, idx in enumerate(groups):
        gap = observed[idx].mean() - predicted[idx].mean()
        se = np.sqrt(variance[idx].sum()) / len(idx)
        label = "overall" if i == 0 else f"decile {i}"
        assert abs(gap) <= Z * se + 1e-9, (what, label, gap, se)


def test_p_no_purchase_matches_simulated_silence(simulated) -> None:
    model, sim = simulated
    predicted = model.p_no_purchase(sim, HORIZON)
    silent = (sim["future"].to_numpy() == 0).astype(float)
    _assert_calibrated(predicted, silent, predicted * (1 - predicted), "p_no_purchase")
    # a real spread, not a constant: the deciles above test ranking, not only the mean
    assert np.ptp(predicted) > 0.5


def test_p_alive_matches_simulated_survivors(simulated) -> None:
    model, sim = simulated
    predicted = model.p_alive(sim)
    alive = sim["alive"].to_numpy(dtype=float)
    _assert_calibrated(predicted, alive, predicted * (1 - predicted), "p_alive")


def test_expected_purchases_match_simulated_counts(simulated) -> None:
    model, sim = simulated
    predicted = model.expected_purchases(sim, HORIZON)
    observed = sim["future"].to_numpy()
    # the variance of a count given the history is not in closed form: use the residuals'
    residual_var = np.full(len(observed), np.var(observed - predicted))
    _assert_calibrated(predicted, observed, residual_var, "expected_purchases")


def test_expected_purchases_if_alive_match_retained_customers(simulated) -> None:
    model, sim = simulated
    alive = sim["alive"].to_numpy()
    retained = sim[alive]
    predicted = model.expected_purchases_if_alive(retained, HORIZON)
    # the "value if retained" count: what customers alive at T buy with dropout switched off
    observed = retained["future_if_retained"].to_numpy()
    residual_var = np.full(len(observed), np.var(observed - predicted))
    _assert_calibrated(predicted, observed, residual_var, "expected_purchases_if_alive")
    assert predicted == pytest.approx(
        HORIZON
        * (model.params_["r"] + retained["frequency"])
        / (model.params_["alpha"] + retained["T"]),
        rel=1e-12,
    )


def test_if_alive_equals_survivors_only_for_pareto(simulated) -> None:
    """Pareto/NBD dropout ignores purchases, so survivors buy what retained customers buy.

    Under BG/NBD and MBG/NBD every purchase is a chance to drop out, so the customers who
    happen to survive a horizon are those who bought less: the "if retained" count is above
    their average by far more than Monte Carlo error.
    """
    model, sim = simulated
    survivors = sim[sim["alive_end"].to_numpy()]
    predicted = model.expected_purchases_if_alive(survivors, HORIZON)
    gap = survivors["future"].to_numpy() - predicted
    se = gap.std() / np.sqrt(len(gap))
    if model.model == "pareto":
        assert abs(gap.mean()) <= Z * se
    else:
        assert gap.mean() < -10 * se


def test_p_no_purchase_is_at_least_p_dead(simulated) -> None:
    model, sim = simulated
    silent = model.p_no_purchase(sim, HORIZON)
    assert (silent >= 1 - model.p_alive(sim) - 1e-12).all()


@pytest.mark.parametrize("model", sorted(TRUTH))
def test_simulator_marginals_match_the_model(
    btyd_future_sampler: Callable[..., pd.DataFrame], model: str
) -> None:
    """The simulator itself: mean repeat purchases by T equal the model's E[X(T)]."""
    rng = np.random.default_rng(5)
    sim = btyd_future_sampler(
        rng, model, 60_000, TRUTH[model], T=np.full(60_000, 39.0), horizon=1.0
    )
    expected = float(
        PurchaseModel.from_params(TRUTH[model], model=model).expected_purchases_new(39.0)
    )
    se = sim["frequency"].std() / np.sqrt(len(sim))
    assert abs(sim["frequency"].mean() - expected) <= Z * se
