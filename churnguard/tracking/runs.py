"""MLflow tracking: every training run logs its parameters, metrics and model.

The tracking server is ``MLFLOW_TRACKING_URI`` when set (a team server), else an
embedded SQLite store in ``./mlruns/mlflow.db`` with artifacts under
``./mlruns/artifacts`` (MLflow 3 no longer accepts a plain ``./mlruns`` file store).
MLflow is imported lazily: it is slow to import and scoring does not need it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_EXPERIMENT",
    "log_backtest_run",
    "log_evaluation_run",
    "log_training_run",
    "setup_tracking",
    "training_tags",
]

from churnguard.tracking._store import run_store_uri

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "churnguard"


def setup_tracking(
    experiment: str = DEFAULT_EXPERIMENT, root: str | os.PathLike[str] = "mlruns"
) -> str:
    """Point MLflow at the right store and experiment; return the tracking URI.

    With no ``MLFLOW_TRACKING_URI`` the experiment is created with its artifacts
    in ``<root>/artifacts`` so everything stays inside ``mlruns/``.
    """
    import mlflow

    team_uri = os.environ.get("MLFLOW_TRACKING_URI")
    uri = run_store_uri(root)
    # MLflow 3 exports the URI to MLFLOW_TRACKING_URI itself, so read the env var first.
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        artifact_location = None
        if not team_uri:
            artifact_location = (Path(root).resolve() / "artifacts").as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment)
    return uri


def _flat_params(model: Any) -> dict[str, Any]:
    params = {k: v for k, v in model.get_params().items() if k != "classifier_params"}
    params["classifier_params"] = str(model.classifier_params or {})
    params["value_model_chosen"] = model.value_model_name_
    params["training_data_end"] = model.training_end_.isoformat()
    params["n_features"] = len(model.feature_names_)
    params["churn_model_chosen"] = model.churn_model_name_
    params["calibration"] = getattr(model.churn_model_, "calibration_", "none")
    level = getattr(model, "level_", None)  # absent from models saved before round 2
    if level is not None:
        applied = model.churn_model_name_ == "prior"
        params["churn_level_source"] = level.source if applied else "not applied"
        params["churn_level_offset"] = float(level.offset) if applied else 0.0
    blend = getattr(model, "level_blend_", None)  # absent before the level blend
    if blend is not None:
        params["churn_level_blend_offset"] = float(blend.offset)
        params["churn_level_blend_scale"] = float(getattr(blend, "scale", 1.0))
    spend_level = getattr(model, "value_level_", None)  # absent before the spend level
    if spend_level is not None:
        params["spend_level_factor"] = math.exp(float(spend_level.offset))
    drift = getattr(model, "recent_drift_", None)
    if drift is not None:
        params["recent_drift_flagged"] = bool(drift.flagged)
    shift = getattr(model, "hazard_shift_", None)
    params["drift_hazard_factor"] = float(shift.k) if shift is not None else 1.0
    return params


def log_training_run(
    model: Any,
    model_dir: str | os.PathLike[str],
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    register_as: str | None = None,
    alias: str | None = None,
) -> dict[str, str]:
    """Log a fitted :class:`ChurnGuardModel` and its saved model directory.

    Parameters
    ----------
    model : ChurnGuardModel
        Fitted model (its ``metrics_`` are logged).
    model_dir : path
        The directory written by :func:`churnguard.scoring.save_model`; its files
        (metadata, metrics, comparisons, plots) are logged as artifacts.
    register_as, alias : str, optional
        Register the model under this name and point ``alias`` at the new version.

    Returns
    -------
    dict
        ``tracking_uri``, ``experiment``, ``run_id`` and, when logged, ``model_uri``.
    """
    import mlflow

    uri = setup_tracking(experiment)
    info: dict[str, str] = {"tracking_uri": uri, "experiment": experiment}
    facts = training_tags(model)
    name = run_name or (
        f"train {facts['churnguard.data_start']}..{facts['churnguard.data_end']} "
        f"h{facts['churnguard.horizon_days']}d"
    )
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags({"churnguard.stage": "train", **facts, **(tags or {})})
        mlflow.log_params(_flat_params(model))
        mlflow.log_metrics({k: float(v) for k, v in model.metrics_.items() if v == v})
        report = getattr(model, "report_", None)
        if report is not None and not report.comparison.empty:
            for name, row in report.comparison.iterrows():
                for metric in ("roc_auc", "pr_auc", "brier", "top_decile_lift", "ece"):
                    value = row.get(metric)
                    if value is not None and value == value:
                        mlflow.log_metric(f"{name}.{metric}", float(value))
        mlflow.log_artifacts(str(model_dir), artifact_path="model_dir")
        info["run_id"] = run.info.run_id
        from churnguard.tracking.pyfunc import log_pyfunc_model

        info.update(
            log_pyfunc_model(model_dir, register_as=register_as, alias=alias, version_tags=facts)
        )
    return info


def training_tags(model: Any) -> dict[str, str]:
    """What a run and a registered version say about a model: data, horizon, choices."""
    from churnguard import __version__

    return {
        "churnguard.version": __version__,
        "churnguard.data_start": model.training_start_.isoformat(),
        "churnguard.data_end": model.training_end_.isoformat(),
        "churnguard.horizon_days": str(int(model.horizon_days)),
        "churnguard.customers": str(int(model.n_customers_)),
        "churnguard.churn_model": str(model.churn_model_name_),
        "churnguard.value_model": f"{model.value_model_name_}/{model.value_model_choice_}",
    }


def log_evaluation_run(
    comparison: Any,
    metrics: dict[str, float],
    as_of: str,
    out_dir: str | os.PathLike[str] | None,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
) -> dict[str, str]:
    """Log an ``evaluate`` run: model and baseline metrics as of a date, plus its files."""
    import mlflow

    uri = setup_tracking(experiment)
    with mlflow.start_run(run_name=f"evaluate-{as_of}") as run:
        mlflow.set_tags({"churnguard.stage": "evaluate", "churnguard.as_of": as_of})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
        for name, row in comparison.iterrows():
            for metric, value in row.items():
                if isinstance(value, float) and value == value:
                    mlflow.log_metric(f"{name}.{metric}", value)
        if out_dir is not None:
            mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
        return {"tracking_uri": uri, "experiment": experiment, "run_id": run.info.run_id}


def log_backtest_run(result: Any, *, experiment: str = DEFAULT_EXPERIMENT) -> dict[str, str]:
    """Log a backtest: every run's model and baseline metrics, the choices, and its files."""
    import mlflow

    uri = setup_tracking(experiment)
    dates = sorted({r.as_of.isoformat() for r in result.runs})
    horizons = sorted({r.horizon_days for r in result.runs})
    name = f"backtest-{dates[0]}..{dates[-1]}-{'-'.join(map(str, horizons))}d"
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags(
            {
                "churnguard.stage": "backtest",
                "churnguard.as_of": ",".join(dates),
                "churnguard.horizons": ",".join(map(str, horizons)),
            }
        )
        for row in result.table.itertuples(index=False):
            d = row._asdict()
            prefix = f"{d['as_of']}_{d['horizon_days']}d.{d['kind']}.{d['score']}"
            for metric, value in d.items():
                if isinstance(value, float) and value == value and metric not in ("n",):
                    mlflow.log_metric(f"{prefix}.{metric}", value)
        for (kind, score), row in result.aggregate.iterrows():
            for metric, value in row.items():
                if value == value:
                    mlflow.log_metric(f"mean.{kind}.{score}.{metric}", float(value))
        if result.out_dir is not None:
            mlflow.log_artifacts(str(result.out_dir), artifact_path="backtest")
        return {"tracking_uri": uri, "experiment": experiment, "run_id": run.info.run_id}
