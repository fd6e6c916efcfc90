"""The buy-till-you-die stage of the model: which purchase model, fitted, and its outputs.

:class:`BTYDStage` holds the settings (time unit, horizon, CLV horizon and discount
rate) and turns a feature table into the value columns every later stage uses:
P(alive), expected purchases, P(no purchase in the horizon) (the churn model's
prior), expected spend, CLV and value if retained. The same code serves the training
snapshots (a model fitted at each cutoff) and scoring (the model fitted on all data).
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnguard._dates import DAYS_PER_UNIT
from churnguard.churn.candidates import PRIOR_COLUMN
from churnguard.clv import (
    DegenerateFitWarning,
    ModelFitError,
    PurchaseModel,
    SpendModel,
    compare_models,
    kept_share,
    no_purchase_frame,
    value_frame,
)
from churnguard.features.engine import count_purchase_days

__all__ = [
    "VALUE_COLUMNS",
    "BTYDStage",
    "degenerate_note",
    "p_alive_feature",
    "reported_p_alive",
]

log = logging.getLogger(__name__)

#: Columns the value models add to the features.
VALUE_COLUMNS = [
    "p_alive",
    "expected_purchases",
    PRIOR_COLUMN,
    "expected_spend",
    "predicted_clv",
    "value_if_retained",
]


def degenerate_note(pm: PurchaseModel) -> str:
    """One line when the purchase model's dropout sits at its boundary, else ''."""
    reason = getattr(pm, "degenerate_", None)
    if not reason:
        return ""
    return (
        f"{pm.model_name} could not identify customer dropout ({reason}): P(alive) is not "
        "reported; the churn probability comes from purchase rates and the classifier"
    )


def reported_p_alive(pm: PurchaseModel, frame: pd.DataFrame) -> np.ndarray:
    """P(alive) as the scored list reports it: empty where the purchase model cannot tell.

    BG/NBD lets a customer drop out only just after a repeat purchase, so a customer
    without one (``frequency`` 0) is alive with probability 1 by the model's assumption,
    not by evidence: a one-time buyer silent for two years would read "certainly still a
    customer" beside a 99% churn probability. Those rows are NaN, as is every row of a fit
    that could not identify dropout (already NaN). Pareto/NBD and MBG/NBD let a customer
    leave at any time and are reported as they are. The churn model's feature keeps the
    model's value: this changes what is shown, not what is scored.
    """
    p_alive = frame["p_alive"].to_numpy(dtype=float, copy=True)
    if getattr(pm, "model", None) == "bgnbd":
        p_alive[frame["frequency"].to_numpy() == 0] = np.nan
    return p_alive


def p_alive_feature(pm: PurchaseModel, frame: pd.DataFrame) -> np.ndarray | None:
    """The churn model's ``p_alive`` feature of a frame whose P(alive) was reported.

    The inverse of :func:`reported_p_alive`: BG/NBD's exact 1 for customers without a
    repeat purchase, for explaining a scored frame read back (a partition's work file)
    with the inputs the churn model scored. None when nothing was left empty that the
    model had a value for (another purchase model, a degenerate fit, nothing blank).
    """
    if getattr(pm, "model", None) != "bgnbd" or getattr(pm, "degenerate_", None):
        return None
    p_alive = frame["p_alive"].to_numpy(dtype=float)
    blank = np.isnan(p_alive) & (frame["frequency"].to_numpy() == 0)
    if not blank.any():
        return None
    return np.where(blank, 1.0, p_alive)


def _sanitize(values: pd.DataFrame) -> pd.DataFrame:
    """Non-finite model outputs become NaN (features) or a safe value (the prior).

    A buy-till-you-die closed form can overflow for an extreme customer; one such
    customer must not stop a training run or a scoring job.
    """
    out = values.copy()
    for col in ("p_alive", "expected_purchases", "expected_spend", "predicted_clv",
                "value_if_retained"):  # fmt: skip
        if col in out:
            v = out[col].to_numpy(dtype=float)
            out[col] = np.where(np.isfinite(v), v, np.nan)
    p0 = out[PRIOR_COLUMN].to_numpy(dtype=float)
    if not np.isfinite(p0).all():
        expected = out["expected_purchases"].to_numpy(dtype=float)
        fallback = np.where(np.isfinite(expected), np.exp(-np.clip(expected, 0, None)), 0.5)
        out[PRIOR_COLUMN] = np.where(np.isfinite(p0), np.clip(p0, 0.0, 1.0), fallback)
    return out


