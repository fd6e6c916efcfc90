"""The seasonal level of an active customer's spend: measured, forecast, validated, applied."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from churnguard._money import KEPT_SHARE
from churnguard.model.value_choice import ACTIVE_SPEND, window_value
from churnguard.model.value_level import (
    active_spend_errors,
    btyd_window_errors,
    choose_value_level,
    value_level_note,
)

LAG = 91
STEP = 14


def test_errors_are_log_observed_over_structural_spend_of_active_customers() -> None:
    rows = pd.DataFrame(
        {
            "cutoff": pd.to_datetime(["2024-01-01"] * 3 + ["2024-01-15"] * 3),
            "future_purchases": [2, 0, 1, 1, 1, 0],
            "future_spend": [30.0, 0.0, 10.0, 5.0, 15.0, 0.0],
            # a silent customer does not count, nor one without a structural spend (on
            # either side: its observed spend would otherwise have nothing to compare with)
            ACTIVE_SPEND: [10.0, 99.0, 10.0, np.nan, 10.0, 99.0],
        }
    )
    errors = active_spend_errors(rows)
    assert list(errors.index) == list(pd.to_datetime(["2024-01-01", "2024-01-15"]))
    np.testing.assert_allclose(errors.to_numpy(), [np.log(40 / 20), np.log(15 / 10)])


def _errors(
    amplitude: float, *, cutoffs: int = 60, noise: float = 0.02, seed: int = 0
) -> pd.Series:
    """Level errors with a one-year period (52 weeks, so the 14-day grid lands on it)."""
    rng = np.random.default_rng(seed)
    latest = pd.Timestamp("2024-03-31")
    index = pd.DatetimeIndex([latest - pd.Timedelta(days=STEP * k) for k in range(cutoffs)][::-1])
    days = (index - pd.Timestamp("2022-01-01")).days.to_numpy()
    values = amplitude * np.cos(2 * np.pi * days / 364) + rng.normal(0, noise, cutoffs)
    return pd.Series(values, index=index)


def test_a_seasonal_spend_level_is_forecast_from_last_year() -> None:
    errors = _errors(0.4)
    choice = choose_value_level(errors, LAG)
    assert choice.source == "season" and choice.weight >= 0.8
    when = errors.index.max() + pd.Timedelta(days=LAG)
    ago = np.abs((errors.index - (when - pd.Timedelta(days=364))).days)
    year_ago = errors.iloc[int(np.argmin(ago))]
    # the learned model sits at the pooled level of its calibration snapshots (42 days)
    recent = errors[errors.index >= errors.index.max() - pd.Timedelta(days=42)]
    reference = np.log(np.mean(np.exp(recent.to_numpy())))
    assert len(recent) == 4
    assert choice.offset == pytest.approx(choice.weight * (year_ago - reference))
    # what the model misses at the scoring date: the true seasonal error minus that level
    truth = 0.4 * np.cos(2 * np.pi * (when - pd.Timestamp("2022-01-01")).days / 364)
    assert abs(choice.offset - (truth - reference)) < 0.1
    assert "x" in value_level_note(choice) and "unchanged" not in value_level_note(choice)


@pytest.mark.parametrize("seed", range(6))
def test_no_season_no_correction(seed: int) -> None:
    # 5% noise per cutoff, no season: averaging last year's level with the latest one
    # lowers that noise a little, which is not a season.
    choice = choose_value_level(_errors(0.0, noise=0.05, seed=seed), LAG)
    assert choice.source == "none" and choice.offset == 0.0
    assert "unchanged" in value_level_note(choice)


def test_a_log_shorter_than_a_year_gets_no_correction() -> None:
    choice = choose_value_level(_errors(0.4, cutoffs=24), LAG)
    assert choice.source == "none" and choice.offset == 0.0
    assert "a year earlier" in choice.reason
    assert choose_value_level(pd.Series(dtype=float), LAG).source == "none"


def test_btyd_errors_are_log_observed_over_btyd_value_of_every_customer() -> None:
    rows = pd.DataFrame(
        {
            "cutoff": pd.to_datetime(["2024-01-01"] * 2 + ["2024-01-15"] * 2),
            "future_spend": [30.0, 0.0, 10.0, 10.0],
            "expected_purchases": [1.0, 2.0, 1.0, 1.0],
            "expected_spend": [10.0, 5.0, 10.0, 10.0],
            KEPT_SHARE: [1.0, 1.0, 0.5, np.nan],  # no returns at a cutoff: all kept
        }
    )
    errors = btyd_window_errors(rows)
    np.testing.assert_allclose(errors.to_numpy(), [np.log(30 / 20), np.log(20 / 15)])


def test_a_value_that_learned_no_level_is_corrected_from_zero() -> None:
    errors = _errors(0.4) + 0.1  # a season and a steady bias, as BTYD x Gamma-Gamma has
    choice = choose_value_level(errors, LAG, relative=False)
    assert choice.source == "season" and choice.weight >= 0.8
    when = errors.index.max() + pd.Timedelta(days=LAG)
    truth = 0.1 + 0.4 * np.cos(2 * np.pi * (when - pd.Timestamp("2022-01-01")).days / 364)
    assert abs(choice.offset - truth) < 0.1
    assert "BTYD" in choice.reason
    # without a season or a bias there is nothing to correct
    assert choose_value_level(_errors(0.0, noise=0.05), LAG, relative=False).source == "none"


class _Spend:
    """A fitted spend model's interface: a constant spend of an active window."""

    def predict(self, frame: pd.DataFrame, num_threads: int | None = None) -> np.ndarray:
        return np.full(len(frame), 50.0)


