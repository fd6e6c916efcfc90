"""Churn candidates: the learned models are used only where they beat the BTYD prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.churn import PriorChurnModel, compare_candidates

FAST = {"lgbm_params": {"n_estimators": 150}}


def _rows(n: int, seed: int, *, signal: float) -> pd.DataFrame:
    """Snapshot-like rows: a prior, a behavioural feature and labels.

    ``signal`` is how much the feature moves the true log-odds beyond the prior: 0
    makes the prior the exact truth, a negative value reverses the feature's effect.
    """
    rng = np.random.default_rng(seed)
    prior = rng.uniform(0.2, 0.95, n)
    feature = rng.normal(size=n)
    z = np.log(prior / (1 - prior)) + signal * feature
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(n)],
            "p_no_purchase": prior,
            "spend_trend": feature,
            "churned": y,
        }
    )


FEATURES = ["p_no_purchase", "spend_trend"]


def test_prior_is_kept_when_the_learned_pattern_does_not_hold_out_of_time() -> None:
    """Trees learn a pattern that reverses later: the prior must win, not the trees."""
    learn = _rows(6000, 1, signal=1.0)
    later = _rows(6000, 2, signal=-1.0)
    result = compare_candidates(learn, learn, later, FEATURES, classifier_params=FAST)
    assert result.chosen == "prior"
    assert "no learned candidate" in result.reason
    loss = result.table["log_loss"]
    assert loss["prior"] < loss["anchored"] and loss["prior"] < loss["plain"]


def test_a_learned_candidate_wins_when_it_beats_the_prior_out_of_time() -> None:
    learn = _rows(6000, 3, signal=1.0)
    later = _rows(6000, 4, signal=1.0)
    result = compare_candidates(learn, learn, later, FEATURES, classifier_params=FAST)
    assert result.chosen in ("anchored", "plain")
    assert result.table.loc[result.chosen, "log_loss"] < result.table.loc["prior", "log_loss"]
    assert result.table.loc[result.chosen, "roc_auc"] > result.table.loc["prior", "roc_auc"]
    # The gain is stated with significant digits and as a share (never "by 0.0000").
    gain = result.table.loc["prior", "log_loss"] - result.table.loc[result.chosen, "log_loss"]
    share = gain / result.table.loc["prior", "log_loss"]
    assert result.reason.endswith(f"by {gain:.3g} ({share:.2%})")


def test_a_candidate_that_cannot_be_fitted_is_reported_not_chosen() -> None:
    learn = _rows(500, 5, signal=1.0).assign(churned=1)  # one class: trees cannot learn
    later = _rows(500, 6, signal=1.0)
    result = compare_candidates(learn, learn, later, FEATURES, classifier_params=FAST)
    assert result.chosen == "prior"
    assert "both classes" in str(result.table.loc["anchored", "error"])


def test_prior_model_has_the_classifier_interface() -> None:
    rows = _rows(50, 7, signal=0.0)
    model = PriorChurnModel().fit(rows[FEATURES])
    p = model.churn_probability(rows)
    np.testing.assert_allclose(p, rows["p_no_purchase"])
    assert model.predict_proba(rows).shape == (50, 2)
    contrib = model.contributions(rows)
    np.testing.assert_allclose(contrib.sum(axis=1), model.decision_function(rows))
    with pytest.raises(ValueError, match="p_no_purchase"):
        PriorChurnModel().fit(rows[["spend_trend"]])


def test_an_optimistic_validation_keeps_the_simplest_candidate_within_one_se() -> None:
    """A learned model's tiny edge on adjacent snapshots is no evidence: simplest within 1 SE."""
    learn = _rows(4000, 8, signal=0.05)
    later = _rows(4000, 9, signal=0.05)
    lowest = compare_candidates(learn, learn, later, FEATURES, classifier_params=FAST)
    tolerant = compare_candidates(
        learn, learn, later, FEATURES, classifier_params=FAST, tolerance_se=1.0
    )
    order = ["prior", "anchored", "plain"]
    assert order.index(tolerant.chosen) <= order.index(lowest.chosen)
    y = later["churned"].to_numpy()

    def losses(name: str) -> np.ndarray:
        q = np.clip(tolerant.scores[name], 1e-6, 1 - 1e-6)
        return -(y * np.log(q) + (1 - y) * np.log1p(-q))

    diff = losses(tolerant.chosen) - losses(lowest.chosen)
    assert diff.mean() <= diff.std(ddof=1) / np.sqrt(len(diff)) + 1e-12
    if tolerant.chosen != lowest.chosen:
        assert "optimistic" in tolerant.reason


def test_a_clear_win_survives_the_tolerance() -> None:
    learn = _rows(6000, 3, signal=1.0)
    later = _rows(6000, 4, signal=1.0)
    result = compare_candidates(
        learn, learn, later, FEATURES, classifier_params=FAST, tolerance_se=1.0
    )
    assert result.chosen in ("anchored", "plain")


def test_a_sliver_of_a_gain_keeps_the_prior() -> None:
    """A learned model must beat the prior by MIN_LOG_LOSS_GAIN, not by a rounding error."""
    learn = _rows(6000, 3, signal=1.0)
    later = _rows(6000, 4, signal=1.0)
    strict = compare_candidates(learn, learn, later, FEATURES, classifier_params=FAST, min_gain=0)
    loss = strict.table["log_loss"]
    share = (loss["prior"] - loss[strict.chosen]) / loss["prior"]
    assert strict.chosen != "prior" and share > 0
    # Asking for just more than the winner's gain hands the choice back to the prior and
    # says by how much the learned model was lower.
    demanding = compare_candidates(
        learn, learn, later, FEATURES, classifier_params=FAST, min_gain=share * 1.01
    )
    assert demanding.chosen == "prior"
    assert f"by the required {share * 1.01:.1%}" in demanding.reason
    assert f"{strict.chosen} was lower by" in demanding.reason
    # Just less than the gain keeps the learned model.
    lenient = compare_candidates(
        learn, learn, later, FEATURES, classifier_params=FAST, min_gain=share * 0.99
    )
    assert lenient.chosen == strict.chosen
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="min_gain"):
            compare_candidates(learn, learn, later, FEATURES, classifier_params=FAST, min_gain=bad)
