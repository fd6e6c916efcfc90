"""Tests of churnguard.clv.selection: holdout scoring, choice of model, failed fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from lifetimes.utils import ConvergenceError

from churnguard.clv import _fitting, purchase
from churnguard.clv.purchase import ModelFitError
from churnguard.clv.selection import TABLE_COLUMNS, compare_models


@pytest.fixture(scope="module")
def comparison_inputs(cdnow_rfm: pd.DataFrame, cdnow_cal_holdout: pd.DataFrame):
    return cdnow_rfm, cdnow_cal_holdout["frequency_holdout"], 39.0


class _NeverConverges(BetaGeoFitter):
    def fit(self, *args, **kwargs):
        raise ConvergenceError("forced failure")


def test_table_scores_every_candidate_on_the_holdout(comparison_inputs) -> None:
    rfm, holdout, length = comparison_inputs
    result = compare_models(rfm, holdout, length)
    table = result.table
    assert list(table.columns) == TABLE_COLUMNS
    assert table["model"].tolist() == ["bgnbd", "pareto", "mbgnbd"]
    assert table["actual_total"].eq(holdout.sum()).all()
    assert table["converged"].all()
    model = result.models["bgnbd"]
    predicted = model.expected_purchases(rfm, length)
    row = table.set_index("model").loc["bgnbd"]
    assert row["mae_per_customer"] == pytest.approx(np.mean(np.abs(predicted - holdout)))
    assert row["rmse_per_customer"] == pytest.approx(np.sqrt(np.mean((predicted - holdout) ** 2)))
    assert row["total_error_pct"] == pytest.approx(
        100 * (predicted.sum() - holdout.sum()) / holdout.sum()
    )
    assert row["params"] == model.params_
    assert result.best == table.set_index("model")["mae_per_customer"].idxmin()
    assert result.criterion == "mae"


def test_log_likelihood_criterion_picks_the_highest(comparison_inputs) -> None:
    rfm, holdout, length = comparison_inputs
    result = compare_models(
        rfm, holdout, length, candidates=("bgnbd", "mbgnbd"), criterion="log_likelihood"
    )
    assert result.best == result.table.set_index("model")["log_likelihood"].idxmax()


def test_failed_candidate_is_reported_not_chosen(
    comparison_inputs, monkeypatch: pytest.MonkeyPatch, own_fits_fail
) -> None:
    rfm, holdout, length = comparison_inputs
    own_fits_fail(lambda model, pen: model == "bgnbd")
    monkeypatch.setitem(purchase._FITTER_CLASSES, "bgnbd", _NeverConverges)
    result = compare_models(rfm, holdout, length, candidates=("bgnbd", "mbgnbd"))
    failed = result.table.set_index("model").loc["bgnbd"]
    assert not failed["converged"]
    assert np.isnan(failed["mae_per_customer"])
    assert "could not be fitted" in failed["error"]
    assert result.best == "mbgnbd"
    assert set(result.models) == {"mbgnbd"}


def test_all_candidates_failing_raises(
    comparison_inputs, monkeypatch: pytest.MonkeyPatch, own_fits_fail
) -> None:
    rfm, holdout, length = comparison_inputs
    own_fits_fail()
    monkeypatch.setitem(purchase._FITTER_CLASSES, "bgnbd", _NeverConverges)
    with pytest.raises(ModelFitError, match="no candidate could be fitted"):
        compare_models(rfm, holdout, length, candidates=("bgnbd",))


@pytest.mark.parametrize("candidates", [("mbgnbd", "bgnbd"), ("bgnbd", "mbgnbd")])
def test_ties_go_to_the_first_candidate(
    comparison_inputs, monkeypatch: pytest.MonkeyPatch, candidates: tuple[str, str]
) -> None:
    rfm, holdout, length = comparison_inputs
    # both keys now fit and predict the same BG/NBD model, so their holdout scores tie exactly
    own_fit = _fitting.fit_purchase
    monkeypatch.setattr(
        _fitting,
        "fit_purchase",
        lambda model, *args, **kw: own_fit("bgnbd" if model == "mbgnbd" else model, *args, **kw),
    )
    monkeypatch.setitem(purchase._FITTER_CLASSES, "mbgnbd", BetaGeoFitter)
    result = compare_models(rfm, holdout, length, candidates=candidates)
    assert result.table["mae_per_customer"].nunique() == 1
    assert result.best == candidates[0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"criterion": "aic"}, ValueError, "criterion must be one of"),
        ({"candidates": ("bgnbd", "bgbb")}, ValueError, "candidates must be distinct keys"),
        ({"candidates": "bgnbd"}, ValueError, "non-empty sequence"),
        ({"holdout_purchases": np.zeros(3)}, ValueError, "one value per calibration row"),
        ({"holdout_purchases": pd.DataFrame({"a": [1]})}, TypeError, "received a DataFrame"),
        ({"holdout_length": 0}, ValueError, "holdout_length must be > 0"),
    ],
)
def test_bad_arguments(comparison_inputs, kwargs: dict, error: type, message: str) -> None:
    rfm, holdout, length = comparison_inputs
    args = {"holdout_purchases": holdout, "holdout_length": length} | kwargs
    with pytest.raises(error, match=message):
        compare_models(rfm, **args)
