"""Backtests: the outcome window, the refusals, every run reported, errors that do not cancel."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.churn.baselines import BASELINE_PROBABILITIES
from churnguard.evaluation.backtest import backtest, observe_outcomes
from churnguard.exceptions import InputDataError, InsufficientHistoryError


def _log(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def test_the_outcome_window_starts_after_the_as_of_day_and_ends_on_its_last_day() -> None:
    log = _log(
        [
            ("a", "2024-01-01", 10.0),
            ("a", "2024-01-31", 5.0),  # the as-of day: the past
            ("b", "2024-01-01", 10.0),
            ("b", "2024-03-01", 7.0),  # the window's last day: counted
            ("c", "2024-01-01", 10.0),
            ("c", "2024-02-10", -4.0),  # a return only: no purchase, spend floored at 0
            ("d", "2024-01-01", 10.0),
            ("d", "2024-03-02", 9.0),  # a day after the window
        ]
    )
    customers = pd.Series(["d", "c", "b", "a"])
    out = observe_outcomes(log, customers, "2024-01-31", 30)
    assert out["customer_id"].tolist() == ["d", "c", "b", "a"]
    assert out["future_purchases"].tolist() == [0, 0, 1, 0]
    assert out["churned"].tolist() == [1, 1, 0, 1]
    assert out["future_spend"].tolist() == [0.0, 0.0, 7.0, 0.0]


def test_a_window_past_the_end_of_the_log_is_refused_before_any_training() -> None:
    log = _log([("a", "2024-01-01", 1.0), ("a", "2024-03-01", 1.0)])
    with pytest.raises(InsufficientHistoryError, match="2024-01-31"):
        backtest(log, ["2024-02-01"], 30)
    # Too early: a horizon of history is needed before the date to train on.
    with pytest.raises(InsufficientHistoryError, match="from 2024-01-31 to 2024-01-31"):
        backtest(log, ["2024-01-15"], 30)
    # No date fits a horizon longer than half the log: say so, not a date that fails.
    with pytest.raises(InsufficientHistoryError, match=r"no as-of date fits.* at most 30 days"):
        backtest(log, ["2024-01-31"], 45)
    with pytest.raises(InputDataError, match="non-empty list"):
        backtest(log, [], 30)
    with pytest.raises(InputDataError, match="non-empty list"):
        backtest(log, "2024-01-01", 30)  # type: ignore[arg-type]


@pytest.mark.slow
def test_every_run_has_every_baseline_and_value_errors_do_not_cancel(
    cdnow_sample_tx: pd.DataFrame, tmp_path: Path
) -> None:
    dates = ["1997-09-30", "1998-03-31"]
    result = backtest(cdnow_sample_tx, dates, 91, out_dir=tmp_path)
    table = result.table
    churn = table[table["kind"] == "churn"]
    for day in dates:
        scores = set(churn.loc[churn["as_of"] == day, "score"])
        assert scores == {"churnguard", "recency", *BASELINE_PROBABILITIES}
    probabilities = churn[churn["score"].isin(["churnguard", *BASELINE_PROBABILITIES])]
    assert np.isfinite(probabilities["ece"]).all()
    value = table[table["kind"] == "value"].set_index(["score", "as_of"])["aggregate_error"]
    errors = value.loc["churnguard"]
    # On this sample the two dates miss in opposite directions: a signed mean would hide it.
    assert errors.min() < 0 < errors.max()
    mean = result.aggregate.loc[("value", "churnguard")]
    assert mean["aggregate_abs_error"] == pytest.approx(errors.abs().mean())
    assert mean["aggregate_bias"] == pytest.approx(errors.mean())
    assert "aggregate_error" not in result.aggregate
    assert {p.name for p in result.files} >= {"backtest.csv", "aggregate.csv", "summary.json"}
    assert len(list(tmp_path.glob("reliability_*.png"))) == len(dates)
    assert result.runs[0].as_of == dt.date(1997, 9, 30)
