"""Tests of Pareto/NBD with a dropout hazard that changed at a known date (clv.shift)."""

from __future__ import annotations

import numpy as np
import pytest

from churnguard.clv import (
    _likelihood,
    shifted_discounted_purchases,
    shifted_expected_purchases,
    shifted_p_no_purchase,
)

PARAMS = {"r": 1.0, "alpha": 30.0, "s": 2.0, "beta": 300.0}


def _histories(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    x = rng.integers(0, 80, n).astype(float)
    T = rng.uniform(0.5, 700.0, n)
    tx = np.where(x > 0, rng.uniform(0.0, 1.0, n) * T, 0.0)
    return x, tx, T


def simulate_shift(
    rng: np.random.Generator, n: int, *, change: float, end: float, horizon: float, k: float
) -> tuple[np.ndarray, ...]:
    """Pareto/NBD customers born at 0 whose hazard is ``k`` times higher from ``change`` on.

    Returns ``(x, tx, later)``: repeat purchases and time of the last one in ``(0, end]``,
    and the purchases in ``(end, end + horizon]``. The birth purchase is not counted, as
    in the RFM convention.
    """
    lam = rng.gamma(PARAMS["r"], 1.0 / PARAMS["alpha"], n)
    mu = rng.gamma(PARAMS["s"], 1.0 / PARAMS["beta"], n)
    hazard = rng.exponential(1.0, n)
    death = np.where(hazard <= mu * change, hazard / mu, change + (hazard - mu * change) / (k * mu))
    life = np.minimum(death, end + horizon)
    counts = rng.poisson(lam * life)
    owner = np.repeat(np.arange(n), counts)
    times = rng.uniform(0.0, 1.0, owner.size) * life[owner]
    seen = times <= end
    x = np.bincount(owner[seen], minlength=n).astype(float)
    tx = np.zeros(n)
    np.maximum.at(tx, owner[seen], times[seen])
    later = np.bincount(owner[~seen], minlength=n).astype(float)
    return x, tx, later


def test_no_change_is_the_plain_model() -> None:
    x, tx, T = _histories(np.random.default_rng(0), 5000)
    plain = _likelihood.p_no_purchase("pareto", PARAMS, x, tx, T, 91.0)
    for since in (0.0, 28.0, 250.0, 5000.0):
        # k = 1 itself returns the plain closed form; a hair above it takes the general
        # formulas (pre- and post-change integrals, the shifted future), which must agree
        got = shifted_p_no_purchase(PARAMS, x, tx, T, 91.0, since, 1.0 + 1e-12)
        np.testing.assert_allclose(got, plain, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(shifted_p_no_purchase(PARAMS, x, tx, T, 91.0, 28.0, 1.0), plain)


def test_more_hazard_means_more_silence_and_for_longer_since() -> None:
    x, tx, T = _histories(np.random.default_rng(1), 5000)
    plain = shifted_p_no_purchase(PARAMS, x, tx, T, 91.0, 28.0, 1.0)
    up = shifted_p_no_purchase(PARAMS, x, tx, T, 91.0, 28.0, 3.0)
    down = shifted_p_no_purchase(PARAMS, x, tx, T, 91.0, 28.0, 0.3)
    assert np.all(up >= plain - 1e-12) and np.all(down <= plain + 1e-12)
    assert up.mean() > plain.mean() + 0.02 > down.mean() + 0.02
    # a change that has already lasted 28 days has also thinned out the living (not for
    # each customer: surviving a higher hazard says a lower one of your own)
    future_only = shifted_p_no_purchase(PARAMS, x, tx, T, 91.0, 0.0, 3.0)
    assert up.mean() > future_only.mean() + 0.01 > plain.mean() + 0.01


def test_heavy_buyers_stay_finite() -> None:
    x = np.array([3000.0, 3000.0, 5000.0, 0.0])
    tx = np.array([699.9, 650.0, 699.0, 0.0])
    T = np.full(4, 700.0)
    p = shifted_p_no_purchase(PARAMS, x, tx, T, 91.0, 28.0, 3.0)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert p[1] > 0.999  # 50 silent days after buying every 0.2 days: gone
    # bought two hours ago: buys again within the horizon unless gone first
    assert p[0] < 0.01 and p[0] > _likelihood.p_no_purchase("pareto", PARAMS, 3000, 699.9, 700, 91)


def test_against_simulation_of_a_hazard_change() -> None:
    rng = np.random.default_rng(7)
    change, end, horizon = 200.0, 228.0, 91.0
    x, tx, later = simulate_shift(rng, 200_000, change=change, end=end, horizon=horizon, k=3.0)
    silent = (later == 0).astype(float)
    T = np.full(len(x), end)
    shifted = shifted_p_no_purchase(PARAMS, x, tx, T, horizon, end - change, 3.0)
    plain = shifted_p_no_purchase(PARAMS, x, tx, T, horizon, end - change, 1.0)
    # standard error of a mean of 200k Bernoulli draws: ~0.001
    assert abs(shifted.mean() - silent.mean()) < 0.004
    assert silent.mean() - plain.mean() > 0.03  # the test can fail: the plain model cannot
    for lo, hi in ((0, 0), (1, 2), (3, 6), (7, 20), (21, 10_000)):
        group = (x >= lo) & (x <= hi)
        assert abs(shifted[group].mean() - silent[group].mean()) < 0.012, (lo, hi)


def test_expected_purchases_without_a_change_are_the_plain_models() -> None:
    x, tx, T = _histories(np.random.default_rng(3), 5000)
    plain = _likelihood.pareto_expected_purchases(PARAMS, x, tx, T, 91.0)
    for since in (0.0, 28.0, 250.0, 5000.0):
        got = shifted_expected_purchases(PARAMS, x, tx, T, 91.0, since, 1.0 + 1e-12)
        np.testing.assert_allclose(got, plain, rtol=1e-9, atol=1e-12)
    at_s_one = {**PARAMS, "s": 1.0}  # the limit B log(1 + t/B)
    np.testing.assert_allclose(
        shifted_expected_purchases(at_s_one, x, tx, T, 91.0, 28.0, 1.0 + 1e-12),
        _likelihood.pareto_expected_purchases(at_s_one, x, tx, T, 91.0),
        rtol=1e-9,
        atol=1e-12,
    )


def test_expected_purchases_against_simulation_of_a_hazard_change() -> None:
    rng = np.random.default_rng(11)
    change, end, horizon = 200.0, 228.0, 91.0
    x, tx, later = simulate_shift(rng, 200_000, change=change, end=end, horizon=horizon, k=3.0)
    T = np.full(len(x), end)
    shifted = shifted_expected_purchases(PARAMS, x, tx, T, horizon, end - change, 3.0)
    plain = shifted_expected_purchases(PARAMS, x, tx, T, horizon, end - change, 1.0)
    # the mean of 200k heavy-tailed counts (mean ~0.5, sd ~2) has a standard error ~0.005
    assert abs(shifted.mean() / later.mean() - 1.0) < 0.03
    assert plain.mean() / later.mean() - 1.0 > 0.15  # the test can fail: the plain model does
    for lo, hi in ((0, 0), (1, 2), (3, 6), (7, 20), (21, 10_000)):
        group = (x >= lo) & (x <= hi)
        assert abs(shifted[group].mean() / later[group].mean() - 1.0) < 0.08, (lo, hi)


def test_discounted_purchases_add_up_the_periods() -> None:
    x, tx, T = _histories(np.random.default_rng(5), 2000)
    months = [30.0 * i for i in range(1, 13)]
    total = shifted_discounted_purchases(PARAMS, x, tx, T, months, [1.0] * 12, 28.0, 3.0)
    np.testing.assert_allclose(
        total, shifted_expected_purchases(PARAMS, x, tx, T, 360.0, 28.0, 3.0), rtol=1e-9
    )
    weights = [1.01**-i for i in range(1, 13)]
    by_hand = sum(
        w * (shifted_expected_purchases(PARAMS, x, tx, T, end, 28.0, 3.0)
             - shifted_expected_purchases(PARAMS, x, tx, T, end - 30.0, 28.0, 3.0))
        for w, end in zip(weights, months, strict=True)
    )  # fmt: skip
    np.testing.assert_allclose(
        shifted_discounted_purchases(PARAMS, x, tx, T, months, weights, 28.0, 3.0),
        by_hand,
        rtol=1e-9,
    )
    with pytest.raises(ValueError, match="increasing"):
        shifted_discounted_purchases(PARAMS, x, tx, T, [60.0, 30.0], [1.0, 1.0], 28.0, 3.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"k": 0.0}, "k must"), ({"since": -1.0}, "since must"), ({"t": float("nan")}, "t must")],
)
def test_bad_arguments_are_refused(kwargs: dict[str, float], match: str) -> None:
    args = {"t": 91.0, "since": 28.0, "k": 2.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        shifted_p_no_purchase(PARAMS, np.ones(2), np.ones(2), np.full(2, 5.0), **args)
    with pytest.raises(ValueError, match="parameters must be > 0"):
        shifted_p_no_purchase({**PARAMS, "s": 0.0}, np.ones(2), np.ones(2), np.ones(2), 1, 0, 1)
