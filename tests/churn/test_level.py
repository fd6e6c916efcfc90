"""The prior's level correction: measured per snapshot, forecast and validated out of time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnguard.churn import PriorChurnModel
from churnguard.churn.level import (
    LevelChoice,
    choose_level,
    forecast_sources,
    level_cutoffs,
    level_errors,
)
from churnguard.churn.metrics import expected_calibration_error
from churnguard.model import ChurnGuardModel

LAG = 91
STEP = 14


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _seasonal(c: pd.Timestamp, amplitude: float) -> float:
    """A level error with a one-year period (52 weeks, so the grid lands on it)."""
    return amplitude * float(np.cos(2 * np.pi * (c - pd.Timestamp("2022-01-01")).days / 364))


def _snapshots(
    amplitude: float, *, n: int = 4000, cutoffs: int = 40, seed: int = 0
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Labelled snapshots whose true log-odds are the prior's plus a level error b(c)."""
    rng = np.random.default_rng(seed)
    latest = pd.Timestamp("2023-10-01")
    frames = []
    for k in range(cutoffs):
        c = latest - pd.Timedelta(days=STEP * k)
        prior = rng.uniform(0.1, 0.95, n)
        y = rng.random(n) < _sigmoid(_logit(prior) + _seasonal(c, amplitude))
        frames.append(pd.DataFrame({"cutoff": c, "p_no_purchase": prior, "churned": y.astype(int)}))
    return pd.concat(frames[::-1], ignore_index=True), latest


def test_level_errors_recover_the_shift_of_each_snapshot() -> None:
    rows, _ = _snapshots(0.6, n=20_000, cutoffs=6)
    errors = level_errors(rows)
    truth = np.array([_seasonal(c, 0.6) for c in errors.index])
    assert errors.index.is_monotonic_increasing
    np.testing.assert_allclose(errors.to_numpy(), truth, atol=0.06)


def test_forecasts_only_read_snapshots_labelled_before_the_target() -> None:
    index = pd.date_range("2022-01-02", periods=40, freq="14D")
    errors = pd.Series(np.arange(40, dtype=float), index=index)
    target = index[-1]
    f = forecast_sources(errors, target, LAG)
    latest_known = errors[errors.index <= target - pd.Timedelta(days=LAG)]
    assert f["latest"] == latest_known.iloc[-1]
    assert f["season"] == errors[target - pd.Timedelta(days=364)]
    # Nothing is labelled a horizon before the first cutoff.
    assert forecast_sources(errors, index[0], LAG) == {}


def test_a_seasonal_level_error_is_corrected_with_last_years() -> None:
    rows, latest = _snapshots(0.6)
    when = latest + pd.Timedelta(days=LAG)
    choice = choose_level(rows, LAG)
    assert choice.source == "season"
    assert 0.5 <= choice.weight <= 1.0
    expected = _seasonal(when - pd.Timedelta(days=364), 0.6)
    assert choice.offset == pytest.approx(choice.weight * expected, abs=0.1)
    # Applied at the scoring date, it calibrates what the prior alone does not.
    rng = np.random.default_rng(9)
    prior = rng.uniform(0.1, 0.95, 20_000)
    y = (rng.random(prior.size) < _sigmoid(_logit(prior) + _seasonal(when, 0.6))).astype(int)
    shifted = _sigmoid(_logit(prior) + choice.offset)
    assert expected_calibration_error(y, shifted) < expected_calibration_error(y, prior) / 2
    # Every rolling-origin target has its own out-of-time forecast.
    assert set(choice.forecasts.index) <= set(rows["cutoff"])


def test_an_exact_prior_keeps_its_level() -> None:
    rows, _ = _snapshots(0.0)
    choice = choose_level(rows, LAG)
    assert choice.source == "none"
    assert choice.offset == 0.0
    assert set(choice.table.index) == {"season", "latest"}


def test_a_short_history_validates_no_seasonal_correction() -> None:
    rows, _ = _snapshots(0.6, cutoffs=20)  # 266 days: no target has last year's snapshot
    choice = choose_level(rows, LAG)
    assert choice.source != "season"
    assert choice.table.loc["season", "targets"] == 0


