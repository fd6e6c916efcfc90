"""Portable model bundles: a folder with the fitted model and its metadata.

Layout of a model directory::

    model.joblib            the fitted ChurnGuardModel
    metadata.json           version, data span, horizon, features, value models
    metrics.json            out-of-time validation metrics
    baselines.csv           model vs baselines on the evaluation snapshot
    value_models.csv        buy-till-you-die model comparison
    feature_importance.csv
    evaluation.parquet      evaluation-snapshot predictions and outcomes
    plots/*.png             diagnostics

The folder is written to a temporary sibling and renamed into place, so a
crashed ``train`` never leaves a half-written model behind.

**A model folder is code.** ``model.joblib`` is a pickle: loading it runs whatever it
was made to run, like any pickle. ``metadata.json`` records its SHA-256 digest and the
facts the model was trained with (horizon, features, data span, churnguard's version);
:func:`load_model` refuses a folder whose pickle does not match its digest or whose
metadata was edited, *before* unpickling, and says what differs. Only load model
folders from sources you trust (the digest detects tampering by someone who cannot also
rewrite ``metadata.json``, not a malicious author).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from churnguard import __version__
from churnguard.data.io import aside_path, current_umask, temporary_folder
from churnguard.exceptions import InvalidModelError
from churnguard.model.estimator import ChurnGuardModel

__all__ = [
    "FORMAT_VERSION",
    "METADATA_FILE",
    "MODEL_FILE",
    "file_digest",
    "load_model",
    "model_metadata",
    "save_model",
    "write_diagnostics",
]

MODEL_FILE = "model.joblib"
#: Bump when a model written by an earlier churnguard can no longer be loaded correctly.
FORMAT_VERSION = 2
# Facts of metadata.json checked against the unpickled model (an edit is refused).
log = logging.getLogger(__name__)

_CHECKED = (
    "churnguard_version",
    "horizon_days",
    "gap_days",
    "training_data_start",
    "training_data_end",
    "feature_names",
)
_CHURN_KINDS = {
    "prior": "BTYD P(no purchase)",
    "anchored": "LightGBM on the BTYD prior",
    "plain": "LightGBM",
}
METADATA_FILE = "metadata.json"


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_metadata(model: ChurnGuardModel) -> dict[str, Any]:
    """Everything needed to trace a model: data, horizon, features, fitted parameters."""
    pm, sm = model.purchase_model_, model.spend_model_
    clf = model.churn_model_
    return {
        "churnguard_version": getattr(model, "churnguard_version_", __version__),
        "format_version": FORMAT_VERSION,
        "training_data_start": model.training_start_.isoformat(),
        "training_data_end": model.training_end_.isoformat(),
        "n_customers": int(model.n_customers_),
        "horizon_days": int(model.horizon_days),
        "gap_days": int(model.gap_days),
        "feature_names": list(model.feature_names_),
        "optional_columns": list(model.builder_.optional_columns_),
        "value_model": {
            "purchase_model": pm.model_name,
            "purchase_model_key": pm.model,
            "purchase_params": {k: float(v) for k, v in pm.params_.items()},
            "purchase_penalizer": float(pm.penalizer_),
            "spend_model": "Gamma-Gamma",
            "spend_params": {k: float(v) for k, v in sm.params_.items()},
            "spend_penalizer": float(sm.penalizer_),
            "frequency_monetary_corr": float(sm.frequency_monetary_corr_),
            "time_unit": model.time_unit,
            "clv_months": int(model.clv_months),
            "discount_rate_monthly": float(model.discount_rate),
            "fitted_on_data_to": model.training_end_.isoformat(),
        },
        "value_model_note": model.value_model_note_ or None,
        "value_choice": {
            "chosen": model.value_model_choice_,
            "candidates": _records(getattr(model.report_, "value_candidates", None)),
            "spend_level": _spend_level_record(model),
        },
        "decision_reference": model.decision_reference_.describe(),
        "churn_model": {
            "chosen": model.churn_model_name_,
            "kind": "BTYD P(no purchase)"
            if model.churn_model_name_ == "prior"
            else "LightGBM"
            + (" on the BTYD prior" if model.churn_model_name_ == "anchored" else ""),
            "calibration": getattr(clf, "calibration_", "none"),
            "calibration_cv_log_loss": getattr(clf, "calibration_scores_", {}),
            "best_iteration": int(getattr(clf, "best_iteration_", 0)),
            "candidates": _records(getattr(model.report_, "candidates", None)),
            "level": _level_record(model),
            "level_blend": _blend_record(model),
            "recent_drift": (
                model.recent_drift_.to_dict() if hasattr(model, "recent_drift_") else None
            ),
            "drift_correction": (
                shift.to_dict() if (shift := getattr(model, "hazard_shift_", None)) else None
            ),
        },
        "snapshots": {
            "validation": model.plan_.to_dict() if model.plan_ is not None else None,
            "production": (
                model.production_plan_.to_dict() if model.production_plan_ is not None else None
            ),
            "step_days": int(model.snapshot_step_days),
        },
        "metrics": {k: float(v) for k, v in model.metrics_.items()},
    }


def _level_record(model: ChurnGuardModel) -> dict[str, Any] | None:
    """The prior's level correction (:mod:`churnguard.churn.level`) as plain data.

    ``applied`` is true only when the prior is the chosen churn model: the learned
    candidates are calibrated on their own snapshots and take no level offset. None for
    a model saved before the correction existed.
    """
    level = getattr(model, "level_", None)
    if level is None:
        return None
    return {
        "applied": model.churn_model_name_ == "prior",
        "source": level.source,
        "weight": float(level.weight),
        "offset_log_odds": float(level.offset),
        "reason": level.reason,
        "sources": _records(level.table),
    }


def _blend_record(model: ChurnGuardModel) -> dict[str, Any] | None:
    """The learned churn model's level blend (:mod:`churnguard.churn.level_blend`).

    The learned model's log-odds are multiplied by ``scale`` and ``offset_log_odds`` is
    added (1 and 0: not applied, as when the prior is the churn model). None for a model
    saved before the blend existed.
    """
    blend = getattr(model, "level_blend_", None)
    if blend is None:
        return None
    return {
        "applied": bool(blend.offset != 0.0 or getattr(blend, "scale", 1.0) != 1.0),
        "offset_log_odds": float(blend.offset),
        "scale": float(getattr(blend, "scale", 1.0)),
        "calibration_spread": getattr(blend, "calibration_spread", None),
        "learned_mean": blend.learned_mean,
        "prior_mean": blend.prior_mean,
        "prior_weight": float(blend.weight),
        "reason": blend.reason,
    }


def _spend_level_record(model: ChurnGuardModel) -> dict[str, Any] | None:
    """The spend model's seasonal level (:mod:`churnguard.model.value_level`) as plain data.

    ``factor`` multiplies the learned spend of an active window in the next-window value
    (1: none). None for a model saved before the correction existed.
    """
    level = getattr(model, "value_level_", None)
    if level is None:
        return None
    return {
        "source": level.source,
        "weight": float(level.weight),
        "factor": float(np.exp(level.offset)),
        "reason": level.reason,
        "sources": _records(level.table),
    }


def _records(table: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """A metrics table (one row per name) as plain data, NaN as None."""
    if table is None or table.empty:
        return {}
    clean = table.astype(object).where(table.notna(), None)
    records: dict[Any, dict[Any, Any]] = clean.to_dict(orient="index")
    return {str(k): {str(c): x for c, x in v.items()} for k, v in records.items()}


def write_diagnostics(model: ChurnGuardModel, folder: str | os.PathLike[str]) -> list[Path]:
    """Save the training diagnostics of ``model`` as PNG files in ``folder``.

    Classifier: reliability (raw vs calibrated), gains/lift against the baselines and
    global importance, on the out-of-time evaluation snapshot. Value model: P(alive)
    by frequency x recency and, when a calibration/holdout comparison was run,
    calibration-vs-holdout purchases and cumulative tracking of expected vs actual
    repeat purchases.
    """
    from churnguard.churn.plots import plot_gains, plot_importance, plot_reliability
    from churnguard.clv import (
        plot_calibration_holdout,
        plot_cumulative_tracking,
        plot_p_alive_matrix,
    )

    out = Path(folder)
    report = model.report_
    paths: list[Path] = []
    if report is None:
        return paths
    ev = report.evaluation
    if not ev.empty:
        y = ev["churned"].to_numpy()
        paths.append(
            plot_reliability(
                y,
                {
                    "churnguard": ev["churn_probability"],
                    "BTYD P(no purchase)": ev["baseline_btyd_p_no_purchase"],
                },
                out / "reliability.png",
            )
        )
        scores = {"churnguard": ev["churn_probability"]}
        scores |= {
            c.removeprefix("baseline_"): ev[c] for c in ev.columns if c.startswith("baseline_")
        }
        paths.append(plot_gains(y, scores, out / "gains.png"))
    if not report.feature_importance.empty:
        paths.append(plot_importance(report.feature_importance, out / "importance.png"))
    paths.append(plot_p_alive_matrix(model.purchase_model_, out / "p_alive_matrix.png"))
    diag = report.value_diagnostics
    if diag.get("model") is not None:
        paths.append(
            plot_calibration_holdout(
                diag["calibration_rfm"],
                diag["holdout_purchases"],
                diag["model"],
                out / "calibration_holdout.png",
                holdout_length=diag["holdout_length"],
            )
        )
        paths.append(
            plot_cumulative_tracking(
                diag["transactions"],
                diag["model"],
                pd.Timestamp(diag["calibration_end"]),
                out / "cumulative_tracking.png",
                end=pd.Timestamp(model.training_end_),
                time_unit=model.time_unit,
            )
        )
    return paths


def save_model(
    model: ChurnGuardModel, model_dir: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` and its reports to ``model_dir`` atomically; return the path."""
    target = Path(model_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_folder(target)
    try:
        joblib.dump(model, tmp / MODEL_FILE, compress=3)
        meta = model_metadata(model) | (extra or {})
        meta["model_sha256"] = file_digest(tmp / MODEL_FILE)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str))
        report = getattr(model, "report_", None)
        if report is not None:
            (tmp / "metrics.json").write_text(json.dumps(report.metrics, indent=2))
            report.comparison.to_csv(tmp / "baselines.csv")
            report.candidates.to_csv(tmp / "churn_candidates.csv")
            report.value_model_comparison.to_csv(tmp / "value_models.csv", index=False)
            report.feature_importance.to_csv(tmp / "feature_importance.csv", index=False)
            report.evaluation.to_parquet(tmp / "evaluation.parquet", index=False)
            write_diagnostics(model, tmp / "plots")
        # mkdtemp makes a private folder; a model folder is shared like any output, so it
        # gets the permissions of the user's umask (0755 under the usual 022).
        mode = 0o777 & ~current_umask()
        tmp.chmod(mode)
        for item in tmp.rglob("*"):
            item.chmod(mode if item.is_dir() else mode & 0o666)
        old = None
        if target.exists():
            old = aside_path(target)  # removed by the next save if a kill leaves it
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_model(model_dir: str | os.PathLike[str]) -> ChurnGuardModel:
    """Load a model directory written by :func:`save_model`.

    Raises
    ------
    InvalidModelError
        When the path is missing or is not a churnguard model directory.
    """
    path = Path(model_dir)
    if not path.exists():
        raise InvalidModelError(
            f"model directory '{path}' does not exist. Train one with "
            f"'churnguard train --transactions LOG --model-dir {path}' or pass --model with an "
            "existing model directory or MLflow model URI."
        )
    if not (path / METADATA_FILE).is_file() or not (path / MODEL_FILE).is_file():
        found = sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else []
        raise InvalidModelError(
            f"'{path}' is not a churnguard model directory: expected {METADATA_FILE} and "
            f"{MODEL_FILE}, found {found}. Pass the --model-dir used by 'churnguard train'."
        )
    try:
        meta = json.loads((path / METADATA_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise InvalidModelError(f"'{path / METADATA_FILE}' is not valid JSON ({exc}).") from exc
    if "churnguard_version" not in meta:
        raise InvalidModelError(
            f"'{path / METADATA_FILE}' is not churnguard metadata (no version)."
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise InvalidModelError(
            f"'{path}' was written by churnguard {meta['churnguard_version']} in model format "
            f"{meta.get('format_version', 1)}; this churnguard ({__version__}) reads format "
            f"{FORMAT_VERSION}. Retrain the model with 'churnguard train'."
        )
    expected = meta.get("model_sha256")
    actual = file_digest(path / MODEL_FILE)
    if expected != actual:
        raise InvalidModelError(
            f"'{path / MODEL_FILE}' does not match the digest in {METADATA_FILE} (expected "
            f"{str(expected)[:12]}..., found {actual[:12]}...): the model file was replaced or "
            "damaged after training, and a model file is a pickle that runs code when loaded. "
            "It was not loaded. Retrain, or restore the folder from a source you trust."
        )
    try:
        model = joblib.load(path / MODEL_FILE)
    except Exception as exc:
        raise InvalidModelError(
            f"could not load '{path / MODEL_FILE}' ({type(exc).__name__}: {exc}); "
            "it was written by "
            f"churnguard {meta['churnguard_version']}, this is {__version__}. Retrain the model."
        ) from exc
    if not isinstance(model, ChurnGuardModel):
        raise InvalidModelError(
            f"'{path / MODEL_FILE}' holds a {type(model).__name__}, not a ChurnGuardModel."
        )
    trained = model_metadata_facts(model)
    if trained["churnguard_version"] is None:  # pickled before the version was kept in it
        trained["churnguard_version"] = meta["churnguard_version"]
    edited = [k for k in _CHECKED if k in meta and meta[k] != trained[k]]
    if edited:
        k = edited[0]
        raise InvalidModelError(
            f"'{path / METADATA_FILE}' says {k} = {meta[k]!r}, but the model was trained with "
            f"{trained[k]!r}: the metadata was edited after training (fields {edited}), and "
            "editing it does not change the model. Restore the file or retrain with the "
            "settings you want (e.g. --horizon-days)."
        )
    if meta["churnguard_version"] != __version__:
        log.warning(
            "%s was trained with churnguard %s; this is %s. Scores follow the old model; "
            "retrain to use this version's models.",
            path, meta["churnguard_version"], __version__,
        )  # fmt: skip
    return model


def model_metadata_facts(model: ChurnGuardModel) -> dict[str, Any]:
    """The facts of the metadata that must agree with the model they describe."""
    return {
        "churnguard_version": getattr(model, "churnguard_version_", None),
        "horizon_days": int(model.horizon_days),
        "gap_days": int(model.gap_days),
        "training_data_start": model.training_start_.isoformat(),
        "training_data_end": model.training_end_.isoformat(),
        "feature_names": list(model.feature_names_),
    }
