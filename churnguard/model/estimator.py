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

The checks of the settings (:mod:`churnguard.model._settings`), the building of the
labelled snapshot table (:mod:`churnguard.model._snapshots`) and the scoring methods
(:mod:`churnguard.model._scoring`) live in private modules.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from churnguard import __version__
from churnguard._dates import to_date
from churnguard._money import fit_kept_prior
from churnguard.churn.candidates import PRIOR_COLUMN, PriorChurnModel, fit_candidate
from churnguard.churn.hazard_shift import HazardShift
from churnguard.churn.level import LevelChoice
from churnguard.churn.level_blend import LevelBlend
from churnguard.churn.reasons import ReasonReference
from churnguard.churn.training import (
    SnapshotPlan,
    plan_production,
    plan_validation,
    split_by_plan,
)
from churnguard.clv import DegenerateFitWarning, ModelFitError, PurchaseModel
from churnguard.data.transactions import duplicate_rows_note
from churnguard.decision.reference import DecisionReference
from churnguard.exceptions import InsufficientHistoryError
from churnguard.features import FeatureBuilder, snapshot_cutoffs
from churnguard.model._scoring import DEFAULT_REASONS_LIMIT, ScoringMethods
from churnguard.model._settings import check_settings
from churnguard.model._snapshots import NOT_FEATURES, snapshot_table
from churnguard.model.btyd import VALUE_COLUMNS, degenerate_note
from churnguard.model.validation import (
    TrainingReport,
    check_recent_drift,
    drift_windows,
    fit_drift_shift,
    fit_level,
    incomplete_end,
    validate_churn,
)
from churnguard.model.value_choice import (
    base_shift_customers,
    base_shift_note,
    compare_value_candidates,
    fit_spend_model,
    spend_base_shift,
)
from churnguard.model.value_level import fit_value_level, value_level_note, window_frame

__all__ = [
    "DEFAULT_REASONS_LIMIT",
    "SMALL_BASE",
    "VALUE_COLUMNS",
    "ChurnGuardModel",
    "TrainingReport",
]

log = logging.getLogger(__name__)

#: Below this many customers the train summary warns that its figures are noisy.
SMALL_BASE = 1_000

# Retained customers whose contributions define the reasons' reference (TreeSHAP cost).
_REASON_ROWS = 20_000


