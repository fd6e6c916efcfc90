"""Early-abandonment classifier: calibrated LightGBM, baselines, metrics and reasons."""

from churnguard.churn.baselines import BASELINE_PROBABILITIES, baseline_scores
from churnguard.churn.classifier import DEFAULT_LGBM_PARAMS, DEFAULT_MONOTONE, ChurnClassifier
from churnguard.churn.metrics import (
    classification_report,
    compare_scores,
    expected_calibration_error,
    gains_table,
    reliability_table,
    top_decile_lift,
)
from churnguard.churn.reasons import describe_feature, explain
from churnguard.churn.training import SnapshotPlan, plan_snapshots, split_by_plan

__all__ = [
    "BASELINE_PROBABILITIES",
    "DEFAULT_LGBM_PARAMS",
    "DEFAULT_MONOTONE",
    "ChurnClassifier",
    "SnapshotPlan",
    "baseline_scores",
    "classification_report",
    "compare_scores",
    "describe_feature",
    "expected_calibration_error",
    "explain",
    "gains_table",
    "plan_snapshots",
    "reliability_table",
    "split_by_plan",
    "top_decile_lift",
]
