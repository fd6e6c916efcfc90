"""The churnguard model: features -> value models -> churn model on the BTYD prior.

:class:`ChurnGuardModel` is what ``churnguard train`` fits and ``churnguard
score`` applies. It is a plain scikit-learn style estimator over a canonical
transaction log (see :func:`churnguard.data.clean_transactions`):

1. a :class:`~churnguard.features.FeatureBuilder` learns the log's schema;
2. candidate buy-till-you-die models are compared on a calibration/holdout split
   and the best one whose dropout is identified, with Gamma-Gamma, is refitted on
   all the data (P(alive), P(no purchase in the horizon), CLV);
3. rolling snapshots (features + BTYD outputs fitted at each cutoff + churn label)
   feed three churn candidates (the BTYD prior alone, LightGBM anchored on the prior,
   plain LightGBM), compared out of time on the latest snapshot with the same gap to
   their training data as production has to the scoring date
   (:mod:`churnguard.churn.candidates`); the prior wins unless beaten;
4. the chosen candidate is refitted on every snapshot.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from churnguard._dates import DAYS_PER_UNIT, to_date
from churnguard.churn.baselines import BASELINE_PROBABILITIES, baseline_scores
from churnguard.churn.candidates import (
    CANDIDATES,
    PRIOR_COLUMN,
    PriorChurnModel,
    compare_candidates,
    fit_candidate,
)
from churnguard.churn.metrics import compare_scores
from churnguard.churn.reasons import explain
from churnguard.churn.training import (
    SnapshotPlan,
    plan_production,
    plan_validation,
    split_by_plan,
)
from churnguard.clv import ModelFitError, PurchaseModel, SpendModel, compare_models, value_frame
from churnguard.exceptions import (
    InputDataError,
    InsufficientHistoryError,
    ParameterError,
    ParameterTypeError,
)
from churnguard.features import FeatureBuilder, snapshot_cutoffs
from churnguard.features.engine import count_purchase_days, window_activity
from churnguard.model.value_choice import (
    VALUE_CANDIDATES,
    add_active_spend,
    compare_value_candidates,
    fit_spend_model,
    value_ratio,
    window_value,
)

__all__ = ["DEFAULT_REASONS_LIMIT", "VALUE_COLUMNS", "ChurnGuardModel", "TrainingReport"]

log = logging.getLogger(__name__)

#: Customers (highest value at risk first) whose reasons are computed (TreeSHAP is costly).
DEFAULT_REASONS_LIMIT = 25_000

#: Columns the value models add to the features (all but expected_spend feed the churn model).
VALUE_COLUMNS = [
    "p_alive",
    "expected_purchases",
    PRIOR_COLUMN,
    "expected_spend",
    "predicted_clv",
    "value_if_retained",
]
_NOT_FEATURES = {
    "customer_id",
    "cutoff",
    "future_purchases",
    "future_spend",
    "churned",
    "expected_spend",
}


@dataclass
class TrainingReport:
    """What training measured; written next to the model, not pickled with it."""

    metrics: dict[str, float] = field(default_factory=dict)
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    value_candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    value_model_comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    evaluation: pd.DataFrame = field(default_factory=pd.DataFrame)
    feature_importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    #: What the value-model diagnostics need (calibration RFM, holdout, fitted models).
    value_diagnostics: dict[str, Any] = field(default_factory=dict)


class ChurnGuardModel(BaseEstimator):
    """Churn probability, P(alive), CLV and reasons for every customer.

    Parameters
    ----------
    horizon_days : int
        A customer has churned when they make no purchase within this many days
        after the cutoff (label window ``(c + gap, c + gap + horizon]``).
    gap_days : int
        Lead time between a cutoff and its label window.
    snapshot_step_days : int
        Days between training snapshots.
    max_snapshots : int
        Most recent snapshots used (bounds training time on long logs).
    calibration_days : int
        The classifier is early-stopped and calibrated on the snapshots of the last
        ``calibration_days`` days of its learning period (customers cross-fitted).
    value_model : {"auto", "bgnbd", "pareto", "mbgnbd"}
        Purchase model for P(alive), P(no purchase) and expected purchases; ``auto``
        picks the best candidate on a calibration/holdout split.
    churn_model : {"auto", "prior", "anchored", "plain"}
        ``auto`` compares the three out of time and keeps the best (the prior unless
        beaten); a name forces that candidate.
    value_choice : {"auto", "btyd", "hurdle", "blend"}
        Which prediction of next-window spend orders value (see
        :mod:`churnguard.model.value_choice`); ``auto`` keeps the best out of time
        (BTYD x Gamma-Gamma unless beaten).
    holdout_days : int, optional
        Holdout length for the value-model comparison; default half the log's span.
    clv_months : int
        CLV horizon in months.
    discount_rate : float
        Monthly discount rate of CLV.
    time_unit : {"W", "D"}
        Time unit of the buy-till-you-die models (weeks are better conditioned).
    classifier_params : dict, optional
        Keyword arguments of :class:`~churnguard.churn.ChurnClassifier`.
    random_state : int
        Seed of the classifier.
    """

    def __init__(
        self,
        horizon_days: int = 90,
        gap_days: int = 0,
        snapshot_step_days: int = 14,
        max_snapshots: int = 24,
        calibration_days: int = 42,
        value_model: str = "auto",
        churn_model: str = "auto",
        value_choice: str = "auto",
        holdout_days: int | None = None,
        clv_months: int = 12,
        discount_rate: float = 0.01,
        time_unit: str = "W",
        classifier_params: dict[str, Any] | None = None,
        random_state: int = 0,
    ) -> None:
        self.horizon_days = horizon_days
        self.gap_days = gap_days
        self.snapshot_step_days = snapshot_step_days
        self.max_snapshots = max_snapshots
        self.calibration_days = calibration_days
        self.value_model = value_model
        self.churn_model = churn_model
        self.value_choice = value_choice
        self.holdout_days = holdout_days
        self.clv_months = clv_months
        self.discount_rate = discount_rate
        self.time_unit = time_unit
        self.classifier_params = classifier_params
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def _validate(self) -> None:
        if int(self.horizon_days) <= 0:
            raise ParameterError(
                f"horizon_days must be a positive number of days; got {self.horizon_days}."
            )
        if self.value_model not in ("auto", "bgnbd", "pareto", "mbgnbd"):
            raise ParameterError(
                "value_model must be 'auto', 'bgnbd', 'pareto' or 'mbgnbd'; "
                f"got {self.value_model!r}."
            )
        if self.churn_model not in ("auto", *CANDIDATES):
            raise ParameterError(
                f"churn_model must be 'auto' or one of {CANDIDATES}; got {self.churn_model!r}."
            )
        if self.value_choice not in ("auto", *VALUE_CANDIDATES):
            raise ParameterError(
                f"value_choice must be 'auto' or one of {VALUE_CANDIDATES}; "
                f"got {self.value_choice!r}."
            )
        if self.time_unit not in DAYS_PER_UNIT:
            raise ParameterError(f"time_unit must be 'W' or 'D'; got {self.time_unit!r}.")
        if not 0 <= float(self.discount_rate) < 1:
            raise ParameterError(
                f"discount_rate is monthly and must be in [0, 1); got {self.discount_rate}."
            )

    def fit(self, transactions: pd.DataFrame, y: Any = None) -> ChurnGuardModel:
        """Fit every stage on a canonical transaction log.

        Parameters
        ----------
        transactions : DataFrame
            Cleaned log (``customer_id``, ``date``, ``amount``, optional columns).

        Returns
        -------
        ChurnGuardModel
            ``self``, fitted.
        """
        self._validate()
        if not isinstance(transactions, pd.DataFrame):
            raise ParameterTypeError(
                f"transactions must be a pandas DataFrame; got {type(transactions).__name__}."
            )
        tx = transactions
        self.training_start_ = to_date(tx["date"].min())
        self.training_end_ = to_date(tx["date"].max())
        self.builder_ = FeatureBuilder(time_unit="D").fit(tx)
        notes: list[str] = []

        log.info("comparing value models on a calibration/holdout split")
        ranking, comparison = self._choose_value_model(tx)
        feats_end = self.builder_.transform(tx, self.training_end_)
        self.value_model_name_, self.purchase_model_, self.spend_model_ = self._fit_first(
            feats_end, ranking
        )
        self.value_model_note_ = _degenerate_note(self.purchase_model_)
        if self.value_model_note_:
            notes.append(self.value_model_note_)
            log.warning("%s", self.value_model_note_)
        log.info(
            "value model: %s, fitted on all data to %s", self.value_model_name_, self.training_end_
        )
        self.n_customers_ = len(feats_end)

        cutoffs = self._cutoffs()
        snaps = self._snapshot_table(tx, cutoffs) if cutoffs else pd.DataFrame()
        self.feature_names_ = (
            [c for c in snaps.columns if c not in _NOT_FEATURES]
            if not snaps.empty
            else [c for c in (*self.builder_.feature_names_, *VALUE_COLUMNS) if c not in
                  _NOT_FEATURES]
        )  # fmt: skip
        report = TrainingReport(value_model_comparison=comparison)
        self.plan_ = plan_validation(
            cutoffs, int(self.horizon_days), calibration_days=int(self.calibration_days)
        )
        chosen, reason, churn_eval = self._choose_churn_model(snaps, report)
        notes.append(f"churn model: {chosen} ({reason})")
        log.info("churn model: %s (%s)", chosen, reason)
        self.churn_model_name_ = chosen
        self.value_model_choice_, value_reason = self._choose_value(snaps, churn_eval, report)
        notes.append(f"value model: {self.value_model_choice_} ({value_reason})")
        log.info("value model: %s (%s)", self.value_model_choice_, value_reason)
        if chosen == "prior":
            self.production_plan_: SnapshotPlan | None = None
            self.churn_model_ = PriorChurnModel(PRIOR_COLUMN).fit(
                snaps[self.feature_names_] if not snaps.empty else feats_end.assign(
                    **{PRIOR_COLUMN: 0.5})[[PRIOR_COLUMN]]
            )  # fmt: skip
        else:
            prod = plan_production(cutoffs, calibration_days=int(self.calibration_days))
            fit_rows, cal_rows, _ = split_by_plan(snaps, prod)
            log.info(
                "production fit: %d snapshots, calibrated on %d",
                len(prod.fit),
                len(prod.calibration),
            )
            self.production_plan_ = prod
            self.churn_model_ = fit_candidate(
                chosen,
                fit_rows,
                cal_rows,
                self.feature_names_,
                classifier_params=self.classifier_params,
                random_state=self.random_state,
            )
        self.window_spend_model_ = None
        if self.value_model_choice_ != "btyd":
            prod = plan_production(cutoffs, calibration_days=int(self.calibration_days))
            fit_rows, cal_rows, _ = split_by_plan(snaps, prod)
            self.window_spend_model_ = fit_spend_model(
                fit_rows, cal_rows, self.feature_names_, random_state=self.random_state
            )
        report.notes = notes
        report.value_diagnostics = self.__dict__.pop("_diagnostics", {})
        self.report_: TrainingReport | None = report
        self.metrics_ = report.metrics
        return self

    def _cutoffs(self) -> list[dt.date]:
        try:
            return snapshot_cutoffs(
                self.training_start_,
                self.training_end_,
                horizon_days=int(self.horizon_days),
                gap_days=int(self.gap_days),
                step_days=int(self.snapshot_step_days),
                n_snapshots=int(self.max_snapshots),
            )
        except InsufficientHistoryError as exc:
            log.warning("no labelled snapshot fits in the log (%s)", exc)
            return []

    def _choose_value(
        self, snaps: pd.DataFrame, churn_eval: np.ndarray | None, report: TrainingReport
    ) -> tuple[str, str]:
        """Compare the value candidates on the validation plan; fill ``report``."""
        forced = None if self.value_choice == "auto" else str(self.value_choice)
        if self.plan_ is None or churn_eval is None:
            if forced not in (None, "btyd"):
                raise InsufficientHistoryError(
                    f"value_choice={forced!r} needs labelled snapshots to learn from; the log "
                    "is too short. Use value_choice='auto' or 'btyd'."
                )
            return "btyd", "too few labelled snapshots to validate a learned value model"
        fit_rows, cal_rows, ev = split_by_plan(snaps, self.plan_)
        result = compare_value_candidates(
            fit_rows, cal_rows, ev, churn_eval, self.feature_names_, random_state=self.random_state
        )
        report.value_candidates = result.table
        if forced is not None:
            return forced, "forced by value_choice"
        return result.chosen, result.reason

    def _choose_churn_model(
        self, snaps: pd.DataFrame, report: TrainingReport
    ) -> tuple[str, str, np.ndarray | None]:
        """Compare the churn candidates on the validation plan; fill ``report``.

        Returns the chosen name, the reason, and the chosen candidate's validation
        probabilities (None without a validation plan).
        """
        plan = self.plan_
        forced = None if self.churn_model == "auto" else str(self.churn_model)
        if plan is None:
            reason = (
                "too few labelled snapshots to validate a learned model out of time; the "
                "BTYD prior is used as the churn probability"
            )
            return ("prior" if forced in (None, "prior") else str(forced)), reason, None
        fit_rows, cal_rows, ev = split_by_plan(snaps, plan)
        log.info(
            "validation: %d learning snapshots, evaluated on %s (%d days later%s)",
            len(plan.fit),
            plan.evaluation,
            plan.gap_days,
            "" if plan.honest else ", optimistic: shorter than the horizon",
        )
        result = compare_candidates(
            fit_rows,
            cal_rows,
            ev,
            self.feature_names_,
            candidates=CANDIDATES if forced is None else tuple({"prior", forced}),
            classifier_params=self.classifier_params,
            random_state=self.random_state,
        )
        chosen = forced or result.chosen
        reason = result.reason if forced is None else "forced by churn_model"
        y = ev["churned"].to_numpy()
        baselines = baseline_scores(ev)
        scores = {"churnguard": result.scores.get(chosen, baselines["btyd_p_no_purchase"])}
        scores |= {f"candidate_{k}": v for k, v in result.scores.items()}
        comparison = compare_scores(
            y,
            {**scores, **baselines},
            probabilities=("churnguard", *[k for k in scores if k != "churnguard"],
                           *BASELINE_PROBABILITIES),
        ).set_index("score")  # fmt: skip
        metrics = {k: float(v) for k, v in comparison.loc["churnguard"].items()}
        best = comparison.loc[list(baselines)]
        metrics |= {
            "best_baseline_roc_auc": float(best["roc_auc"].max()),
            "roc_auc_margin": float(metrics["roc_auc"] - best["roc_auc"].max()),
            "validation_gap_days": float(plan.gap_days),
            "validation_honest": float(plan.honest),
        }
        model = result.models.get(chosen)
        report.metrics = metrics
        report.comparison = comparison
        report.candidates = result.table
        report.evaluation = pd.DataFrame(
            {
                "customer_id": ev["customer_id"].to_numpy(),
                "churned": y,
                "churn_probability": scores["churnguard"],
                **{f"baseline_{k}": v for k, v in baselines.items()},
            }
        )
        if model is not None:
            report.feature_importance = model.feature_importance()
        return chosen, reason, scores["churnguard"]

    def _rfm(self, feats: pd.DataFrame) -> pd.DataFrame:
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

    def _horizon_units(self) -> float:
        return int(self.horizon_days) / DAYS_PER_UNIT[self.time_unit]

    def _choose_value_model(self, tx: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
        """Candidate purchase models, best first, and the holdout comparison table."""
        span = (self.training_end_ - self.training_start_).days
        holdout = int(self.holdout_days or max(int(self.horizon_days), span // 2))
        cal_end = self.training_end_ - dt.timedelta(days=holdout)
        if self.value_model != "auto":
            return [self.value_model], pd.DataFrame()
        if cal_end <= self.training_start_ + dt.timedelta(days=28):
            log.warning("log too short for a calibration/holdout comparison; using BG/NBD")
            return ["bgnbd"], pd.DataFrame()
        cal = self.builder_.transform(tx, cal_end)
        future = count_purchase_days(tx, cal_end, self.training_end_).set_index("customer_id")
        actual = future["purchases"].reindex(cal["customer_id"]).fillna(0).to_numpy()
        holdout_units = holdout / DAYS_PER_UNIT[self.time_unit]
        # RMSE, not MAE: the models predict conditional *means*, which minimise squared
        # error; MAE rewards predicting the median (zero for most customers).
        result = compare_models(self._rfm(cal), actual, holdout_units, criterion="rmse")
        table = result.table.assign(calibration_end=cal_end.isoformat(), holdout_days=holdout)
        ranked = table.sort_values(_criterion_column(table), kind="stable")["model"].tolist()
        best = str(result.best)
        self._diagnostics = {
            "calibration_rfm": self._rfm(cal),
            "holdout_purchases": actual,
            "holdout_length": holdout_units,
            "calibration_end": cal_end,
            "model": result.models.get(best),
            "transactions": tx,
        }
        return [best, *[m for m in ranked if m != best]], table

    def _fit_first(
        self, feats: pd.DataFrame, ranking: list[str]
    ) -> tuple[str, PurchaseModel, SpendModel]:
        """Fit the best-ranked purchase model that converges and identifies a dropout.

        A fit whose dropout sits at its boundary ("nobody ever leaves") is kept only
        when every candidate is degenerate; the first such fit is then returned.
        """
        errors = []
        degenerate: tuple[str, PurchaseModel, SpendModel] | None = None
        for kind in [*ranking, *(["bgnbd"] if "bgnbd" not in ranking else [])]:
            try:
                pm, sm = self._fit_value_models(feats, kind)
            except ModelFitError as exc:
                log.warning(
                    "%s could not be fitted on the full data (%s); trying the next model", kind, exc
                )
                errors.append(str(exc))
                continue
            if _degenerate_note(pm) and len(ranking) > 1:
                degenerate = degenerate or (kind, pm, sm)
                continue
            return kind, pm, sm
        if degenerate is not None:
            return degenerate
        raise ModelFitError("no purchase model could be fitted: " + " | ".join(errors))

    def _fit_value_models(self, feats: pd.DataFrame, kind: str) -> tuple[PurchaseModel, SpendModel]:
        rfm = self._rfm(feats)
        return PurchaseModel(model=kind).fit(rfm), SpendModel().fit(rfm)

    def _value(self, feats: pd.DataFrame, pm: PurchaseModel, sm: SpendModel) -> pd.DataFrame:
        rfm = self._rfm(feats)
        values = value_frame(
            pm,
            sm,
            rfm,
            self._horizon_units(),
            months=int(self.clv_months),
            discount_rate=float(self.discount_rate),
            time_unit=self.time_unit,
        )
        if getattr(pm, "degenerate_", None):
            # No dropout identified: P(alive) would read 1.000 for everyone, a certainty
            # the data cannot support.
            values["p_alive"] = np.nan
        return _sanitize(values)

    def _snapshot_table(self, tx: pd.DataFrame, cutoffs: list[dt.date]) -> pd.DataFrame:
        log.info("building %d snapshots (%s .. %s)", len(cutoffs), cutoffs[0], cutoffs[-1])
        frames = []
        for c in cutoffs:
            feats = self.builder_.transform(tx, c)
            _, pm, sm = self._fit_first(feats, [self.value_model_name_])
            value = self._value(feats, pm, sm)
            frame = feats.assign(**{col: value[col].to_numpy() for col in VALUE_COLUMNS})
            add_active_spend(frame, self._horizon_units(), pm)
            frame.insert(0, "cutoff", pd.Timestamp(c))
            start = c + dt.timedelta(days=int(self.gap_days))
            act = window_activity(tx, start, start + dt.timedelta(days=int(self.horizon_days)))
            act = act.set_index("customer_id").reindex(pd.Index(feats["customer_id"], dtype=object))
            purchases = act["purchases"].fillna(0).to_numpy(dtype=np.int64)
            frame["future_purchases"] = purchases
            frame["future_spend"] = np.clip(act["spend"].fillna(0.0).to_numpy(dtype=float), 0, None)
            frame["churned"] = (purchases == 0).astype(np.int8)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    # ---------------------------------------------------------------- score
    def features(self, transactions: pd.DataFrame, as_of: Any = None) -> pd.DataFrame:
        """Features and value-model outputs of every customer as of ``as_of``."""
        check_is_fitted(self, "churn_model_")
        as_of_date = to_date(as_of) if as_of is not None else to_date(transactions["date"].max())
        feats = self.builder_.transform(transactions, as_of_date)
        if feats.empty:
            raise InputDataError(
                f"no customer has a purchase on or before {as_of_date}; choose a later --as-of."
            )
        value = self._value(feats, self.purchase_model_, self.spend_model_)
        frame = feats.assign(**{col: value[col].to_numpy() for col in VALUE_COLUMNS})
        add_active_spend(frame, self._horizon_units(), self.purchase_model_)
        return frame

    def churn_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Churn probability of each row of a :meth:`features` frame, shape ``(n,)``."""
        check_is_fitted(self, "churn_model_")
        return np.asarray(self.churn_model_.churn_probability(frame[self.feature_names_]))

    def window_value(
        self, frame: pd.DataFrame, churn_probability: np.ndarray | None = None
    ) -> np.ndarray:
        """Expected spend over the churn horizon of each row of a :meth:`features` frame.

        With the ``hurdle`` value model it is ``(1 - churn_probability)`` times the
        learned spend of an active window; ``churn_probability`` defaults to the
        model's own.
        """
        check_is_fitted(self, "churn_model_")
        p = self.churn_probability(frame) if churn_probability is None else churn_probability
        return window_value(self.value_model_choice_, frame, p, self.window_spend_model_)

    def value_columns(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """``predicted_clv`` and ``value_if_retained`` with the chosen value model's correction.

        BTYD x Gamma-Gamma values times the learned spend of an active window over the
        structural one (1 when BTYD x Gamma-Gamma was kept).
        """
        check_is_fitted(self, "churn_model_")
        r = value_ratio(self.value_model_choice_, frame, self.window_spend_model_)
        return {
            col: np.nan_to_num(frame[col].to_numpy(dtype=float)) * r
            for col in ("predicted_clv", "value_if_retained")
        }

    def predict(
        self,
        transactions: pd.DataFrame,
        as_of: Any = None,
        *,
        reasons_limit: int | None = DEFAULT_REASONS_LIMIT,
    ) -> pd.DataFrame:
        """Churn probability, value and reasons per customer (not yet prioritised).

        A DataFrame of customers, not an array of labels: what a transaction log
        predicts is a table of customers (scikit-learn's ``set_output`` convention of
        DataFrame out). There is no ``score`` method: in scikit-learn that name means
        a metric, and churnguard's metrics are in :mod:`churnguard.evaluation`.

        Parameters
        ----------
        transactions : DataFrame
            Canonical transactions; only those on or before ``as_of`` are used.
        as_of : date-like, optional
            Scoring date; defaults to the last transaction date.
        reasons_limit : int, optional
            Reasons come from LightGBM's exact per-customer contributions (TreeSHAP),
            which cost far more than the scores themselves (about 6,000 customers a
            second on 2 cores). They are computed for the ``reasons_limit`` customers
            with the highest value at risk (everyone when ``None``); the others get
            a note saying so. 0 skips them.

        Returns
        -------
        DataFrame
            Features, the value columns, ``churn_probability``, ``value_at_risk`` and
            ``reasons``.
        """
        frame = self.features(transactions, as_of)
        frame["churn_probability"] = self.churn_probability(frame)
        for col, values in self.value_columns(frame).items():
            frame[col] = values
        frame["value_at_risk"] = frame["churn_probability"] * frame["value_if_retained"]
        frame["reasons"] = "not explained: outside the top reasons_limit customers by value at risk"
        n = len(frame) if reasons_limit is None else min(int(reasons_limit), len(frame))
        if n > 0:
            top = frame["value_at_risk"].nlargest(n).index if n < len(frame) else frame.index
            frame.loc[top, "reasons"] = self.reasons(frame.loc[top]).to_numpy()
        return frame

    def reasons(self, frame: pd.DataFrame, *, num_threads: int | None = None) -> pd.Series:
        """Readable reasons for the churn score of each row of a scored frame.

        Parameters
        ----------
        frame : DataFrame
            Rows of :meth:`score` (features, value columns, churn probability).
        num_threads : int, optional
            LightGBM threads for the contributions (1 when other work runs alongside).
        """
        check_is_fitted(self, "churn_model_")
        contrib = self.churn_model_.contributions(
            frame[self.feature_names_], num_threads=num_threads
        )
        return explain(contrib, frame)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["report_"] = None  # evaluation tables live next to the model, not inside it
        return state


def _degenerate_note(pm: PurchaseModel) -> str:
    """One line when the purchase model's dropout sits at its boundary, else ''."""
    reason = getattr(pm, "degenerate_", None)
    if not reason:
        return ""
    return (
        f"{pm.model_name} could not identify customer dropout ({reason}): P(alive) is not "
        "reported; the churn probability comes from purchase rates and the classifier"
    )


def _sanitize(values: pd.DataFrame) -> pd.DataFrame:
    """Non-finite model outputs become NaN (features) or a safe value (the prior).

    A buy-till-you-die closed form can overflow for an extreme customer; one such
    customer must not stop a training run or a scoring job.
    """
    out = values.copy()
    for col in ("p_alive", "expected_purchases", "expected_spend", "predicted_clv"):
        if col in out:
            v = out[col].to_numpy(dtype=float)
            out[col] = np.where(np.isfinite(v), v, np.nan)
    p0 = out[PRIOR_COLUMN].to_numpy(dtype=float)
    if not np.isfinite(p0).all():
        expected = out["expected_purchases"].to_numpy(dtype=float)
        fallback = np.where(np.isfinite(expected), np.exp(-np.clip(expected, 0, None)), 0.5)
        out[PRIOR_COLUMN] = np.where(np.isfinite(p0), np.clip(p0, 0.0, 1.0), fallback)
    return out


def _criterion_column(table: pd.DataFrame) -> str:
    return "rmse_per_customer" if "rmse_per_customer" in table else str(table.columns[-1])
