"""Early abandonment: the churn model on the buy-till-you-die prior, baselines, metrics."""

from churnguard.churn.baselines import BASELINE_PROBABILITIES, BASELINES, baseline_scores
from churnguard.churn.candidates import (
    CANDIDATES,
    PRIOR_COLUMN,
    CandidateComparison,
    PriorChurnModel,
    compare_candidates,
    fit_candidate,
)
from churnguard.churn.classifier import DEFAULT_LGBM_PARAMS, DEFAULT_MONOTONE, ChurnClassifier
from churnguard.churn.metrics import (
    classification_report,
    compare_scores,
    expected_calibration_error,
    gains_table,
    reliability_table,
    top_decile_lift,
)
from churnguard.churn.reasons import ReasonReference, describe_driver, explain
from churnguard.churn.training import SnapshotPlan, plan_production, plan_validation, split_by_plan

__all__ = [
    "BASELINES",
    "BASELINE_PROBABILITIES",
    "CANDIDATES",
    "DEFAULT_LGBM_PARAMS",
    "DEFAULT_MONOTONE",
    "PRIOR_COLUMN",
    "CandidateComparison",
    "ChurnClassifier",
    "PriorChurnModel",
    "ReasonReference",
    "SnapshotPlan",
    "baseline_scores",
    "classification_report",
    "compare_candidates",
    "compare_scores",
    "describe_driver",
    "expected_calibration_error",
    "explain",
    "fit_candidate",
    "gains_table",
    "plan_production",
    "plan_validation",
    "reliability_table",
    "split_by_plan",
    "top_decile_lift",
]