def test_level_cutoffs_continue_the_grid_back_a_year() -> None:
    cutoffs = [dt.date(2023, 10, 1) - dt.timedelta(days=STEP * k) for k in range(24)]
    extra = level_cutoffs(cutoffs, step_days=STEP, earliest=dt.date(2020, 1, 1))
    assert extra == sorted(extra)
    assert max(extra) == min(cutoffs) - dt.timedelta(days=STEP)
    assert min(extra) >= max(cutoffs) - dt.timedelta(days=364 + 84 + 7)
    assert min(extra) - dt.timedelta(days=STEP) < max(cutoffs) - dt.timedelta(days=364 + 84 + 7)
    # Never before the first date a snapshot may have.
    late = level_cutoffs(cutoffs, step_days=STEP, earliest=dt.date(2022, 10, 1))
    assert late and min(late) >= dt.date(2022, 10, 1)
    assert level_cutoffs([], step_days=STEP, earliest=dt.date(2020, 1, 1)) == []


def test_the_prior_model_applies_its_level() -> None:
    X = pd.DataFrame({"p_no_purchase": [0.2, 0.5, 0.9]})
    plain = PriorChurnModel().fit(X)
    shifted = PriorChurnModel(level=0.4).fit(X)
    np.testing.assert_allclose(plain.churn_probability(X), X["p_no_purchase"])
    np.testing.assert_allclose(
        shifted.churn_probability(X), _sigmoid(_logit(X["p_no_purchase"].to_numpy()) + 0.4)
    )
    contrib = shifted.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1), shifted.decision_function(X))
    np.testing.assert_allclose(contrib["bias"], 0.4)
    assert np.all(np.diff(shifted.churn_probability(X)) > 0)  # ranking unchanged


def _seasonal_log(n: int = 1500, seed: int = 4) -> pd.DataFrame:
    """Customers who buy far more in winter than in summer, over two and a half years."""
    rng = np.random.default_rng(seed)
    days = np.arange(900)
    season = 1 + 0.8 * np.cos(2 * np.pi * (days - 350) / 365.25)
    rate = rng.gamma(2.0, 1 / 80, n)
    alive = rng.exponential(600, n)
    counts = rng.poisson(np.outer(rate, season) * (days[None, :] < alive[:, None]))
    owner, day = np.nonzero(counts)
    first = rng.integers(0, 60, n)
    keep = day >= first[owner]
    owner, day = np.concatenate([owner[keep], np.arange(n)]), np.concatenate([day[keep], first])
    return pd.DataFrame(
        {
            "customer_id": np.char.add("s", owner.astype(str)),
            "date": pd.Timestamp("2022-01-01") + pd.to_timedelta(day, unit="D"),
            "amount": np.round(rng.gamma(2.0, 15.0, len(owner)), 2),
        }
    )


@pytest.mark.slow
def test_the_model_corrects_the_prior_level_on_a_seasonal_log() -> None:
    from churnguard.data import clean_transactions

    tx = clean_transactions(_seasonal_log()).transactions
    common = {"value_model": "bgnbd", "churn_model": "prior", "value_choice": "btyd"}
    model = ChurnGuardModel(**common).fit(tx)
    assert isinstance(model.level_, LevelChoice)
    assert model.churn_model_.level == model.level_.offset
    off = ChurnGuardModel(**common, level_correction=False).fit(tx)
    assert off.level_.source == "none" and off.churn_model_.level == 0.0


def test_a_prior_model_pickled_before_the_level_scores_as_before() -> None:
    X = pd.DataFrame({"p_no_purchase": [0.2, 0.5, 0.9]})
    old = PriorChurnModel().fit(X)
    del old.__dict__["level"]
    np.testing.assert_allclose(old.churn_probability(X), X["p_no_purchase"])
    np.testing.assert_allclose(old.contributions(X)["bias"], 0.0)


def test_extreme_churn_rates_still_give_a_level() -> None:
    """Snapshots where almost nobody (or almost everybody) churned, against a confident prior."""
    n = 5000
    for prior, churned in ((np.full(n, 0.999), 3), (np.full(n, 0.001), n - 3)):
        y = np.zeros(n, dtype=int)
        y[:churned] = 1
        rows = pd.DataFrame({"cutoff": pd.Timestamp("2023-01-01"), "p_no_purchase": prior})
        b = level_errors(rows.assign(churned=y)).iloc[0]
        assert np.isfinite(b)
        assert np.mean(_sigmoid(_logit(prior) + b)) == pytest.approx(y.mean(), rel=1e-3)