@dataclass(frozen=True)
class BTYDStage:
    """Settings of the buy-till-you-die stage (see the model's parameters)."""

    time_unit: str
    horizon_days: int
    clv_months: int
    discount_rate: float

    @property
    def horizon_units(self) -> float:
        """The churn horizon in the model's time unit."""
        return int(self.horizon_days) / DAYS_PER_UNIT[self.time_unit]

    def rfm(self, feats: pd.DataFrame) -> pd.DataFrame:
        """The lifetimes-style RFM frame of a feature table, in the model's time unit."""
        unit = DAYS_PER_UNIT[self.time_unit]
        return pd.DataFrame(
            {
                "customer_id": feats["customer_id"].to_numpy(),
                "frequency": feats["frequency"].to_numpy(),
                "recency": feats["recency"].to_numpy() / unit,
                "T": feats["T"].to_numpy() / unit,
                "monetary_value": feats["monetary_value"].to_numpy(),
            }
        )

    def rank_models(
        self,
        builder: Any,
        tx: pd.DataFrame,
        start: dt.date,
        end: dt.date,
        holdout_days: int | None,
    ) -> tuple[list[str], pd.DataFrame, dict[str, Any]]:
        """Purchase models best first by holdout RMSE, the comparison, and diagnostics.

        RMSE, not MAE: the models predict conditional *means*, which minimise squared
        error; MAE rewards predicting the median (zero for most customers).
        """
        span = (end - start).days
        holdout = int(holdout_days or max(int(self.horizon_days), span // 2))
        cal_end = end - dt.timedelta(days=holdout)
        if cal_end <= start + dt.timedelta(days=28):
            log.warning("log too short for a calibration/holdout comparison; using BG/NBD")
            return ["bgnbd"], pd.DataFrame(), {}
        cal = builder.transform(tx, cal_end)
        future = count_purchase_days(tx, cal_end, end).set_index("customer_id")
        actual = future["purchases"].reindex(cal["customer_id"]).fillna(0).to_numpy()
        holdout_units = holdout / DAYS_PER_UNIT[self.time_unit]
        result = compare_models(self.rfm(cal), actual, holdout_units, criterion="rmse")
        table = result.table.assign(calibration_end=cal_end.isoformat(), holdout_days=holdout)
        column = "rmse_per_customer" if "rmse_per_customer" in table else str(table.columns[-1])
        ranked = table.sort_values(column, kind="stable")["model"].tolist()
        best = str(result.best)
        diagnostics = {
            "calibration_rfm": self.rfm(cal),
            "holdout_purchases": actual,
            "holdout_length": holdout_units,
            "calibration_end": cal_end,
            "model": result.models.get(best),
            "transactions": tx,
        }
        return [best, *[m for m in ranked if m != best]], table, diagnostics

    def fit_first(
        self, feats: pd.DataFrame, ranking: list[str]
    ) -> tuple[str, PurchaseModel, SpendModel]:
        """Fit the best-ranked purchase model that converges and identifies a dropout.

        A fit whose dropout sits at its boundary ("nobody ever leaves") is kept only
        when every candidate is degenerate; the first such fit is then returned. Its
        ``DegenerateFitWarning`` is not raised here: a training run fits a model at every
        snapshot, and a degenerate one is either replaced by the next candidate or
        reported once, for the model kept, by :func:`degenerate_note`.
        """
        errors = []
        degenerate: tuple[str, PurchaseModel, SpendModel] | None = None
        rfm = self.rfm(feats)
        for kind in [*ranking, *(["bgnbd"] if "bgnbd" not in ranking else [])]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DegenerateFitWarning)
                    pm = PurchaseModel(model=kind).fit(rfm)
                sm = SpendModel().fit(rfm)
            except ModelFitError as exc:
                log.warning("%s could not be fitted (%s); trying the next model", kind, exc)
                errors.append(str(exc))
                continue
            if degenerate_note(pm) and len(ranking) > 1:
                log.debug("%s fit is degenerate (%s); trying the next model", kind, pm.degenerate_)
                degenerate = degenerate or (kind, pm, sm)
                continue
            return kind, pm, sm
        if degenerate is not None:
            return degenerate
        raise ModelFitError("no purchase model could be fitted: " + " | ".join(errors))

    def window_columns(
        self, feats: pd.DataFrame, pm: PurchaseModel, sm: SpendModel
    ) -> pd.DataFrame:
        """``expected_purchases``, :data:`PRIOR_COLUMN` and ``expected_spend`` of :meth:`value`.

        Bit for bit what :meth:`value` gives (the same closed forms on the same patterns,
        the same fallback where the prior is not finite), without the CLV curves that
        dominate its cost: what the level corrections' older snapshots need (the prior
        and the structural spend of an active window).
        """
        rfm = self.rfm(feats)
        values = no_purchase_frame(pm, rfm, self.horizon_units)
        values["expected_spend"] = sm.expected_spend_arrays(
            rfm["frequency"].to_numpy(dtype=float), rfm["monetary_value"].to_numpy(dtype=float)
        )
        return _sanitize(values)

    def value(
        self,
        feats: pd.DataFrame,
        pm: PurchaseModel,
        sm: SpendModel,
        share: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """The :data:`VALUE_COLUMNS` of every customer of a feature table.

        ``predicted_clv`` and ``value_if_retained`` are net of returns: times ``share``
        (each customer's expected kept share, :func:`churnguard.clv.kept_share` with the
        training base's prior), or the share kept so far when it is not given.
        """
        values = value_frame(
            pm,
            sm,
            self.rfm(feats),
            self.horizon_units,
            months=int(self.clv_months),
            discount_rate=float(self.discount_rate),
            time_unit=self.time_unit,
        )
        if getattr(pm, "degenerate_", None):
            # No dropout identified: P(alive) would read 1.000 for everyone, a certainty
            # the data cannot support.
            values["p_alive"] = np.nan
        share = kept_share(feats) if share is None else share
        if share is not None:  # values net of the customer's returns (see kept_share)
            for col in ("predicted_clv", "value_if_retained"):
                values[col] = values[col].to_numpy(dtype=float) * share
        return _sanitize(values)
