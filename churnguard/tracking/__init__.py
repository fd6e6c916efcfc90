"""MLflow: training, evaluation and backtest runs, the pyfunc model, finding a model.

MLflow is imported lazily (it is slow to import and scoring a folder does not need it);
the pyfunc wrapper lives in :mod:`churnguard.tracking.pyfunc`, imported on demand.
"""

from churnguard.tracking._store import default_tracking_uri, tracking_uri
from churnguard.tracking.registry import is_model_uri, resolve_model
from churnguard.tracking.runs import (
    DEFAULT_EXPERIMENT,
    log_backtest_run,
    log_evaluation_run,
    log_training_run,
    setup_tracking,
)
from churnguard.tracking.warmup import TrackingWarmup, warm_up_tracking

__all__ = [
    "DEFAULT_EXPERIMENT",
    "TrackingWarmup",
    "default_tracking_uri",
    "is_model_uri",
    "log_backtest_run",
    "log_evaluation_run",
    "log_training_run",
    "resolve_model",
    "setup_tracking",
    "tracking_uri",
    "warm_up_tracking",
]
