"""Tests for churnguard.churn.metrics: hand-computed values on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score

from churnguard.churn.metrics import (
    CLASSIFICATION_METRICS,
    classification_report,
    compare_scores,
    expected_calibration_error,
    gains_table,
    reliability_table,
    top_decile_lift,
)

# Two churners among ten, listed from most to least risky.
Y10 = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
PERFECT10 = np.arange(10, 0, -1, dtype=float)


# --------------------------------------------------------------------------- calibration
def test_reliability_table_uniform_bins_by_hand() -> None:
    y = [0, 1, 0, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.6, 0.7, 0.9]
    table = reliability_table(y, p, n_bins=2, strategy="uniform")
    assert list(table["bin"]) == [0, 1]
    assert list(table["count"]) == [3, 3]
    np.testing.assert_allclose(table["mean_predicted"], [0.2, 2.2 / 3])
    np.testing.assert_allclose(table["observed_rate"], [1 / 3, 1.0])
    # 0.5 * |1/3 - 0.2| + 0.5 * |1 - 0.7333|
    assert expected_calibration_error(y, p, n_bins=2, strategy="uniform") == pytest.approx(0.2)


def test_uniform_bins_are_left_closed_and_last_bin_includes_one() -> None:
    table = reliability_table([0, 1, 1], [0.0, 0.5, 1.0], n_bins=2, strategy="uniform")
    assert list(table["count"]) == [1, 2]
    assert table["bin_upper"].iloc[-1] == 1.0


def test_uniform_bins_drop_empty_bins() -> None:
    table = reliability_table([0, 1], [0.05, 0.95], n_bins=10, strategy="uniform")
    assert list(table["bin"]) == [0, 9]


def test_quantile_bins_are_equal_count_and_merge_ties() -> None:
    p = np.linspace(0.01, 0.99, 100)
    y = np.r_[np.zeros(50), np.ones(50)]
    assert list(reliability_table(y, p, n_bins=4)["count"]) == [25, 25, 25, 25]
    tied = reliability_table([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3], n_bins=10)
    assert list(tied["count"]) == [4]
    assert tied["observed_rate"].iloc[0] == 0.5


def test_ece_is_small_for_calibrated_and_large_for_miscalibrated_sample() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.0, 1.0, 20_000)
    y = (rng.uniform(0.0, 1.0, p.shape[0]) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    overconfident = np.clip(0.5 + 2.0 * (p - 0.5), 0.0, 1.0)
    assert expected_calibration_error(y, overconfident) > 0.1
    assert expected_calibration_error(y, p, strategy="uniform") < 0.02


# --------------------------------------------------------------------------- ranking
def test_lift_of_perfect_ranker_is_inverse_base_rate() -> None:
    assert top_decile_lift(Y10, PERFECT10) == pytest.approx(5.0)  # 1 / 0.2


def test_lift_of_perfect_ranker_is_capped_by_inverse_fraction() -> None:
    y = np.zeros(20)
    y[0] = 1  # base rate 0.05: 1 / base_rate = 20, but at most 1 / 0.1 = 10
    assert top_decile_lift(y, np.arange(20, 0, -1)) == pytest.approx(10.0)


def test_lift_of_constant_and_reversed_scores() -> None:
    assert top_decile_lift(Y10, np.ones(10)) == pytest.approx(1.0)
    assert top_decile_lift(Y10, -PERFECT10) == pytest.approx(0.0)


def test_lift_counts_ties_and_boundary_customers_pro_rata() -> None:
    y = [1, 0, 0, 0]
    # One place for two tied customers, one of them a churner: expected capture 1/2.
    assert top_decile_lift(y, [1, 1, 0, 0], fraction=0.25) == pytest.approx(2.0)
    # Half a customer contacted: half of the first (churning) customer.
    assert top_decile_lift(y, [4, 3, 2, 1], fraction=0.125) == pytest.approx(4.0)


def test_lift_ignores_pandas_index() -> None:
    y = pd.Series(Y10, index=range(100, 110))
    s = pd.Series(PERFECT10, index=range(9, -1, -1))
    assert top_decile_lift(y, s) == pytest.approx(5.0)


def test_gains_table_perfect_ranker_by_hand() -> None:
    table = gains_table(Y10, PERFECT10, n_bins=5)
    np.testing.assert_allclose(table["fraction_contacted"], [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(table["fraction_of_churners_captured"], [1, 1, 1, 1, 1])
    np.testing.assert_allclose(table["lift"], [5, 2.5, 5 / 3, 1.25, 1])
    np.testing.assert_allclose(table["bin_lift"], [5, 0, 0, 0, 0])
    np.testing.assert_allclose(table["customers_contacted"], [2, 4, 6, 8, 10])
    assert table["churners_captured"].iloc[-1] == pytest.approx(2.0)
    assert {"fraction_contacted", "fraction_of_churners_captured", "lift"} <= set(table)


def test_gains_table_random_ranker_follows_diagonal() -> None:
    table = gains_table(Y10, np.zeros(10), n_bins=10)
    np.testing.assert_allclose(table["fraction_of_churners_captured"], np.arange(1, 11) / 10)
    np.testing.assert_allclose(table["lift"], np.ones(10))


def test_gains_without_churners_is_nan_with_warning() -> None:
    with pytest.warns(UndefinedMetricWarning, match="no churner"):
        table = gains_table(np.zeros(5), np.arange(5))
    assert table["lift"].isna().all()
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(top_decile_lift(np.zeros(5), np.arange(5)))


# --------------------------------------------------------------------------- report
def test_classification_report_by_hand() -> None:
    report = classification_report([1, 0], [0.8, 0.4])
    assert list(report) == list(CLASSIFICATION_METRICS)
    assert report["roc_auc"] == pytest.approx(1.0)
    assert report["pr_auc"] == pytest.approx(1.0)
    assert report["brier"] == pytest.approx((0.2**2 + 0.4**2) / 2)
    assert report["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert report["base_rate"] == 0.5
    assert report["n"] == 2.0
    assert report["top_decile_lift"] == pytest.approx(2.0)
    assert all(isinstance(v, float) for v in report.values())


def test_log_loss_is_clipped_for_confident_mistakes() -> None:
    report = classification_report([1, 0], [0.0, 1.0])
    assert math.isfinite(report["log_loss"])
    assert report["log_loss"] == pytest.approx(-math.log(1e-15), rel=1e-3)


def test_single_class_gives_nan_aucs_with_warning() -> None:
    with pytest.warns(UndefinedMetricWarning, match="undefined"):
        report = classification_report([1, 1, 1], [0.9, 0.8, 0.7])
    assert math.isnan(report["roc_auc"]) and math.isnan(report["pr_auc"])
    assert report["top_decile_lift"] == pytest.approx(1.0)
    assert report["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)


@pytest.mark.parametrize(
    ("y", "p", "error", "match"),
    [
        ([0, 1, 1], [0.1, 0.2], ValueError, "has 2 values but y_true has 3"),
        ([0, 2], [0.1, 0.2], ValueError, "binary churn labels"),
        ([0, np.nan], [0.1, 0.2], ValueError, "binary churn labels"),
        ([0, 1], [0.1, 1.2], ValueError, r"within \[0, 1\]"),
        ([0, 1], [0.1, np.nan], ValueError, "missing or infinite"),
        ([[0, 1]], [[0.1, 0.2]], ValueError, "must be 1-D"),
        ([], [], ValueError, "empty"),
        ([0, 1], ["a", "b"], TypeError, "must be numeric"),
        (1, 0.5, TypeError, "1-D array-like"),
    ],
)
def test_classification_report_rejects_bad_input(
    y: object, p: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        classification_report(y, p)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="strategy"):
        reliability_table([0, 1], [0.2, 0.4], strategy="kmeans")
    with pytest.raises(ValueError, match="n_bins"):
        gains_table([0, 1], [0.2, 0.4], n_bins=0)
    with pytest.raises(ValueError, match="fraction"):
        top_decile_lift([0, 1], [0.2, 0.4], fraction=0.0)


# --------------------------------------------------------------------------- compare_scores
def test_compare_scores_ranks_baselines_without_probability_metrics() -> None:
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    model = np.array([0.9, 0.2, 0.6, 0.3, 0.1, 0.4, 0.5, 0.2])
    recency_days = np.array([200, 10, 150, 40, 5, 30, 90, 20])
    frequency = np.array([1, 9, 2, 5, 12, 3, 4, 8])
    table = compare_scores(
        y,
        {"model": model, "recency_days": recency_days, "frequency": frequency},
        higher_is_churn={"frequency": False},
        probabilities=["model"],
    )
    assert list(table["score"]) == ["model", "recency_days", "frequency"]
    assert list(table.columns) == ["score", "is_probability", *CLASSIFICATION_METRICS]
    assert list(table["is_probability"]) == [True, False, False]
    by_name = table.set_index("score")
    assert by_name.loc["model", "brier"] == pytest.approx(classification_report(y, model)["brier"])
    assert (
        by_name.loc[["recency_days", "frequency"], ["brier", "log_loss", "ece"]]
        .isna()
        .all(axis=None)
    )
    assert by_name.loc["recency_days", "roc_auc"] == pytest.approx(roc_auc_score(y, recency_days))
    # Low frequency signals churn: negated before ranking, so AUC is above chance.
    assert by_name.loc["frequency", "roc_auc"] == pytest.approx(roc_auc_score(y, -frequency))
    assert by_name["roc_auc"].to_dict()["frequency"] > 0.5


def test_compare_scores_unflagged_probability_gets_rank_metrics_only() -> None:
    y = [1, 0, 1, 0]
    p = [0.8, 0.3, 0.6, 0.1]
    table = compare_scores(y, {"p": p, "p_scaled": [80, 30, 60, 10]}).set_index("score")
    assert list(table["roc_auc"]) == [1.0, 1.0]
    assert math.isnan(table["brier"].to_dict()["p"])


def test_compare_scores_validates_flags() -> None:
    y, s = [1, 0], [0.7, 0.2]
    with pytest.raises(ValueError, match="unknown score"):
        compare_scores(y, {"model": s}, higher_is_churn={"modle": True})
    with pytest.raises(ValueError, match="unknown score"):
        compare_scores(y, {"model": s}, probabilities=["mdl"])
    with pytest.raises(ValueError, match="rises with churn"):
        compare_scores(y, {"model": s}, {"model": False}, probabilities=["model"])
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        compare_scores(y, {"days": [30, 200]}, probabilities=["days"])
    with pytest.raises(TypeError, match="Wrap it in a list"):
        compare_scores(y, {"model": s}, probabilities="model")
    with pytest.raises(TypeError, match="non-empty mapping"):
        compare_scores(y, {})
