"""The churnguard model: features -> value models -> calibrated classifier.

:class:`ChurnGuardModel` is what ``churnguard train`` fits and ``churnguard
score`` applies. It is a plain scikit-learn style estimator over a canonical
transaction log (see :func:`churnguard.data.clean_transactions`):

1. a :class:`~churnguard.features.FeatureBuilder` learns the log's schema;
2. candidate buy-till-you-die models are compared on a calibration/holdout split
   and the best one, with Gamma-Gamma, is refitted on all the data (CLV);
3. rolling snapshots (features + BTYD outputs + churn label) train the LightGBM
   classifier out of time; baselines are scored on the same evaluation snapshot;
4. the production classifier is retrained one step later, calibrated on the
   latest fully observed snapshot.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from churnguard.churn.baselines import BASELINE_PROBABILITIES, baseline_scores
from churnguard.churn.classifier import ChurnClassifier
from churnguard.churn.metrics import classification_report, compare_scores
from churnguard.churn.reasons import explain
from churnguard.churn.training import SnapshotPlan, plan_snapshots, split_by_plan
from churnguard.clv import ModelFitError, PurchaseModel, SpendModel, compare_models, value_frame
from churnguard.exceptions import InputDataError
from churnguard.features import FeatureBuilder, make_labels, snapshot_cutoffs
from churnguard.features.engine import count_purchase_days, to_date

__all__ = ["ChurnGuardModel", "TrainingReport", "VALUE_COLUMNS"]

log = logging.getLogger(__name__)

VALUE_COLUMNS = ["p_alive", "expected_purchases", "expected_spend", "predicted_clv"]
_NOT_FEATURES = {"customer_id", "cutoff", "future_purchases", "churned", "expected_spend"}
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0}


@dataclass
class TrainingReport:
    """What training measured; written next to the model, not pickled with it."""

    metrics: dict[str, float] = field(default_factory=dict)
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    value_model_comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    evaluation: pd.DataFrame = field(default_factory=pd.DataFrame)
    feature_importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    raw_ece: float = float("nan")
    calibrated_ece: float = float("nan")
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
        With customer cross-fitting (the classifier's default), the production
        classifier is early-stopped and calibrated on every snapshot of the last
        ``calibration_days`` days, not only the latest one.
    value_model : {"auto", "bgnbd", "pareto", "mbgnbd"}
        Purchase model for P(alive)/expected purchases; ``auto`` picks the best
        candidate on a calibration/holdout split.
    holdout_days : int, optional
        Holdout length for that comparison; default half the log's span.
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
        self.holdout_days = holdout_days
        self.clv_months = clv_months
        self.discount_rate = discount_rate
        self.time_unit = time_unit
        self.classifier_params = classifier_params
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def _validate(self) -> None:
        if int(self.horizon_days) <= 0:
            raise ValueError(
                f"horizon_days must be a positive number of days; got {self.horizon_days}."
            )
        if self.value_model not in ("auto", "bgnbd", "pareto", "mbgnbd"):
            raise ValueError(
                "value_model must be 'auto', 'bgnbd', 'pareto' or 'mbgnbd'; "
                f"got {self.value_model!r}."
            )
        if self.time_unit not in _DAYS_PER_UNIT:
            raise ValueError(f"time_unit must be 'W' or 'D'; got {self.time_unit!r}.")
        if not 0 <= float(self.discount_rate) < 1:
            raise ValueError(
                f"discount_rate is monthly and must be in [0, 1); got {self.discount_rate}."
            )

    def fit(self, transactions: pd.DataFrame, y: Any = None) -> ChurnGuardModel:
        """Fit every stage on a canonical transaction log.

        Parameters
        ----------
        transactions : DataFrame
            Cleaned log (``customer_id``, ``date``, ``amount``, optional columns).
        """
        self._validate()
        if not isinstance(transactions, pd.DataFrame):
            raise TypeError(
                f"transactions must be a pandas DataFrame; got {type(transactions).__name__}."
            )
        tx = transactions
        self.training_start_ = to_date(tx["date"].min())
        self.training_end_ = to_date(tx["date"].max())
        self.builder_ = FeatureBuilder(time_unit="D").fit(tx)
        horizon = int(self.horizon_days)
        # Fail fast, before any model is fitted, when the log is too short for snapshots.
        cutoffs = snapshot_cutoffs(
            self.training_start_,
            self.training_end_,
            horizon_days=horizon,
            gap_days=int(self.gap_days),
            step_days=int(self.snapshot_step_days),
            n_snapshots=int(self.max_snapshots),
        )
        plan = plan_snapshots(cutoffs, horizon)

        log.info("comparing value models on a calibration/holdout split")
        ranking, comparison = self._choose_value_model(tx)
        feats_end = self.builder_.transform(tx, self.training_end_)
        self.value_model_name_, self.purchase_model_, self.spend_model_ = self._fit_first(
            feats_end, ranking
        )
        log.info(
            "value model: %s, fitted on all data to %s", self.value_model_name_, self.training_end_
        )
        self.n_customers_ = len(feats_end)

        log.info("building %d snapshots (%s .. %s)", len(cutoffs), cutoffs[0], cutoffs[-1])
        snaps = self._snapshot_table(tx, cutoffs)
        self.plan_ = plan
        self.feature_names_ = [c for c in snaps.columns if c not in _NOT_FEATURES]

        log.info(
            "validation fit: train %d snapshots, calibrate %s, evaluate %s",
            len(plan.train),
            plan.calibration,
            plan.evaluation,
        )
        report = self._validate_out_of_time(snaps, plan)
        clf = self._new_classifier()
        cross = int(clf.cross_fit) >= 2
        # Cross-fitted customers never meet their own labels in calibration, so the
        # production fit needs no embargo and may pool recent snapshots to calibrate.
        prod = plan.shifted(
            cutoffs,
            embargo_days=0 if cross else None,
            calibration_days=int(self.calibration_days) if cross else 0,
        )
        log.info(
            "production fit: train %d snapshots, calibrate %s..%s",
            len(prod.train),
            prod.calibration_from or prod.calibration,
            prod.calibration,
        )
        train, cal, _ = split_by_plan(snaps, prod)
        self.classifier_ = self._fit_classifier(clf, train, cal)
        self.production_plan_ = prod
        report.value_model_comparison = comparison
        report.value_diagnostics = self.__dict__.pop("_diagnostics", {})
        self.report_: TrainingReport | None = report
        self.metrics_ = report.metrics
        return self

    def _new_classifier(self) -> ChurnClassifier:
        return ChurnClassifier(**(self.classifier_params or {}), random_state=self.random_state)

    def _fit_classifier(
        self, clf: ChurnClassifier, train: pd.DataFrame, cal: pd.DataFrame
    ) -> ChurnClassifier:
        f = self.feature_names_
        return clf.fit(
            train[f],
            train["churned"],
            cal[f],
            cal["churned"],
            groups=train["customer_id"].to_numpy(),
            groups_cal=cal["customer_id"].to_numpy(),
        )

    def _rfm(self, feats: pd.DataFrame) -> pd.DataFrame:
        unit = _DAYS_PER_UNIT[self.time_unit]
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
        return int(self.horizon_days) / _DAYS_PER_UNIT[self.time_unit]

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
        holdout_units = holdout / _DAYS_PER_UNIT[self.time_unit]
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
        """Fit the best-ranked purchase model that converges on ``feats``."""
        errors = []
        for kind in [*ranking, *(["bgnbd"] if "bgnbd" not in ranking else [])]:
            try:
                pm, sm = self._fit_value_models(feats, kind)
            except ModelFitError as exc:
                log.warning(
                    "%s could not be fitted on the full data (%s); trying the next model", kind, exc
                )
                errors.append(str(exc))
                continue
            return kind, pm, sm
        raise ModelFitError("no purchase model could be fitted: " + " | ".join(errors))

    def _fit_value_models(self, feats: pd.DataFrame, kind: str) -> tuple[PurchaseModel, SpendModel]:
        rfm = self._rfm(feats)
        return PurchaseModel(model=kind).fit(rfm), SpendModel().fit(rfm)

    def _value(self, feats: pd.DataFrame, pm: PurchaseModel, sm: SpendModel) -> pd.DataFrame:
        return value_frame(
            pm,
            sm,
            self._rfm(feats),
            self._horizon_units(),
            months=int(self.clv_months),
            discount_rate=float(self.discount_rate),
            time_unit=self.time_unit,
        )

    def _snapshot_table(self, tx: pd.DataFrame, cutoffs: list[dt.date]) -> pd.DataFrame:
        frames = []
        for c in cutoffs:
            feats = self.builder_.transform(tx, c)
            _, pm, sm = self._fit_first(feats, [self.value_model_name_])
            value = self._value(feats, pm, sm)
            labels = make_labels(
                tx, feats["customer_id"], c, int(self.horizon_days), int(self.gap_days)
            )
            frame = feats.assign(**{col: value[col].to_numpy() for col in VALUE_COLUMNS})
            frame.insert(0, "cutoff", pd.Timestamp(c))
            frame["future_purchases"] = labels["future_purchases"].to_numpy()
            frame["churned"] = labels["churned"].to_numpy()
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def _validate_out_of_time(self, snaps: pd.DataFrame, plan: SnapshotPlan) -> TrainingReport:
        train, cal, ev = split_by_plan(snaps, plan)
        clf = self._fit_classifier(self._new_classifier(), train, cal)
        return evaluation_report(clf, ev, self.bgnbd_baseline_frame(ev), self.feature_names_)

    def bgnbd_baseline_frame(self, ev: pd.DataFrame) -> pd.DataFrame:
        """``ev`` with BG/NBD ``p_alive`` and ``expected_purchases`` for the baselines.

        When the chosen purchase model is not BG/NBD, a BG/NBD is fitted on ``ev``'s
        own RFM columns (data up to its cutoff only), so the baselines are what a user
        of plain BG/NBD would have had on that date.
        """
        if self.value_model_name_ == "bgnbd":
            return ev
        pm = PurchaseModel(model="bgnbd").fit(self._rfm(ev))
        pred = pm.predict(self._rfm(ev), self._horizon_units())
        return ev.assign(
            p_alive=pred["p_alive"].to_numpy(),
            expected_purchases=pred["expected_purchases"].to_numpy(),
        )

    # ---------------------------------------------------------------- score
    def features(self, transactions: pd.DataFrame, as_of: Any = None) -> pd.DataFrame:
        """Features and value-model outputs of every customer as of ``as_of``."""
        check_is_fitted(self, "classifier_")
        as_of_date = to_date(as_of) if as_of is not None else to_date(transactions["date"].max())
        feats = self.builder_.transform(transactions, as_of_date)
        if feats.empty:
            raise InputDataError(
                f"no customer has a purchase on or before {as_of_date}; choose a later --as-of."
            )
        value = self._value(feats, self.purchase_model_, self.spend_model_)
        return feats.assign(**{col: value[col].to_numpy() for col in VALUE_COLUMNS})

    def score(
        self, transactions: pd.DataFrame, as_of: Any = None, *, reasons_limit: int | None = 25_000
    ) -> pd.DataFrame:
        """Churn probability, value and reasons per customer (not yet prioritised).

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
            Features, ``p_alive``, ``expected_purchases``, ``expected_spend``,
            ``predicted_clv``, ``churn_probability``, ``value_at_risk`` and ``reasons``.
        """
        frame = self.features(transactions, as_of)
        X = frame[self.feature_names_]
        frame["churn_probability"] = self.classifier_.predict_proba(X)
        frame["value_at_risk"] = frame["churn_probability"] * frame["predicted_clv"]
        frame["reasons"] = "not explained: outside the top reasons_limit customers by value at risk"
        n = len(frame) if reasons_limit is None else min(int(reasons_limit), len(frame))
        if n > 0:
            top = frame["value_at_risk"].nlargest(n).index if n < len(frame) else frame.index
            contrib = self.classifier_.contributions(X.loc[top])
            frame.loc[top, "reasons"] = explain(contrib, frame.loc[top]).to_numpy()
        return frame

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["report_"] = None  # evaluation tables live next to the model, not inside it
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Bundles saved before pooled calibration existed calibrated on one snapshot.
        state.setdefault("calibration_days", 0)
        self.__dict__.update(state)


def _criterion_column(table: pd.DataFrame) -> str:
    return "rmse_per_customer" if "rmse_per_customer" in table else str(table.columns[-1])


def evaluation_report(
    clf: ChurnClassifier, ev: pd.DataFrame, baseline_frame: pd.DataFrame, features: list[str]
) -> TrainingReport:
    """Score the evaluation snapshot with ``clf`` and the baselines."""
    y = ev["churned"].to_numpy()
    prob = clf.predict_proba(ev[features])
    raw = clf.predict_proba_raw(ev[features])
    baselines = baseline_scores(baseline_frame)
    comparison = compare_scores(
        y, {"churnguard": prob, **baselines}, probabilities=("churnguard", *BASELINE_PROBABILITIES)
    ).set_index("score")
    metrics = classification_report(y, prob)
    raw_report = classification_report(y, raw)
    evaluation = pd.DataFrame(
        {
            "customer_id": ev["customer_id"].to_numpy(),
            "churned": y,
            "churn_probability": prob,
            "raw_probability": raw,
            **{f"baseline_{k}": v for k, v in baselines.items()},
        }
    )
    best_baseline = comparison.drop(index="churnguard", errors="ignore")["roc_auc"].max()
    metrics = {
        **metrics,
        "raw_ece": raw_report["ece"],
        "best_baseline_roc_auc": float(best_baseline),
        "roc_auc_margin": float(metrics["roc_auc"] - best_baseline),
        "best_iteration": float(clf.best_iteration_),
    }
    return TrainingReport(
        metrics=metrics,
        comparison=comparison,
        evaluation=evaluation,
        feature_importance=clf.feature_importance(),
        raw_ece=raw_report["ece"],
        calibrated_ece=metrics["ece"],
    )
