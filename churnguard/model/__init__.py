"""The fitted churnguard model: features, value models, churn model, and its portable bundle."""

from churnguard.model.bundle import load_model, model_metadata, save_model
from churnguard.model.estimator import (
    DEFAULT_REASONS_LIMIT,
    VALUE_COLUMNS,
    ChurnGuardModel,
    TrainingReport,
)

__all__ = [
    "DEFAULT_REASONS_LIMIT",
    "VALUE_COLUMNS",
    "ChurnGuardModel",
    "TrainingReport",
    "load_model",
    "model_metadata",
    "save_model",
]
