"""Out-of-time validation of the churn model: candidates, baselines, and what is reported.

The validation plan (:func:`churnguard.churn.plan_validation`) learns from snapshots at
least one horizon older than its evaluation snapshot, as production learns from
snapshots one horizon older than the scoring date. On the evaluation snapshot the
candidates are compared (:func:`churnguard.churn.compare_candidates`) and, beside them,
the baselines a reader would try first; the chosen candidate's figures are the
model's validation metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churnguard._dates import DAYS_PER_UNIT, YEAR_DAYS, to_date
from churnguard.churn.baselines import BASELINE_PROBABILITIES, baseline_scores
from churnguard.churn.candidates import CANDIDATES, PRIOR_COLUMN, compare_candidates
from churnguard.churn.classifier import logit
from churnguard.churn.drift import RecentDrift, recent_drift, window_level
from churnguard.churn.hazard_shift import K_BOUNDS, HazardShift, fit_hazard_shift
from churnguard.churn.level import LevelChoice, choose_level, level_cutoffs
from churnguard.churn.metrics import compare_scores
from churnguard.churn.training import SnapshotPlan, split_by_plan
from churnguard.features.engine import window_activity
from churnguard.model._snapshots import customer_sample

__all__ = [
    "ChurnValidation",
    "DriftWindows",
    "TrainingReport",
    "check_recent_drift",
    "drift_windows",
    "fit_drift_shift",
    "fit_level",
    "incomplete_end",
    "tail_volume_ratio",
    "validate_churn",
]

log = logging.getLogger(__name__)

# Customers a window needs before its level is worth comparing.
_MIN_DRIFT_CUSTOMERS = 200


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


@dataclass
class ChurnValidation:
    """The chosen churn candidate, why, and the validation tables."""

    chosen: str
    reason: str
    probabilities: np.ndarray | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    evaluation: pd.DataFrame = field(default_factory=pd.DataFrame)
    feature_importance: pd.DataFrame = field(default_factory=pd.DataFrame)


def _first_day(transactions: Any) -> dt.date | None:
    """The first transaction day of a canonical frame (None when unknown or empty)."""
    if not isinstance(transactions, pd.DataFrame) or transactions.empty:
        return None
    return to_date(transactions["date"].min())


@dataclass
class DriftWindows:
    """The drift check's windows: each customer's history at a window's start, and silence.

    ``current`` and ``year_ago`` map each window's end to ``(x, tx, T, silent)``: repeat
    purchases, age at the last one and age at the window's start in the model's time unit,
    and 1 for the customers who made no purchase in the window. ``units`` is the window's
    length in that unit.
    """

    days: int
    units: float
    current: dict[pd.Timestamp, tuple[np.ndarray, ...]] = field(default_factory=dict)
    year_ago: dict[pd.Timestamp, tuple[np.ndarray, ...]] | None = None
    _measured: dict[tuple[int, str], pd.Series] = field(default_factory=dict, repr=False)

    def levels(self, purchase_model: Any, which: str = "current") -> pd.Series:
        """:func:`~churnguard.churn.drift.window_level` of each window under a purchase model.

        Measured once per model: the drift check and the correction ask for the same ones
        when the chosen purchase model is Pareto/NBD.
        """
        key = (id(purchase_model), which)
        if key not in self._measured:
            windows = self.current if which == "current" else (self.year_ago or {})
            levels = {
                stop: window_level(
                    purchase_model.p_no_purchase_arrays(self.units, x, tx, T), silent
                )
                for stop, (x, tx, T, silent) in windows.items()
            }
            self._measured[key] = pd.Series(levels, dtype=float).sort_index()
        return self._measured[key]


def drift_windows(
    transactions: Any,
    builder: Any,
    stage: Any,
    end: dt.date,
    *,
    days: int = 28,
    windows: int = 7,
    max_customers: int = 200_000,
) -> DriftWindows:
    """The last ``windows`` windows of ``days`` days to ``end``, and a year earlier.

    Customers first seen after a window's start are not in that window. When the log
    reaches back a year before the first window, the same windows 52 weeks earlier are
    measured too, so that a move the season makes every year is not taken for drift. A
    base of more than ``max_customers`` is measured on a fixed sample of them (a level is
    a population average: 200,000 customers pin it to about 0.005 log-odds, a tenth of the
    smallest move flagged).
    """
    if isinstance(transactions, pd.DataFrame):
        transactions, _ = customer_sample(transactions, int(max_customers))
    starts = [end - dt.timedelta(days=days * k) for k in range(windows, 0, -1)]
    year = dt.timedelta(days=YEAR_DAYS)
    first = _first_day(transactions)
    # A year back only when the year-ago windows end before the first current one.
    reaches = first is not None and starts[0] - year > first and days * windows <= YEAR_DAYS
    earlier = [s - year for s in starts] if reaches else []
    current: dict[pd.Timestamp, tuple[np.ndarray, ...]] = {}
    year_ago: dict[pd.Timestamp, tuple[np.ndarray, ...]] = {}
    for start, feats in builder.transform_many(transactions, earlier + starts):
        if len(feats) < _MIN_DRIFT_CUSTOMERS:  # too few to measure a level on
            continue
        rfm = stage.rfm(feats)
        stop = start + dt.timedelta(days=days)
        act = window_activity(transactions, start, stop).set_index("customer_id")
        bought = act["purchases"].reindex(pd.Index(feats["customer_id"], dtype=object))
        silent = (bought.fillna(0).to_numpy() == 0).astype(float)
        arrays = (*(rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")), silent)
        (year_ago if start < starts[0] else current)[pd.Timestamp(stop)] = arrays
    units = int(days) / DAYS_PER_UNIT[stage.time_unit]
    return DriftWindows(int(days), units, current, year_ago if earlier else None)


def check_recent_drift(
    windows: DriftWindows, purchase_model: Any, *, labelled_until: dt.date | None
) -> RecentDrift:
    """:func:`churnguard.churn.drift.recent_drift` of :func:`drift_windows`.

    Every window is scored with the purchase model fitted on all data, at each customer's
    history as of the window's start: the same parameters for every window, so what
    differs between them is what the customers did.
    """
    year_ago = windows.levels(purchase_model, "year_ago") if windows.year_ago is not None else None
    return recent_drift(
        windows.levels(purchase_model),
        days=windows.days,
        labelled_until=labelled_until,
        year_ago=year_ago,
    )


def fit_drift_shift(
    windows: DriftWindows, drift: RecentDrift, pareto: Any, *, horizon_days: int, time_unit: str
) -> tuple[HazardShift | None, str]:
    """The hazard shift (:mod:`churnguard.churn.hazard_shift`) behind a flagged drift.

    The drift check is run again on the levels under ``pareto`` (a fitted Pareto/NBD
    :class:`~churnguard.clv.PurchaseModel`), whose errors differ from the chosen purchase
    model's: the correction is fitted only when it too flags a move the same way. The
    change is taken to start with the latest window or one of the two before (the start
    that leaves the smallest squared level gaps over all seven windows, an older start
    paying two noise variances a window); the target level
    is the median of the windows before it, moved towards the latest by the season that
    check counted (``season_shift``) when it went the same way (a season explains part of
    a move, never more).

    Returns
    -------
    (HazardShift or None, str)
        The shift, and why there is none ('' when there is).
    """
    if not drift.flagged or len(windows.current) < 2:
        return None, "no drift flagged"
    levels = windows.levels(pareto)
    year_ago = windows.levels(pareto, "year_ago") if windows.year_ago is not None else None
    seen = recent_drift(levels, days=windows.days, year_ago=year_ago)
    if not seen.flagged or np.sign(seen.z) != np.sign(drift.z):
        return None, f"Pareto/NBD does not see the same move (z = {seen.z:+.1f})"
    # When did it start? At the start of the latest window, or of one of the two before
    # (a change older than the latest window, whose windows are all off): the start whose
    # fit leaves the smallest squared level gaps over every window wins.
    shift, best = None, np.inf
    stops = list(levels.index)
    day = pd.Timedelta(days=windows.days)
    # An older start must beat the latest by more than noise: each window it moves from
    # the reference to the change costs two variances of a window's level (the spread of
    # the windows before every candidate start, at least 0.02 as in the drift check).
    oldest = levels.iloc[:-3].to_numpy()
    noise = max(float(np.std(oldest, ddof=1)) if len(oldest) > 1 else 0.0, 0.02) ** 2
    for since_windows in (1, 2, 3):
        reference = levels.iloc[:-since_windows].to_numpy()
        if len(reference) < 4:
            break
        target = float(np.median(reference))
        move, season = float(levels.iloc[-1]) - target, float(seen.season_shift)
        # A season may explain part of the latest move away, never add to it: the
        # correction must not grow on last year's weeks.
        if since_windows == 1 and season * move > 0:
            target += float(np.sign(move)) * min(abs(season), abs(move))
        after = stops[-since_windows:]
        start = after[0] - day
        since_change = []
        for m, stop in enumerate(after):
            x, tx, T, silent = windows.current[stop]
            since_change.append(((x, tx, T), silent, windows.units * m))
        candidate = fit_hazard_shift(
            pareto.params_,
            since_change,
            target,
            window=windows.units,
            horizon=int(horizon_days) / DAYS_PER_UNIT[time_unit],
            time_unit=time_unit,
            start=start.date().isoformat(),
        )
        if candidate is None:
            continue
        total = float(np.sum((reference - target) ** 2)) + candidate.misfit
        total += 2.0 * noise * (since_windows - 1)
        if total < best:
            shift, best = candidate, total
    return shift, "" if shift else f"no hazard factor in {K_BOUNDS} explains it"


def tail_volume_ratio(transactions: pd.DataFrame, end: Any, days: int = 3) -> float:
    """Transactions of the ``days`` days to ``end`` over those of the same weekdays earlier.

    The median over the four weeks before (same weekdays, so a weekly rhythm cancels). A
    log extracted before its last days were fully loaded shows a sharp fall here, and its
    latest window looks like churn; a change of churn thins the purchases out gradually
    (the shifted-churn world at five times the hazard: 0.87 over the last 3 days; the
    seasonal worlds: 0.84-1.13). NaN when those weeks hold no transaction. Zone-aware
    dates count in their own zone's days.
    """
    day = pd.Timestamp(to_date(end))
    return _volume_ratio(_daily_counts(transactions, day - pd.Timedelta(days=days + 28)), day, days)


def _daily_counts(transactions: pd.DataFrame, since: pd.Timestamp) -> pd.Series:
    """Transactions per calendar day from ``since`` on (zone-aware dates: their own days)."""
    dates = pd.to_datetime(transactions["date"])
    if dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    return dates[dates >= since].dt.normalize().value_counts()


def _volume_ratio(daily: pd.Series, day: pd.Timestamp, days: int) -> float:
    """:func:`tail_volume_ratio` from per-day counts covering the four weeks before."""

    def total(stop: pd.Timestamp) -> float:
        inside = (daily.index > stop - pd.Timedelta(days=days)) & (daily.index <= stop)
        return float(daily[inside].sum())

    before = float(np.median([total(day - pd.Timedelta(weeks=w)) for w in range(1, 5)]))
    return total(day) / before if before > 0 else float("nan")


def incomplete_end(transactions: pd.DataFrame, end: dt.date) -> str:
    """Why the log's last days look incompletely loaded ('' when they look complete).

    Two checks (:func:`tail_volume_ratio`): the 3 days before the last under 80% of their
    usual volume (late-loading data), and the last day under 60% of its own (an extract
    taken during that day: a pull before about 14:00). Either makes more customers look
    silent in the latest window, which looks like churn.
    """
    day = pd.Timestamp(to_date(end))
    daily = _daily_counts(transactions, day - pd.Timedelta(days=3 + 1 + 28))  # one pass
    earlier = _volume_ratio(daily, day - pd.Timedelta(days=1), 3)
    last = _volume_ratio(daily, day, 1)
    if not (np.isfinite(earlier) and np.isfinite(last)):
        return (
            "the log's last days cannot be checked for completeness (no transactions on the "
            "same weekdays in the four weeks before)"
        )
    if earlier < 0.8:
        return (
            f"the 3 days before the last hold {earlier:.0%} of the transactions of the same "
            "weekdays in the weeks before: the log's end looks incompletely loaded, which "
            "looks like churn. Train on a log whose last days are complete"
        )
    if last < 0.6:
        return (
            f"the last day, {end}, holds {last:.0%} of its weekday's usual transactions: it "
            "looks partly loaded (extracted during the day), which looks like churn. Train "
            "on the log up to the day before"
        )
    return ""


def fit_level(
    snaps: pd.DataFrame,
    cutoffs: Sequence[dt.date],
    older_snapshots: Callable[[list[dt.date]], pd.DataFrame],
    *,
    lag_days: int,
    step_days: int,
    earliest: dt.date,
) -> LevelChoice:
    """The prior's level correction at the scoring date (see :mod:`churnguard.churn.level`).

    Parameters
    ----------
    snaps : DataFrame
        The labelled snapshot table.
    cutoffs : sequence of date
        Its cutoffs.
    older_snapshots : callable
        Builds the labelled snapshots of older cutoffs, which the ``season`` source needs
        to be validated (a year plus the rolling-origin targets back).
    lag_days : int
        Horizon plus gap.
    step_days : int
        Days between snapshots.
    earliest : date
        Earliest cutoff a snapshot may have.
    """
    cols = ["cutoff", PRIOR_COLUMN, "churned"]
    if snaps.empty or not cutoffs:
        return LevelChoice(reason="no labelled snapshot to measure the prior's level on")
    rows = snaps[cols]
    extra = level_cutoffs(cutoffs, step_days=step_days, earliest=earliest)
    if extra:
        rows = pd.concat([older_snapshots(extra)[cols], rows], ignore_index=True)
    return choose_level(rows, lag_days)


def validate_churn(
    snaps: pd.DataFrame,
    plan: SnapshotPlan | None,
    features: Sequence[str],
    *,
    forced: str | None = None,
    classifier_params: Mapping[str, Any] | None = None,
    random_state: int = 0,
    level: LevelChoice | None = None,
) -> ChurnValidation:
    """Compare the churn candidates on the validation plan and the baselines beside them.

    Parameters
    ----------
    snaps : DataFrame
        The snapshot table (features, value columns, ``churned``).
    plan : SnapshotPlan or None
        The validation plan; None (too few snapshots) keeps the prior, unvalidated.
    features : sequence of str
        The churn model's features.
    forced : str, optional
        A candidate to use whatever the comparison says (it is still reported).
    level : LevelChoice, optional
        The prior's level correction: when the prior is chosen, its validation scores
        carry the correction forecast for the evaluation snapshot out of time.
    """
    if plan is None:
        reason = (
            "too few labelled snapshots to validate a learned model out of time; the "
            "BTYD prior is used as the churn probability"
        )
        return ChurnValidation("prior" if forced in (None, "prior") else str(forced), reason)
    fit_rows, cal_rows, ev = split_by_plan(snaps, plan)
    log.info(
        "validation: %d learning snapshots, evaluated on %s (%d days after the latest of them%s)",
        len(plan.fit),
        plan.evaluation,
        plan.gap_days,
        ", at least a horizon, as between training and scoring"
        if plan.honest
        else ", optimistic: less than the horizon",
    )
    result = compare_candidates(
        fit_rows,
        cal_rows,
        ev,
        features,
        candidates=CANDIDATES if forced is None else tuple(dict.fromkeys(("prior", forced))),
        classifier_params=classifier_params,
        random_state=random_state,
        tolerance_se=0.0 if plan.honest else 1.0,
    )
    chosen = forced or result.chosen
    reason = result.reason if forced is None else "forced by churn_model"
    y = ev["churned"].to_numpy()
    baselines = baseline_scores(ev)
    scores = {"churnguard": result.scores.get(chosen, baselines["btyd_p_no_purchase"])}
    if chosen == "prior" and level is not None and level.source != "none" and plan.evaluation:
        shift = float(level.forecasts.get(pd.Timestamp(plan.evaluation), 0.0))
        scores["churnguard"] = 1.0 / (1.0 + np.exp(-(logit(scores["churnguard"]) + shift)))
    scores |= {f"candidate_{k}": v for k, v in result.scores.items()}
    comparison = compare_scores(
        y,
        {**scores, **baselines},
        probabilities=(*scores, *BASELINE_PROBABILITIES),
    ).set_index("score")
    metrics = {str(k): float(v) for k, v in comparison.loc["churnguard"].to_dict().items()}
    best = comparison.loc[list(baselines)]
    metrics |= {
        "best_baseline_roc_auc": float(best["roc_auc"].max()),
        "roc_auc_margin": float(metrics["roc_auc"] - best["roc_auc"].max()),
        "validation_gap_days": float(plan.gap_days),
        "validation_honest": float(plan.honest),
    }
    model = result.models.get(chosen)
    return ChurnValidation(
        chosen,
        reason,
        scores["churnguard"],
        metrics,
        comparison,
        result.table,
        pd.DataFrame(
            {
                "customer_id": ev["customer_id"].to_numpy(),
                "churned": y,
                "churn_probability": scores["churnguard"],
                **{f"baseline_{k}": v for k, v in baselines.items()},
            }
        ),
        model.feature_importance() if model is not None else pd.DataFrame(),
    )
