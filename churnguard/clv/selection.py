"""Choosing a purchase model by how well it predicts a holdout period.

`compare_models` fits each candidate on the calibration RFM frame, predicts every
customer's repeat purchases over the holdout, and scores the predictions against what
each customer actually did. The default winner is the model with the lowest mean absolute
error per customer, which rewards getting individuals right rather than only the total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churnguard.clv.purchase import MODEL_NAMES, ModelFitError, PurchaseModel, check_rfm

__all__ = ["CRITERIA", "ModelComparison", "compare_models", "holdout_array"]

#: Selection criteria and whether larger is better.
CRITERIA: dict[str, bool] = {
    "mae": False,
    "rmse": False,
    "total_error": False,
    "log_likelihood": True,
}

_CRITERION_COLUMN = {
    "mae": "mae_per_customer",
    "rmse": "rmse_per_customer",
    "total_error": "total_error_pct",
    "log_likelihood": "log_likelihood",
}

TABLE_COLUMNS = [
    "model",
    "model_name",
    "params",
    "log_likelihood",
    "predicted_total",
    "actual_total",
    "total_error_pct",
    "mae_per_customer",
    "rmse_per_customer",
    "converged",
    "penalizer",
    "error",
]


@dataclass
class ModelComparison:
    """Result of `compare_models`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per candidate, in candidate order: model (key), model_name, params (dict),
        log_likelihood, predicted_total, actual_total, total_error_pct (signed,
        100 * (predicted - actual) / actual), mae_per_customer, rmse_per_customer,
        converged (False if a fallback penalizer was needed or the fit failed), penalizer
        (used), error (message of a failed fit, else empty). Failed fits have NaN metrics.
    best : str
        Key of the chosen model (e.g. ``"bgnbd"``).
    criterion : str
        The criterion used to choose.
    models : dict of str to PurchaseModel
        The fitted candidates (failed ones are absent).
    """

    table: pd.DataFrame
    best: str
    criterion: str = "mae"
    models: dict[str, PurchaseModel] = field(default_factory=dict)


def holdout_array(holdout_purchases: object, n_rows: int) -> np.ndarray:
    if isinstance(holdout_purchases, pd.DataFrame):
        raise TypeError(
            "holdout_purchases must be a 1-D array or Series of repeat purchases per customer, "
            "received a DataFrame; pass one column, e.g. cal_holdout['frequency_holdout']."
        )
    values = np.asarray(holdout_purchases, dtype=float)
    if values.ndim != 1 or len(values) != n_rows:
        raise ValueError(
            f"holdout_purchases must have one value per calibration row ({n_rows}), received "
            f"shape {values.shape}. Align it with calibration_rfm row by row."
        )
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("holdout_purchases must be finite counts >= 0; found NaN or negatives.")
    return values


def compare_models(
    calibration_rfm: pd.DataFrame,
    holdout_purchases: np.ndarray | pd.Series,
    holdout_length: float,
    *,
    candidates: Sequence[str] = ("bgnbd", "pareto", "mbgnbd"),
    criterion: str = "mae",
    penalizer: float = 0.0,
) -> ModelComparison:
    """Fit each candidate model and score its holdout predictions.

    Parameters
    ----------
    calibration_rfm : pandas.DataFrame
        Calibration-period RFM frame (frequency, recency, T).
    holdout_purchases : array_like
        Actual repeat purchases of each customer in the holdout, aligned row by row with
        ``calibration_rfm`` (positionally; a Series' index is ignored).
    holdout_length : float
        Length of the holdout period, in the frame's time unit.
    candidates : sequence of str
        Model keys to try (see `PurchaseModel`).
    criterion : {"mae", "rmse", "total_error", "log_likelihood"}
        What "best" means: lowest per-customer MAE (default), lowest per-customer RMSE,
        lowest absolute total error, or highest calibration log-likelihood. Ties go to the
        candidate listed first.
    penalizer : float
        Starting penalizer for every candidate (the default grid is the fallback).

    Returns
    -------
    ModelComparison
        Scores of every candidate and the chosen model.

    Raises
    ------
    ModelFitError
        If no candidate could be fitted.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, received {criterion!r}.")
    if isinstance(candidates, str) or not candidates:
        raise ValueError(
            f"candidates must be a non-empty sequence of model keys from {sorted(MODEL_NAMES)}, "
            f"received {candidates!r}."
        )
    unknown = [c for c in candidates if c not in MODEL_NAMES]
    if unknown or len(set(candidates)) != len(candidates):
        raise ValueError(
            f"candidates must be distinct keys from {sorted(MODEL_NAMES)}, received "
            f"{list(candidates)}."
        )
    arr = check_rfm(calibration_rfm, caller="compare_models")
    actual = holdout_array(holdout_purchases, len(arr["T"]))
    horizon = float(holdout_length)
    if not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"holdout_length must be > 0 (frame's time unit), got {holdout_length}.")
    actual_total = float(actual.sum())

    rows: list[dict[str, object]] = []
    models: dict[str, PurchaseModel] = {}
    for key in candidates:
        row: dict[str, object] = {
            "model": key,
            "model_name": MODEL_NAMES[key],
            "actual_total": actual_total,
        }
        try:
            model = PurchaseModel(key, penalizer=penalizer).fit(calibration_rfm)
        except ModelFitError as exc:
            row.update(converged=False, penalizer=np.nan, error=str(exc), params={})
            rows.append(row)
            continue
        predicted = model.expected_purchases_arrays(
            horizon, arr["frequency"], arr["recency"], arr["T"]
        )
        err = predicted - actual
        predicted_total = float(predicted.sum())
        row.update(
            params=dict(model.params_),
            log_likelihood=model.log_likelihood_,
            predicted_total=predicted_total,
            total_error_pct=(
                100.0 * (predicted_total - actual_total) / actual_total
                if actual_total > 0
                else np.nan
            ),
            mae_per_customer=float(np.mean(np.abs(err))),
            rmse_per_customer=float(np.sqrt(np.mean(err**2))),
            converged=bool(model.penalizer_ == penalizer),
            penalizer=model.penalizer_,
            error="",
        )
        models[key] = model
        rows.append(row)

    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    table["converged"] = table["converged"].astype(bool)
    table["error"] = table["error"].fillna("")
    if not models:
        raise ModelFitError(
            "compare_models: no candidate could be fitted: "
            + "; ".join(f"{k}: {e}" for k, e in zip(table["model"], table["error"], strict=True))
        )
    score = table[_CRITERION_COLUMN[criterion]].astype(float)
    if criterion == "total_error":
        # with no holdout purchases the percentage is undefined; absolute totals still rank
        score = score.abs() if actual_total > 0 else table["predicted_total"].astype(float).abs()
    if CRITERIA[criterion]:
        score = -score
    # NaN (failed fit) never wins; idxmin keeps the first of tied candidates.
    ranked = score.where(table["model"].isin(list(models)))
    best = (
        str(table["model"].iloc[int(np.nanargmin(ranked.to_numpy()))])
        if ranked.notna().any()
        else next(iter(models))
    )
    return ModelComparison(table=table, best=best, criterion=criterion, models=models)