class ChurnGuardModel(ScoringMethods, BaseEstimator):
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
    max_snapshot_rows : int
        Most rows of the snapshot table (customers x snapshots) the churn and spend
        models learn from. A larger base is sampled: a fixed set of customers, chosen by
        a hash of their id (the same ones on every run), so that customers x snapshots
        fits. The purchase models behind every value column, the scoring and the
        reference base still use every customer. Why 1M: on a 100k-customer log,
        sampling to 1M rows changed backtest ROC-AUC by -0.0005 and ECE by at most
        0.002 against no sampling, and it keeps training on 1M customers within a
        few minutes and 4 GB (figures in ``benchmarks/README.md``).
    level_correction : bool
        Correct the level of the BTYD prior, when it is the churn model, and the seasonal
        level of the next-window value (the learned spend of an active window with the
        ``hurdle`` and ``blend`` value models), each as validated out of time on recent
        snapshots (:mod:`churnguard.churn.level`, :mod:`churnguard.model.value_level`);
        and move a learned churn model's level half-way to the prior's at the end of the
        log (:mod:`churnguard.churn.level_blend`: a fixed equal weight, not fitted; the
        validation figures in ``metrics_`` are those before this move).
    drift_correction : bool
        When the drift check flags that customers went silent faster (or slower) in the
        last 28 days than the purchase model expects, move the churn probabilities by the
        dropout-hazard change that explains it (:mod:`churnguard.churn.hazard_shift`), and
        the next-window value and ``predicted_clv`` with them. Off, the drift is only
        reported.
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
        max_snapshot_rows: int = 1_000_000,
        level_correction: bool = True,
        drift_correction: bool = True,
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
        self.max_snapshot_rows = max_snapshot_rows
        self.level_correction = level_correction
        self.drift_correction = drift_correction
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
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
        check_settings(self.get_params(deep=False))
        if not isinstance(transactions, pd.DataFrame):
            raise TypeError(
                f"transactions must be a pandas DataFrame; got {type(transactions).__name__}."
            )
        tx = transactions
        self.training_start_ = to_date(tx["date"].min())
        self.training_end_ = to_date(tx["date"].max())
        self.churnguard_version_ = __version__  # checked against metadata.json at load
        span = (self.training_end_ - self.training_start_).days
        if span < int(self.horizon_days):
            raise InsufficientHistoryError(
                f"the log covers {span} days ({self.training_start_} to {self.training_end_}), "
                f"less than the horizon of {int(self.horizon_days)} days: nothing in it shows "
                "who came back within a horizon. Train on a longer log (a year or more is "
                "best) or pass a shorter --horizon-days."
            )
        self.builder_ = FeatureBuilder(time_unit="D").fit(tx)
        stage = self.btyd_
        notes: list[str] = []
        report = TrainingReport()
        repeated = duplicate_rows_note(tx)
        if repeated:
            notes.append(repeated)
            log.info("%s", repeated)

        log.info("comparing value models on a calibration/holdout split")
        ranking, report.value_model_comparison, report.value_diagnostics = (
            [str(self.value_model)], pd.DataFrame(), {}
        ) if self.value_model != "auto" else stage.rank_models(
            self.builder_, tx, self.training_start_, self.training_end_, self.holdout_days
        )  # fmt: skip
        feats_end = self.builder_.transform(tx, self.training_end_)
        self.kept_prior_ = fit_kept_prior(feats_end)
        if self.kept_prior_ is not None and self.kept_prior_.share < 1.0:
            notes.append(
                f"returns: the base kept {self.kept_prior_.share:.1%} of its gross spend; value "
                "columns are net, each customer's own share shrunk towards it"
            )
        self.value_model_name_, self.purchase_model_, self.spend_model_ = stage.fit_first(
            feats_end, ranking
        )
        self.value_model_note_ = degenerate_note(self.purchase_model_)
        if self.value_model_note_:
            notes.append(self.value_model_note_)
            log.warning("%s", self.value_model_note_)
        log.info(
            "purchase model: %s, fitted on all data to %s",
            self.value_model_name_, self.training_end_,
        )  # fmt: skip
        self.n_customers_ = len(feats_end)
        if self.n_customers_ < SMALL_BASE:
            small = (
                f"only {self.n_customers_:,} customers: the out-of-time metrics and the model "
                "choices rest on few of them and are noisy (an AUC of 1.000 on a handful says "
                "nothing); a few thousand customers make them stable"
            )
            notes.append(small)
            log.warning("%s", small)

        cutoffs = self._cutoffs()
        notes.extend(self._check_drift(tx, feats_end, max(cutoffs) if cutoffs else None))
        self.snapshot_customers_ = 0
        snaps = self._snapshot_table(tx, cutoffs) if cutoffs else pd.DataFrame()
        if cutoffs and self.snapshot_customers_ < self.n_customers_:
            notes.append(
                f"snapshots from a fixed sample of {self.snapshot_customers_:,} of "
                f"{self.n_customers_:,} customers (max_snapshot_rows)"
            )
        columns = snaps.columns if not snaps.empty else [*self.builder_.feature_names_,
                                                          *VALUE_COLUMNS]  # fmt: skip
        self.feature_names_ = [c for c in columns if c not in NOT_FEATURES]
        self.plan_ = plan_validation(
            cutoffs, int(self.horizon_days), calibration_days=int(self.calibration_days)
        )
        self.level_ = LevelChoice(reason="level_correction=False")
        older: list[pd.DataFrame] = []  # the level snapshots, kept for the spend level

        def older_snapshots(extra: list[dt.date]) -> pd.DataFrame:
            older.append(self._snapshot_table(tx, extra, same_sample=True, window_only=True))
            return older[-1]

        if self.level_correction:
            self.level_ = fit_level(
                snaps, cutoffs, older_snapshots,
                lag_days=int(self.horizon_days) + int(self.gap_days),
                step_days=int(self.snapshot_step_days),
                earliest=self.training_start_ + dt.timedelta(days=28),
            )  # fmt: skip
        validation = validate_churn(
            snaps,
            self.plan_,
            self.feature_names_,
            forced=None if self.churn_model == "auto" else str(self.churn_model),
            classifier_params=self.classifier_params,
            random_state=self.random_state,
            level=self.level_,
        )
        report.metrics, report.comparison = validation.metrics, validation.comparison
        report.candidates, report.evaluation = validation.candidates, validation.evaluation
        report.feature_importance = validation.feature_importance
        chosen = self.churn_model_name_ = validation.chosen
        notes.append(f"churn model: {chosen} ({validation.reason})")
        if chosen == "prior":
            notes.append(f"churn level: {self.level_.offset:+.3f} log-odds ({self.level_.reason})")
        log.info("churn model: %s (%s)", chosen, validation.reason)
        self.value_model_choice_, value_reason = self._choose_value(
            snaps, validation.probabilities, report
        )
        notes.append(f"value model: {self.value_model_choice_} ({value_reason})")
        log.info("value model: %s (%s)", self.value_model_choice_, value_reason)
        self.value_level_ = LevelChoice(reason="level_correction=False")
        if self.level_correction and not snaps.empty:
            self.value_level_ = fit_value_level(
                [*older, snaps],
                self.value_model_choice_,
                lag_days=int(self.horizon_days) + int(self.gap_days),
                reference_days=int(self.calibration_days),
            )
            notes.append(value_level_note(self.value_level_, self.value_model_choice_))
        self.production_plan_: SnapshotPlan | None = None
        self.window_spend_model_ = None
        if chosen == "prior":
            prior_rows = snaps if not snaps.empty else feats_end.assign(**{PRIOR_COLUMN: 0.5})
            self.churn_model_ = PriorChurnModel(PRIOR_COLUMN, level=self.level_.offset).fit(
                prior_rows[[PRIOR_COLUMN]]
            )
        cal_rows: pd.DataFrame | None = None
        if cutoffs:
            prod = plan_production(cutoffs, calibration_days=int(self.calibration_days))
            fit_rows, cal_rows, _ = split_by_plan(snaps, prod)
            if chosen != "prior":
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
            if self.value_model_choice_ != "btyd":
                spend = fit_spend_model(
                    fit_rows, cal_rows, self.feature_names_, random_state=self.random_state
                )
                latest = to_date(cal_rows["cutoff"].max())  # the base as scoring sees it
                ids = base_shift_customers(cal_rows, random_state=self.random_state)
                sample = tx.loc[tx["customer_id"].isin(ids)]
                final = self.features_frame(self.builder_.transform(sample, latest))
                spend.base_shift_ = spend_base_shift(cal_rows, final)
                notes.append(f"learned spend: {base_shift_note(spend.base_shift_)}")
                self.window_spend_model_ = spend
        frame_end = self.features_frame(feats_end)
        self.level_blend_ = LevelBlend(weight=0.0, reason="not applied")
        if chosen != "prior" and self.level_correction:
            self.level_blend_ = self.measure_level_blend(frame_end, calibration_rows=cal_rows)
            notes.append(f"churn level: {self.level_blend_.reason}")
            log.info("churn level: %s", self.level_blend_.reason)
        self.reason_reference_ = self._reason_reference(snaps, cutoffs, feats_end)
        log.info("measuring the reference base for tiers, risk bands and RFM scores")
        base = self.predict_features(frame_end, reasons_limit=0, copy=False)
        self.decision_reference_ = DecisionReference.fit(
            base, source=f"training base as of {self.training_end_.isoformat()}"
        )
        report.notes = notes
        self.report_: TrainingReport | None = report
        self.metrics_ = report.metrics
        return self

    def _check_drift(
        self, tx: pd.DataFrame, feats_end: pd.DataFrame, labelled_until: dt.date | None
    ) -> list[str]:
        """Set ``recent_drift_`` and ``hazard_shift_``; the notes they call for.

        The drift check (:mod:`churnguard.churn.drift`) warns when the latest weeks left the
        purchase model's recent range; with ``drift_correction``, a flagged drift is turned
        into a dropout-hazard factor that moves the churn probabilities at scoring
        (:mod:`churnguard.churn.hazard_shift`).
        """
        stage = self.btyd_
        windows = drift_windows(tx, self.builder_, stage, self.training_end_)
        drift = self.recent_drift_ = check_recent_drift(
            windows, self.purchase_model_, labelled_until=labelled_until
        )
        self.hazard_shift_: HazardShift | None = None
        if not drift.flagged:
            return []
        log.warning("%s", drift.note)
        notes = [drift.note]
        if not self.drift_correction:
            off = "no drift correction: turned off (--no-drift-correction, drift_correction=False)"
            log.warning("%s", off)
            return [*notes, off]
        pareto, why = self.purchase_model_, incomplete_end(tx, self.training_end_)
        if not why and pareto.model != "pareto":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DegenerateFitWarning)
                    pareto = PurchaseModel("pareto").fit(stage.rfm(feats_end))
            except ModelFitError as exc:
                why = f"Pareto/NBD could not be fitted ({exc})"
        if not why and not pareto.dropout_identified:
            why = "the Pareto/NBD fit has no dropout to scale"
        if not why:
            self.hazard_shift_, why = fit_drift_shift(
                windows, drift, pareto, horizon_days=int(self.horizon_days),
                time_unit=str(self.time_unit),
            )  # fmt: skip
        note = self.hazard_shift_.note if self.hazard_shift_ else f"no drift correction: {why}"
        log.warning("%s", note)
        return [*notes, note]

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

    def _reason_reference(
        self, snaps: pd.DataFrame, cutoffs: list[dt.date], feats_end: pd.DataFrame
    ) -> ReasonReference:
        """Retained peers on the latest labelled snapshot (a fixed-seed sample)."""
        if snaps.empty:
            rows = self.features_frame(feats_end).assign(churned=0)
        else:
            rows = snaps.loc[snaps["cutoff"] == pd.Timestamp(max(cutoffs))]
        if len(rows) > _REASON_ROWS:
            rows = rows.sample(n=_REASON_ROWS, random_state=0)
        contrib = self.churn_model_.contributions(rows[self.feature_names_])
        return ReasonReference.fit(contrib, rows, rows["churned"].to_numpy())

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

    def _snapshot_table(
        self,
        tx: pd.DataFrame,
        cutoffs: list[dt.date],
        *,
        same_sample: bool = False,
        window_only: bool = False,
    ) -> pd.DataFrame:
        """Labelled snapshots with value columns fitted at each cutoff (see ``_snapshots``).

        ``same_sample``: the customers of the snapshots built before (older cutoffs).
        ``window_only``: of the value columns only those the level corrections read
        (:data:`PRIOR_COLUMN` and the structural spend of an active window), skipping the
        CLV curves that cost most of a snapshot.
        """
        rows = int(self.max_snapshot_rows)
        if same_sample:
            rows = max(int(self.snapshot_customers_), 1) * len(cutoffs)
        stage = self.btyd_

        def values(feats: pd.DataFrame) -> pd.DataFrame:
            _, pm, sm = stage.fit_first(feats, [self.value_model_name_])
            if window_only:
                return window_frame(stage, feats, pm, sm)
            return self.features_frame(feats, pm, sm)

        snaps, customers = snapshot_table(
            tx, cutoffs, self.builder_, values, gap_days=int(self.gap_days),
            horizon_days=int(self.horizon_days), max_rows=rows,
        )  # fmt: skip
        if not same_sample:
            self.snapshot_customers_ = customers
        return snaps

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["report_"] = None  # evaluation tables live next to the model, not inside it
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Settings added after a model was saved are filled in, so that get_params, clone
        # and repr work on it (what it learned is unchanged). Off: what the model ran with,
        # so that a clone refits as the saved model was fitted.
        for name in ("level_correction", "drift_correction"):
            state.setdefault(name, False)
        super().__setstate__(state)
