"""Out-of-time plans for the classifier over rolling snapshots.

Snapshots are ordered in time and every customer appears in many of them, so the
classifier cross-fits by customer (see :class:`~churnguard.churn.ChurnClassifier`):
the snapshots that train the trees and those that early-stop and calibrate them may
overlap, because a customer's own rows never serve both purposes.

What must stay apart is *time*. In production the model learns from snapshots whose
labels are fully observed, so the latest of them is one horizon older than the scoring
date; the base rate and the customers' ages move in between. The validation plan
reproduces that gap: it learns from cutoffs at least one horizon before the latest
cutoff and is judged on the latest one. When the history is too short for that gap, it
falls back to adjacent snapshots and says the validation is optimistic.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from churnguard.exceptions import ParameterError

__all__ = ["SnapshotPlan", "plan_production", "plan_validation", "split_by_plan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotPlan:
    """Which snapshot cutoffs train, calibrate and (for validation) evaluate the classifier.

    Attributes
    ----------
    fit : tuple of date
        Cutoffs whose rows train the trees.
    calibration : tuple of date
        Cutoffs whose rows early-stop the trees and fit the calibrator (out of fold).
    evaluation : date or None
        The held-out cutoff of a validation plan (None for the production plan).
    gap_days : int
        Days between the latest learning cutoff and the evaluation cutoff (for the
        production plan: 0; the scoring date then lies one horizon later).
    honest : bool
        Whether the gap is at least one horizon, as between training and scoring.
    """

    fit: tuple[dt.date, ...]
    calibration: tuple[dt.date, ...]
    evaluation: dt.date | None
    gap_days: int
    honest: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for metadata and MLflow."""
        return {
            "fit": [c.isoformat() for c in self.fit],
            "calibration": [c.isoformat() for c in self.calibration],
            "evaluation": self.evaluation.isoformat() if self.evaluation else None,
            "gap_days": int(self.gap_days),
            "honest": bool(self.honest),
        }


def _calibration_window(cutoffs: Sequence[dt.date], days: int) -> tuple[dt.date, ...]:
    latest = max(cutoffs)
    return tuple(c for c in cutoffs if c >= latest - dt.timedelta(days=int(days)))


def plan_validation(
    cutoffs: Sequence[dt.date], horizon_days: int, *, calibration_days: int = 42
) -> SnapshotPlan | None:
    """The out-of-time validation plan, or None when fewer than two cutoffs exist.

    Parameters
    ----------
    cutoffs : sequence of date
        Fully observed snapshot cutoffs.
    horizon_days : int
        Label horizon: the gap kept between the learning cutoffs and the evaluation one.
    calibration_days : int
        Calibrate on the learning cutoffs within this many days of the latest of them.
    """
    cs = sorted(set(cutoffs))
    if len(cs) < 2:
        return None
    evaluation = cs[-1]
    learn = [c for c in cs if c <= evaluation - dt.timedelta(days=int(horizon_days))]
    honest = bool(learn)
    if not honest:
        log.warning(
            "history too short to validate with a %d-day gap between the latest labelled "
            "snapshot and the evaluation one; validating on adjacent snapshots (optimistic)",
            horizon_days,
        )
        learn = cs[:-1]
    return SnapshotPlan(
        tuple(learn),
        _calibration_window(learn, calibration_days),
        evaluation,
        (evaluation - max(learn)).days,
        honest,
    )


def plan_production(cutoffs: Sequence[dt.date], *, calibration_days: int = 42) -> SnapshotPlan:
    """The production plan: learn from every cutoff, calibrate on the latest ones."""
    cs = sorted(set(cutoffs))
    if not cs:
        raise ParameterError("plan_production needs at least one cutoff.")
    return SnapshotPlan(tuple(cs), _calibration_window(cs, calibration_days), None, 0, True)


def split_by_plan(
    snapshots: pd.DataFrame, plan: SnapshotPlan
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The (fit, calibration, evaluation) rows of a snapshot table (evaluation may be empty)."""
    day = snapshots["cutoff"].dt.date
    fit = snapshots.loc[day.isin(plan.fit)]
    cal = snapshots.loc[day.isin(plan.calibration)]
    ev = snapshots.loc[day == plan.evaluation] if plan.evaluation else snapshots.iloc[:0]
    return fit, cal, ev