def test_the_level_scales_the_learned_active_spend_or_the_btyd_value() -> None:
    frame = pd.DataFrame({"expected_purchases": [1.0, 2.0], "expected_spend": [20.0, 30.0]})
    p = np.array([0.2, 0.6])
    spend = _Spend()
    hurdle = window_value("hurdle", frame, p, spend, level=np.log(0.5))  # type: ignore[arg-type]
    np.testing.assert_allclose(hurdle, (1 - p) * 25.0)
    blend = window_value("blend", frame, p, spend, level=np.log(0.5))  # type: ignore[arg-type]
    np.testing.assert_allclose(blend, 0.5 * ((1 - p) * 25.0 + [20.0, 60.0]))
    btyd = window_value("btyd", frame, p, spend, level=np.log(0.5))  # type: ignore[arg-type]
    np.testing.assert_allclose(btyd, [10.0, 30.0])  # with btyd, the whole value


@pytest.mark.slow
@pytest.mark.parametrize("value_choice", ["hurdle", "btyd"])
def test_the_model_fits_and_applies_the_spend_level_on_a_seasonal_world(value_choice: str) -> None:
    from churnguard.data import WORLDS, clean_transactions
    from churnguard.model import ChurnGuardModel

    world = WORLDS["continuous_acquisition"](3000, 0)
    tx = clean_transactions(world.transactions).transactions
    as_of = pd.Timestamp(world.suggested_as_of[-1])
    history = tx.loc[tx["date"] <= as_of]
    common = {"churn_model": "prior", "value_choice": value_choice, "horizon_days": 91}
    model = ChurnGuardModel(**common).fit(history)
    # a December peak of amplitude 0.4: last year's level is chosen (found on every as-of
    # date of this world, for both value models)
    assert model.value_level_.source == "season" and model.value_level_.offset != 0.0
    assert model.value_level_.table.loc["season", "targets"] >= 3  # the older snapshots count
    assert any(n.startswith("spend level:") for n in model.report_.notes)
    frame = model.features(history, as_of)
    p = model.churn_probability(frame)
    offset = model.value_level_.offset
    applied = model.window_value(frame, p)
    model.value_level_ = dataclasses.replace(model.value_level_, offset=0.0)
    np.testing.assert_allclose(applied, model.window_value(frame, p) * np.exp(offset))
    if value_choice == "btyd":
        return
    # Two years of history: the cutoffs' own BTYD fits and the final one agree on the base.
    assert model.window_spend_model_.base_shift_ == 1.0
    assert any(n.startswith("learned spend: ") for n in model.report_.notes)
    off = ChurnGuardModel(**common, level_correction=False).fit(history)
    assert off.value_level_.source == "none" and off.value_level_.offset == 0.0
