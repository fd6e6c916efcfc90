"""Scoring a log with a fitted model: what a log must hold for the model's value side."""

from __future__ import annotations

import pandas as pd
import pytest

from churnguard.data import clean_transactions, load_cdnow
from churnguard.exceptions import InputDataError, ParameterError
from churnguard.model import ChurnGuardModel
from churnguard.model.estimator import SMALL_BASE


@pytest.mark.slow
def test_a_margin_model_refuses_a_log_without_margins() -> None:
    # Trained with margins, the model measures historical value by margin: scored on a
    # log without them, every customer read as zero margin (all tiers "low", no paid
    # action). Other optional columns only feed features and stay a warning.
    raw = load_cdnow(sample=True)
    raw = raw.assign(margin=(raw["amount"] * 0.3).round(2), channel="web")
    tx = clean_transactions(raw).transactions
    model = ChurnGuardModel(
        horizon_days=90,
        value_model="bgnbd",
        max_snapshots=3,
        classifier_params={"lgbm_params": {"n_estimators": 20}},
    ).fit(tx)
    with pytest.raises(InputDataError, match="by margin.*--margin-col"):
        model.predict(tx.drop(columns="margin"))
    scored = model.predict(tx.drop(columns="channel"))  # a feature column: still scores
    assert len(scored) == tx["customer_id"].nunique()
    assert isinstance(scored, pd.DataFrame)


@pytest.mark.slow
def test_a_small_base_is_said_to_give_noisy_figures() -> None:
    raw = load_cdnow(sample=True)
    few = raw[raw["customer_id"].isin(raw["customer_id"].unique()[:400])]
    model = ChurnGuardModel(
        horizon_days=90,
        value_model="bgnbd",
        max_snapshots=3,
        classifier_params={"lgbm_params": {"n_estimators": 20}},
    ).fit(clean_transactions(few).transactions)
    assert model.n_customers_ == 400 < SMALL_BASE
    assert any("only 400 customers" in note for note in model.report_.notes)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"learning_rate": 0.05}, r"\['learning_rate'\].*lgbm_params"),
        ({"lgbm_params": 0.05}, "must be a dict of LightGBM parameters"),
        ("fast", "must be a dict of ChurnClassifier arguments"),
        ({"random_state": 3}, r"ChurnGuardModel\(random_state=\.\.\.\)"),
    ],
)
def test_wrong_classifier_params_are_refused_before_any_fit(params: object, match: str) -> None:
    tx = pd.DataFrame(
        {"customer_id": ["a"], "date": pd.to_datetime(["2024-01-01"]), "amount": [1.0]}
    )
    with pytest.raises(ParameterError, match=match):
        ChurnGuardModel(classifier_params=params).fit(tx)  # type: ignore[arg-type]


def test_classifier_params_that_worked_before_still_do() -> None:
    from churnguard.model._settings import check_settings

    params = {
        "prior": "p_no_purchase",
        "calibration": "sigmoid",
        "lgbm_params": {"n_estimators": 5},
    }
    settings = ChurnGuardModel(classifier_params=params).get_params(deep=False)
    check_settings(settings)  # no error: prior is set by each candidate, as before
